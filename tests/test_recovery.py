"""Liveness, reconnects, make-before-break and overflow, each against the simulator's record of
what it sent: nothing lost or repeated without the consumer being told."""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable
from typing import Any

import pytest

import tickwire as tw

MARKET = ("trade", "quote", "index")


def read_until_error(stream: tw.Stream) -> None:
    """Iterates until the stream raises (the tests expect it to)."""
    while True:
        stream.next_batch(timeout=5)


def collect(stream: tw.Stream, until: Callable[[list[Any]], bool], limit_s: float) -> list[Any]:
    """Reads batches until ``until(items)`` holds or ``limit_s`` passes."""
    items: list[Any] = []
    deadline = time.monotonic() + limit_s
    while time.monotonic() < deadline and not until(items):
        batch = stream.next_batch(timeout=0.2)
        if batch is not None:
            items.extend(batch)
    return items


def rss_bytes() -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise RuntimeError("no VmRSS")


@pytest.mark.timeout(60)
def test_a_stalled_server_is_declared_stale_and_replaced(make_sim: Callable[..., Any]) -> None:
    sim = make_sim(rate=500, symbols=10, faults=tw.Faults(stall_after_s=1.0, stall_s=30.0))
    feed = tw.CoinAPI(url=sim.url, data_types=MARKET, heartbeat=True)
    policy = tw.ReconnectPolicy(initial_delay=0.05)
    with tw.connect(feed, reconnect=policy) as stream:
        items = collect(
            stream,
            lambda xs: (
                sum(isinstance(m, tw.Connected) for m in xs) >= 2
                and isinstance(xs[-1], (tw.Trade, tw.Quote, tw.Index))
            ),
            limit_s=20,
        )
    kinds = [type(m) for m in items if not isinstance(m, (tw.Trade, tw.Quote, tw.Index))]
    stale = [m for m in items if isinstance(m, tw.Stale)]
    assert len(stale) == 1
    # Default heartbeat_timeout is 3 s; the event comes within it + 0.5 s of the last frame.
    last_frame = max(m.recv_ns for m in items[: items.index(stale[0])] if hasattr(m, "recv_ns"))
    assert 2.9 <= stale[0].silence_s <= 3.5
    assert (stale[0].recv_ns - last_frame) / 1e9 <= 3.5
    # The hole is marked: Stale, Disconnected, then a new connection, then data again.
    i = kinds.index(tw.Stale)
    assert kinds[i : i + 3] == [tw.Stale, tw.Disconnected, tw.Connected]
    assert sim.stats().connections >= 2


@pytest.mark.timeout(60)
def test_an_abrupt_disconnect_is_retried_and_each_connection_delivers_its_record(
    make_sim: Callable[..., Any],
) -> None:
    sim = make_sim(rate=2000, symbols=10, total=6000, faults=tw.Faults(disconnect_after_s=1.0))
    feed = tw.CoinAPI(url=sim.url, data_types=MARKET, heartbeat=False)
    with tw.connect(feed, reconnect=tw.ReconnectPolicy(initial_delay=0.1)) as stream:
        items = collect(stream, lambda _: sim.stats().finished, limit_s=30)
        items += collect(stream, lambda _: False, limit_s=1.0)
    # Split what arrived at each Connected and compare with each connection's record.
    segments: list[list[tuple[str, str, int]]] = []
    for m in items:
        if isinstance(m, tw.Connected):
            segments.append([])
        elif isinstance(m, (tw.Trade, tw.Quote)):
            segments[-1].append((m.type, m.symbol_id, m.sequence))
        elif isinstance(m, tw.Index):
            segments[-1].append((m.type, m.index_id, m.sequence))
    sent = [[(t, k, s) for t, k, s, _ in conn] for conn in sim.sent()]
    assert len(segments) == len(sent) >= 2
    assert segments == sent
    disconnected = [m for m in items if isinstance(m, tw.Disconnected)]
    assert len(disconnected) == len(sent) - 1
    assert stream.stats().reconnects == len(sent) - 1


@pytest.mark.timeout(60)
def test_make_before_break_loses_and_repeats_nothing(make_sim: Callable[..., Any]) -> None:
    sim = make_sim(
        rate=2000,
        symbols=20,
        total=8000,
        faults=tw.Faults(reconnect_notice_after_s=1.0, reconnect_within_s=1.0),
    )
    feed = tw.CoinAPI(url=sim.url, data_types=MARKET, heartbeat=True)
    with tw.connect(feed, reconnect=tw.ReconnectPolicy(on_notice="make_before_break")) as stream:
        items = collect(stream, lambda _: sim.stats().finished, limit_s=30)
        items += collect(stream, lambda _: False, limit_s=1.0)
    assert sim.stats().connections == 2
    switched = [m for m in items if isinstance(m, tw.Switched)]
    assert len(switched) == 1
    assert not any(isinstance(m, (tw.Disconnected, tw.Gap)) for m in items)
    assert [type(m) for m in items if isinstance(m, tw.Connected)] == [tw.Connected]
    # Trades: every uuid any connection carried, delivered exactly once.
    delivered = [m.uuid for m in items if isinstance(m, tw.Trade)]
    sent = {r[3] for conn in sim.sent() for r in conn if r[0] == "trade"}
    assert len(delivered) == len(set(delivered))
    assert set(delivered) == sent
    # Quotes and index values are continuous: every (key, time) once, times never go back.
    for cls in (tw.Quote, tw.Index):
        seen = [
            (getattr(m, "symbol_id", None) or getattr(m, "index_id", None), m.time_coinapi)
            for m in items
            if isinstance(m, cls)
        ]
        assert len(seen) == len(set(seen)), cls
        last: dict[str | None, int] = {}
        for key, t in seen:
            assert t >= last.get(key, 0)
            last[key] = t
    assert switched[0].overlap_dropped <= switched[0].held


