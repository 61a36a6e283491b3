"""Connection lifecycle: heartbeats, the server going away, refused connections and keys,
closing, timeouts and live scope changes; sync and async."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest

import tickwire as tw
from _support import SYMBOL_TYPES, collect_sync, feed

NOTHING = ["NOSUCH_$"]  # a symbol filter that matches nothing the simulator generates
SECRET = "wrong-key-0f3a9c71d5e2"


def drain_until(stream: Any, pred: Any, *, timeout: float = 10.0) -> list[Any]:
    """Read with ``next_batch`` until an item satisfies ``pred``; return everything read."""
    items: list[Any] = []
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        batch = stream.next_batch(timeout=0.2)
        if batch is None:
            continue
        items.extend(batch)
        if any(pred(m) for m in batch):
            return items
    raise AssertionError(f"nothing matched within {timeout} s; got {items[:10]!r}")


# -- heartbeats ------------------------------------------------------------------------------


@pytest.mark.timeout(30)
def test_heartbeats_about_once_a_second_when_nothing_matches(sim: Any) -> None:
    window = 4.5
    with tw.connect(
        feed(sim, data_types=SYMBOL_TYPES, symbols=NOTHING, heartbeat=True), reconnect=None
    ) as stream:
        items: list[Any] = []
        end = time.monotonic() + window
        while (left := end - time.monotonic()) > 0:
            batch = stream.next_batch(timeout=left)
            if batch is not None:
                items.extend(batch)
    beats = [m for m in items if isinstance(m, tw.Heartbeat)]
    # The server sends one after each 1 s of silence: about 4 in 4.5 s; the bounds leave room
    # for a slow machine without letting "none" or "a flood" pass.
    assert 2 <= len(beats) <= 8, [m.type for m in items]
    assert all(m.type == "heartbeat" for m in beats)
    assert not any(isinstance(m, tw.Trade | tw.Quote | tw.Book) for m in items)
    assert not [m for m in items if isinstance(m, tw.Stale)], "heartbeats keep the stream live"


@pytest.mark.timeout(30)
def test_hearbeat_spelling_is_a_heartbeat_too(make_sim: Any) -> None:
    sim = make_sim(rate=1_000, symbols=10, heartbeat_spelling="hearbeat")
    with tw.connect(
        feed(sim, data_types=SYMBOL_TYPES, symbols=NOTHING, heartbeat=True), reconnect=None
    ) as stream:
        items = drain_until(stream, lambda m: isinstance(m, tw.Heartbeat))
    beat = next(m for m in items if isinstance(m, tw.Heartbeat))
    assert beat.type == "heartbeat"
    assert not [m for m in items if isinstance(m, tw.Unknown)]


# -- the server goes away ----------------------------------------------------------------------


@pytest.mark.timeout(30)
def test_server_close_yields_disconnected_then_iteration_ends(sim: Any) -> None:
    items: list[Any] = []
    with tw.connect(feed(sim, data_types=["trade"]), reconnect=None) as stream:
        for batch in stream:
            items.extend(batch)
            if any(isinstance(m, tw.Trade) for m in items) and sim is not None:
                sim.close()  # closing twice (fixture teardown) must be harmless
                sim = None
    assert isinstance(items[0], tw.Connected)
    disconnected = [i for i, m in enumerate(items) if isinstance(m, tw.Disconnected)]
    assert len(disconnected) == 1
    assert disconnected[0] == len(items) - 1, "Disconnected is the last thing delivered"
    d = items[-1]
    assert isinstance(d.reason, str)
    assert d.code is None or isinstance(d.code, int)


@pytest.mark.timeout(30)
def test_server_close_async(sim: Any) -> None:
    async def main() -> list[Any]:
        items: list[Any] = []
        async with tw.connect(feed(sim, data_types=["trade"]), reconnect=None) as stream:
            closed = False
            async for batch in stream:
                items.extend(batch)
                if not closed and any(isinstance(m, tw.Trade) for m in items):
                    sim.close()
                    closed = True
        return items

    items = asyncio.run(main())
    assert isinstance(items[-1], tw.Disconnected)
    assert sum(isinstance(m, tw.Disconnected) for m in items) == 1


@pytest.mark.timeout(30)
def test_stats_count_what_arrived_before_the_close(make_sim: Any) -> None:
    sim = make_sim(rate=0, symbols=10, total=5_000)
    with tw.connect(feed(sim), reconnect=None) as stream:
        got = collect_sync(stream, sim, how="next_batch")
        sim.close()
        rest: list[Any] = []
        for batch in stream:
            rest.extend(batch)
    assert isinstance(rest[-1], tw.Disconnected)
    assert got.stats.messages >= len(got.data) > 0


# -- refused connections -----------------------------------------------------------------------


@pytest.mark.timeout(30)
def test_closed_port_raises_connect_error(closed_port: int) -> None:
    f = tw.CoinAPI(url=f"ws://127.0.0.1:{closed_port}/v1/", data_types=["trade"])
    stream = tw.connect(f, reconnect=None, connect_timeout=5.0)
    with pytest.raises(tw.ConnectError), stream:
        pass


@pytest.mark.timeout(30)
def test_closed_port_raises_on_first_iteration(closed_port: int) -> None:
    f = tw.CoinAPI(url=f"ws://127.0.0.1:{closed_port}/v1/", data_types=["trade"])
    stream = tw.connect(f, reconnect=None, connect_timeout=5.0)
    try:
        with pytest.raises(tw.ConnectError):
            for _ in stream:
                pass
    finally:
        stream.close()


@pytest.mark.timeout(30)
def test_closed_port_async(closed_port: int) -> None:
    f = tw.CoinAPI(url=f"ws://127.0.0.1:{closed_port}/v1/", data_types=["trade"])

    async def main() -> None:
        async with tw.connect(f, reconnect=None, connect_timeout=5.0):
            pass

    with pytest.raises(tw.ConnectError):
        asyncio.run(main())


def test_exception_tree() -> None:
    for exc in (tw.ConnectError, tw.AuthError, tw.ProtocolError, tw.StreamClosed):
        assert issubclass(exc, tw.TickwireError)
    assert issubclass(tw.TickwireError, Exception)


def _read_until_error(stream: Any) -> None:
    with stream:
        for _ in stream:
            pass


@pytest.mark.timeout(30)
def test_wrong_key_raises_auth_error_without_the_key(make_sim: Any) -> None:
    sim = make_sim(rate=1_000, symbols=10, api_key="k")
    f = tw.CoinAPI(SECRET, url=sim.url, data_types=["trade"])
    assert SECRET not in repr(f)
    assert SECRET not in str(f)
    stream = tw.connect(f, reconnect=None)
    assert SECRET not in repr(stream)
    with pytest.raises(tw.AuthError) as info:
        _read_until_error(stream)
    chain: list[BaseException] = []
    exc: BaseException | None = info.value
    while exc is not None and exc not in chain:
        chain.append(exc)
        exc = exc.__cause__ or exc.__context__
    for e in chain:
        assert SECRET not in str(e)
        assert SECRET not in repr(e)
        assert all(SECRET not in str(a) for a in e.args)


@pytest.mark.timeout(30)
def test_wrong_key_raises_even_with_a_policy(make_sim: Any) -> None:
    # A rejected key is terminal: were it retried, this would never raise (and time out).
    sim = make_sim(rate=1_000, symbols=10, api_key="k")
    f = tw.CoinAPI(SECRET, url=sim.url, data_types=["trade"])
    with pytest.raises(tw.AuthError):
        _read_until_error(tw.connect(f, reconnect=tw.ReconnectPolicy(initial_delay=0.05)))


@pytest.mark.timeout(30)
def test_wrong_key_async(make_sim: Any) -> None:
    sim = make_sim(rate=1_000, symbols=10, api_key="k")
    f = tw.CoinAPI(SECRET, url=sim.url, data_types=["trade"])

    async def main() -> None:
        async with tw.connect(f, reconnect=None) as stream:
            async for _ in stream:
                pass

    with pytest.raises(tw.AuthError) as info:
        asyncio.run(main())
    assert SECRET not in str(info.value)


@pytest.mark.timeout(30)
@pytest.mark.parametrize("via_env", [False, True], ids=["argument", "COINAPI_KEY"])
def test_right_key_streams(make_sim: Any, monkeypatch: pytest.MonkeyPatch, via_env: bool) -> None:
    sim = make_sim(rate=1_000, symbols=10, api_key="k")
    if via_env:
        monkeypatch.setenv("COINAPI_KEY", "k")
        f = tw.CoinAPI(url=sim.url, data_types=["trade"])
    else:
        monkeypatch.delenv("COINAPI_KEY", raising=False)
        f = tw.CoinAPI("k", url=sim.url, data_types=["trade"])
    with tw.connect(f, reconnect=None) as stream:
        drain_until(stream, lambda m: isinstance(m, tw.Trade))


# -- closing and timeouts ----------------------------------------------------------------------


@pytest.mark.timeout(30)
def test_iterating_after_close_raises_stream_closed(sim: Any) -> None:
    stream = tw.connect(feed(sim, data_types=["trade"]), reconnect=None)
    with stream:
        drain_until(stream, lambda m: isinstance(m, tw.Trade))
        stream.close()
        with pytest.raises(tw.StreamClosed):
            for _ in stream:
                pass
    stream.close()  # idempotent


@pytest.mark.timeout(30)
def test_async_iterating_after_close_raises_stream_closed(sim: Any) -> None:
    async def main() -> None:
        async with tw.connect(feed(sim, data_types=["trade"]), reconnect=None) as stream:
            async for batch in stream:
                if any(isinstance(m, tw.Trade) for m in batch):
                    break
            stream.close()
            with pytest.raises(tw.StreamClosed):
                async for _ in stream:
                    pass

    asyncio.run(main())


@pytest.mark.timeout(30)
def test_next_batch_times_out_with_none_on_a_quiet_stream(sim: Any) -> None:
    with tw.connect(
        feed(sim, data_types=SYMBOL_TYPES, symbols=NOTHING, heartbeat=False), reconnect=None
    ) as stream:
        drain_until(stream, lambda m: isinstance(m, tw.Connected))
        started = time.monotonic()
        assert stream.next_batch(timeout=0.2) is None
        assert time.monotonic() - started < 10, "the timeout was not honoured"


@pytest.mark.timeout(30)
def test_first_item_is_connected(sim: Any) -> None:
    with tw.connect(feed(sim, data_types=["trade"]), reconnect=None) as stream:
        items = drain_until(stream, lambda m: isinstance(m, tw.Trade))
    first = items[0]
    assert isinstance(first, tw.Connected)
    assert first.type == "connected"
    assert first.url.startswith(f"ws://127.0.0.1:{sim.port}")
    assert isinstance(first.attempt, int)
    assert sum(isinstance(m, tw.Connected) for m in items) == 1


# -- live scope changes ------------------------------------------------------------------------


@pytest.mark.timeout(30)
def test_subscribe_and_unsubscribe_change_the_scope(sim: Any) -> None:
    with tw.connect(feed(sim, data_types=["trade"], symbols=NOTHING), reconnect=None) as stream:
        drain_until(stream, lambda m: isinstance(m, tw.Connected))
        stream.subscribe(data_types=["quote"], symbols=["BINANCE_SPOT_BTC_USDT$"])
        items = drain_until(stream, lambda m: isinstance(m, tw.Quote))
        assert {m.symbol_id for m in items if isinstance(m, tw.Quote)} == {"BINANCE_SPOT_BTC_USDT"}
        stream.unsubscribe(data_types=["quote"], symbols=["BINANCE_SPOT_BTC_USDT$"])
        # A trade subscription after it is a barrier: the server handles requests in order, so
        # once a trade arrives every quote sent before the unsubscribe has been read.
        stream.subscribe(data_types=["trade"], symbols=["BINANCE_SPOT_BTC_USDT$"])
        drain_until(stream, lambda m: isinstance(m, tw.Trade))
        later: list[Any] = []
        end = time.monotonic() + 1.5
        while (left := end - time.monotonic()) > 0:
            batch = stream.next_batch(timeout=left)
            if batch is not None:
                later.extend(batch)
        assert not [m for m in later if isinstance(m, tw.Quote)]
