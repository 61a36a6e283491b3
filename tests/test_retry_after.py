"""HTTP 429/503 with ``Retry-After`` on the upgrade: tickwire waits at least that long before
the next dial (capped by ``max_delay``), and before a first connection a wait over 10 s raises
``ConnectError`` naming it. A raw server on 127.0.0.1 refuses every upgrade."""

from __future__ import annotations

import socket
import threading
import time
from email.utils import formatdate

import pytest

import tickwire as tw


class Refuser:
    """Answers every upgrade with ``status`` and the ``Retry-After`` that ``retry_after``
    returns, and notes when each dial arrived (monotonic seconds)."""

    def __init__(self, status: str, retry_after: str | None) -> None:
        self.status = status
        self.retry_after = retry_after
        self.dials: list[float] = []
        self.listener = socket.socket()
        self.listener.bind(("127.0.0.1", 0))
        self.listener.listen(8)
        self.listener.settimeout(0.2)
        self.url = f"ws://127.0.0.1:{self.listener.getsockname()[1]}/v1/"
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        with self.listener:
            while not self.stop.is_set():
                try:
                    conn, _ = self.listener.accept()
                except TimeoutError:
                    continue
                self.dials.append(time.monotonic())
                with conn:
                    conn.settimeout(5)
                    request = b""
                    while b"\r\n\r\n" not in request:
                        chunk = conn.recv(4096)
                        if not chunk:
                            break
                        request += chunk
                    head = f"HTTP/1.1 {self.status}\r\nContent-Length: 0\r\n"
                    if self.retry_after is not None:
                        head += f"Retry-After: {self.retry_after}\r\n"
                    conn.sendall((head + "\r\n").encode())

    def close(self) -> None:
        self.stop.set()
        self.thread.join(5)


def connect_error(url: str, policy: tw.ReconnectPolicy) -> tw.ConnectError:
    feed = tw.CoinAPI("k", url=url, data_types=["trade"], heartbeat=False)
    try:
        with tw.connect(feed, reconnect=policy, connect_timeout=5) as stream:
            for _ in stream:
                pass
    except tw.ConnectError as e:
        return e
    raise AssertionError("the stream ended without ConnectError")


@pytest.mark.timeout(30)
@pytest.mark.parametrize("status", ["429 Too Many Requests", "503 Service Unavailable"])
def test_the_next_dial_waits_for_retry_after_seconds(status: str) -> None:
    srv = Refuser(status, "1")
    try:
        policy = tw.ReconnectPolicy(initial_delay=0.05, jitter=0.0, initial_attempts=2)
        error = connect_error(srv.url, policy)
    finally:
        srv.close()
    assert len(srv.dials) == 2
    assert srv.dials[1] - srv.dials[0] >= 1.0
    assert status.split()[0] in str(error)


@pytest.mark.timeout(30)
def test_retry_after_as_an_http_date_is_waited_for() -> None:
    # Two seconds ahead; the date's whole seconds leave at least one to wait.
    srv = Refuser("429 Too Many Requests", formatdate(time.time() + 2, usegmt=True))
    try:
        policy = tw.ReconnectPolicy(initial_delay=0.05, jitter=0.0, initial_attempts=2)
        connect_error(srv.url, policy)
    finally:
        srv.close()
    assert len(srv.dials) == 2
    assert srv.dials[1] - srv.dials[0] >= 1.0


@pytest.mark.timeout(30)
def test_retry_after_is_capped_at_max_delay() -> None:
    srv = Refuser("429 Too Many Requests", "8")
    try:
        policy = tw.ReconnectPolicy(
            initial_delay=0.05, max_delay=0.5, jitter=0.0, initial_attempts=2
        )
        connect_error(srv.url, policy)
    finally:
        srv.close()
    assert len(srv.dials) == 2
    # The 8 s asked for is cut to max_delay: well under 8 s, and at least 0.5 s.
    assert 0.5 <= srv.dials[1] - srv.dials[0] < 6.0


@pytest.mark.timeout(30)
def test_a_first_connection_told_to_wait_over_ten_seconds_raises_naming_it() -> None:
    srv = Refuser("429 Too Many Requests", "30")
    try:
        error = connect_error(srv.url, tw.ReconnectPolicy(initial_attempts=5))
    finally:
        srv.close()
    assert len(srv.dials) == 1
    assert "Retry-After" in str(error)
    assert "30 s" in str(error)
