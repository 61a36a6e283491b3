"""A small user script: print trades, track the best quote per symbol, report gaps and stats.

Kept as a user would write it, it must pass ``mypy --strict`` against ``tickwire``'s stubs
(``.ci/run`` checks), and ``tests/test_user_script.py`` runs it against the simulator.

    python user_script.py [URL] [--async] [--count N]
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from dataclasses import dataclass, field

import tickwire as tw


@dataclass
class Tally:
    trades: int = 0
    quotes: int = 0
    gaps: int = 0
    notional: float = 0.0
    best: dict[str, tuple[float, float]] = field(default_factory=dict)
    missing: list[tuple[str, str, int, int]] = field(default_factory=list)

    def take(self, msg: object) -> None:
        if isinstance(msg, tw.Trade):
            self.trades += 1
            self.notional += msg.price * msg.size
        elif isinstance(msg, tw.Quote):
            self.quotes += 1
            self.best[msg.symbol_id] = (msg.bid_price, msg.ask_price)
        elif isinstance(msg, tw.Gap):
            self.gaps += 1
            self.missing.append((msg.msg_type, msg.key, msg.expected, msg.received))

    @property
    def data(self) -> int:
        return self.trades + self.quotes


def make_feed(url: str) -> tw.CoinAPI:
    return tw.CoinAPI(url=url, data_types=("trade", "quote"), symbols=("BINANCE_", "COINBASE_"))


def run_sync(url: str, count: int) -> Tally:
    tally = Tally()
    with tw.connect(make_feed(url), batch_size=256, reconnect=None) as stream:
        for batch in stream:
            for msg in batch:
                tally.take(msg)
            if tally.data >= count:
                break
        report(stream.stats())
    return tally


async def run_async(url: str, count: int) -> Tally:
    tally = Tally()
    async with tw.connect(make_feed(url), reconnect=None) as stream:
        async for batch in stream:
            for i in range(len(batch)):
                tally.take(batch[i])
            if tally.data >= count:
                break
        report(stream.stats())
    return tally


def report(stats: tw.Stats) -> None:
    latency = stats.latency_us
    print(
        f"messages={stats.messages} batches={stats.batches} gaps={stats.gaps} "
        f"duplicates={stats.duplicates} p99_us={latency['p99']}"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("url", nargs="?", default=None)
    parser.add_argument("--async", dest="use_async", action="store_true")
    parser.add_argument("--count", type=int, default=1_000)
    args = parser.parse_args(argv)
    count: int = args.count
    try:
        if args.url is None:
            with tw.Simulator(rate=5_000, symbols=50) as sim:
                tally = run_sync(sim.url, count)
        elif args.use_async:
            tally = asyncio.run(run_async(str(args.url), count))
        else:
            tally = run_sync(str(args.url), count)
    except tw.AuthError:
        print("key rejected", file=sys.stderr)
        return 3
    except tw.TickwireError as exc:
        print(f"failed: {exc}", file=sys.stderr)
        return 1
    symbols = sorted(tally.best)
    print(f"trades={tally.trades} quotes={tally.quotes} gaps={tally.gaps} symbols={len(symbols)}")
    for symbol in symbols[:3]:
        bid, ask = tally.best[symbol]
        print(f"{symbol} bid={bid:.2f} ask={ask:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
