"""Record and replay: a live session against the simulator, with faults, recorded and replayed
through the same decoder and stream logic; the recording read and edited by the documented
layout (docs/recording.md) with an independent zstd, to prove what is in it."""

from __future__ import annotations

import asyncio
import json
import struct
import time
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import zstandard

import tickwire as tw

MARKET = ("trade", "quote", "index")
MAGIC = b"TWREC\r\n\0"
BLOCK = struct.Struct("<4sIIIqqI")
ENTRY = struct.Struct("<qqqI")


@dataclass
class Block:
    first_ns: int
    last_ns: int
    records: int
    raw: bytes


def read_blocks(path: Path) -> tuple[bytes, list[Block]]:
    """The header's bytes and every block, decompressed, of a finished recording."""
    data = path.read_bytes()
    assert data[:8] == MAGIC
    version, meta_len = struct.unpack_from("<HI", data, 8)
    assert version == 1
    pos = 14 + meta_len
    json.loads(data[14:pos])
    blocks = []
    while data[pos : pos + 4] == b"TWBK":
        _, comp_len, raw_len, records, first, last, crc = BLOCK.unpack_from(data, pos)
        comp = data[pos + BLOCK.size : pos + BLOCK.size + comp_len]
        assert zlib.crc32(data[pos : pos + 32] + comp) == crc
        raw = zstandard.ZstdDecompressor().decompress(comp, max_output_size=raw_len)
        assert len(raw) == raw_len
        blocks.append(Block(first, last, records, raw))
        pos += BLOCK.size + comp_len
    assert data[pos : pos + 4] == b"TWIX", "a finished recording ends with its index"
    return data[: 14 + meta_len], blocks


def write_blocks(path: Path, header: bytes, blocks: list[Block]) -> None:
    """A recording of these blocks, sealed and indexed as docs/recording.md says."""
    out = bytearray(header)
    index = bytearray(b"TWIX" + struct.pack("<I", len(blocks)))
    for b in blocks:
        comp = zstandard.ZstdCompressor(level=3).compress(b.raw)
        head = struct.pack(
            "<4sIIIqq", b"TWBK", len(comp), len(b.raw), b.records, b.first_ns, b.last_ns
        )
        index += ENTRY.pack(len(out), b.first_ns, b.last_ns, b.records)
        out += head + struct.pack("<I", zlib.crc32(head + comp)) + comp
    index_at = len(out)
    index += struct.pack("<I", zlib.crc32(bytes(index)))
    out += index + struct.pack("<Q", index_at) + b"TWEND\0\0\0"
    path.write_bytes(bytes(out))


def everything(path: Path) -> bytes:
    header, blocks = read_blocks(path)
    return header + b"".join(b.raw for b in blocks)


def comparable(items: list[Any]) -> list[dict[str, Any]]:
    """Messages and events as dicts; `Dropped` is not reproduced by a replay."""
    return [m.to_dict() for m in items if not isinstance(m, tw.Dropped)]


def live_session(
    stream: tw.Stream, until: Callable[[list[Any]], bool], limit_s: float, then: int = 300
) -> list[Any]:
    """Reads until `until(items)` holds (or `limit_s`), then about `then` messages more."""
    items: list[Any] = []
    deadline = time.monotonic() + limit_s
    while time.monotonic() < deadline and not until(items):
        batch = stream.next_batch(timeout=0.2)
        if batch is not None:
            items.extend(batch)
    target = len(items) + then
    while time.monotonic() < deadline and len(items) < target:
        batch = stream.next_batch(timeout=0.2)
        if batch is not None:
            items.extend(batch)
    return items


def replayed(path: Path | list[Path] | str, **kw: Any) -> list[Any]:
    items: list[Any] = []
    with tw.replay(path, **kw) as stream:  # type: ignore[arg-type]
        for batch in stream:
            items.extend(batch)
    return items


def count(items: list[Any], cls: type) -> int:
    return sum(isinstance(m, cls) for m in items)


SESSIONS = {
    # A reconnect notice: make-before-break opens a successor and switches to it.
    "make_before_break": (
        tw.Faults(gap_every=300, malformed_every=450, reconnect_notice_after_s=0.6),
        {},
        lambda xs: count(xs, tw.Switched) >= 1,
    ),
    # An abrupt close (no close frame): Disconnected, then a new connection.
    "abrupt_close": (
        tw.Faults(gap_every=300, malformed_every=450, disconnect_after_s=0.6),
        {},
        lambda xs: count(xs, tw.Connected) >= 2,
    ),
    # A stalled server: Stale at the liveness deadline, then a new connection.
    "stall": (
        tw.Faults(gap_every=300, stall_after_s=0.6, stall_s=30.0),
        {"heartbeat_timeout": 0.5},
        lambda xs: count(xs, tw.Stale) >= 1 and count(xs, tw.Connected) >= 2,
    ),
    # Moment orders across a reconnect: numbers resume, the replayed ones are dropped.
    "moment_orders": (
        tw.Faults(malformed_every=450, disconnect_after_s=0.6),
        {},
        lambda xs: count(xs, tw.Connected) >= 2,
    ),
}


