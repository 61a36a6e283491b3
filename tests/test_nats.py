"""Scale-out over a real NATS JetStream broker on 127.0.0.1: relay -> JetStream -> consumer.

The tests start ``nats-server -js`` on a free port with its own store directory. Without the
server installed they skip, except in CI (``CI=true``), where a missing server fails.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import tickwire as tw
from _support import feed, is_data, record_of

DEADLINE_S = 60.0


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Broker:
    """One ``nats-server -js`` process; restartable on the same port and store."""

    def __init__(self, binary: str, store: Path) -> None:
        self.binary = binary
        self.store = store
        self.port = _free_port()
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"nats://127.0.0.1:{self.port}"

    def start(self) -> None:
        self.proc = subprocess.Popen(
            [self.binary, "-js", "-a", "127.0.0.1", "-p", str(self.port), "-sd", str(self.store)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + DEADLINE_S
        while True:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=1.0) as s:
                    # The server's INFO line: it accepts clients.
                    if s.recv(4).startswith(b"INFO"):
                        return
            except OSError:
                pass
            assert self.proc.poll() is None, "nats-server exited"
            assert time.monotonic() < deadline, "nats-server did not start"

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.terminate()
            self.proc.wait(timeout=DEADLINE_S)
            self.proc = None


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[Broker]:
    binary = shutil.which("nats-server") or (
        "/usr/sbin/nats-server" if os.path.exists("/usr/sbin/nats-server") else None
    )
    if binary is None:
        if os.environ.get("CI") == "true":
            pytest.fail("nats-server is not installed (.ci/run installs it)")
        pytest.skip("nats-server is not installed (apt-get install nats-server)")
    b = Broker(binary, tmp_path / "js")
    b.start()
    try:
        yield b
    finally:
        b.stop()


def _until(cond: Any, what: str, state: Any = None) -> None:
    deadline = time.monotonic() + DEADLINE_S
    while not cond():
        shown = "" if state is None else f" ({state()})"
        assert time.monotonic() < deadline, f"timed out waiting for {what}{shown}"
        time.sleep(0.01)


def _read(stream: tw.Stream, want: int, got: list[Any], events: list[Any]) -> None:
    """Reads ``stream`` until ``got`` holds ``want`` data messages."""
    deadline = time.monotonic() + DEADLINE_S
    while len(got) < want:
        assert time.monotonic() < deadline, f"got {len(got)} of {want} messages"
        batch = stream.next_batch(timeout=0.5)
        for m in batch or ():
            (got if is_data(m) else events).append(m)


def test_relay_to_consumer_is_exact(broker: Broker) -> None:
    with tw.Simulator(rate=20_000, total=4_000, symbols=20, seed=3) as sim:
        with tw.relay(feed(sim), nats=broker.url, reconnect=None) as relay:
            _until(lambda: sim.stats().finished, "the simulator to finish")
            (sent,) = sim.sent()
            _until(lambda: relay.stats()["acked"] >= len(sent), "every publish acked")
            stats = relay.stats()
            assert stats["published"] == len(sent)
            assert stats["deduplicated"] == 0
        got: list[Any] = []
        events: list[Any] = []
        with tw.connect(tw.Nats(broker.url)) as stream:
            _read(stream, len(sent), got, events)
            assert stream.next_batch(timeout=0.3) is None, "more than the simulator sent"
    assert [record_of(m) for m in got] == list(sent)
    assert not [e for e in events if isinstance(e, tw.Gap)]
    assert {type(m) for m in got} >= {tw.Trade, tw.Quote, tw.Book}


def test_subject_filters_merge_and_start_sequences(broker: Broker) -> None:
    with (
        tw.Simulator(rate=20_000, total=2_000, symbols=5, seed=4) as sim,
        tw.relay(feed(sim), nats=broker.url, reconnect=None) as relay,
    ):
        _until(lambda: sim.stats().finished, "the simulator to finish")
        (sent,) = sim.sent()
        _until(lambda: relay.stats()["acked"] >= len(sent), "every publish acked")
    trades = [r for r in sent if r[0] == "trade"]
    quotes = [r for r in sent if r[0] == "quote"]
    subjects = ["tickwire.coinapi.trade.>", "tickwire.coinapi.quote.>"]
    got: list[Any] = []
    with tw.connect(tw.Nats(broker.url, subjects=subjects)) as stream:
        _read(stream, len(trades) + len(quotes), got, [])
    assert [record_of(m) for m in got if m.type == "trade"] == trades
    assert [record_of(m) for m in got if m.type == "quote"] == quotes
    # A stream sequence to start at: the last message only.
    last: list[Any] = []
    with tw.connect(tw.Nats(broker.url, start=len(sent))) as stream:
        _read(stream, 1, last, [])
    assert record_of(last[0]) == sent[-1]
    with pytest.raises(ValueError, match="stream sequence"):
        tw.Nats(broker.url, start=0)


def test_two_relays_one_closed_midstream_give_each_trade_once(broker: Broker) -> None:
    with tw.Simulator(rate=4_000, total=8_000, symbols=10, seed=5) as sim:
        a = tw.relay(feed(sim, data_types=("trade",)), nats=broker.url, reconnect=None)
        b = tw.relay(feed(sim, data_types=("trade",)), nats=broker.url, reconnect=None)
        _until(lambda: sim.stats().open_connections == 2, "both relays connected")
        _until(
            lambda: a.stats()["acked"] > 1_000,
            "relay a to publish",
            lambda: (a.stats(), b.stats(), sim.stats()),
        )
        assert a.close()
        _until(lambda: sim.stats().finished, "the simulator to finish")
        trades = {r[3] for conn in sim.sent() for r in conn if r[0] == "trade"}
        got: list[Any] = []
        with tw.connect(tw.Nats(broker.url)) as stream:
            _read(stream, len(trades), got, [])
            assert stream.next_batch(timeout=0.3) is None, "a trade came twice"
        assert b.stats()["deduplicated"] > 0
        b.close()
    uuids = Counter(m.uuid for m in got)
    assert set(uuids) == trades
    assert max(uuids.values()) == 1


def test_broker_restart_loses_nothing(broker: Broker) -> None:
    with tw.Simulator(rate=3_000, total=9_000, symbols=10, seed=6) as sim:
        relay = tw.relay(feed(sim), nats=broker.url, reconnect=None)
        _until(lambda: relay.stats()["ready"], "the relay's JetStream stream")
        got: list[Any] = []
        events: list[Any] = []
        with tw.connect(tw.Nats(broker.url, stream="TICKWIRE")) as stream:
            _until(lambda: relay.stats()["acked"] > 1_500, "the relay to publish", relay.stats)
            _read(stream, 1_000, got, events)
            broker.stop()
            broker.start()
            _until(lambda: sim.stats().finished, "the simulator to finish")
            (sent,) = sim.sent()
            _read(stream, len(sent), got, events)
            assert stream.next_batch(timeout=0.3) is None, "a message came twice"
        relay.close()
    assert Counter(record_of(m) for m in got) == Counter(sent)
    assert not [e for e in events if isinstance(e, tw.Gap)]


def test_cli_relay_publishes_and_prints_its_counters(
    broker: Broker, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from tickwire import cli

    monkeypatch.setenv("COINAPI_KEY", "unused-by-the-simulator")
    with tw.Simulator(rate=5_000, symbols=5, seed=7) as sim:
        argv = ["relay", "coinapi", "--url", sim.url, "--types", "trade", "quote"]
        argv += ["--nats", broker.url, "--nats-stream", "CLI", "--seconds", "1.5"]
        # Two shards: the scope has one list of two entries, the types.
        assert cli.main([*argv, "--shards", "2"]) == 0
    last = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert last["acked"] > 0
    assert last["acked"] == last["published"]
    assert last["shards"] == 2
    assert [s["acked"] > 0 for s in last["per_shard"]] == [True, True]
    assert sum(s["acked"] for s in last["per_shard"]) == last["acked"]
    got: list[Any] = []
    with tw.connect(tw.Nats(broker.url, stream="CLI")) as stream:
        _read(stream, last["acked"], got, [])
    assert {m.type for m in got} == {"trade", "quote"}


def test_two_relays_store_each_quote_and_book_once(broker: Broker) -> None:
    """Quotes and books carry no venue-wide id: their message id hashes the text without the
    per-connection ``sequence``, so the same market message read by two relays is stored once."""
    types = ("trade", "quote", "book5")
    with tw.Simulator(rate=4_000, total=8_000, symbols=10, seed=8) as sim:
        a = tw.relay(feed(sim, data_types=types), nats=broker.url, reconnect=None)
        _until(lambda: a.stats()["acked"] > 500, "relay a to publish", a.stats)
        b = tw.relay(feed(sim, data_types=types), nats=broker.url, reconnect=None)
        _until(lambda: sim.stats().finished, "the simulator to finish")
        first, second = sim.sent()
        _until(
            lambda: a.stats()["acked"] >= len(first) and b.stats()["acked"] >= len(second),
            "every publish acked",
            lambda: (a.stats(), b.stats()),
        )
        # Whichever relay publishes a message second gets JetStream's "duplicate" ack.
        deduplicated = a.stats()["deduplicated"] + b.stats()["deduplicated"]
        a.close()
        b.close()
    # The second connection got the same market from the moment it joined: the tail of the
    # first's record, message for message, with sequences of its own.
    tail = first[len(first) - len(second) :]
    assert [r[:2] for r in tail] == [r[:2] for r in second]
    as_first = dict(zip(second, tail, strict=True))
    assert deduplicated == len(second)
    got: list[Any] = []
    with tw.connect(tw.Nats(broker.url)) as stream:
        _read(stream, len(first), got, [])
        assert stream.next_batch(timeout=0.3) is None, "a message was stored twice"
    seen = Counter(as_first.get(record_of(m), record_of(m)) for m in got)
    assert seen == Counter(first)
    assert {r[0] for r in second} == set(types)


#: The simulator's first twelve symbols (its curated head), as exact entries.
CURATED = tuple(
    f"{s}$"
    for s in (
        "BITSTAMP_SPOT_BTC_USD",
        "COINBASE_SPOT_ETH_USD",
        "BINANCE_SPOT_BTC_USDT",
        "COINBASE_SPOT_BTC_USD",
        "BITSTAMP_SPOT_BTC_USDT",
        "BINANCE_SPOT_ETH_USDT",
        "KRAKEN_SPOT_BTC_EUR",
        "BINANCE_SPOT_ETH_BTC",
        "BITSTAMP_SPOT_ETH_USD",
        "KRAKEN_SPOT_XRP_USD",
        "BINANCEFTS_PERP_BTC_USDT",
        "COINBASE_SPOT_SOL_USD",
    )
)


@pytest.mark.parametrize(
    "scope",
    [
        {"symbols": CURATED},
        {"symbols": ("BITSTAMP_", "COINBASE_", "BINANCE_", "KRAKEN_SPOT_BTC_EUR$")},
        {"exchanges": ("BITSTAMP", "COINBASE", "BINANCE", "KRAKEN", "BINANCEFTS")},
    ],
    ids=["exact-symbols", "symbol-prefixes", "exchanges"],
)
def test_three_shards_relay_every_message_once(broker: Broker, scope: dict[str, Any]) -> None:
    with tw.Simulator(rate=6_000, total=6_000, symbols=12, seed=9) as sim:
        f = tw.CoinAPI(url=sim.url, data_types=("trade", "quote"), **scope)
        # A small window per shard: the shards' windows together exceed one shard's, and the
        # NATS client's own limit on acks awaited must hold them all.
        with tw.relay(f, nats=broker.url, shards=3, window=2, reconnect=None) as relay:
            assert len(relay.feeds) == 3
            _until(lambda: sim.stats().finished, "the simulator to finish")
            sent = sim.sent()
            _until(
                lambda: relay.stats()["acked"] >= sum(map(len, sent)),
                "every publish acked",
                relay.shard_stats,
            )
            shards = relay.shard_stats()
            stats = relay.stats()
            connections = sim.stats().connections
    # Three venue connections, each with a scope of its own: no symbol on two of them.
    assert connections == 3
    keys = [{r[1] for r in conn} for conn in sent]
    assert all(keys)
    assert sum(map(len, keys)) == len(set().union(*keys))
    assert stats["shards"] == 3
    assert stats["deduplicated"] == 0
    assert stats["retried"] == 0
    assert sorted(s["acked"] for s in shards) == sorted(map(len, sent))
    got: list[Any] = []
    with tw.connect(tw.Nats(broker.url)) as stream:
        _read(stream, sum(map(len, sent)), got, [])
        assert stream.next_batch(timeout=0.3) is None, "more than the simulator sent"
    assert Counter(record_of(m) for m in got) == Counter(r for conn in sent for r in conn)


def test_shard_scopes_split_along_one_list() -> None:
    from tickwire._shards import split

    exact = split(tw.CoinAPI(data_types=["trade"], symbols=CURATED, assets=["BTC"]), 3)
    assert sorted(s for f in exact for s in f.symbols) == sorted(CURATED)
    assert all(f.assets == ("BTC",) for f in exact)
    # A prefix and the entries it covers stay on one shard.
    grouped = split(tw.CoinAPI(symbols=["BINANCE_", "BINANCE_SPOT_BTC_USDT$", "KRAKEN_"]), 4)
    assert [f.symbols for f in grouped] == [("BINANCE_", "BINANCE_SPOT_BTC_USDT$"), ("KRAKEN_",)]
    # No symbol or exchange list: the types, then the assets.
    by_type = split(tw.CoinAPI(data_types=["trade", "quote", "book5"], assets=["BTC"]), 2)
    assert [f.data_types for f in by_type] == [("trade", "book5"), ("quote",)]
    by_asset = split(tw.CoinAPI(data_types=["trade"], assets=["BTC", "ETH"]), 2)
    assert [f.assets for f in by_asset] == [("BTC",), ("ETH",)]
    # Periods split only for an OHLCV-only scope; elsewhere they would repeat the trades.
    ohlcv = split(tw.CoinAPI(data_types=["ohlcv"], periods=["1MIN", "1HRS"]), 2)
    assert [f.periods for f in ohlcv] == [("1MIN",), ("1HRS",)]
    with pytest.raises(ValueError, match="cannot shard"):
        split(tw.CoinAPI(data_types=["trade"]), 2)
    with pytest.raises(ValueError, match="cannot shard"):
        split(tw.Moment("orders"), 2)
    with pytest.raises(ValueError, match="between 1 and"):
        split(tw.CoinAPI(), 0)
    prices = split(tw.Moment("prices", instruments=[f"C{i:08d}" for i in range(40)]), 3)
    assert len(prices) == 3
    assert sorted(i for f in prices for i in f.instruments) == [f"C{i:08d}" for i in range(40)]
