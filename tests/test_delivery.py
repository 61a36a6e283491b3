"""Everything the simulator wrote arrives, once, in order; gaps, duplicates and malformed frames
are surfaced exactly as DESIGN.md says. Each check is run through the sync and the async API."""

from __future__ import annotations

import asyncio
import itertools
from collections import Counter
from typing import Any

import pytest

import tickwire as tw
from _support import (
    ALL_TYPES,
    Collected,
    Expected,
    collect_async,
    collect_sync,
    expected_from,
    feed,
    is_data,
    key_of,
    record_of,
    sequences_by_key,
)

TOTAL = 20_000
MODES = ("iter", "next_batch", "async")


def run(sim: Any, mode: str, **connect_kw: Any) -> Collected:
    """Connect to ``sim`` with every type subscribed and read until it has all arrived."""
    connect_kw.setdefault("reconnect", None)
    stream = tw.connect(feed(sim), **connect_kw)
    if mode == "async":

        async def main() -> Collected:
            async with stream:
                return await collect_async(stream, sim)

        return asyncio.run(main())
    with stream:
        return collect_sync(stream, sim, how=mode)


def one_connection(sim: Any) -> list[Any]:
    sent = sim.sent()
    assert len(sent) == 1, f"expected one connection, simulator saw {len(sent)}"
    assert sim.stats().connections == 1
    return list(sent[0])


def assert_delivered_exactly(got: Collected, exp: Expected) -> None:
    """The delivered data is the simulator's record, duplicates removed, in the same order."""
    delivered = [record_of(m) for m in got.data]
    assert Counter(r[0] for r in delivered) == exp.counts
    by_key = sequences_by_key(delivered)
    assert by_key == sequences_by_key(exp.data)
    for (t, key), seqs in by_key.items():
        assert all(b > a for a, b in itertools.pairwise(seqs)), f"{t} {key} not increasing"
    assert delivered == exp.data
    uuids = [m.uuid for m in got.data if isinstance(m, tw.Trade)]
    assert len(uuids) == len(set(uuids)), "a trade was delivered twice"


def assert_gaps_in_place(got: Collected, exp: Expected) -> None:
    """Each ``Gap`` names the simulator's jump and comes right before the message it announces."""
    gaps = [(g.msg_type, g.key, g.expected, g.received) for g in got.of(tw.Gap)]
    assert gaps == exp.gaps
    for i, item in enumerate(got.items):
        if isinstance(item, tw.Gap):
            nxt = got.items[i + 1]
            assert is_data(nxt), f"Gap followed by {nxt!r}"
            assert (nxt.type, key_of(nxt), nxt.sequence) == (item.msg_type, item.key, item.received)
    assert got.stats.gaps == len(exp.gaps)


@pytest.mark.timeout(90)
@pytest.mark.parametrize("mode", MODES)
def test_every_message_once_in_order(make_sim: Any, mode: str) -> None:
    sim = make_sim(rate=0, symbols=50, total=TOTAL, seed=7)
    got = run(sim, mode)
    exp = expected_from(one_connection(sim))

    assert sim.stats().finished
    assert exp.duplicates == 0
    assert exp.malformed == 0
    assert exp.gaps == []
    assert len(exp.data) > 0
    # Every market type is generated and subscribed, so every one arrives.
    assert set(exp.counts) == set(ALL_TYPES)
    assert_delivered_exactly(got, exp)
    assert got.of(tw.Gap) == []
    assert got.of(tw.ParseError) == []
    assert got.of(tw.Dropped) == []
    assert isinstance(got.items[0], tw.Connected)

    st = got.stats
    assert st.gaps == 0
    assert st.duplicates == 0
    assert st.parse_errors == 0
    assert st.dropped == 0
    assert st.reconnects == 0
    assert st.batches >= 1
    assert st.bytes > 0
    heartbeats = len(got.of(tw.Heartbeat))
    # `messages` counts what the server sent (data and heartbeats), not tickwire's events.
    assert st.messages == len(exp.data) + heartbeats
    assert st.batches == len(got.batch_sizes)
    assert sum(got.batch_sizes) == len(got.items)


@pytest.mark.timeout(90)
@pytest.mark.parametrize("mode", MODES)
def test_gaps_reported_before_the_jump(make_sim: Any, mode: str) -> None:
    sim = make_sim(rate=0, symbols=20, total=TOTAL, seed=3, faults=tw.Faults(gap_every=97))
    got = run(sim, mode)
    exp = expected_from(one_connection(sim))

    assert len(exp.gaps) > 0, "the simulator skipped no sequence number"
    assert exp.duplicates == 0
    assert_delivered_exactly(got, exp)
    assert_gaps_in_place(got, exp)


@pytest.mark.timeout(90)
@pytest.mark.parametrize("mode", MODES)
def test_duplicates_dropped_and_counted(make_sim: Any, mode: str) -> None:
    sim = make_sim(rate=0, symbols=20, total=TOTAL, seed=5, faults=tw.Faults(duplicate_every=89))
    got = run(sim, mode)
    sent = one_connection(sim)
    exp = expected_from(sent)

    # Sequenced records are unique per connection unless sent twice (exrates carry no sequence,
    # so equal exrate records are not duplicates of each other).
    sent_twice = sum(n - 1 for n in Counter(r for r in sent if r[2] is not None).values() if n > 1)
    assert sent_twice > 0, "the simulator sent no duplicate"
    assert exp.duplicates == sent_twice
    assert_delivered_exactly(got, exp)
    assert got.of(tw.Gap) == []
    assert got.stats.duplicates == sent_twice


@pytest.mark.timeout(90)
@pytest.mark.parametrize("mode", MODES)
def test_malformed_frames_become_parse_errors(make_sim: Any, mode: str) -> None:
    sim = make_sim(rate=0, symbols=20, total=TOTAL, seed=11, faults=tw.Faults(malformed_every=101))
    got = run(sim, mode)
    sent = one_connection(sim)
    exp = expected_from(sent)

    assert exp.malformed > 0, "the simulator sent no malformed frame"
    errors = got.of(tw.ParseError)
    assert len(errors) == exp.malformed
    assert got.stats.parse_errors == exp.malformed
    for e in errors:
        assert isinstance(e.reason, str)
        assert e.reason
    # The stream went on: data sent after the last malformed frame arrived too.
    last_malformed = max(i for i, r in enumerate(sent) if r[0] == "malformed")
    assert any(r[0] != "malformed" for r in sent[last_malformed + 1 :])
    assert_delivered_exactly(got, exp)
    assert_gaps_in_place(got, exp)