@pytest.mark.timeout(60)
@pytest.mark.parametrize("on_notice", ["immediate", "wait_for_close"])
def test_other_notice_strategies_report_the_hole(
    make_sim: Callable[..., Any], on_notice: Any
) -> None:
    sim = make_sim(
        rate=1000,
        symbols=10,
        total=4000,
        faults=tw.Faults(reconnect_notice_after_s=0.8, reconnect_within_s=1.0),
    )
    feed = tw.CoinAPI(url=sim.url, data_types=MARKET, heartbeat=True)
    with tw.connect(feed, reconnect=tw.ReconnectPolicy(on_notice=on_notice)) as stream:
        items = collect(stream, lambda _: sim.stats().finished, limit_s=30)
    kinds = Counter(type(m) for m in items)
    assert kinds[tw.ReconnectNotice] == 1
    assert kinds[tw.Disconnected] == 1
    assert kinds[tw.Connected] == 2
    assert kinds[tw.Switched] == 0
    notice = items.index(next(m for m in items if isinstance(m, tw.ReconnectNotice)))
    gone = items.index(next(m for m in items if isinstance(m, tw.Disconnected)))
    assert notice < gone


@pytest.mark.timeout(30)
def test_a_dead_server_is_retried_with_growing_delays(closed_port: int) -> None:
    feed = tw.CoinAPI(url=f"ws://127.0.0.1:{closed_port}/v1/")
    # Before the first connection, initial_attempts bounds the dials (max_attempts counts
    # only after a first success).
    policy = tw.ReconnectPolicy(initial_delay=0.1, factor=2.0, jitter=0.0, initial_attempts=5)
    started = time.monotonic()
    stream = tw.connect(feed, reconnect=policy, connect_timeout=1.0)
    with pytest.raises(tw.ConnectError, match="after 5 attempts: connection refused"):
        read_until_error(stream)
    elapsed = time.monotonic() - started
    # 0.1 + 0.2 + 0.4 + 0.8 s of backoff, not a tight loop.
    assert 1.5 <= elapsed < 10


@pytest.mark.timeout(120)
@pytest.mark.parametrize("overflow", ["drop_oldest", "conflate"])
def test_a_sleeping_consumer_stays_in_memory_bounds_and_drops_add_up(
    make_sim: Callable[..., Any], overflow: Any
) -> None:
    total = 1_000_000
    sim = make_sim(rate=0, symbols=50, total=total, record=False)
    # Conflation only ever drops state-like messages, so that stream carries quotes.
    types = ("trade", "quote", "index") if overflow == "drop_oldest" else ("quote",)
    feed = tw.CoinAPI(url=sim.url, data_types=types, heartbeat=False)
    before = rss_bytes()
    with tw.connect(feed, queue_size=20_000, overflow=overflow, reconnect=None) as stream:
        deadline = time.monotonic() + 90
        peak = before
        while not sim.stats().finished and time.monotonic() < deadline:
            time.sleep(0.2)
            peak = max(peak, rss_bytes())
        items = collect(stream, lambda _: False, limit_s=1.5)
        stats = stream.stats()
    assert sim.stats().finished
    sent = sim.stats().messages_sent
    data = [m for m in items if isinstance(m, (tw.Trade, tw.Quote, tw.Index))]
    dropped = sum(m.count for m in items if isinstance(m, tw.Dropped))
    assert dropped == stats.dropped > 0
    assert len(data) + dropped == sent
    # 20 000 queued messages are a few MB; the bound leaves room for allocator slack.
    assert peak - before < 150 * 2**20, (peak - before) / 2**20


@pytest.mark.timeout(30)
def test_core_log_records_reach_the_tickwire_logger(
    closed_port: int, caplog: pytest.LogCaptureFixture
) -> None:
    feed = tw.CoinAPI(url=f"ws://127.0.0.1:{closed_port}/v1/")
    policy = tw.ReconnectPolicy(initial_delay=0.05, max_attempts=2)
    with caplog.at_level("INFO", logger="tickwire"):
        stream = tw.connect(feed, reconnect=policy, connect_timeout=1.0)
        with pytest.raises(tw.ConnectError):
            read_until_error(stream)
    retries = [r for r in caplog.records if r.name == "tickwire" and "retrying" in r.getMessage()]
    assert retries
    assert all(r.levelname == "WARNING" for r in retries)


@pytest.mark.timeout(30)
def test_a_server_error_is_delivered_and_the_connection_remade(
    make_sim: Callable[..., Any],
) -> None:
    sim = make_sim(rate=500, symbols=10, faults=tw.Faults(error_after_s=0.5))
    feed = tw.CoinAPI(url=sim.url, data_types=MARKET, heartbeat=True)
    with tw.connect(feed, reconnect=tw.ReconnectPolicy(initial_delay=0.05)) as stream:
        items = collect(
            stream, lambda xs: sum(isinstance(m, tw.Connected) for m in xs) >= 2, limit_s=10
        )
    errors = [m for m in items if isinstance(m, tw.ServerError)]
    assert len(errors) == 1
    assert errors[0].message
    kinds = [type(m) for m in items if not isinstance(m, (tw.Trade, tw.Quote, tw.Index))]
    i = kinds.index(tw.ServerError)
    assert tw.Disconnected in kinds[i:]
    assert kinds[-1] is tw.Connected
