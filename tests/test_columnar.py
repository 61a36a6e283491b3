"""Columnar view: ``batch.to_arrow()`` exports the same values as the object view, through the
Arrow PyCapsule interface, with no copy on the consumer's side."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import pytest

import tickwire as tw

pa = pytest.importorskip("pyarrow")


def as_python(column: Any) -> list[Any]:
    """A column's values; timestamps as int ns, as the object view has them."""
    if pa.types.is_timestamp(column.type):
        column = column.cast(pa.int64())
    values: list[Any] = column.to_pylist()
    return values


def read_all(stream: tw.Stream) -> list[tw.Batch]:
    batches: list[tw.Batch] = []
    while (batch := stream.next_batch(timeout=1.0)) is not None:
        batches.append(batch)
    return batches


@pytest.mark.timeout(60)
def test_coinapi_columns_equal_the_objects(make_sim: Callable[..., Any]) -> None:
    sim = make_sim(rate=0, total=20_000, symbols=20)
    feed = tw.CoinAPI(
        url=sim.url, data_types=("trade", "quote", "index", "exrate"), assets=("USD", "USDT")
    )
    with tw.connect(feed) as stream:
        batches = read_all(stream)
    seen: dict[str, int] = {}
    for batch in batches:
        tables = batch.to_arrow()
        objects = list(batch)
        for name, exported in tables.items():
            rb = pa.record_batch(exported)
            assert rb.num_rows == len(exported)
            assert rb.schema.names == exported.column_names
            rows = [m for m in objects if m.type == name]
            cols = {n: as_python(rb.column(n)) for n in rb.schema.names}
            for i, m in enumerate(rows):
                for n, values in cols.items():
                    assert values[i] == getattr(m, n), (name, n, i)
            seen[name] = seen.get(name, 0) + rb.num_rows
        # Events and other types stay in the object view only.
        assert sum(len(t) for t in tables.values()) == sum(
            1 for m in objects if m.type in ("trade", "quote", "index", "exrate")
        )
    assert set(seen) == {"trade", "quote", "index", "exrate"}
    trades = [r for r in sim.sent()[0] if r[0] == "trade"]
    assert seen["trade"] == len(trades)


@pytest.mark.timeout(30)
def test_moment_prices_export_nulls_for_missing_sides(make_sim: Callable[..., Any]) -> None:
    sim = make_sim(protocol="moment", rate=2000)
    feed = tw.Moment("prices", url=sim.url_for("prices"), instruments=["880591DM1", "3130A6RM1"])
    with tw.connect(feed) as stream:
        # Until a batch carries prices for both instruments (the first may hold only events).
        deadline = time.monotonic() + 10
        batch = None
        while time.monotonic() < deadline:
            batch = stream.next_batch(timeout=2.0)
            arrow = batch.to_arrow() if batch is not None else {}
            if "price_update" in arrow:
                ids = pa.record_batch(arrow["price_update"]).column("instrument_id").to_pylist()
                if len(set(ids)) == 2:
                    break
    assert batch is not None
    rb = pa.record_batch(batch.to_arrow()["price_update"])
    assert rb.schema.field("bid_price").nullable
    ids = rb.column("instrument_id").to_pylist()
    bids = rb.column("bid_price").to_pylist()
    asks = rb.column("ask_price").to_pylist()
    for i, b, a in zip(ids, bids, asks, strict=True):
        if i == "880591DM1":
            assert b is None
            assert a is None
        else:
            assert b is not None
            assert a is None


@pytest.mark.timeout(60)
def test_book_columns_equal_the_objects(make_sim: Callable[..., Any]) -> None:
    sim = make_sim(rate=0, total=20_000, symbols=20)
    feed = tw.CoinAPI(url=sim.url, data_types=("book5", "book20"), heartbeat=False)
    with tw.connect(feed) as stream:
        batches = read_all(stream)
    seen = 0
    for batch in batches:
        books = [m for m in batch if isinstance(m, tw.Book)]
        tables = batch.to_arrow()
        assert sum(len(t) for t in tables.values()) == len(books)
        for name, exported in tables.items():
            rb = pa.record_batch(exported)
            assert pa.types.is_list(rb.schema.field("ask_prices").type)
            assert pa.types.is_boolean(rb.schema.field("is_snapshot").type)
            rows = [m for m in books if m.type == name]
            assert rb.column("symbol_id").to_pylist() == [m.symbol_id for m in rows]
            assert rb.column("sequence").to_pylist() == [m.sequence for m in rows]
            assert rb.column("is_snapshot").to_pylist() == [m.is_snapshot for m in rows]
            assert as_python(rb.column("time_coinapi")) == [m.time_coinapi for m in rows]
            best_ask = [m.asks[0][0] if m.asks else None for m in rows]
            best_bid_size = [m.bids[0][1] if m.bids else None for m in rows]
            assert rb.column("ask_price").to_pylist() == best_ask
            assert rb.column("bid_size").to_pylist() == best_bid_size
            for side in ("asks", "bids"):
                prices = rb.column(side[:-1] + "_prices").to_pylist()
                sizes = rb.column(side[:-1] + "_sizes").to_pylist()
                levels = [getattr(m, side) for m in rows]
                pairs = [list(zip(p, q, strict=True)) for p, q in zip(prices, sizes, strict=True)]
                assert pairs == [list(lv) for lv in levels]
            seen += rb.num_rows
    assert seen > 0
