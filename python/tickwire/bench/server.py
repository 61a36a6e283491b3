"""The benchmark's simulator process: ``python -m tickwire.bench.server --rate R --cpu C``.

Pins itself (every thread, before the simulator starts its runtime), serves the bundled CoinAPI
simulator on 127.0.0.1 (any free port), and prints one JSON line ``{"url": ...}``. It then
samples its own CPU time every 100 ms until its stdin closes (the harness closes it after the
client is done) or ``--max-seconds`` pass, and prints a second JSON line: the simulator's counters
and the CPU samples, so the harness can tell whether the server was the bottleneck.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import select
import sys
import time
from typing import Any

from ._common import pin_process, thread_cpus

__all__ = ["main"]


def _cpu() -> float:
    ru = resource.getrusage(resource.RUSAGE_SELF)
    return ru.ru_utime + ru.ru_stime


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m tickwire.bench.server",
        description="The pinned simulator process of tickwire's benchmark.",
    )
    p.add_argument("--rate", type=int, default=0, help="events/s; 0 = as fast as the socket (0)")
    p.add_argument("--symbols", type=int, default=100, help="simulated symbols (100)")
    p.add_argument("--seed", type=int, default=0, help="generator seed (0)")
    p.add_argument("--cpu", type=int, help="pin every thread of this process to this CPU")
    p.add_argument("--max-seconds", type=float, default=600.0, help="stop after this long (600)")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    pin_process(args.cpu)
    import tickwire as tw  # after pinning: the simulator's threads inherit the mask

    samples: list[tuple[float, float]] = []
    t0 = time.monotonic()
    # No send record: a benchmark runs long and must not grow the server's memory.
    with tw.Simulator(rate=args.rate, symbols=args.symbols, seed=args.seed, record=False) as sim:
        pin_process(args.cpu)
        threads, cpus = thread_cpus()
        sys.stdout.write(json.dumps({"url": sim.url, "threads": threads, "cpus": cpus}) + "\n")
        sys.stdout.flush()
        while time.monotonic() - t0 < args.max_seconds:
            samples.append((time.time(), _cpu()))
            readable, _, _ = select.select([sys.stdin], [], [], 0.1)
            if readable and not os.read(sys.stdin.fileno(), 4096):
                break  # EOF: the harness is done with us
        samples.append((time.time(), _cpu()))
        st = sim.stats()
        out: dict[str, Any] = {
            "connections": st.connections,
            "messages_sent": st.messages_sent,
            "bytes_sent": st.bytes_sent,
            "generated": st.generated,
            "max_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,  # KiB
            "cpu_samples": samples,
        }
    sys.stdout.write(json.dumps(out) + "\n")
    sys.stdout.flush()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
