"""RSS of a client whose consumer stalls: 200k msg/s from the simulator (its own process),
`queue_size=10000`, the consumer stops reading for 15 s, under each overflow policy, with and
without a flood of malformed frames. Reports RSS before, at its peak during the stall, and the
accounting (delivered + dropped against what was read, and read against what the simulator sent).

    python benches/stall_memory.py                      # every policy, clean and malformed
    python benches/stall_memory.py --policy drop_oldest --malformed-every 3 --stall 15

Build with `maturin develop --release` first: a debug build cannot read 200k msg/s.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _simproc import ALL_TYPES, QUOTE_ASSETS, SimProcess, Tally, rss_mb

import tickwire as tw


def consume(stream: Any, tally: Tally, seconds: float) -> None:
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        batch = stream.next_batch(timeout=0.1)
        if batch is not None:
            tally.take(batch)


def run(policy: str, malformed_every: int | None, args: argparse.Namespace) -> dict[str, Any]:
    # `total`: the simulator stops after the run's worth of events, so its count is final.
    total = int(args.rate * (args.warmup + args.stall + args.after))
    sim = SimProcess(rate=args.rate, symbols=args.symbols, total=total)
    url = sim.start(malformed_every=malformed_every)
    feed = tw.CoinAPI(url=url, data_types=ALL_TYPES, assets=QUOTE_ASSETS, heartbeat=False)
    tally = Tally()
    samples: list[float] = []
    with tw.connect(feed, overflow=policy, queue_size=args.queue_size, reconnect=None) as stream:
        consume(stream, tally, args.warmup)
        before = rss_mb()
        read_before = stream.stats().messages
        end = time.monotonic() + args.stall
        while time.monotonic() < end:  # the consumer stalls: nothing is taken
            samples.append(rss_mb())
            time.sleep(0.25)
        during = stream.stats()
        consume(stream, tally, args.after)
        deadline = time.monotonic() + 120
        while not sim.finished() and time.monotonic() < deadline:
            consume(stream, tally, 0.2)
        sim.stop()
        for batch in stream:  # to the end: Disconnected, then iteration stops
            tally.take(batch)
        stats = stream.stats()
    sim.close()
    rate = (during.messages - read_before) / args.stall
    return {
        "policy": policy,
        "malformed_every": malformed_every,
        "rss_before_mb": before,
        "rss_peak_mb": max(samples),
        "growth_mb": max(samples) - before,
        "read_rate_during_stall": rate,
        "stats": stats,
        "tally": tally,
        "sent": sim.sent,
        "problems": tally.check(stats, sim.sent),
    }


def main() -> int:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--policy", choices=("block", "drop_oldest", "conflate"), action="append")
    ap.add_argument("--malformed-every", type=int, action="append", help="0 = none")
    ap.add_argument("--rate", type=int, default=200_000)
    ap.add_argument("--symbols", type=int, default=1000)
    ap.add_argument("--queue-size", type=int, default=10_000)
    ap.add_argument("--stall", type=float, default=15.0)
    ap.add_argument("--warmup", type=float, default=5.0)
    ap.add_argument("--after", type=float, default=3.0)
    args = ap.parse_args()
    policies = args.policy or ["block", "drop_oldest", "conflate"]
    floods = args.malformed_every or [0, 3]
    failed = False
    print(
        "policy       malformed  rss_before  rss_peak  growth   read/s(stall)  dropped  parse_errors  ParseError/Dropped events  accounting"
    )
    for policy in policies:
        for every in floods:
            r = run(policy, every or None, args)
            s, t = r["stats"], r["tally"]
            ok = "exact" if not r["problems"] else "; ".join(r["problems"])
            failed |= bool(r["problems"]) or r["growth_mb"] > 64
            print(
                f"{policy:<12} {('1/' + str(every)) if every else '-':>9}  {r['rss_before_mb']:8.1f}  "
                f"{r['rss_peak_mb']:8.1f}  {r['growth_mb']:+6.1f}   {r['read_rate_during_stall']:>12,.0f}  "
                f"{s.dropped:>9,}  {s.parse_errors:>12,}  {t.parse_events:>6,}/{t.dropped_events:<6,}  "
                f"{ok} (sent {r['sent']:,}, read {s.messages + s.duplicates + s.parse_errors:,})",
                flush=True,
            )
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
