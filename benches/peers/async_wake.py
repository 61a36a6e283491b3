"""Experiment: tickwire's asyncio wake-up against the pyo3-async-runtimes bridge.

tickwire wakes an asyncio consumer through a pipe the loop watches (``loop.add_reader``, kept
registered for the whole iteration): the I/O thread writes one byte when a batch lands for a
waiting consumer and never touches the interpreter. The usual alternative in PyO3 projects is
pyo3-async-runtimes' ``future_into_py``: every ``await`` creates an asyncio future and a tokio
task, and the I/O thread takes the GIL to complete the future through
``call_soon_threadsafe``. Both variants read the same paced simulator, in turn, pinned like
``tickwire bench``, doing the benchmark's per-message work, and report client CPU seconds per
million messages, context switches per message and one-way latency (medians of runs).

The bridge variant needs a build with the bridge compiled in (off by default, not in wheels):

    maturin develop --release --features async-runtimes
    python benches/peers/async_wake.py --rate 10000 --runs 3
    python benches/peers/async_wake.py --rate 100000 --runs 3
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import resource
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from typing import Any

import tickwire as tw
from tickwire.bench._common import DATA_TYPES, median, pin_process
from tickwire.bench.client import Tally, tickwire_handler

VARIANTS = ("fd", "pyo3-async-runtimes")


def usage() -> tuple[float, int]:
    ru = resource.getrusage(resource.RUSAGE_SELF)
    return ru.ru_utime + ru.ru_stime, ru.ru_nvcsw + ru.ru_nivcsw


async def bridged(stream: tw.Stream) -> AsyncIterator[tw.Batch]:
    """Batches of ``stream`` awaited through pyo3-async-runtimes (private core method)."""
    core: Any = stream._core
    while True:
        got = await core.next_batch_future()
        if got is False:
            return
        yield got


async def consume(url: str, variant: str, warmup: float, seconds: float) -> dict[str, float]:
    """CPU s/M, context switches per message and latency percentiles of the measured window."""
    feed = tw.CoinAPI(url=url, data_types=DATA_TYPES, heartbeat=False)
    tally = Tally(None)
    handle = tickwire_handler(tally, latency=True)
    async with tw.connect(feed, reconnect=None, compression=False) as s:
        batches = s if variant == "fd" else bridged(s)
        t0 = time.monotonic()
        start: tuple[float, int, int] | None = None
        async for batch in batches:
            for m in batch:
                handle(m)
            now = time.monotonic()
            if start is None and now - t0 >= warmup:
                cpu, switches = usage()
                start = (cpu, switches, tally.messages)
                del tally.lat[:]
            elif start is not None and now - t0 >= warmup + seconds:
                cpu, switches = usage()
                n = tally.messages - start[2]
                lat = sorted(tally.lat)
                return {
                    "cpu_s_per_m": (cpu - start[0]) / n * 1e6,
                    "switches_per_msg": (switches - start[1]) / n,
                    "p50_us": lat[len(lat) // 2] / 1e3,
                    "p99_us": lat[int(len(lat) * 0.99)] / 1e3,
                }
    raise RuntimeError("the stream ended early")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--rate", type=int, default=10_000, help="simulator events/s (10000)")
    p.add_argument("--seconds", type=float, default=5.0)
    p.add_argument("--runs", type=int, default=3)
    p.add_argument("--client-cpu", type=int, default=0)
    p.add_argument("--server-cpu", type=int, default=1 if (os.cpu_count() or 1) > 1 else 0)
    args = p.parse_args(argv)
    if not hasattr(tw._core.StreamCore, "next_batch_future"):
        p.error("no bridge in this build: maturin develop --release --features async-runtimes")
    pin_process(args.client_cpu)
    results: dict[str, list[dict[str, float]]] = {v: [] for v in VARIANTS}
    for _ in range(args.runs):
        for variant in VARIANTS:
            cmd = [sys.executable, "-m", "tickwire.bench.server", "--rate", str(args.rate)]
            cmd += ["--cpu", str(args.server_cpu), "--max-seconds", "120"]
            server = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE)
            try:
                assert server.stdout is not None
                url = json.loads(server.stdout.readline())["url"]
                results[variant].append(asyncio.run(consume(url, variant, 1.0, args.seconds)))
            finally:
                assert server.stdin is not None
                server.stdin.close()
                try:
                    server.wait(10)
                except subprocess.TimeoutExpired:
                    server.kill()
                    server.wait(5)
    print(f"asyncio wake-up at {args.rate:,} events/s, {args.runs} runs, medians (all runs):")
    for variant, runs in results.items():
        cols = []
        for key, fmt in (("cpu_s_per_m", ".2f"), ("switches_per_msg", ".2f"), ("p50_us", ".0f")):
            vals = [r[key] for r in runs]
            cols.append(f"{key} {median(vals):{fmt}} {[format(v, fmt) for v in vals]}")
        vals = [r["p99_us"] for r in runs]
        cols.append(f"p99_us {median(vals):.0f} {[format(v, '.0f') for v in vals]}")
        print(f"  {variant:<20} " + "  ".join(cols))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
