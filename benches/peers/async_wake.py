"""Experiment: what tickwire's asyncio wake-up costs per batch, and a cheaper variant.

``Stream.__anext__`` waits through ``Stream._readable()``, which creates a future and calls
``loop.add_reader`` and ``loop.remove_reader`` (two ``epoll_ctl`` calls) on every wait, i.e.
about once per batch. At low rates a batch is a handful of messages, so this dominates the
per-message CPU of the asyncio path (``tickwire bench``: asyncio costs about 1.5x the sync path
at 10k msg/s). The variant below keeps the reader registered for the whole iteration and waits
on an ``asyncio.Event`` instead. It reaches into ``Stream._core`` (private), so it is a
prototype for a change to ``_stream.py``, not something to copy into an application.

Each variant reads the paced simulator for ``--seconds`` after a 1 s warm-up, in turn, pinned
like ``tickwire bench``, and reports client CPU seconds per million messages (median of runs):

    python benches/peers/async_wake.py --rate 10000 --runs 3
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

import tickwire as tw
from tickwire.bench._common import DATA_TYPES, median, pin_process
from tickwire.bench.client import Tally, tickwire_handler


def cpu_now() -> float:
    ru = resource.getrusage(resource.RUSAGE_SELF)
    return ru.ru_utime + ru.ru_stime


async def persistent(stream: tw.Stream) -> AsyncIterator[tw.Batch]:
    """Batches of ``stream`` with the wake-up fd registered once, not once per wait."""
    core = stream._core  # prototype only: the private core the public iterator uses
    loop = asyncio.get_running_loop()
    ready = asyncio.Event()
    loop.add_reader(core.wake_fd, ready.set)
    try:
        while True:
            got = core.poll_or_arm()  # drains the pipe, then a batch, or arms the wake-up
            if isinstance(got, tw.Batch):
                yield got
            elif got is False:
                return
            else:
                ready.clear()
                await ready.wait()
    finally:
        loop.remove_reader(core.wake_fd)


async def consume(url: str, variant: str, warmup: float, seconds: float) -> tuple[float, int]:
    """(CPU seconds, messages) over the measured window."""
    feed = tw.CoinAPI(url=url, data_types=DATA_TYPES, heartbeat=False)
    tally = Tally(None)
    handle = tickwire_handler(tally, latency=False)
    async with tw.connect(feed, reconnect=None, compression=False) as s:
        batches = s if variant == "current" else persistent(s)
        t0 = time.monotonic()
        start: tuple[float, int] | None = None
        async for batch in batches:
            for m in batch:
                handle(m)
            now = time.monotonic()
            if start is None and now - t0 >= warmup:
                start = (cpu_now(), tally.messages)
            elif start is not None and now - t0 >= warmup + seconds:
                return cpu_now() - start[0], tally.messages - start[1]
    raise RuntimeError("the stream ended early")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--rate", type=int, default=10_000, help="simulator events/s (10000)")
    p.add_argument("--seconds", type=float, default=5.0)
    p.add_argument("--runs", type=int, default=3)
    p.add_argument("--client-cpu", type=int, default=0)
    p.add_argument("--server-cpu", type=int, default=1 if (os.cpu_count() or 1) > 1 else 0)
    args = p.parse_args(argv)
    pin_process(args.client_cpu)
    cost: dict[str, list[float]] = {"current": [], "persistent": []}
    for _ in range(args.runs):
        for variant in cost:
            cmd = [sys.executable, "-m", "tickwire.bench.server", "--rate", str(args.rate)]
            cmd += ["--cpu", str(args.server_cpu), "--max-seconds", "120"]
            server = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE)
            try:
                assert server.stdout is not None
                url = json.loads(server.stdout.readline())["url"]
                cpu, n = asyncio.run(consume(url, variant, 1.0, args.seconds))
            finally:
                assert server.stdin is not None
                server.stdin.close()
                try:
                    server.wait(10)
                except subprocess.TimeoutExpired:
                    server.kill()
                    server.wait(5)
            cost[variant].append(cpu / n * 1e6)
    print(f"asyncio wake-up at {args.rate:,} events/s, {args.runs} runs: CPU s / M msgs")
    for variant, vals in cost.items():
        print(f"  {variant:<11} median {median(vals):6.2f}   runs {[round(v, 2) for v in vals]}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