@pytest.mark.timeout(90)
@pytest.mark.parametrize("name", sorted(SESSIONS))
def test_a_replay_equals_the_live_session_field_for_field(
    name: str, make_sim: Callable[..., Any], tmp_path: Path
) -> None:
    faults, options, until = SESSIONS[name]
    feed: tw.CoinAPI | tw.Moment
    if name.startswith("moment"):
        sim = make_sim(protocol="moment", rate=2_000, symbols=10, faults=faults)
        feed = tw.Moment("orders", url=sim.url_for("orders"))
    else:
        sim = make_sim(rate=2_000, symbols=10, faults=faults)
        feed = tw.CoinAPI(url=sim.url, data_types=MARKET, heartbeat=True)
    path = tmp_path / "session.twr"
    policy = tw.ReconnectPolicy(initial_delay=0.05)
    with tw.connect(feed, record=path, reconnect=policy, **options) as stream:
        live = live_session(stream, until, limit_s=30)
    assert until(live), f"the {name} fault did not happen"
    if name != "moment_orders":
        assert count(live, tw.Gap) >= 1
    if name != "stall":
        assert count(live, tw.ParseError) >= 1
    again = replayed(path)
    # The recording goes on to the close, past what the consumer took before closing.
    assert len(again) >= len(live)
    assert comparable(again[: len(live)]) == comparable(live)


