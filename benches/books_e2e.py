"""End to end: a full-speed ``book`` stream with ``books=True`` against ``books=False``.

The simulator runs in a subprocess (``tickwire sim --rate 0 --generate book``: only
``book`` events, as fast as the socket takes them), so the client's CPU time is the
client's alone. Each run reads the ``--total`` book messages, counting them in every batch;
the books run also reads the top 10 of the book of each batch's last message. Runs
alternate between the two modes; the table shows medians.

    python benches/books_e2e.py --runs 3 --total 300000   # a release build (maturin --release)
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time

import tickwire as tw

#: Every exchange of the simulated universe: the scope is the whole book stream.
EXCHANGES = [
    "BINANCE",
    "COINBASE",
    "BITSTAMP",
    "KRAKEN",
    "BITFINEX",
    "OKEX",
    "GEMINI",
    "BINANCEFTS",
]


def one(books: bool, total: int, symbols: int) -> tuple[int, float, float]:
    sim = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "tickwire",
            "sim",
            "--rate",
            "0",
            "--symbols",
            str(symbols),
            "--total",
            str(total),
            "--generate",
            "book",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    try:
        assert sim.stdout is not None
        url = sim.stdout.readline().split()[1]
        feed = tw.CoinAPI(url=url, data_types=["book"], exchanges=EXCHANGES)
        msgs = 0
        quiet = 0
        with tw.connect(feed, books=books) as stream:
            t0, c0 = time.perf_counter(), time.process_time()
            last = t0
            while quiet < 2:
                batch = stream.next_batch(timeout=0.5)
                if batch is None:
                    quiet += 1
                    continue
                quiet = 0
                msgs += sum(1 for m in batch if m.type == "book")
                last = time.perf_counter()
                if books:
                    b = stream.book(batch[-1].symbol_id) if batch[-1].type == "book" else None
                    if b is not None:
                        b.depth(10)
            wall = last - t0
            cpu = time.process_time() - c0
        return msgs, wall, cpu
    finally:
        sim.terminate()
        sim.wait(10)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--runs", type=int, default=3)
    p.add_argument("--total", type=int, default=300_000, help="book messages per run")
    p.add_argument("--symbols", type=int, default=60)
    a = p.parse_args()
    res: dict[bool, list[tuple[int, float, float]]] = {False: [], True: []}
    for _ in range(a.runs):
        for books in (False, True):
            res[books].append(one(books, a.total, a.symbols))
    print("| books | book msgs | msgs/s (wall) | client CPU µs / msg |")
    print("|---|---|---|---|")
    for books in (False, True):
        runs = res[books]
        n = statistics.median(r[0] for r in runs)
        rate = statistics.median(r[0] / r[1] for r in runs if r[1] > 0)
        cpu = statistics.median(r[2] / r[0] * 1e6 for r in runs if r[0])
        print(f"| {books} | {n:,.0f} | {rate:,.0f} | {cpu:.2f} |")


if __name__ == "__main__":
    main()
