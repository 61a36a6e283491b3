"""The public surface: names, classes, field types, frozen objects, batches, options."""

from __future__ import annotations

import json
from typing import Any

import pytest

import tickwire as tw
from _support import ALL_TYPES, CLASS_OF_TYPE, DATA_CLASSES, EVENT_CLASSES, collect_sync, feed

PUBLIC_NAMES = [
    "CoinAPI",
    "connect",
    "Stream",
    "Stats",
    "Batch",
    "ReconnectPolicy",
    "Simulator",
    "Faults",
    "Trade",
    "Quote",
    "Book",
    "BookL3",
    "Ohlcv",
    "Exrate",
    "Index",
    "Heartbeat",
    "ReconnectNotice",
    "ServerError",
    "Metadata",
    "Unknown",
    "Connected",
    "Disconnected",
    "Gap",
    "Stale",
    "Dropped",
    "Switched",
    "ParseError",
    "TickwireError",
    "ConnectError",
    "AuthError",
    "ProtocolError",
    "StreamClosed",
]

FIELDS: dict[str, dict[str, Any]] = {
    "trade": {
        "symbol_id": str,
        "sequence": int,
        "time_exchange": int,
        "time_coinapi": int,
        "uuid": str,
        "price": float,
        "size": float,
        "taker_side": str,
    },
    "quote": {
        "symbol_id": str,
        "sequence": int,
        "time_exchange": int,
        "time_coinapi": int,
        "ask_price": float,
        "ask_size": float,
        "bid_price": float,
        "bid_size": float,
    },
    "book": {
        "symbol_id": str,
        "sequence": int,
        "time_exchange": int,
        "time_coinapi": int,
        "is_snapshot": bool,
        "asks": list,
        "bids": list,
    },
    "book_l3": {
        "symbol_id": str,
        "sequence": int,
        "time_exchange": int,
        "time_coinapi": int,
        "is_snapshot": bool,
        "asks": list,
        "bids": list,
    },
    "ohlcv": {
        "symbol_id": str,
        "sequence": int,
        "period_id": str,
        "time_period_start": int,
        "time_period_end": int,
        "time_open": (int, type(None)),
        "time_close": (int, type(None)),
        "price_open": (float, type(None)),
        "price_high": (float, type(None)),
        "price_low": (float, type(None)),
        "price_close": (float, type(None)),
        "volume_traded": float,
        "trades_count": int,
    },
    "exrate": {
        "asset_id_base": str,
        "asset_id_quote": str,
        "rate_type": str,
        "time": int,
        "rate": float,
    },
    "index": {"index_id": str, "sequence": int, "time_coinapi": int, "value": float},
}
for _t in ("book5", "book20", "book50"):
    FIELDS[_t] = FIELDS["book"]

# Nanoseconds since the epoch: between 2000-01-01 and 2100-01-01.
NS_2000, NS_2100 = 946_684_800 * 10**9, 4_102_444_800 * 10**9


@pytest.mark.parametrize("name", PUBLIC_NAMES)
def test_public_name(name: str) -> None:
    assert hasattr(tw, name)
    assert name in tw.__all__


def test_version() -> None:
    assert isinstance(tw.__version__, str)
    assert tw.__version__[0].isdigit()


@pytest.fixture(scope="module")
def sample() -> Any:
    """One finished run with every type subscribed (raw text kept, small batches)."""
    with (
        tw.Simulator(host="127.0.0.1", port=0, rate=0, symbols=20, total=5_000, seed=1) as sim,
        tw.connect(feed(sim), reconnect=None, keep_raw=True, batch_size=16) as stream,
    ):
        return collect_sync(stream, sim, how="next_batch")


def test_every_type_arrives_as_its_class(sample: Any) -> None:
    seen = {m.type for m in sample.items}
    assert set(ALL_TYPES) <= seen
    for m in sample.items:
        cls = CLASS_OF_TYPE[m.type]
        assert isinstance(m, cls), (m.type, type(m))
        assert isinstance(m.recv_ns, int)
        assert NS_2000 < m.recv_ns < NS_2100
    for cls in DATA_CLASSES:
        assert not issubclass(cls, EVENT_CLASSES)


@pytest.mark.parametrize("wire_type", ALL_TYPES)
def test_field_types(sample: Any, wire_type: str) -> None:
    msgs = [m for m in sample.items if m.type == wire_type]
    assert msgs
    for m in msgs[:50]:
        for name, kind in FIELDS[wire_type].items():
            value = getattr(m, name)
            assert isinstance(value, kind), (wire_type, name, value)
            if name.startswith("time") and isinstance(value, int):
                assert NS_2000 < value < NS_2100, (wire_type, name, value)


