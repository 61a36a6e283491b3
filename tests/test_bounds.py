"""Bounds at real scale, against a raw WebSocket server on 127.0.0.1 that sends crafted frames:
sequence tracking exact past 65,536 keys (300,000 symbols), drop_oldest and ParseError floods
accounted exactly within the queue's bounds, and metadata too deep to decode safely."""

from __future__ import annotations

import base64
import hashlib
import json
import socket
import threading
import time
from collections.abc import Iterator, Sequence
from typing import Any

import pytest

import tickwire as tw

GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"


def ws_frame(text: bytes) -> bytes:
    """One unmasked server text frame (RFC 6455 5.2)."""
    n = len(text)
    if n < 126:
        head = bytes([0x81, n])
    elif n < 1 << 16:
        head = bytes([0x81, 126]) + n.to_bytes(2, "big")
    else:
        head = bytes([0x81, 127]) + n.to_bytes(8, "big")
    return head + text


class RawServer:
    """Accepts one WebSocket connection, sends ``frames`` in one write, then a close frame.

    Written against the socket directly so hundreds of thousands of frames go out in a second;
    ``sent`` is set once they are all in the kernel's hands.
    """

    def __init__(self, frames: Sequence[bytes]) -> None:
        self.payload = b"".join(ws_frame(f) for f in frames) + b"\x88\x02\x03\xe8"
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.url = f"ws://127.0.0.1:{self.listener.getsockname()[1]}/v1/"
        self.sent = threading.Event()
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        conn, _ = self.listener.accept()
        with conn:
            request = b""
            while b"\r\n\r\n" not in request:
                chunk = conn.recv(4096)
                if not chunk:
                    return
                request += chunk
            key = next(
                line.split(b":", 1)[1].strip()
                for line in request.split(b"\r\n")
                if line.lower().startswith(b"sec-websocket-key:")
            )
            accept = base64.b64encode(hashlib.sha1(key + GUID.encode()).digest())
            conn.sendall(
                b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
                b"Connection: Upgrade\r\nSec-WebSocket-Accept: " + accept + b"\r\n\r\n"
            )
            conn.sendall(self.payload)
            self.sent.set()
            # Hold the connection until the client answers the close (or goes away).
            conn.settimeout(60)
            try:
                while conn.recv(65536):
                    pass
            except OSError:
                pass

    def close(self) -> None:
        self.listener.close()
        self.thread.join(10)


@pytest.fixture
def raw_server() -> Iterator[Any]:
    servers: list[RawServer] = []

    def start(frames: Sequence[bytes]) -> RawServer:
        servers.append(RawServer(frames))
        return servers[-1]

    yield start
    for s in servers:
        s.close()


def trade(symbol: str, seq: int) -> bytes:
    return (
        f'{{"type":"trade","symbol_id":"{symbol}","sequence":{seq},'
        f'"time_exchange":"2024-05-01T14:30:00.1234567Z",'
        f'"time_coinapi":"2024-05-01T14:30:00.2345678Z",'
        f'"uuid":"{symbol}-{seq}","price":1.5,"size":0.25,"taker_side":"BUY"}}'
    ).encode()


def symbol(i: int) -> str:
    return f"EXCH{i % 97:02d}_SPOT_S{i:06d}_USD"


def read_all(stream: Any, deadline_s: float = 120.0) -> list[Any]:
    items: list[Any] = []
    end = time.monotonic() + deadline_s
    for batch in stream:
        items.extend(batch)
        assert time.monotonic() < end, "the stream did not end"
    return items


def feed(server: RawServer) -> Any:
    return tw.CoinAPI(url=server.url, data_types=["trade"], heartbeat=False)


