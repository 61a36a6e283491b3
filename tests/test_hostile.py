"""Hostile peers and hostile processes: a raw-socket WebSocket server on 127.0.0.1 that writes
hand-made frames (RFC 6455 rules on tickwire's read path), keys refused over plain ``ws://``
to other hosts, and ``os.fork()`` with live streams."""

from __future__ import annotations

import base64
import hashlib
import json
import os
import socket
import struct
import subprocess
import sys
import textwrap
import threading
import zlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

import tickwire as tw

GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"


def trade(seq: int, pad: int = 0) -> bytes:
    """A CoinAPI trade; ``pad`` trailing spaces (still one JSON value) set its exact size."""
    text = json.dumps(
        {
            "type": "trade",
            "symbol_id": "BITSTAMP_SPOT_BTC_USD",
            "sequence": seq,
            "time_exchange": "2024-05-01T14:30:00.1234567Z",
            "time_coinapi": "2024-05-01T14:30:00.2345678Z",
            "uuid": f"770C7A3B-7258-4441-8182-{seq:012d}",
            "price": 64000.5,
            "size": 0.05,
            "taker_side": "BUY",
        }
    )
    return text.encode() + b" " * pad


def frame(opcode: int, payload: bytes, *, mask: bytes | None = None, rsv1: bool = False) -> bytes:
    """One final frame as a server (or, with ``mask``, a client) writes it."""
    head = bytes([0x80 | (0x40 if rsv1 else 0) | opcode])
    bit = 0x80 if mask is not None else 0
    n = len(payload)
    if n < 126:
        head += bytes([bit | n])
    elif n < 65536:
        head += bytes([bit | 126]) + struct.pack("!H", n)
    else:
        head += bytes([bit | 127]) + struct.pack("!Q", n)
    if mask is not None:
        payload = mask + bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
    return head + payload


def deflated(payload: bytes) -> bytes:
    """A permessage-deflate message body (no context takeover)."""
    c = zlib.compressobj(wbits=-15)
    out = c.compress(payload) + c.flush(zlib.Z_SYNC_FLUSH)
    assert out.endswith(b"\x00\x00\xff\xff")
    return out[:-4]


@dataclass
class Seen:
    """What the raw server received from tickwire."""

    request: str = ""
    texts: list[bytes] = field(default_factory=list)
    close: tuple[int | None, bytes] | None = None
    eof: bool = False


def close_code(seen: Seen) -> int | None:
    """The code of tickwire's close frame (None: it sent none)."""
    return None if seen.close is None else seen.close[0]


def read_exact(conn: socket.socket, n: int) -> bytes:
    out = b""
    while len(out) < n:
        chunk = conn.recv(n - len(out))
        if not chunk:
            raise EOFError
        out += chunk
    return out


def read_client_frame(conn: socket.socket) -> tuple[int, bytes]:
    b0, b1 = read_exact(conn, 2)
    n = b1 & 0x7F
    if n == 126:
        (n,) = struct.unpack("!H", read_exact(conn, 2))
    elif n == 127:
        (n,) = struct.unpack("!Q", read_exact(conn, 8))
    key = read_exact(conn, 4) if b1 & 0x80 else b"\0\0\0\0"
    data = read_exact(conn, n)
    return b0 & 0x0F, bytes(b ^ key[i % 4] for i, b in enumerate(data))