def test_book_levels(sample: Any) -> None:
    books = [m for m in sample.items if isinstance(m, tw.Book)]
    assert {m.type for m in books} == {"book", "book5", "book20", "book50"}
    for m in books:
        for side in (m.asks, m.bids):
            for level in side:
                assert isinstance(level, tuple)
                assert len(level) == 2
                price, size = level
                assert isinstance(price, float)
                assert isinstance(size, float)
        if m.type != "book":
            assert m.is_snapshot
        if m.is_snapshot and m.asks and m.bids:
            assert m.asks[0][0] >= m.bids[0][0], "best ask below best bid"
            prices = [p for p, _ in m.asks]
            assert prices == sorted(prices), "asks not best to worst"
            prices = [p for p, _ in m.bids]
            assert prices == sorted(prices, reverse=True), "bids not best to worst"
    top5 = [m for m in books if m.type == "book5"]
    assert all(len(m.asks) <= 5 and len(m.bids) <= 5 for m in top5)


def test_book_l3_entries(sample: Any) -> None:
    l3 = [m for m in sample.items if isinstance(m, tw.BookL3)]
    assert l3
    assert all(m.type == "book_l3" for m in l3)
    for m in l3:
        for entry in [*m.asks, *m.bids]:
            assert isinstance(entry, tuple)
            assert len(entry) == 4
            ident, price, size, update_type = entry
            assert ident is None or isinstance(ident, str)
            assert isinstance(price, float)
            assert isinstance(size, float)
            assert update_type is None or update_type in {
                "ADD",
                "UPDATE",
                "SUBTRACT",
                "DELETE",
                "MATCH",
            }


def test_raw_text_is_kept_and_matches(sample: Any) -> None:
    data = [m for m in sample.items if isinstance(m, DATA_CLASSES)]
    assert data
    for m in data[:500]:
        assert isinstance(m.raw, str)
        doc = json.loads(m.raw)
        assert doc["type"] == m.type
        if "sequence" in doc:
            assert doc["sequence"] == m.sequence
        if "symbol_id" in doc:
            assert doc["symbol_id"] == m.symbol_id
        if m.type == "trade":
            assert doc["uuid"] == m.uuid
            assert doc["price"] == pytest.approx(m.price)


def test_raw_is_none_by_default(sim: Any) -> None:
    with tw.connect(feed(sim, data_types=["trade"]), reconnect=None) as stream:
        while True:
            batch = stream.next_batch(timeout=10)
            assert batch is not None
            trades = [m for m in batch if isinstance(m, tw.Trade)]
            if trades:
                break
    assert all(t.raw is None for t in trades)


def test_batch_size_caps_batches(sample: Any) -> None:
    assert sample.batch_sizes
    assert max(sample.batch_sizes) <= 16
    assert min(sample.batch_sizes) >= 1


@pytest.mark.parametrize("wire_type", ["trade", "quote", "book5", "index", "connected"])
def test_messages_are_frozen(sample: Any, wire_type: str) -> None:
    m = next(m for m in sample.items if m.type == wire_type)
    with pytest.raises(AttributeError):
        m.type = "x"
    with pytest.raises(AttributeError):
        m.recv_ns = 0
    name = next(iter(FIELDS.get(wire_type, {"url": str})))
    with pytest.raises(AttributeError):
        setattr(m, name, getattr(m, name))


def test_batch_sequence_protocol(sim: Any) -> None:
    with tw.connect(feed(sim, data_types=["trade", "quote"]), reconnect=None) as stream:
        batch = None
        for _ in range(100):
            batch = stream.next_batch(timeout=10)
            assert batch is not None
            if len(batch) >= 2:
                break
    assert isinstance(batch, tw.Batch)
    items = list(batch)
    assert len(items) == len(batch) >= 1
    for i, m in enumerate(items):
        assert batch[i].type == m.type
        assert batch[i].recv_ns == m.recv_ns
    with pytest.raises(IndexError):
        batch[len(batch)]
    assert isinstance(batch.recv_ns, int)
    assert NS_2000 < batch.recv_ns < NS_2100


def test_stats_fields(sample: Any) -> None:
    st = sample.stats
    assert isinstance(st, tw.Stats)
    for name in (
        "messages",
        "bytes",
        "batches",
        "gaps",
        "duplicates",
        "dropped",
        "parse_errors",
        "reconnects",
    ):
        value = getattr(st, name)
        assert isinstance(value, int), name
        assert value >= 0, name
    assert st.batches == len(sample.batch_sizes)
    wire = [m for m in sample.items if isinstance(m, (*DATA_CLASSES, tw.Heartbeat))]
    assert st.messages == len(wire), "messages counts what the server sent, events aside"
    assert st.last_frame_age_s is None or st.last_frame_age_s >= 0
    lat = st.latency_us
    assert set(lat) >= {"p50", "p99", "max"}
    assert 0 <= lat["p50"] <= lat["p99"] <= lat["max"]


def test_connect_options_are_validated(sim: Any) -> None:
    with pytest.raises((ValueError, TypeError)):
        tw.connect(feed(sim), overflow="sometimes")
    with pytest.raises((ValueError, TypeError)):
        tw.connect(feed(sim), batch_size=0)


def test_reconnect_policy_defaults() -> None:
    p = tw.ReconnectPolicy()
    assert p.on_notice == "make_before_break"
    assert p.initial_delay == pytest.approx(0.1)
    assert p.max_delay == pytest.approx(30.0)
    assert p.factor == pytest.approx(2.0)
    assert p.jitter == pytest.approx(0.2)
    assert p.max_attempts is None