@pytest.mark.timeout(300)
def test_300k_symbols_gaps_and_duplicates_exact(raw_server: Any) -> None:
    """Every symbol sets its baseline; then every 10th, all across the 300,000, repeats its
    number (a duplicate), moves on by one, and jumps (a gap naming the number due)."""
    n, revisit = 300_000, range(0, 300_000, 10)
    frames = [trade(symbol(i), 10) for i in range(n)]
    for i in revisit:
        frames += [trade(symbol(i), 10), trade(symbol(i), 11), trade(symbol(i), 15)]
    server = raw_server(frames)
    with tw.connect(feed(server), reconnect=None) as stream:
        items = read_all(stream)
        stats = stream.stats()
    trades = [m for m in items if isinstance(m, tw.Trade)]
    gaps = [m for m in items if isinstance(m, tw.Gap)]
    assert len(trades) == n + 2 * len(revisit), "a duplicate was delivered (or a trade lost)"
    assert stats.duplicates == len(revisit)
    assert len(gaps) == stats.gaps == len(revisit)
    assert {(g.key, g.expected, g.received) for g in gaps} == {(symbol(i), 12, 15) for i in revisit}
    assert len({t.uuid for t in trades}) == len(trades)


def wait_until_read(stream: Any, frames: int, deadline_s: float = 60.0) -> None:
    """Stalls the consumer until the client has read `frames` data frames off the socket."""
    end = time.monotonic() + deadline_s
    while True:
        s = stream.stats()
        if s.messages + s.duplicates + s.parse_errors >= frames:
            return
        assert time.monotonic() < end, f"the client read {s} of {frames} frames"
        time.sleep(0.02)


def tally(items: list[Any]) -> tuple[int, int, int, int]:
    """(data delivered, gaps delivered, parse-error frames delivered, Dropped.count total)."""
    data = sum(1 for m in items if isinstance(m, tw.Trade))
    gaps = sum(1 for m in items if isinstance(m, tw.Gap))
    parse = sum(m.count for m in items if isinstance(m, tw.ParseError))
    dropped = sum(m.count for m in items if isinstance(m, tw.Dropped))
    return data, gaps, parse, dropped


@pytest.mark.timeout(120)
def test_drop_oldest_flood_of_gaps_and_bad_frames_is_bounded_and_exact(raw_server: Any) -> None:
    """A stalled consumer under drop_oldest: a flood of trades, gaps and malformed frames stays
    within queue_size, each Gap still comes right before its message, runs of bad frames are
    one ParseError with a count, one Dropped says how many went, and it all adds up."""
    frames: list[bytes] = []
    seq = 0
    for i in range(20_000):
        seq += 3 if i % 7 == 0 else 1  # every 7th trade jumps: a Gap
        frames.append(trade("BITSTAMP_SPOT_BTC_USD", seq))
        if i % 5 == 0:
            frames += [b'{"type":"trade","symbol_id":' + b"x" * 3000] * 4  # 4 bad frames in a row
    bad = sum(1 for f in frames if f.endswith(b"x"))
    server = raw_server(frames)
    queue_size = 1000
    with tw.connect(
        feed(server), reconnect=None, overflow="drop_oldest", queue_size=queue_size
    ) as stream:
        assert server.sent.wait(30)
        wait_until_read(stream, len(frames))
        items = read_all(stream)
        stats = stream.stats()
    data, gaps, parse, dropped = tally(items)
    assert stats.parse_errors == bad, "parse_errors counts frames"
    assert stats.dropped == dropped
    assert data + gaps + parse + dropped == stats.messages + stats.gaps + stats.parse_errors
    assert stats.messages == 20_000
    assert stats.queue_high_water <= queue_size + 1024 + 2
    assert sum(1 for m in items if isinstance(m, tw.Dropped)) <= 2, "Dropped events coalesce"
    for i, m in enumerate(items):
        if isinstance(m, tw.Gap):
            nxt = items[i + 1]
            assert isinstance(nxt, tw.Trade)
            assert nxt.sequence == m.received
        if isinstance(m, tw.ParseError):
            assert len(m.raw.encode()) <= 1024
            assert not isinstance(items[i + 1], tw.ParseError), "a run is folded"
    assert stats.queue_depth == 0


