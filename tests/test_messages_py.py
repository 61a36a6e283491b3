"""Messages and events as Python values: pickling, ``==``, ``hash``, ``to_dict``, reprs.

Every class in ``tickwire.Message`` is checked on instances that came through a real stream:
the simulator's traffic (with its faults) where it has the class, else a scripted WebSocket
server on 127.0.0.1 sending the recorded frames of ``tests/data``.
"""

from __future__ import annotations

import asyncio
import copy
import json
import pickle
import threading
import time
from collections import defaultdict
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

import tickwire as tw
from _support import feed

pytest.importorskip("websockets")
from websockets.asyncio.server import ServerConnection, serve

DATA = Path(__file__).parent / "data" / "coinapi"
MESSAGE_CLASSES: tuple[type[Any], ...] = tw.Message.__args__
#: Enough instances of a class to tell equal from different.
KEEP = 20
QUICK_RETRY = tw.ReconnectPolicy(initial_delay=0.05, max_delay=0.5)

Samples = dict[type[Any], list[Any]]


def _take(samples: Samples, batch: Any) -> None:
    for m in batch:
        kept = samples[type(m)]
        if len(kept) < KEEP:
            kept.append(m)


def _read_until(stream: Any, samples: Samples, done: Callable[[], bool], limit: float) -> None:
    end = time.monotonic() + limit
    while not done():
        assert time.monotonic() < end, (
            f"gave up waiting; have {sorted(c.__name__ for c in samples)}"
        )
        batch = stream.next_batch(timeout=0.2)
        if batch is not None:
            _take(samples, batch)


def _serve_frames(frames: list[str]) -> Iterator[str]:
    """A WebSocket server on 127.0.0.1 that sends ``frames`` to each client, then closes."""
    ready = threading.Event()
    stop: list[tuple[asyncio.AbstractEventLoop, asyncio.Event]] = []
    urls: list[str] = []

    async def handler(ws: ServerConnection) -> None:
        for f in frames:
            await ws.send(f)
        await ws.close()

    async def main() -> None:
        async with serve(handler, "127.0.0.1", 0) as srv:
            port = next(iter(srv.sockets)).getsockname()[1]
            urls.append(f"ws://127.0.0.1:{port}/v1/")
            done = asyncio.Event()
            stop.append((asyncio.get_running_loop(), done))
            ready.set()
            await done.wait()

    thread = threading.Thread(target=asyncio.run, args=(main(),), daemon=True)
    thread.start()
    assert ready.wait(10)
    try:
        yield urls[0]
    finally:
        loop, done = stop[0]
        loop.call_soon_threadsafe(done.set)
        thread.join(10)


def _read_to_end(stream: Any, samples: Samples, limit: float = 20.0) -> None:
    end = time.monotonic() + limit
    for batch in stream:
        _take(samples, batch)
        assert time.monotonic() < end, "the stream did not end"


