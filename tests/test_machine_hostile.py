"""The connection machine against hostile servers on 127.0.0.1: a peer that floods pings and
never reads, a notice an hour ahead, a notice on every connection, and a refused port."""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Callable
from typing import Any

import pytest

import tickwire as tw
from _rawws import frame, upgrade

MARKET = ("trade", "quote", "index")


def tcp_states(port: int) -> list[str]:
    """States (hex, /proc/net/tcp) of this host's sockets whose remote port is ``port``."""
    states = []
    for name in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            with open(name) as f:
                lines = f.read().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            parts = line.split()
            if int(parts[2].rsplit(":", 1)[1], 16) == port:
                states.append(parts[3])
    return states


class PingFlood:
    """Accepts connections, never reads a byte after the upgrade, and floods pings."""

    def __init__(self) -> None:
        self.listener = socket.socket()
        # A small receive buffer fills with tickwire's pongs in moments.
        self.listener.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        self.listener.bind(("127.0.0.1", 0))
        self.listener.listen(8)
        self.port = self.listener.getsockname()[1]
        self.url = f"ws://127.0.0.1:{self.port}/v1/"
        self.stop = threading.Event()
        self.conns: list[socket.socket] = []
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while not self.stop.is_set():
            try:
                conn, _ = self.listener.accept()
            except OSError:
                return
            self.conns.append(conn)
            threading.Thread(target=self._flood, args=(conn,), daemon=True).start()

    def _flood(self, conn: socket.socket) -> None:
        ping = frame(9, b"p" * 125) * 64
        try:
            upgrade(conn)
            conn.settimeout(0.5)
            while not self.stop.is_set():
                try:
                    conn.sendall(ping)
                except TimeoutError:
                    continue
        except OSError:
            return

    def close(self) -> None:
        self.stop.set()
        self.listener.close()
        for c in self.conns:
            c.close()


@pytest.fixture
def flood() -> Any:
    srv = PingFlood()
    yield srv
    srv.close()


@pytest.mark.timeout(60)
def test_a_peer_that_floods_pings_and_never_reads_is_disconnected_within_20_s(
    flood: PingFlood,
) -> None:
    feed = tw.CoinAPI("k", url=flood.url, data_types=["trade"], heartbeat=False)
    started = time.monotonic()
    gone = None
    with tw.connect(feed, compression=False) as stream:
        while time.monotonic() - started < 25:
            batch = stream.next_batch(timeout=0.5) or []
            gone = next((m for m in batch if isinstance(m, tw.Disconnected)), None)
            if gone is not None:
                break
    elapsed = time.monotonic() - started
    assert gone is not None, "the stream stayed wedged"
    assert elapsed < 20, elapsed
    assert "write" in gone.reason


@pytest.mark.timeout(60)
def test_close_frees_the_socket_within_close_timeout_from_a_peer_that_never_reads(
    flood: PingFlood,
) -> None:
    feed = tw.CoinAPI("k", url=flood.url, data_types=["trade"], heartbeat=False)
    stream = tw.connect(feed, compression=False, write_timeout=30.0, close_timeout=1.0)
    stream.__enter__()
    # Let the pongs back up until tickwire's writes block.
    deadline = time.monotonic() + 8
    while time.monotonic() < deadline:
        stream.next_batch(timeout=0.2)
    assert "01" in tcp_states(flood.port), "connected"
    started = time.monotonic()
    stream.close()
    while "01" in tcp_states(flood.port) and time.monotonic() - started < 10:
        time.sleep(0.05)
    assert "01" not in tcp_states(flood.port), "the socket is still open"
    assert time.monotonic() - started < 1.0 + 1.0


class NoticeEveryTime:
    """Accepts every connection and answers each hello with a reconnect notice."""

    def __init__(self) -> None:
        self.listener = socket.socket()
        self.listener.bind(("127.0.0.1", 0))
        self.listener.listen(64)
        self.url = f"ws://127.0.0.1:{self.listener.getsockname()[1]}/v1/"
        self.accepted: list[float] = []
        self.conns: list[socket.socket] = []
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self.listener.accept()
            except OSError:
                return
            self.accepted.append(time.monotonic())
            self.conns.append(conn)
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn: socket.socket) -> None:
        try:
            upgrade(conn)
            conn.recv(65536)  # the hello
            before = time.strftime("%Y-%m-%dT%H:%M:%S.0000000Z", time.gmtime(time.time() + 1))
            notice = {"type": "reconnect", "within_seconds": 1, "before_time": before}
            conn.sendall(frame(1, json.dumps(notice).encode()))
            conn.sendall(frame(1, b'{"type":"hearbeat"}'))
            while conn.recv(65536):
                pass
        except OSError:
            return

    def close(self) -> None:
        self.listener.close()
        for c in self.conns:
            c.close()


@pytest.mark.timeout(30)
@pytest.mark.parametrize("on_notice", ["immediate", "make_before_break"])
def test_a_notice_on_every_connection_cannot_make_tickwire_dial_in_a_loop(
    on_notice: Any,
) -> None:
    srv = NoticeEveryTime()
    feed = tw.CoinAPI("k", url=srv.url, data_types=["trade"])
    try:
        with tw.connect(
            feed, compression=False, reconnect=tw.ReconnectPolicy(on_notice=on_notice)
        ) as stream:
            started = time.monotonic()
            while time.monotonic() - started < 3:
                stream.next_batch(timeout=0.1)
        n = len(srv.accepted)
    finally:
        srv.close()
    assert 2 <= n <= 12, n


@pytest.mark.timeout(30)
def test_a_refused_port_raises_connect_error_on_entering_within_15_s(closed_port: int) -> None:
    feed = tw.CoinAPI(url=f"ws://127.0.0.1:{closed_port}/v1/")
    started = time.monotonic()
    stream = tw.connect(feed)
    with pytest.raises(tw.ConnectError, match="connection refused"), stream:
        pass
    assert time.monotonic() - started < 15


@pytest.mark.timeout(60)
def test_a_notice_an_hour_ahead_switches_by_notice_plus_5_s_without_loss_or_repeat(
    make_sim: Callable[..., Any],
) -> None:
    sim = make_sim(
        rate=2000,
        symbols=20,
        total=12_000,
        faults=tw.Faults(reconnect_notice_after_s=1.0, reconnect_within_s=3600.0),
    )
    feed = tw.CoinAPI(url=sim.url, data_types=MARKET, heartbeat=True)
    items: list[Any] = []
    notice_at = switched_at = None
    with tw.connect(feed, reconnect=tw.ReconnectPolicy(on_notice="make_before_break")) as stream:
        deadline = time.monotonic() + 30
        while not sim.stats().finished and time.monotonic() < deadline:
            for m in stream.next_batch(timeout=0.2) or ():
                items.append(m)
                if isinstance(m, tw.ReconnectNotice) and notice_at is None:
                    notice_at = time.monotonic()
                if isinstance(m, tw.Switched) and switched_at is None:
                    switched_at = time.monotonic()
        end = time.monotonic() + 1.0
        while time.monotonic() < end:
            items.extend(stream.next_batch(timeout=0.2) or ())
    assert notice_at is not None
    assert switched_at is not None, "no switch"
    assert switched_at - notice_at < 5.0 + 1.0
    assert not any(isinstance(m, (tw.Disconnected, tw.Gap)) for m in items)
    delivered = [m.uuid for m in items if isinstance(m, tw.Trade)]
    sent = {r[3] for conn in sim.sent() for r in conn if r[0] == "trade"}
    assert len(delivered) == len(set(delivered))
    assert set(delivered) == sent
