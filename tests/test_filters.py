"""Subscription filters follow CoinAPI's rules (PROTOCOLS.md 1.4), end to end: what arrives is
what the simulator chose to send, and nothing outside the filter."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

import tickwire as tw
from _support import (
    SYMBOL_TYPES,
    Collected,
    collect_async,
    collect_sync,
    expected_from,
    record_of,
)

TOTAL = 20_000


def read_all(sim: Any, *, use_async: bool = False, **feed_kw: Any) -> Collected:
    f = tw.CoinAPI(url=sim.url, **feed_kw)
    stream = tw.connect(f, reconnect=None)
    if use_async:

        async def main() -> Collected:
            async with stream:
                return await collect_async(stream, sim)

        return asyncio.run(main())
    with stream:
        return collect_sync(stream, sim)


def check_against_sim(sim: Any, got: Collected) -> None:
    """Whatever the filter, the client delivers exactly what the simulator sent."""
    (sent,) = sim.sent()
    assert [record_of(m) for m in got.data] == expected_from(sent).data


def parts(symbol_id: str) -> list[str]:
    """``EXCHANGE_TYPE_BASE_QUOTE`` -> its four parts."""
    p = symbol_id.split("_")
    assert len(p) >= 4, symbol_id
    return p


@pytest.mark.timeout(60)
@pytest.mark.parametrize("use_async", [False, True], ids=["sync", "async"])
def test_exact_symbol(make_sim: Any, use_async: bool) -> None:
    sim = make_sim(rate=0, symbols=20, total=TOTAL, seed=1)
    got = read_all(
        sim, use_async=use_async, data_types=SYMBOL_TYPES, symbols=["BINANCE_SPOT_BTC_USDT$"]
    )
    assert got.data, "nothing arrived for BINANCE_SPOT_BTC_USDT"
    assert {m.symbol_id for m in got.data} == {"BINANCE_SPOT_BTC_USDT"}
    check_against_sim(sim, got)


@pytest.mark.timeout(60)
def test_symbol_prefix(make_sim: Any) -> None:
    sim = make_sim(rate=0, symbols=40, total=TOTAL, seed=2)
    got = read_all(sim, data_types=["trade", "quote"], symbols=["COINBASE_"])
    symbols = {m.symbol_id for m in got.data}
    assert symbols, "nothing arrived for COINBASE_"
    assert all(s.startswith("COINBASE_") for s in symbols)
    assert len(symbols) > 1, "a prefix should match more than one symbol"
    check_against_sim(sim, got)


@pytest.mark.timeout(60)
def test_prefix_without_dollar_is_not_exact(make_sim: Any) -> None:
    # "BINANCE_SPOT_BTC_USD" is a prefix of BINANCE_SPOT_BTC_USDT: both kinds may arrive, but
    # nothing that does not start with it.
    sim = make_sim(rate=0, symbols=40, total=TOTAL, seed=2)
    got = read_all(sim, data_types=["trade"], symbols=["BINANCE_SPOT_BTC_USD"])
    assert got.data
    assert all(m.symbol_id.startswith("BINANCE_SPOT_BTC_USD") for m in got.data)
    check_against_sim(sim, got)


@pytest.mark.timeout(60)
@pytest.mark.parametrize("use_async", [False, True], ids=["sync", "async"])
def test_only_quotes(make_sim: Any, use_async: bool) -> None:
    sim = make_sim(rate=0, symbols=20, total=TOTAL, seed=4)
    got = read_all(sim, use_async=use_async, data_types=["quote"])
    assert got.data
    assert {m.type for m in got.data} == {"quote"}
    assert all(isinstance(m, tw.Quote) for m in got.data)
    check_against_sim(sim, got)


@pytest.mark.timeout(60)
def test_exchange_filter(make_sim: Any) -> None:
    sim = make_sim(rate=0, symbols=40, total=TOTAL, seed=6)
    got = read_all(sim, data_types=["trade", "quote", "book5"], exchanges=["BITSTAMP"])
    assert got.data
    assert all(parts(m.symbol_id)[0] == "BITSTAMP" for m in got.data)
    check_against_sim(sim, got)


@pytest.mark.timeout(60)
def test_asset_filter(make_sim: Any) -> None:
    sim = make_sim(rate=0, symbols=40, total=TOTAL, seed=8)
    got = read_all(sim, data_types=["trade", "quote"], assets=["ETH"])
    assert got.data
    for m in got.data:
        p = parts(m.symbol_id)
        assert "ETH" in (p[2], p[3]), m.symbol_id
    assert len({m.symbol_id for m in got.data}) > 1
    check_against_sim(sim, got)


@pytest.mark.timeout(60)
def test_exrate_by_asset(make_sim: Any) -> None:
    sim = make_sim(rate=0, symbols=20, total=TOTAL, seed=9)
    got = read_all(sim, data_types=["exrate"], assets=["BTC"])
    assert got.data
    for m in got.data:
        assert isinstance(m, tw.Exrate)
        assert "BTC" in (m.asset_id_base, m.asset_id_quote)
        assert isinstance(m.rate, float)
        assert isinstance(m.time, int)
    check_against_sim(sim, got)


@pytest.mark.timeout(60)
def test_index_ids(make_sim: Any) -> None:
    sim = make_sim(rate=0, symbols=20, total=TOTAL, seed=10)
    got = read_all(sim, data_types=["index"], index_ids=["IDX_REFRATE_PRIMKT_BTC_USD"])
    assert got.data
    assert {m.index_id for m in got.data} == {"IDX_REFRATE_PRIMKT_BTC_USD"}
    check_against_sim(sim, got)