class RawServer:
    """Accepts one connection, answers the upgrade (with ``extensions``, if any), writes
    ``script`` once the hello arrives, then reads until tickwire's close frame or EOF."""

    def __init__(self, script: bytes, extensions: str | None = None) -> None:
        self.script = script
        self.extensions = extensions
        self.seen = Seen()
        self.listener = socket.socket()
        self.listener.bind(("127.0.0.1", 0))
        self.listener.listen(1)
        self.listener.settimeout(15)
        self.url = f"ws://127.0.0.1:{self.listener.getsockname()[1]}/v1/"
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        try:
            conn, _ = self.listener.accept()
        finally:
            # Later attempts (reconnects) are refused at once.
            self.listener.close()
        conn.settimeout(15)
        with conn:
            request = b""
            while b"\r\n\r\n" not in request:
                request += conn.recv(4096)
            self.seen.request = request.decode()
            key = next(
                line.split(":", 1)[1].strip()
                for line in self.seen.request.split("\r\n")
                if line.lower().startswith("sec-websocket-key:")
            )
            accept = base64.b64encode(hashlib.sha1(key.encode() + GUID).digest()).decode()
            response = (
                "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
                f"Connection: Upgrade\r\nSec-WebSocket-Accept: {accept}\r\n"
            )
            if self.extensions:
                response += f"Sec-WebSocket-Extensions: {self.extensions}\r\n"
            conn.sendall((response + "\r\n").encode())
            try:
                while True:
                    opcode, data = read_client_frame(conn)
                    if opcode == 1:
                        if not self.seen.texts:
                            conn.sendall(self.script)
                        self.seen.texts.append(data)
                    elif opcode == 8:
                        code = struct.unpack("!H", data[:2])[0] if len(data) >= 2 else None
                        self.seen.close = (code, data[2:])
                        return
            except (EOFError, OSError):
                self.seen.eof = True

    def join(self) -> Seen:
        self.thread.join(20)
        assert not self.thread.is_alive(), "the raw server never finished"
        return self.seen


def run_client(url: str, **options: Any) -> tuple[list[Any], BaseException | None]:
    """Everything the stream delivers until it ends (no reconnects), and how it ended."""
    feed = tw.CoinAPI("k", url=url, data_types=["trade"], heartbeat=False)
    got: list[Any] = []
    error: BaseException | None = None
    options.setdefault("compression", False)
    try:
        with tw.connect(feed, reconnect=None, connect_timeout=5, **options) as stream:
            for batch in stream:
                got.extend(batch)
    except tw.TickwireError as e:
        error = e
    return got, error


def trades(got: list[Any]) -> list[int]:
    return [m.sequence for m in got if isinstance(m, tw.Trade)]


# -- RFC 6455 on the read path ----------------------------------------------------------------


@pytest.mark.timeout(60)
def test_a_masked_server_frame_fails_the_connection_with_1002() -> None:
    script = frame(1, trade(1)) + frame(1, trade(2), mask=b"\x11\x22\x33\x44") + frame(1, trade(3))
    srv = RawServer(script)
    got, _ = run_client(srv.url)
    seen = srv.join()
    assert close_code(seen) == 1002
    # The masked frame is neither delivered (as garbage or a parse error) nor anything after.
    assert trades(got) == [1]
    assert not [m for m in got if isinstance(m, tw.ParseError)]
    assert any(isinstance(m, tw.Disconnected) and "masked" in m.reason for m in got)


@pytest.mark.parametrize("opcode", [0x8, 0x9, 0xA], ids=["close", "ping", "pong"])
@pytest.mark.timeout(60)
def test_a_control_frame_over_125_bytes_fails_the_connection_with_1002(opcode: int) -> None:
    body = (struct.pack("!H", 1000) + b"x" * 124) if opcode == 0x8 else b"p" * 126
    srv = RawServer(frame(1, trade(1)) + frame(opcode, body) + frame(1, trade(2)))
    got, _ = run_client(srv.url)
    seen = srv.join()
    assert close_code(seen) == 1002
    assert trades(got) == [1]


@pytest.mark.timeout(60)
def test_a_control_frame_of_125_bytes_is_accepted() -> None:
    srv = RawServer(frame(1, trade(1)) + frame(0xA, b"p" * 125) + frame(1, trade(2)))
    feed = tw.CoinAPI("k", url=srv.url, data_types=["trade"], heartbeat=False)
    seqs: list[int] = []
    with tw.connect(feed, reconnect=None, compression=False) as stream:
        while len(seqs) < 2:
            batch = stream.next_batch(timeout=10)
            assert batch is not None
            seqs += trades(list(batch))
    assert seqs == [1, 2]
    seen = srv.join()
    assert close_code(seen) == 1000


@pytest.mark.parametrize("compression", [False, True], ids=["plain", "deflate-offered"])
@pytest.mark.timeout(60)
def test_an_extension_never_offered_fails_the_connection_with_1002(compression: bool) -> None:
    srv = RawServer(frame(1, trade(1)), extensions="x-tickwire-never-offered")
    got, error = run_client(srv.url, compression=compression)
    seen = srv.join()
    assert close_code(seen) == 1002
    assert seen.texts == []  # no hello went out on it
    assert trades(got) == []
    assert isinstance(error, tw.ConnectError)
    assert "x-tickwire-never-offered" in str(error)