@pytest.fixture(scope="module")
def samples() -> Samples:
    got: Samples = defaultdict(list)
    # Market data of every type, gaps, malformed frames, a reconnect notice and its
    # make-before-break switch, heartbeats once the simulator has sent its total.
    with (
        tw.Simulator(
            rate=3_000,
            symbols=10,
            total=4_000,
            faults=tw.Faults(
                gap_every=97,
                malformed_every=101,
                reconnect_notice_after_s=0.3,
                reconnect_within_s=1,
            ),
        ) as sim,
        tw.connect(feed(sim), reconnect=QUICK_RETRY) as stream,
    ):

        def have_all() -> bool:
            wanted = (tw.Trade, tw.Quote, tw.Book, tw.BookL3, tw.Ohlcv, tw.Exrate, tw.Index)
            wanted += (tw.Gap, tw.ParseError, tw.ReconnectNotice, tw.Switched, tw.Heartbeat)
            return all(got.get(c) for c in wanted)

        _read_until(stream, got, have_all, 30)
    # Maintained books with a dropped update: BookSynced, then BookReset for the gap.
    with (
        tw.Simulator(rate=3_000, symbols=3, faults=tw.Faults(book_drop_every=20)) as sim,
        tw.connect(feed(sim, data_types=["book", "book_l3"]), books=True) as stream,
    ):
        _read_until(stream, got, lambda: bool(got.get(tw.BookSynced) and got.get(tw.BookReset)), 30)
    # A server error, then the close (no reconnect): ServerError, Disconnected.
    with (
        tw.Simulator(rate=500, symbols=5, faults=tw.Faults(error_after_s=0.2)) as sim,
        tw.connect(feed(sim, data_types=["trade"]), reconnect=None) as stream,
    ):
        _read_to_end(stream, got)
    # A stalled server: Stale.
    with (
        tw.Simulator(rate=500, symbols=5, faults=tw.Faults(stall_after_s=0.2)) as sim,
        tw.connect(
            feed(sim, data_types=["trade"]), reconnect=None, heartbeat_timeout=0.5
        ) as stream,
    ):
        _read_to_end(stream, got)
    # A consumer that does not read, under drop_oldest: Dropped.
    with (
        tw.Simulator(rate=0, symbols=5) as sim,
        tw.connect(
            feed(sim, data_types=["trade"]), queue_size=64, batch_size=16, overflow="drop_oldest"
        ) as stream,
    ):
        end = time.monotonic() + 20
        while stream.stats().dropped == 0:
            assert time.monotonic() < end, "nothing was dropped"
            time.sleep(0.01)
        _read_until(stream, got, lambda: bool(got.get(tw.Dropped)), 20)
    # Moment: welcome, subscriptions, prices; the order stream's events.
    with tw.Simulator("moment", rate=2_000, seed=1) as sim:
        prices = tw.Moment("prices", url=sim.url_for("prices"), subscribe_all=True)
        orders = tw.Moment("orders", url=sim.url_for("orders"))
        with tw.connect(prices) as p, tw.connect(orders) as o:
            _read_until(p, got, lambda: bool(got.get(tw.PriceUpdate)), 20)
            _read_until(
                o, got, lambda: bool(got.get(tw.OrderUpdate) and got.get(tw.AllocationUpdate)), 30
            )
    # What the simulator does not send: metadata, a type tickwire does not know, a Moment
    # system event and a Moment subscription reply, from a scripted server.
    frames = [
        (DATA / "asset_btc.json").read_text(),
        (DATA / "exchange.json").read_text(),
        (DATA / "symbol.json").read_text(),
        json.dumps({"type": "brand_new_type", "x": 1}),
        (DATA / "hearbeat.json").read_text(),
    ]
    for url in _serve_frames(frames):
        with tw.connect(tw.CoinAPI(url=url, heartbeat=False), reconnect=None) as stream:
            _read_to_end(stream, got)
    moment_frames = [
        json.dumps({"msg_type": "success", "msg": "connected"}),
        json.dumps({"msg_type": "subscription", "instrument_id": "912810SX7", "msg": "subscribed"}),
        json.dumps(
            {
                "msg_type": "system_update",
                "msg_number": 202405010000000043,
                "event_type": "cancel_request",
                "id": "mo_1",
            }
        ),
    ]
    for url in _serve_frames(moment_frames):
        with tw.connect(tw.Moment("orders", url=url), reconnect=None) as stream:
            _read_to_end(stream, got)
    return got


def test_message_is_the_union_of_every_message_and_event_class() -> None:
    assert tw.Message is not None
    names = {c.__name__ for c in MESSAGE_CLASSES}
    for name in ("Trade", "PriceUpdate", "Connected", "ParseError", "Unknown", "Metadata"):
        assert name in names
        assert getattr(tw, name) in MESSAGE_CLASSES
    assert "Message" in tw.__all__