@pytest.mark.timeout(60)
def test_a_frame_edited_in_the_file_is_a_parse_error_in_its_place(
    make_sim: Callable[..., Any], tmp_path: Path
) -> None:
    sim = make_sim(rate=2_000, symbols=10)
    feed = tw.CoinAPI(url=sim.url, data_types=("trade",), heartbeat=False)
    path = tmp_path / "session.twr"
    with tw.connect(feed, record=path) as stream:
        live_session(stream, lambda xs: len(xs) >= 800, limit_s=20, then=0)
    original = replayed(path)
    trades = [m for m in original if isinstance(m, tw.Trade)]
    victim = trades[len(trades) // 2]
    header, blocks = read_blocks(path)
    needle = f'"uuid":"{victim.uuid}"'.encode()
    hits = [i for i, b in enumerate(blocks) if needle in b.raw]
    assert len(hits) == 1
    raw = bytearray(blocks[hits[0]].raw)
    at = raw.index(needle)
    # Same length, so every length prefix in the block still holds: the frame's JSON breaks.
    raw[at : at + len(needle)] = needle.replace(b'"uuid":', b'"uuid"!')
    blocks[hits[0]].raw = bytes(raw)
    edited_path = tmp_path / "edited.twr"
    write_blocks(edited_path, header, blocks)
    edited = replayed(edited_path)
    i = original.index(victim)
    assert comparable(edited[:i]) == comparable(original[:i])
    error = edited[i]
    assert isinstance(error, tw.ParseError)
    assert error.recv_ns == victim.recv_ns
    assert victim.uuid in error.raw
    # The trade is gone: its symbol's next trade reveals the hole.
    after = edited[i + 1 :]
    gaps = [g for g in after if isinstance(g, tw.Gap) and g.key == victim.symbol_id]
    assert gaps
    assert gaps[0].expected == victim.sequence


@pytest.mark.timeout(60)
@pytest.mark.parametrize("venue", ["coinapi", "moment"])
def test_no_key_is_in_the_recording(
    venue: str, make_sim: Callable[..., Any], tmp_path: Path
) -> None:
    key = "K3Y-" + "7" * 24
    path = tmp_path / "session.twr"
    if venue == "coinapi":
        sim = make_sim(rate=1_000, symbols=5, api_key=key)
        feed: tw.CoinAPI | tw.Moment = tw.CoinAPI(key, url=sim.url, data_types=MARKET)
    else:
        sim = make_sim(protocol="moment", rate=1_000, symbols=5, api_key=key)
        feed = tw.Moment(
            "prices",
            api_key=key,
            url=sim.url_for("prices"),
            subscribe_all=True,
            auth_in_query=True,
        )
    with tw.connect(feed, record=path) as stream:
        items = live_session(stream, lambda xs: len(xs) >= 200, limit_s=20, then=0)
    assert count(items, tw.Connected) == 1
    assert sum(not m.type.startswith(("connected",)) for m in items) >= 100
    raw = everything(path)
    assert b"TWBK" not in raw[:8]
    assert len(raw) > 10_000
    assert key.encode() not in raw
    assert key[4:].encode() not in raw
    assert b"auth_token" not in raw


@pytest.mark.timeout(60)
def test_async_replay_and_rotated_files(make_sim: Callable[..., Any], tmp_path: Path) -> None:
    sim = make_sim(rate=5_000, symbols=10, faults=tw.Faults(gap_every=500))
    feed = tw.CoinAPI(url=sim.url, data_types=MARKET, heartbeat=True)
    path = tmp_path / "rot.twr"
    with tw.connect(feed, record=tw.Recorder(path, rotate_mb=0.05)) as stream:
        live = live_session(stream, lambda xs: len(xs) >= 6_000, limit_s=30, then=0)
    parts = sorted(tmp_path.glob("rot.*.twr"))
    assert len(parts) >= 2
    assert not path.exists()
    assert parts[0].name == "rot.0.twr"

    async def consume() -> tuple[list[Any], tw.Stats]:
        items: list[Any] = []
        async with tw.replay(path) as stream:
            async for batch in stream:
                items.extend(batch)
            return items, stream.stats()

    again, stats = asyncio.run(consume())
    assert comparable(again[: len(live)]) == comparable(live)
    assert stats.messages == sum(m.type in MARKET for m in again)
    assert stats.gaps == count(again, tw.Gap) >= 1
    # The parts one by one, in order, are the same.
    assert comparable(replayed([str(p) for p in parts])) == comparable(again)  # type: ignore[arg-type]
    # Batches export like live ones.
    with tw.replay(path) as stream:
        batch = stream.next_batch(timeout=5)
        assert batch is not None
        tables = batch.to_arrow()
        assert set(tables) <= {"trade", "quote", "index", "connected"}


@pytest.mark.timeout(60)
def test_a_time_window_and_paced_replay(make_sim: Callable[..., Any], tmp_path: Path) -> None:
    sim = make_sim(rate=5_000, symbols=10)
    feed = tw.CoinAPI(url=sim.url, data_types=MARKET, heartbeat=False)
    path = tmp_path / "s.twr"
    with tw.connect(feed, record=path) as stream:
        live_session(stream, lambda xs: len(xs) >= 20_000, limit_s=30, then=0)
    full = replayed(path)
    data = [m for m in full if m.type in MARKET]
    start, end = data[len(data) // 2].recv_ns, data[3 * len(data) // 4].recv_ns
    window = replayed(path, start_ns=start, end_ns=end)
    assert comparable(window) == comparable([m for m in full if start <= m.recv_ns <= end])
    # Paced replay (16x the recorded speed) yields the same messages.
    short = data[-500].recv_ns
    assert comparable(replayed(path, start_ns=short, speed=16.0)) == comparable(
        [m for m in full if m.recv_ns >= short]
    )


@pytest.mark.timeout(60)
def test_damage_ends_the_replay_with_the_offset_and_newer_versions_are_refused(
    make_sim: Callable[..., Any], tmp_path: Path
) -> None:
    sim = make_sim(rate=5_000, symbols=10)
    feed = tw.CoinAPI(url=sim.url, data_types=MARKET, heartbeat=False)
    path = tmp_path / "s.twr"
    with tw.connect(feed, record=path) as stream:
        live_session(stream, lambda xs: len(xs) >= 20_000, limit_s=30, then=0)
    full = replayed(path)
    data = path.read_bytes()
    cut = tmp_path / "cut.twr"
    cut.write_bytes(data[: len(data) * 2 // 3])
    items: list[Any] = []

    def read_all() -> None:
        with tw.replay(cut) as stream:
            for batch in stream:
                items.extend(batch)

    with pytest.raises(tw.ProtocolError, match=r"damaged at byte \d+") as raised:
        read_all()
    offset = int(str(raised.value).split("damaged at byte ")[1].split(":")[0])
    assert 0 < offset <= len(data) * 2 // 3
    # Everything before the damage was replayed, as it was.
    assert 0 < len(items) < len(full)
    assert comparable(items) == comparable(full[: len(items)])

    newer = tmp_path / "newer.twr"
    newer.write_bytes(data[:8] + struct.pack("<H", 2) + data[10:])
    with pytest.raises(tw.ProtocolError, match="format version 2"):
        tw.replay(newer)
    with pytest.raises(tw.ProtocolError, match="not a tickwire recording"):
        tw.replay(Path(__file__))
    with pytest.raises(OSError, match=r"missing\.twr"):
        tw.replay(tmp_path / "missing.twr")