@pytest.mark.timeout(60)
def test_deflate_agreed_without_an_offer_fails_the_connection() -> None:
    srv = RawServer(frame(1, trade(1)), extensions="permessage-deflate")
    got, error = run_client(srv.url, compression=False)
    seen = srv.join()
    assert "permessage-deflate" not in seen.request
    assert seen.texts == []
    assert trades(got) == []
    assert isinstance(error, tw.ConnectError)


@pytest.mark.timeout(60)
def test_invalid_utf8_in_a_text_frame_fails_the_connection_with_1007() -> None:
    bad = trade(2).replace(b"BUY", b"B\xffY")
    srv = RawServer(frame(1, trade(1)) + frame(1, bad) + frame(1, trade(3)))
    got, _ = run_client(srv.url)
    seen = srv.join()
    assert close_code(seen) == 1007
    assert trades(got) == [1]


@pytest.mark.parametrize("deflate", [False, True], ids=["plain", "after-inflate"])
@pytest.mark.timeout(60)
def test_max_message_size_is_inclusive(deflate: bool) -> None:
    limit = 4096
    exact = trade(1, pad=limit - len(trade(1)))
    over = trade(2, pad=limit + 1 - len(trade(2)))
    assert (len(exact), len(over)) == (limit, limit + 1)

    def message(payload: bytes) -> bytes:
        return frame(1, deflated(payload), rsv1=True) if deflate else frame(1, payload)

    ext = "permessage-deflate; server_no_context_takeover; client_no_context_takeover"
    srv = RawServer(message(exact) + message(over), extensions=ext if deflate else None)
    got, _ = run_client(srv.url, compression=deflate, max_message_size=limit)
    seen = srv.join()
    assert trades(got) == [1]
    assert close_code(seen) == 1009


# -- no key in clear -------------------------------------------------------------------------

# Not routable: if anything were dialled it would hang, not connect.
FAR = "ws://10.255.255.1/v1/"


@pytest.mark.parametrize(
    "feed",
    [
        tw.CoinAPI("secret-key", url=FAR),
        tw.Moment("prices", "secret-key", url="ws://10.255.255.1/v1/data/price-stream/"),
        tw.Moment("orders", "secret-key", url="ws://example.com/o/", auth_in_query=True),
    ],
    ids=["coinapi-header", "moment-bearer", "moment-auth_token"],
)
def test_a_key_over_plain_ws_to_another_host_is_refused(feed: tw.CoinAPI | tw.Moment) -> None:
    with pytest.raises(ValueError, match="allow_insecure") as info:
        tw.connect(feed)
    assert "secret-key" not in str(info.value)


@pytest.mark.parametrize(
    "host", ["127.0.0.1", "127.3.2.1", "localhost", "LOCALHOST", "[::1]", "[::ffff:127.0.0.1]"]
)
def test_loopback_needs_no_permission(host: str) -> None:
    from tickwire._feeds import check_transport

    check_transport(f"ws://{host}:9/v1/", allow_insecure=False)


def test_allow_insecure_lets_ws_through_and_wss_never_needs_it() -> None:
    from tickwire._feeds import check_transport

    check_transport(FAR, allow_insecure=True)
    check_transport("wss://10.255.255.1/v1/", allow_insecure=False)
    for host in ["10.0.0.1", "128.0.0.1", "[::2]", "localhost.example.com", "example.com"]:
        with pytest.raises(ValueError, match="refusing ws://"):
            check_transport(f"ws://{host}/", allow_insecure=False)
    assert tw.CoinAPI(allow_insecure=True).allow_insecure
    assert not tw.Moment("prices").allow_insecure


def test_the_cli_refuses_plain_ws_to_another_host() -> None:
    env = dict(os.environ, COINAPI_KEY="secret-key", MOMENT_API_KEY="secret-key")
    for args in (["coinapi", "--url", FAR], ["moment", "prices", "--url", FAR]):
        r = subprocess.run(
            [sys.executable, "-m", "tickwire", "stream", *args, "--count", "1"],
            capture_output=True,
            text=True,
            env=env,
            timeout=60,
        )
        assert r.returncode == 2, r.stderr
        assert "--allow-insecure" in r.stderr
        assert "secret-key" not in r.stderr


