"""Soak: the simulator in its own process streams 200k msg/s across 300,000 symbols while a
fault comes every 30 s, in turn: a server stall, an abrupt close, a reconnect notice
(make-before-break), a burst of malformed frames, a consumer stall. Reports the client's RSS
over time and the accounting: what the client read against what the simulators sent, and
delivered + dropped against what was queued.

    python benches/soak.py                  # 15 minutes
    python benches/soak.py --minutes 3      # shortened

Each 30 s phase is a fresh simulator on the same port (time-based faults apply to a
simulator's first connection), so the client also reconnects at every phase boundary.
Build with `maturin develop --release` first.
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

#: One fault per phase, in turn: (name, simulator faults, consumer stall seconds).
FAULTS: list[tuple[str, dict[str, Any], float]] = [
    ("server stall", {"stall_after_s": 5.0, "stall_s": 6.0}, 0.0),
    ("abrupt close", {"disconnect_after_s": 5.0}, 0.0),
    ("reconnect notice", {"reconnect_notice_after_s": 5.0, "reconnect_within_s": 3.0}, 0.0),
    ("malformed burst", {"malformed_every": 20}, 0.0),
    ("consumer stall", {}, 10.0),
]


def main() -> int:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--minutes", type=float, default=15.0)
    ap.add_argument("--phase", type=float, default=30.0, help="seconds between faults (30)")
    ap.add_argument("--rate", type=int, default=200_000)
    ap.add_argument("--symbols", type=int, default=300_000)
    ap.add_argument("--queue-size", type=int, default=100_000)
    ap.add_argument(
        "--overflow", default="drop_oldest", choices=("block", "drop_oldest", "conflate")
    )
    ap.add_argument("--sample", type=float, default=5.0, help="seconds between RSS lines (5)")
    ap.add_argument("--warmup", type=float, default=60.0, help="seconds before RSS is judged (60)")
    args = ap.parse_args()

    sim = SimProcess(rate=args.rate, symbols=args.symbols)
    url = sim.start(**FAULTS[0][1])
    feed = tw.CoinAPI(url=url, data_types=ALL_TYPES, assets=QUOTE_ASSETS, heartbeat=True)
    policy = tw.ReconnectPolicy(initial_delay=0.05, max_delay=1.0)
    tally = Tally()
    overlap = held = switches = 0
    samples: list[tuple[float, float]] = []
    t0 = time.monotonic()
    total = args.minutes * 60
    phase, next_phase = 0, t0 + args.phase
    next_sample = t0
    stall_until = 0.0
    print(
        f"soak: {args.minutes:g} min, {args.rate:,} msg/s, {args.symbols:,} symbols, "
        f"overflow={args.overflow}, queue_size={args.queue_size:,}; phase 0: {FAULTS[0][0]}",
        flush=True,
    )
    print(
        "     t_s   rss_mb     messages   dropped     gaps  parse_err  reconn  q_depth  lag_p50_ms",
        flush=True,
    )
    with tw.connect(
        feed, overflow=args.overflow, queue_size=args.queue_size, reconnect=policy
    ) as stream:
        while (now := time.monotonic()) < t0 + total:
            if now >= next_phase:
                phase += 1
                name, faults, stall = FAULTS[phase % len(FAULTS)]
                sim.stop()
                sim.start(**faults)
                if stall:
                    stall_until = now + stall
                next_phase += args.phase
                print(f"  [{now - t0:6.0f}s] phase {phase}: {name}", flush=True)
            if now >= next_sample:
                s = stream.stats()
                rss = rss_mb()
                samples.append((now - t0, rss))
                print(
                    f"  {now - t0:6.0f}  {rss:7.1f}  {s.messages:11,}  {s.dropped:8,}  {s.gaps:7,}  "
                    f"{s.parse_errors:9,}  {s.reconnects:6,}  {s.queue_depth:7,}  "
                    f"{s.lag_us['p50'] / 1000:10.1f}",
                    flush=True,
                )
                next_sample += args.sample
            if now < stall_until:
                time.sleep(0.05)
                continue
            batch = stream.next_batch(timeout=0.05)
            if batch is None:
                continue
            tally.take(batch)
            for m in batch:
                if isinstance(m, tw.Switched):
                    switches += 1
                    held += m.held
                    overlap += m.overlap_dropped
        sim.stop()
        end = time.monotonic() + 30
        # Drain: the last simulator closed; take what is queued until the stream goes quiet.
        while time.monotonic() < end:
            batch = stream.next_batch(timeout=1.0)
            if batch is None:
                break
            tally.take(batch)
        stats = stream.stats()
    sim.close()
    judged = [r for t, r in samples if t >= args.warmup] or [r for _, r in samples]
    mid = (max(judged) + min(judged)) / 2
    spread = (max(judged) - min(judged)) / 2 / mid * 100
    read = stats.messages + stats.duplicates + stats.parse_errors
    print(
        f"\nRSS after {args.warmup:g} s warm-up: min {min(judged):.1f} MB, max {max(judged):.1f} MB "
        f"(±{spread:.1f} % around {mid:.1f})"
    )
    print(f"simulators: {sim.sent:,} frames sent over {sim.connections} connections")
    print(
        f"client: read {read:,} (messages {stats.messages:,} + duplicates {stats.duplicates:,} + "
        f"parse errors {stats.parse_errors:,}); switches {switches} (held {held:,}, overlap dropped {overlap:,}); "
        f"reconnects {stats.reconnects}"
    )
    unexplained = sim.sent - read - overlap
    print(
        f"sent - read - overlap_dropped = {unexplained:,} (frames in flight at an abrupt close or a "
        "simulator replaced mid-write are lost with the connection)"
    )
    problems = tally.check(stats, None)
    print(
        "queue accounting (delivered + dropped = queued, stats.dropped = sum of Dropped.count): "
        + ("exact" if not problems else "; ".join(problems))
    )
    return 1 if problems or spread > 10 else 0


if __name__ == "__main__":
    sys.exit(main())