@pytest.mark.parametrize("cls", MESSAGE_CLASSES, ids=lambda c: c.__name__)
def test_pickles_and_compares_by_value(samples: Samples, cls: type[Any]) -> None:
    got = samples.get(cls)
    assert got, f"no {cls.__name__} came through any stream of the fixture"
    for m in got:
        back = pickle.loads(pickle.dumps(m))
        assert type(back) is cls
        assert back == m
        assert not back.__ne__(m)
        assert hash(back) == hash(m)
        assert repr(back) == repr(m)
        assert back.to_dict() == m.to_dict()
        assert copy.deepcopy(m) == m
        assert isinstance(m, tw.Message)
    # Different values are different messages.
    distinct = {pickle.dumps(m) for m in got}
    if len(distinct) > 1:
        assert any(a != b for a in got for b in got)
    # Never equal to a message of another class, nor to its own dict.
    other = next(s[0] for c, s in samples.items() if c is not cls and s)
    assert got[0] != other
    assert got[0] != got[0].to_dict()


@pytest.mark.parametrize("cls", MESSAGE_CLASSES, ids=lambda c: c.__name__)
def test_to_dict_is_type_recv_ns_then_the_fields(samples: Samples, cls: type[Any]) -> None:
    for m in samples.get(cls, []):
        d = m.to_dict()
        keys = list(d)
        assert keys[:2] == ["type", "recv_ns"]
        assert d["type"] == m.type
        assert d["recv_ns"] == m.recv_ns
        for k in keys[2:]:
            assert d[k] == getattr(m, k), (cls.__name__, k)
        # JSON-ready as it stands.
        assert json.loads(json.dumps(d))["type"] == m.type


def test_to_dict_fields_per_class(samples: Samples) -> None:
    trade = samples[tw.Trade][0].to_dict()
    assert list(trade) == [
        "type",
        "recv_ns",
        "symbol_id",
        "sequence",
        "time_exchange",
        "time_coinapi",
        "uuid",
        "price",
        "size",
        "taker_side",
    ]
    assert list(samples[tw.Gap][0].to_dict()) == [
        "type",
        "recv_ns",
        "msg_type",
        "key",
        "expected",
        "received",
    ]
    unknown = samples[tw.Unknown][0].to_dict()
    assert unknown["type"] == "brand_new_type"
    assert json.loads(unknown["raw"]) == {"type": "brand_new_type", "x": 1}
    order = samples[tw.OrderUpdate][0].to_dict()
    assert order["fields"] == samples[tw.OrderUpdate][0].fields
    assert samples[tw.Metadata][0].to_dict()["fields"]["asset_id"] == "BTC"


def test_messages_survive_a_process_boundary(samples: Samples) -> None:
    """What multiprocessing fan-out does: pickle in one process, unpickle in another."""
    import subprocess
    import sys

    sent = [samples[c][0] for c in (tw.Trade, tw.Book, tw.Gap, tw.PriceUpdate)]
    code = (
        "import pickle, sys; ms = pickle.load(sys.stdin.buffer); "
        "print(repr([m.to_dict() for m in ms]))"
    )
    r = subprocess.run(
        [sys.executable, "-c", code],
        input=pickle.dumps(sent),
        capture_output=True,
        check=True,
        timeout=60,
    )
    assert r.stdout.decode().strip() == repr([m.to_dict() for m in sent])


def test_restore_rejects_a_wrong_tuple(samples: Samples) -> None:
    trade = samples[tw.Trade][0]
    values = trade._values()
    with pytest.raises(ValueError, match="too few"):
        tw.Trade._restore(values[:-2])
    with pytest.raises(ValueError, match="too many"):
        tw.Trade._restore((*values, 1))
    with pytest.raises(TypeError):
        tw.Trade._restore(("trade", "not a time", *values[2:]))


def test_stats_repr_shows_every_counter_and_the_latency(sim: Any) -> None:
    with tw.connect(feed(sim, data_types=["trade"])) as stream:
        while stream.next_batch(timeout=1) is None:
            pass
        text = repr(stream.stats())
        shown = repr(stream)
    for name in ("messages=", "bytes=", "gaps=", "dropped=", "reconnects=", "latency_us={"):
        assert name in text, text
    assert "'p50'" in text
    assert f"id={stream._core.id}" in shown
    assert sim.url in shown
    assert "open" in shown
    assert "closed" in repr(stream)