def test_the_cli_takes_allow_insecure() -> None:
    from tickwire.cli import build_parser

    args = build_parser().parse_args(["stream", "coinapi", "--url", FAR, "--allow-insecure"])
    assert args.allow_insecure is True


# -- fork ------------------------------------------------------------------------------------

FORKS = 20

FORK_SCRIPT = textwrap.dedent(
    """
    import json, os, signal, sys, time
    import tickwire as tw

    url, forks = sys.argv[1], int(sys.argv[2])
    feed = tw.CoinAPI("k", url=url, data_types=["trade"], heartbeat=False)

    def child(parent_stream):
        # Exit status, a bit per failure: 1 the inherited stream did not refuse naming the
        # fork, 2 a new stream did not stream, 4 the parent's socket stayed open here (it is
        # the only socket: closed without a word to the server).
        fds = [os.readlink(f"/proc/self/fd/{fd}") for fd in os.listdir("/proc/self/fd")
               if os.path.exists(f"/proc/self/fd/{fd}")]
        status = 4 if any(link.startswith("socket:") for link in fds) else 0
        try:
            parent_stream.next_batch(timeout=1)
            status |= 1
        except tw.StreamClosed as e:
            if "before fork" not in str(e):
                status |= 1
        except tw.TickwireError:
            status |= 1
        try:
            with tw.connect(feed, connect_timeout=5) as s:
                for _ in range(50):
                    b = s.next_batch(timeout=5)
                    if b is not None and any(isinstance(m, tw.Trade) for m in b):
                        return status
        except tw.TickwireError:
            pass
        return status | 2

    out = {"children": [], "parent_messages_after_last_fork": 0}
    with tw.connect(feed) as stream:
        pending = {}
        def read(n=1):
            got = 0
            for _ in range(n):
                b = stream.next_batch(timeout=5)
                if b is None:
                    raise SystemExit("the parent stopped streaming")
                got += len(b)
            return got
        def reap(block_until=None):
            for pid, started in list(pending.items()):
                done, status = os.waitpid(pid, os.WNOHANG)
                if done:
                    out["children"].append(
                        {"code": os.waitstatus_to_exitcode(status),
                         "seconds": round(time.monotonic() - started, 3)})
                    del pending[pid]
                elif time.monotonic() - started > 10:
                    os.kill(pid, signal.SIGKILL)
                    os.waitpid(pid, 0)
                    out["children"].append({"code": "hung", "seconds": 10})
                    del pending[pid]
        for i in range(forks):
            read()
            pid = os.fork()
            if pid == 0:
                os._exit(child(stream))
            pending[pid] = time.monotonic()
            reap()
        while pending:
            out["parent_messages_after_last_fork"] += read()
            reap()
        out["parent_messages_after_last_fork"] += read(3)
    print(json.dumps(out))
    """
)


@pytest.fixture(scope="module")
def sim_url() -> Iterator[str]:
    """The simulator in a process of its own, so forked children inherit none of it."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "tickwire", "sim", "--rate", "2000", "--seconds", "600"],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None
    line = proc.stdout.readline()
    assert line.startswith("coinapi "), line
    try:
        yield line.split()[1]
    finally:
        proc.terminate()
        proc.wait(30)
        proc.stdout.close()


@pytest.mark.parametrize("mode", ["inline", "threads"])
@pytest.mark.timeout(300)
def test_fork_leaves_the_parent_streaming_and_children_work(
    mode: str, sim_url: str, tmp_path: Path
) -> None:
    script = tmp_path / "forker.py"
    script.write_text(FORK_SCRIPT)
    r = subprocess.run(
        [sys.executable, "-W", "ignore::DeprecationWarning", str(script), sim_url, str(FORKS)],
        capture_output=True,
        text=True,
        env=dict(os.environ, TICKWIRE_IO=mode),
        timeout=280,
    )
    assert r.returncode == 0, f"parent ended with {r.returncode}: {r.stderr[-2000:]}"
    out = json.loads(r.stdout.splitlines()[-1])
    print(mode, json.dumps(out))
    codes = [c["code"] for c in out["children"]]
    assert codes == [0] * FORKS, out
    assert all(c["seconds"] <= 10 for c in out["children"])
    assert out["parent_messages_after_last_fork"] > 0
