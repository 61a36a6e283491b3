"""Where tickwire's per-message time goes, layer by layer (a developer script).

Each mode reads the same first ``--total`` messages from a fresh simulator process (pinned to
``--server-cpu``) in this process (pinned to ``--client-cpu``), and reports client CPU seconds
per million messages from the first message to the last:

    count     len(batch) only: the Rust core (socket, parse, sequence checks, batching, wake-ups)
    iterate   + build the Python message objects (``for m in batch: pass``)
    attrs     + isinstance dispatch and reading type, key, sequence and a price
    work      + the benchmark's shared per-message work (count, gap check per key, checksum);
              what ``tickwire bench`` runs as "tickwire (sync, objects)"

plus ``python-work``: the shared per-message work alone on pre-made tuples, no network, which
every client in ``tickwire bench`` pays on top of its own receive and parse.

    python benches/peers/breakdown.py --total 1000000 --runs 3
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from typing import Any

import tickwire as tw
from tickwire.bench._common import DATA_TYPES, median, pin_process
from tickwire.bench.client import Tally, tickwire_handler

MODES = ("count", "iterate", "attrs", "work")


def cpu_now() -> float:
    ru = resource.getrusage(resource.RUSAGE_SELF)
    return ru.ru_utime + ru.ru_stime


def consume(url: str, mode: str, total: int) -> tuple[float, float]:
    """(CPU seconds, wall seconds) to take ``total`` messages in ``mode``."""
    feed = tw.CoinAPI(url=url, data_types=DATA_TYPES, heartbeat=False)
    n = 0
    tally = Tally(None)
    handle = tickwire_handler(tally, latency=False)
    c0 = w0 = 0.0
    with tw.connect(feed, reconnect=None, compression=False) as s:
        for batch in s:
            if n == 0:
                c0, w0 = cpu_now(), time.perf_counter()
            if mode == "count":
                n += len(batch)
            elif mode == "iterate":
                for _m in batch:
                    n += 1
            elif mode == "attrs":
                for m in batch:
                    n += 1
                    if isinstance(m, tw.Trade):
                        _ = (m.type, m.symbol_id, m.sequence, m.price)
                    elif isinstance(m, tw.Quote):
                        _ = (m.type, m.symbol_id, m.sequence, m.ask_price)
                    elif isinstance(m, tw.Book):
                        _ = (m.type, m.symbol_id, m.sequence, m.asks[0][0])
                    elif isinstance(m, tw.Index):
                        _ = (m.type, m.index_id, m.sequence, m.value)
            else:
                for m in batch:
                    handle(m)
                n = tally.messages
            if n >= total:
                break
        return cpu_now() - c0, time.perf_counter() - w0


def python_work(total: int) -> float:
    """CPU seconds for the shared per-message work on ``total`` pre-made messages."""
    keys = [f"EXCH_SPOT_{i}_USD" for i in range(100)]
    types = ("trade", "trade", "trade", "quote", "book5")
    seqs: dict[tuple[str, str], int] = {}
    msgs: list[tuple[str, str, int, float]] = []
    for i in range(100_000):
        t, k = types[i % 5], keys[i * 7 % 100]
        seqs[t, k] = seqs.get((t, k), 0) + 1  # in order: no gaps, like the simulator's feed
        msgs.append((t, k, seqs[t, k], 100.0 + i % 7))
    tally = Tally(None)
    data = tally.data
    c0 = cpu_now()
    for _ in range(total // len(msgs)):
        for t, k, seq, p in msgs:
            data(t, k, seq, p)
    return cpu_now() - c0


def start_server(cpu: int | None) -> tuple[subprocess.Popen[bytes], str]:
    cmd = [sys.executable, "-m", "tickwire.bench.server", "--max-seconds", "300"]
    if cpu is not None:
        cmd += ["--cpu", str(cpu)]
    proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    assert proc.stdout is not None
    line = proc.stdout.readline()
    return proc, json.loads(line)["url"]


def stop_server(proc: subprocess.Popen[bytes]) -> None:
    assert proc.stdin is not None
    proc.stdin.close()
    try:
        proc.wait(10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(5)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--total", type=int, default=1_000_000, help="messages per mode (1000000)")
    p.add_argument("--runs", type=int, default=3, help="repetitions, interleaved (3)")
    p.add_argument("--client-cpu", type=int, default=0)
    p.add_argument("--server-cpu", type=int, default=1 if (os.cpu_count() or 1) > 1 else 0)
    args = p.parse_args(argv)
    pin_process(args.client_cpu)
    results: dict[str, list[float]] = {m: [] for m in (*MODES, "python-work")}
    rates: dict[str, list[float]] = {m: [] for m in MODES}
    for _ in range(args.runs):
        for mode in MODES:
            proc, url = start_server(args.server_cpu)
            try:
                cpu, wall = consume(url, mode, args.total)
            finally:
                stop_server(proc)
            results[mode].append(cpu / args.total * 1e6)
            rates[mode].append(args.total / wall)
        results["python-work"].append(python_work(args.total) / args.total * 1e6)
    print(f"tickwire per-message cost, {args.total:,} messages, {args.runs} runs (median)")
    print(f"{'mode':<12} {'CPU s / M msgs':>15} {'added':>8} {'msg/s':>11}")
    prev = 0.0
    out: dict[str, Any] = {}
    for mode in (*MODES, "python-work"):
        cpu = median(results[mode])
        added = cpu - prev if mode in MODES else float("nan")
        rate = median(rates[mode]) if mode in rates else float("nan")
        shown = f"{rate:,.0f}" if mode in rates else "-"
        print(f"{mode:<12} {cpu:15.3f} {added:8.3f} {shown:>11}")
        prev = cpu if mode in MODES else prev
        out[mode] = {"cpu_per_m": cpu, "runs": results[mode]}
    print(json.dumps(out))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
