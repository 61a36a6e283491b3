"""``tw.Simulator(replay=path)``: a recording served over WebSocket on 127.0.0.1, to tickwire and
to a plain ``websockets`` client, frame for frame and close for close."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

import tickwire as tw

ws_sync = pytest.importorskip("websockets.sync.client")
ws_exc = pytest.importorskip("websockets.exceptions")

#: The start of a recording of format version 99 (docs/recording.md: magic, version u16 LE).
NEWER_HEADER = b"TWREC\r\n\0" + (99).to_bytes(2, "little") + bytes(64)

EVENTS = (tw.Connected, tw.Disconnected, tw.Gap, tw.Stale, tw.Dropped, tw.Switched, tw.ParseError)


def _record(sim: Any, path: Path, n: int, **connect: Any) -> list[Any]:
    """Records a live session until ``n`` data messages; returns everything delivered."""
    feed = tw.CoinAPI(url=sim.url, data_types=["trade", "quote"], heartbeat=False)
    got: list[Any] = []
    with tw.connect(feed, record=str(path), keep_raw=True, **connect) as stream:
        while sum(not isinstance(m, EVENTS) for m in got) < n:
            batch = stream.next_batch(timeout=10)
            assert batch is not None, "the simulator stopped sending"
            got.extend(batch)
    return got


def _raws(messages: list[Any]) -> list[str]:
    return [m.raw for m in messages if not isinstance(m, EVENTS)]


def _recv_all(ws: Any) -> list[tuple[float, str]]:
    """Every frame until the server closes normally, with when it came (monotonic)."""
    frames: list[tuple[float, str]] = []
    try:
        while True:
            frame = str(ws.recv(timeout=10))
            frames.append((time.monotonic(), frame))
    except ws_exc.ConnectionClosedOK:
        return frames


def _recording_frames(path: Path) -> list[str]:
    """The recording's data frames, as its replay reads them (the recorder may have read a
    few frames more than the consumer took before closing)."""
    with tw.replay(str(path), keep_raw=True) as stream:
        return _raws(_read_all(stream))


def _read_all(stream: tw.Stream) -> list[Any]:
    """Everything a stream delivers until it ends (``reconnect=None``: the first close)."""
    out: list[Any] = []
    for batch in stream:
        out.extend(batch)
    return out


@pytest.mark.timeout(60)
def test_a_recording_is_served_frame_for_frame(
    make_sim: Callable[..., Any], tmp_path: Path
) -> None:
    live_sim = make_sim(rate=5_000, symbols=10)
    path = tmp_path / "session.twr"
    live = _raws(_record(live_sim, path, 400))
    live_sim.close()
    recorded = _recording_frames(path)
    assert recorded[: len(live)] == live

    with tw.Simulator(host="127.0.0.1", replay=path) as sim:
        assert sim.protocol == "coinapi"
        # tickwire, subscribed to something else entirely: it gets what was recorded.
        feed = tw.CoinAPI(url=sim.url, data_types=["book_l3"], symbols=["NOPE_"])
        with tw.connect(feed, keep_raw=True, reconnect=None) as stream:
            served = _read_all(stream)
        assert _raws(served) == recorded
        ends = [m for m in served if isinstance(m, tw.Disconnected)]
        assert len(ends) == 1
        # The recording ended with the consumer's close: served as a normal close.
        assert ends[0].code == 1000

        # A second client gets the recording's second connection: there is none.
        with ws_sync.connect(sim.url) as ws:
            with pytest.raises(ws_exc.ConnectionClosedOK):
                ws.recv(timeout=10)
            assert ws.close_code == 1000
            assert ws.close_reason == "end of recording"
        st = sim.stats()
        assert st.connections == 2
        assert st.messages_sent == len(recorded)
        assert st.finished


@pytest.mark.timeout(60)
def test_a_plain_websocket_client_gets_the_same_frames(
    make_sim: Callable[..., Any], tmp_path: Path
) -> None:
    live_sim = make_sim(rate=5_000, symbols=10)
    path = tmp_path / "session.twr"
    live = _raws(_record(live_sim, path, 200))
    live_sim.close()
    recorded = _recording_frames(path)
    assert recorded[: len(live)] == live
    with tw.Simulator(host="127.0.0.1", replay=[path]) as sim, ws_sync.connect(sim.url) as ws:
        ws.send('{"type":"hello","subscribe_data_type":["trade"]}')
        frames = [f for _, f in _recv_all(ws)]
        assert ws.close_code == 1000
    assert frames == recorded


@pytest.mark.timeout(90)
def test_recorded_closes_are_replayed_and_a_reconnect_gets_the_next_connection(
    make_sim: Callable[..., Any], tmp_path: Path
) -> None:
    # The first connection ends with the server's error and close; the client reconnects.
    live_sim = make_sim(rate=5_000, symbols=10, faults=tw.Faults(error_after_s=0.3))
    path = tmp_path / "session.twr"
    policy = tw.ReconnectPolicy(initial_delay=0.05, max_delay=0.1)
    feed = tw.CoinAPI(url=live_sim.url, data_types=["trade", "quote"], heartbeat=False)
    live: list[Any] = []
    with tw.connect(feed, record=str(path), keep_raw=True, reconnect=policy) as stream:
        # Until the second connection has delivered some data too.
        while sum(isinstance(m, tw.Connected) for m in live) < 2 or not isinstance(
            live[-1], (tw.Trade, tw.Quote)
        ):
            batch = stream.next_batch(timeout=10)
            assert batch is not None
            live.extend(batch)
    live_sim.close()
    live_ends = [m for m in live if isinstance(m, tw.Disconnected)]
    assert live_ends, "the fault did not close the first connection"
    first_end = live.index(live_ends[0])

    with tw.Simulator(host="127.0.0.1", replay=path) as sim:
        feed = tw.CoinAPI(url=sim.url, data_types=["trade"], heartbeat=False)
        with tw.connect(feed, keep_raw=True, reconnect=policy) as stream:
            served: list[Any] = []
            want = len(_raws(live))
            deadline = time.monotonic() + 30
            while len(_raws(served)) < want and time.monotonic() < deadline:
                batch = stream.next_batch(timeout=1)
                if batch is not None:
                    served.extend(batch)
    # Frame for frame across the reconnect, and the first connection ended as recorded.
    assert _raws(served)[:want] == _raws(live)
    served_ends = [m for m in served if isinstance(m, tw.Disconnected)]
    assert served_ends[0].code == live_ends[0].code
    assert _raws(served[: served.index(served_ends[0])]) == _raws(live[:first_end])
    assert sum(isinstance(m, tw.Connected) for m in served) >= 2


@pytest.mark.timeout(60)
def test_recorded_timing_is_kept_at_speed_one(make_sim: Callable[..., Any], tmp_path: Path) -> None:
    live_sim = make_sim(rate=500, symbols=5)
    path = tmp_path / "session.twr"
    _record(live_sim, path, 100)
    live_sim.close()
    with tw.replay(str(path)) as replayed:
        data = [m for m in _read_all(replayed) if not isinstance(m, EVENTS)]
    span_s = (data[-1].recv_ns - data[0].recv_ns) / 1e9
    with tw.Simulator(host="127.0.0.1", replay=path, speed=1.0) as sim:
        start = time.monotonic()
        with ws_sync.connect(sim.url) as ws:
            ws.send('{"type":"hello"}')
            frames = _recv_all(ws)
    assert len(frames) == len(data)
    last = frames[-1][0]
    # Paced, a frame never leaves before its recorded offset from the connection's start, so
    # the last one comes at least the recorded span after connecting (a lower bound: the
    # machine's load cannot break it).
    assert last - start >= span_s


def test_bad_recordings_are_refused_at_start(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        tw.Simulator(replay=tmp_path / "missing.twr")
    junk = tmp_path / "junk.twr"
    junk.write_bytes(b"not a recording at all")
    with pytest.raises(ValueError, match="not a tickwire recording"):
        tw.Simulator(replay=junk)
    newer = tmp_path / "newer.twr"
    newer.write_bytes(NEWER_HEADER)
    with pytest.raises(ValueError, match="format version 99"):
        tw.Simulator(replay=newer)
    with pytest.raises(ValueError, match="speed"):
        tw.Simulator(replay=junk, speed=0.0)
    with pytest.raises(ValueError, match="faults"):
        tw.Simulator(replay=junk, faults=tw.Faults(gap_every=3))
    with pytest.raises(ValueError, match="speed"):
        tw.Simulator(speed=2.0)


@pytest.mark.timeout(90)
def test_a_recorded_make_before_break_is_served_to_the_clients_successor(
    make_sim: Callable[..., Any], tmp_path: Path
) -> None:
    faults = tw.Faults(reconnect_notice_after_s=0.3, reconnect_within_s=1)
    live_sim = make_sim(rate=3_000, symbols=10, faults=faults)
    path = tmp_path / "session.twr"
    feed = tw.CoinAPI(url=live_sim.url, data_types=["trade"], heartbeat=False)
    live: list[Any] = []
    with tw.connect(feed, record=str(path), keep_raw=True) as stream:
        while not any(isinstance(m, tw.Switched) for m in live) or len(live) < 3_000:
            batch = stream.next_batch(timeout=10)
            assert batch is not None
            live.extend(batch)
    live_sim.close()
    live_trades = [m.uuid for m in live if isinstance(m, tw.Trade)]

    # The served notice makes the client dial a successor, which gets the recorded successor;
    # the client switches and closes the old connection itself, as it did when recording.
    with tw.Simulator(host="127.0.0.1", replay=path) as sim:
        feed = tw.CoinAPI(url=sim.url, data_types=["trade"], heartbeat=False)
        with tw.connect(feed, keep_raw=True) as stream:
            served: list[Any] = []
            while sum(isinstance(m, tw.Trade) for m in served) < len(live_trades):
                batch = stream.next_batch(timeout=10)
                assert batch is not None, "the served session stopped"
                served.extend(batch)
    served_trades = [m.uuid for m in served if isinstance(m, tw.Trade)]
    assert served_trades[: len(live_trades)] == live_trades
    assert any(isinstance(m, tw.Switched) for m in served)
    first_switch = next(i for i, m in enumerate(served) if isinstance(m, tw.Switched))
    assert not any(isinstance(m, tw.Disconnected) for m in served[:first_switch])


@pytest.mark.timeout(60)
def test_a_moment_recording_is_served_after_its_subscription(
    make_sim: Callable[..., Any], tmp_path: Path
) -> None:
    # Moment speaks first (`success`), then prices answer the client's subscription: served
    # frames recorded after the subscription wait for the replaying client's own.
    live_sim = make_sim(protocol="moment", rate=2_000)
    path = tmp_path / "prices.twr"
    feed = tw.Moment("prices", url=live_sim.url_for("prices"), subscribe_all=True)
    with tw.connect(feed, record=str(path), keep_raw=True) as stream:
        live: list[Any] = []
        while sum(isinstance(m, tw.PriceUpdate) for m in live) < 100:
            batch = stream.next_batch(timeout=10)
            assert batch is not None
            live.extend(batch)
    live_sim.close()
    recorded = _recording_frames(path)
    assert recorded[: len(_raws(live))] == _raws(live)

    with tw.Simulator(host="127.0.0.1", replay=path) as sim:
        assert sim.protocol == "moment"
        feed = tw.Moment("prices", url=sim.url_for("prices"), subscribe_all=True)
        with tw.connect(feed, keep_raw=True, reconnect=None) as stream:
            served = _read_all(stream)
    assert _raws(served) == recorded
    assert isinstance(served[1], tw.Success)


@pytest.mark.timeout(60)
def test_a_rotated_recording_is_served_as_one_connection(
    make_sim: Callable[..., Any], tmp_path: Path
) -> None:
    live_sim = make_sim(rate=5_000, symbols=10)
    stem = tmp_path / "rotated.twr"
    feed = tw.CoinAPI(url=live_sim.url, data_types=["trade", "quote"], heartbeat=False)
    recorder = tw.Recorder(stem, rotate_s=0.2)
    with tw.connect(feed, record=recorder) as stream:
        n = 0
        while n < 3_000:
            batch = stream.next_batch(timeout=10)
            assert batch is not None
            n += len(batch)
    live_sim.close()
    parts = sorted(tmp_path.glob("rotated.*.twr"))
    assert len(parts) >= 2
    recorded = _recording_frames(stem)
    # Each part restates the open connection; served, it is still one connection.
    with tw.Simulator(host="127.0.0.1", replay=stem) as sim:
        feed = tw.CoinAPI(url=sim.url, data_types=["trade"], heartbeat=False)
        with tw.connect(feed, keep_raw=True, reconnect=None) as stream:
            served = _read_all(stream)
    assert _raws(served) == recorded
    assert sum(isinstance(m, tw.Connected) for m in served) == 1


@pytest.mark.timeout(60)
def test_malformed_frames_and_gaps_are_served_as_recorded(
    make_sim: Callable[..., Any], tmp_path: Path
) -> None:
    faults = tw.Faults(malformed_every=40, gap_every=70)
    live_sim = make_sim(rate=5_000, symbols=10, faults=faults)
    path = tmp_path / "faults.twr"
    _record(live_sim, path, 600)
    live_sim.close()
    with tw.replay(str(path), keep_raw=True) as replayed:
        expected = _read_all(replayed)
    assert any(isinstance(m, tw.ParseError) for m in expected)
    assert any(isinstance(m, tw.Gap) for m in expected)

    with tw.Simulator(host="127.0.0.1", replay=path) as sim:
        feed = tw.CoinAPI(url=sim.url, data_types=["trade"], heartbeat=False)
        with tw.connect(feed, keep_raw=True, reconnect=None) as stream:
            served = _read_all(stream)

    # The broken frames go out byte for byte, so the client finds the same faults in place.
    def shape(msgs: list[Any]) -> list[tuple[str, str | None]]:
        return [
            (m.type, getattr(m, "raw", None))
            for m in msgs
            if not isinstance(m, (tw.Connected, tw.Disconnected))
        ]

    assert shape(served) == shape(expected)
