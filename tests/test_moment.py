"""Moment real-time Orders and Prices against the simulator in Moment mode: pings answered from
Rust while Python is busy, orders resumed across a forced disconnect, live price scope changes,
bad requests and a refused key."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import pytest

import tickwire as tw

KEY = "msk_papr.sim-secret-key"


def drain(stream: tw.Stream, quiet_s: float = 1.0, limit_s: float = 30.0) -> list[Any]:
    """Everything the stream delivers until it has been quiet for ``quiet_s``."""
    out: list[Any] = []
    deadline = time.monotonic() + limit_s
    while time.monotonic() < deadline:
        batch = stream.next_batch(timeout=quiet_s)
        if batch is None:
            break
        out.extend(batch)
    return out


def drain_until(stream: tw.Stream, pred: Callable[[Any], bool], limit_s: float = 10.0) -> None:
    """Reads until an item satisfies ``pred`` (the server's reply to a request, in order with
    the data before it)."""
    deadline = time.monotonic() + limit_s
    while time.monotonic() < deadline:
        batch = stream.next_batch(timeout=0.2)
        if batch is not None and any(pred(m) for m in batch):
            return
    raise AssertionError(f"nothing matched within {limit_s} s")


def burn_cpu(seconds: float) -> int:
    """Pure-Python work that holds the GIL the whole time."""
    end = time.monotonic() + seconds
    n = 0
    while time.monotonic() < end:
        n += sum(i * i for i in range(1000))
    return n


@pytest.mark.timeout(60)
@pytest.mark.parametrize("busy", ["sleeping", "cpu"])
def test_pings_are_answered_while_python_takes_nothing(
    make_sim: Callable[..., Any], busy: str
) -> None:
    sim = make_sim(protocol="moment", rate=100, ping_interval=1.0, pong_grace=2.0)
    feed = tw.Moment("prices", url=sim.url_for("prices"), subscribe_all=True)
    with tw.connect(feed) as stream:
        if busy == "sleeping":
            time.sleep(10)
        else:
            burn_cpu(10)
        items = drain(stream, quiet_s=0.5, limit_s=5)
        stats = sim.stats()
        # Still the first connection: the server saw every pong in time.
        assert stats.connections == 1
        assert stats.pong_timeouts == 0
        assert [m.attempt for m in items if isinstance(m, tw.Connected)] == [0]
        assert not any(isinstance(m, (tw.Disconnected, tw.Stale)) for m in items)
        # Every price the server sent while Python was away was queued and delivered.
        prices = [m for m in items if isinstance(m, tw.PriceUpdate)]
        sent = [r for r in sim.sent()[0] if r[0] == "price_update"]
        assert len(prices) >= 900
        assert len(prices) == len(sent)
        assert [p.instrument_id for p in prices] == [r[1] for r in sent]


@pytest.mark.timeout(60)
def test_order_stream_resumes_across_a_forced_disconnect(make_sim: Callable[..., Any]) -> None:
    total = 400
    sim = make_sim(
        protocol="moment", rate=200, total=total, faults=tw.Faults(disconnect_after_s=0.7)
    )
    feed = tw.Moment("orders", url=sim.url_for("orders"))
    with tw.connect(feed, reconnect=tw.ReconnectPolicy(initial_delay=0.05)) as stream:
        items: list[Any] = []
        deadline = time.monotonic() + 40
        numbers: list[int] = []
        while time.monotonic() < deadline and len(numbers) < total:
            batch = stream.next_batch(timeout=2.0)
            if batch is None:
                continue
            items.extend(batch)
            numbers = [
                m.msg_number
                for m in items
                if isinstance(m, (tw.OrderUpdate, tw.AllocationUpdate, tw.SystemUpdate))
            ]
        items.extend(drain(stream, quiet_s=0.5))
    numbers = [
        m.msg_number
        for m in items
        if isinstance(m, (tw.OrderUpdate, tw.AllocationUpdate, tw.SystemUpdate))
    ]
    produced = sorted({r[2] for conn in sim.sent() for r in conn if r[2] is not None})
    # The disconnect happened, and the second connection asked to resume from its last number.
    assert sim.stats().connections >= 2
    assert sum(isinstance(m, tw.Disconnected) for m in items) >= 1
    # Every number produced, delivered exactly once, in order; no hole reported.
    assert len(produced) == total
    assert numbers == produced
    assert not any(isinstance(m, tw.Gap) for m in items)
    # The resent numbers overlapped what was delivered (the resume point itself) and was dropped.
    assert stream.stats().duplicates >= 1


@pytest.mark.timeout(30)
def test_start_msg_number_sends_the_log_from_there(make_sim: Callable[..., Any]) -> None:
    sim = make_sim(protocol="moment", rate=500, total=50)
    url = sim.url_for("orders")
    with tw.connect(tw.Moment("orders", url=url), reconnect=None) as first:
        log = [
            m.msg_number
            for m in drain(first)
            if isinstance(m, tw.OrderUpdate | tw.AllocationUpdate | tw.SystemUpdate)
        ]
    assert len(log) == 50
    start = log[20]
    feed = tw.Moment("orders", url=url, start_msg_number=start)
    with tw.connect(feed, reconnect=None) as second:
        resent = [
            m.msg_number
            for m in drain(second)
            if isinstance(m, tw.OrderUpdate | tw.AllocationUpdate | tw.SystemUpdate)
        ]
    assert resent == log[20:]


@pytest.mark.timeout(30)
def test_price_scope_changes_and_a_bad_instrument(make_sim: Callable[..., Any]) -> None:
    sim = make_sim(protocol="moment", rate=2000)
    feed = tw.Moment("prices", url=sim.url_for("prices"), instruments=["037833DP2"])
    with tw.connect(feed) as stream:
        first = drain(stream, quiet_s=0.3, limit_s=1.0)
        acks = [m for m in first if isinstance(m, tw.Subscription)]
        assert [(a.instrument_id, a.msg) for a in acks] == [("037833DP2", "subscribed")]
        assert {m.instrument_id for m in first if isinstance(m, tw.PriceUpdate)} == {"037833DP2"}

        stream.subscribe(instruments=["912810SX7"])
        stream.unsubscribe(instruments=["037833DP2"])
        # The server's reply comes after every price it sent under the old scope.
        drain_until(
            stream,
            lambda m: (
                isinstance(m, tw.Subscription)
                and (m.instrument_id, m.msg) == ("037833DP2", "unsubscribed")
            ),
        )
        drain(stream, quiet_s=0.2, limit_s=1.0)
        later = drain(stream, quiet_s=0.3, limit_s=1.0)
        assert {m.instrument_id for m in later if isinstance(m, tw.PriceUpdate)} == {"912810SX7"}

        stream.subscribe(instruments=["NOTACUSIP"])
        errs: list[Any] = []
        deadline = time.monotonic() + 5
        while not errs and time.monotonic() < deadline:
            errs = [
                m for m in drain(stream, quiet_s=0.2, limit_s=1.0) if isinstance(m, tw.ServerError)
            ]
        assert errs
        assert "NOTACUSIP" in errs[0].message
        assert errs[0].error_type == "invalid_request"
        # The stream goes on after the error.
        assert any(isinstance(m, tw.PriceUpdate) for m in drain(stream, quiet_s=0.3, limit_s=1.0))

        stream.subscribe(all=True)
        drain_until(stream, lambda m: isinstance(m, tw.Subscription) and m.msg == "subscribed_all")
        drain(stream, quiet_s=0.2, limit_s=1.0)
        many = drain(stream, quiet_s=0.3, limit_s=1.0)
        assert len({m.instrument_id for m in many if isinstance(m, tw.PriceUpdate)}) > 2


@pytest.mark.timeout(30)
def test_paper_scenarios_without_quotes_have_null_sides(make_sim: Callable[..., Any]) -> None:
    sim = make_sim(protocol="moment", rate=2000)
    feed = tw.Moment("prices", url=sim.url_for("prices"), instruments=["880591DM1", "3130A6RM1"])
    with tw.connect(feed) as stream:
        prices = [
            m for m in drain(stream, quiet_s=0.3, limit_s=2.0) if isinstance(m, tw.PriceUpdate)
        ]
    none = [p for p in prices if p.instrument_id == "880591DM1"]
    bids = [p for p in prices if p.instrument_id == "3130A6RM1"]
    assert none
    assert all(p.bid_price is None and p.ask_price is None for p in none)
    assert bids
    assert all(p.bid_price is not None and p.ask_price is None for p in bids)
    assert all(
        isinstance(p.fields, dict) and p.fields["msg_type"] == "price_update" for p in prices
    )


@pytest.mark.timeout(30)
@pytest.mark.parametrize("in_query", [False, True])
def test_a_wrong_key_fails_fast_and_never_shows_the_key(
    make_sim: Callable[..., Any], in_query: bool
) -> None:
    sim = make_sim(protocol="moment", rate=100, api_key=KEY)
    wrong = "msk_papr.not-the-right-key"
    feed = tw.Moment("prices", wrong, url=sim.url_for("prices"), auth_in_query=in_query)
    assert wrong not in repr(feed)
    started = time.monotonic()
    with pytest.raises(tw.AuthError) as err, tw.connect(feed):
        pass
    assert time.monotonic() - started < 5
    assert wrong not in str(err.value)
    # The right key works, in the header or the query.
    ok = tw.Moment(
        "prices", KEY, url=sim.url_for("prices"), auth_in_query=in_query, subscribe_all=True
    )
    with tw.connect(ok) as stream:
        items = drain(stream, quiet_s=0.3, limit_s=2.0)
    connected = [m for m in items if isinstance(m, tw.Connected)]
    assert connected
    assert KEY not in connected[0].url
    assert any(isinstance(m, tw.Success) and m.msg == "connected" for m in items)


def test_moment_urls_compose_from_environment_and_version() -> None:
    prices = tw.Moment("prices", "k")
    orders = tw.Moment("orders", "k", environment="live", version=2)
    assert prices._url() == "wss://paper.moment-api.com/v1/data/price-stream/"
    assert orders._url() == "wss://live.moment-api.com/v2/trading/order-stream/"
    assert tw.Moment("prices", "k", url="ws://127.0.0.1:1/x/")._url() == "ws://127.0.0.1:1/x/"
    assert prices._headers() == [("Authorization", "Bearer k")]
    with pytest.raises(ValueError, match="orders stream only"):
        tw.Moment("prices", start_msg_number=1)
    with pytest.raises(ValueError, match="prices stream only"):
        tw.Moment("orders", instruments=["037833DP2"])


@pytest.mark.timeout(30)
def test_price_subscriptions_are_resent_after_a_reconnect(make_sim: Callable[..., Any]) -> None:
    sim = make_sim(protocol="moment", rate=1000, faults=tw.Faults(disconnect_after_s=0.8))
    feed = tw.Moment("prices", url=sim.url_for("prices"), instruments=["037833DP2"])
    with tw.connect(feed, reconnect=tw.ReconnectPolicy(initial_delay=0.05)) as stream:
        stream.subscribe(instruments=["912810SX7"])  # a live change must survive too
        items: list[Any] = []
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            items.extend(drain(stream, quiet_s=0.2, limit_s=0.5))
            connects = [i for i, m in enumerate(items) if isinstance(m, tw.Connected)]
            if len(connects) >= 2:
                later = items[connects[-1] :]
                ids = {m.instrument_id for m in later if isinstance(m, tw.PriceUpdate)}
                if len(ids) == 2:
                    break
    cut = max(i for i, m in enumerate(items) if isinstance(m, tw.Connected))
    before, after = items[:cut], items[cut:]
    assert any(isinstance(m, tw.Disconnected) for m in before)
    acks = sorted(m.instrument_id for m in after if isinstance(m, tw.Subscription))
    assert acks == ["037833DP2", "912810SX7"]
    ids = {m.instrument_id for m in after if isinstance(m, tw.PriceUpdate)}
    assert ids == {"037833DP2", "912810SX7"}