@pytest.mark.timeout(60)
@pytest.mark.parametrize("overflow", ["block", "conflate"])
def test_bad_frame_runs_fold_under_every_policy(raw_server: Any, overflow: str) -> None:
    frames = [trade("A", 1)] + [b"{not json"] * 5000 + [trade("A", 2)]
    server = raw_server(frames)
    with tw.connect(feed(server), reconnect=None, overflow=overflow, queue_size=100) as stream:
        assert server.sent.wait(30)
        wait_until_read(stream, len(frames))
        items = read_all(stream)
        stats = stream.stats()
    errors = [m for m in items if isinstance(m, tw.ParseError)]
    assert len(errors) == 1
    assert errors[0].count == 5000 == stats.parse_errors
    assert errors[0].raw == "{not json"
    assert [m.sequence for m in items if isinstance(m, tw.Trade)] == [1, 2]
    assert stats.queue_high_water <= 100


@pytest.mark.timeout(60)
def test_queue_bytes_bounds_a_queue_of_few_large_messages(raw_server: Any) -> None:
    big = b'{"type":"future_kind","blob":"' + b"y" * 100_000 + b'"}'
    frames = [big] * 300
    server = raw_server(frames)
    with tw.connect(
        feed(server),
        reconnect=None,
        overflow="drop_oldest",
        queue_bytes=2 * 2**20,
        max_message_size=2**20,
    ) as stream:
        assert server.sent.wait(30)
        wait_until_read(stream, 300)
        items = read_all(stream)
        stats = stream.stats()
    unknown = sum(1 for m in items if isinstance(m, tw.Unknown))
    dropped = sum(m.count for m in items if isinstance(m, tw.Dropped))
    assert unknown + dropped == 300
    # 2 MiB holds 20 such messages; Connected and one Dropped come on top.
    assert stats.queue_high_water <= 2 * 2**20 // 100_000 + 4


@pytest.mark.timeout(60)
def test_deep_metadata_never_breaks_a_batch(raw_server: Any) -> None:
    deep = b'{"type":"asset","asset_id":"X","nest":' + b"[" * 1000 + b"]" * 1000 + b"}"
    plain = json.dumps({"type": "symbol", "symbol_id": "S", "price": 1.5}).encode()
    frames = [trade("A", 1), deep, plain, trade("A", 2)]
    server = raw_server(frames)
    with tw.connect(feed(server), reconnect=None) as stream:
        items = read_all(stream)
        stats = stream.stats()
    kinds = [type(m).__name__ for m in items if not isinstance(m, tw.Disconnected)]
    assert kinds == ["Connected", "Trade", "ParseError", "Metadata", "Trade"], kinds
    err = next(m for m in items if isinstance(m, tw.ParseError))
    assert "nested deeper" in err.reason
    assert err.count == 1
    meta = next(m for m in items if isinstance(m, tw.Metadata))
    assert meta.fields == {"type": "symbol", "symbol_id": "S", "price": 1.5}
    assert stats.parse_errors == 1


@pytest.mark.timeout(60)
def test_stats_report_queue_depth_high_water_and_lag(raw_server: Any) -> None:
    server = raw_server([trade("A", i) for i in range(1, 501)])
    with tw.connect(feed(server), reconnect=None) as stream:
        items = read_all(stream)
        stats = stream.stats()
    assert sum(isinstance(m, tw.Trade) for m in items) == 500
    assert stats.queue_depth == 0
    assert 1 <= stats.queue_high_water <= 503
    # time_coinapi is in 2024: the lag is that old (microseconds), at both quantiles.
    assert set(stats.lag_us) == {"p50", "p99"}
    assert stats.lag_us["p50"] > 3600 * 1e6
    assert stats.lag_us["p99"] >= stats.lag_us["p50"]
