"""Server-side trouble injected by the simulator: notices, errors, stalls, dropped connections,
with and without a reconnect policy. Each check compares against what the simulator recorded."""

from __future__ import annotations

import time
from typing import Any

import pytest

import tickwire as tw
from _support import collect_sync, feed, record_of

QUICK_RETRY = tw.ReconnectPolicy(initial_delay=0.05, max_delay=0.5)


def read_to_end(stream: Any, *, deadline: float = 20.0) -> list[Any]:
    """Iterate until the stream ends by itself (reconnect=None after the server went away)."""
    items: list[Any] = []
    end = time.monotonic() + deadline
    for batch in stream:
        items.extend(batch)
        assert time.monotonic() < end, "the stream did not end"
    return items


def non_data(items: list[Any]) -> list[Any]:
    return [m for m in items if not isinstance(m, tw.Trade | tw.Heartbeat)]


@pytest.mark.timeout(30)
def test_reconnect_notice_is_delivered(make_sim: Any) -> None:
    sim = make_sim(rate=500, symbols=10, faults=tw.Faults(reconnect_notice_after_s=0.3))
    with tw.connect(feed(sim, data_types=["trade"]), reconnect=None) as stream:
        items: list[Any] = []
        end = time.monotonic() + 10
        while not any(isinstance(m, tw.ReconnectNotice) for m in items):
            assert time.monotonic() < end, "no reconnect notice"
            batch = stream.next_batch(timeout=0.5)
            if batch is not None:
                items.extend(batch)
    notice = next(m for m in items if isinstance(m, tw.ReconnectNotice))
    assert notice.type == "reconnect"
    assert notice.within_seconds == 10
    # before_time is "within_seconds from now" on the server's clock (same machine here).
    assert notice.recv_ns < notice.before_time <= notice.recv_ns + 11 * 10**9


@pytest.mark.timeout(30)
def test_server_error_then_disconnected_then_end(make_sim: Any) -> None:
    sim = make_sim(rate=500, symbols=10, faults=tw.Faults(error_after_s=0.3))
    with tw.connect(feed(sim, data_types=["trade"]), reconnect=None) as stream:
        items = read_to_end(stream)
    events = non_data(items)
    assert [type(m) for m in events] == [tw.Connected, tw.ServerError, tw.Disconnected]
    err = events[1]
    assert err.type == "error"
    assert isinstance(err.message, str)
    assert err.message
    assert err.error_type is None
    assert any(isinstance(m, tw.Trade) for m in items)


@pytest.mark.timeout(30)
def test_stall_gives_stale_within_the_timeout(make_sim: Any) -> None:
    sim = make_sim(rate=500, symbols=10, faults=tw.Faults(stall_after_s=0.3))
    timeout = 1.0
    with tw.connect(
        feed(sim, data_types=["trade"]), reconnect=None, heartbeat_timeout=timeout
    ) as stream:
        items = read_to_end(stream)
    events = non_data(items)
    assert [type(m) for m in events] == [tw.Connected, tw.Stale, tw.Disconnected]
    stale = events[1]
    assert stale.type == "stale"
    assert stale.silence_s >= timeout
    # A functional deadline with a generous margin, not a speed claim.
    last_trade = max(m.recv_ns for m in items if isinstance(m, tw.Trade))
    assert stale.recv_ns - last_trade < (timeout + 2.0) * 1e9


@pytest.mark.timeout(30)
def test_abrupt_close_without_policy_ends_the_stream(make_sim: Any) -> None:
    sim = make_sim(rate=500, symbols=10, faults=tw.Faults(disconnect_after_s=0.3))
    with tw.connect(feed(sim, data_types=["trade"]), reconnect=None) as stream:
        items = read_to_end(stream)
    assert [type(m) for m in non_data(items)] == [tw.Connected, tw.Disconnected]
    (sent,) = sim.sent()
    assert [record_of(m) for m in items if isinstance(m, tw.Trade)] == sent


@pytest.mark.timeout(60)
def test_abrupt_close_with_policy_reconnects_and_loses_nothing(make_sim: Any) -> None:
    sim = make_sim(rate=2_000, symbols=10, total=6_000, faults=tw.Faults(disconnect_after_s=0.5))
    with tw.connect(feed(sim, data_types=["trade"]), reconnect=QUICK_RETRY) as stream:
        got = collect_sync(stream, sim, how="next_batch")
    sent = sim.sent()
    assert len(sent) == 2, "one drop, one reconnect"
    events = non_data(got.items)
    assert [type(m) for m in events] == [tw.Connected, tw.Disconnected, tw.Connected]
    assert [m.attempt for m in events if isinstance(m, tw.Connected)] == [0, 1]
    assert got.stats.reconnects == 1
    # Sequences restart per connection: no Gap across the reconnect, and every trade written
    # on either connection arrives once, in order.
    assert [record_of(m) for m in got.data] == sent[0] + sent[1]
    assert got.of(tw.Gap) == []


@pytest.mark.timeout(60)
def test_make_before_break_has_no_hole_and_no_repeat(make_sim: Any) -> None:
    sim = make_sim(
        rate=2_000,
        symbols=10,
        total=6_000,
        faults=tw.Faults(reconnect_notice_after_s=0.3, reconnect_within_s=1),
    )
    with tw.connect(feed(sim, data_types=["trade"]), reconnect=QUICK_RETRY) as stream:
        got = collect_sync(stream, sim, how="next_batch")
    sent = sim.sent()
    assert len(sent) == 2, "the notice opens a second connection before the first closes"
    events = non_data(got.items)
    assert [type(m) for m in events] == [tw.Connected, tw.ReconnectNotice, tw.Switched]
    switched = events[2]
    assert switched.type == "switched"
    assert 0 <= switched.overlap_dropped <= switched.held
    # Identity across connections is the trade uuid: the union of both connections' trades
    # arrives, each once.
    delivered = [m.uuid for m in got.data]
    assert len(delivered) == len(set(delivered))
    assert set(delivered) == {uuid for conn in sent for (_t, _k, _s, uuid) in conn}
    assert got.of(tw.Gap) == []
