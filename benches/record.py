"""Recording and replay figures (a benchmark, not a test):

1. recording's cost on full-speed throughput: the client (this process) pinned to CPU 0, the
   simulator (``tickwire sim --rate 0``) in a subprocess pinned to CPU 1; runs alternate
   between ``record=None`` and ``record=path``; medians;
2. bytes per message on disk;
3. replay as fast as possible, in a count-only loop (``len(batch)``, no message objects);
4. timing fidelity at ``speed=1.0``: a session recorded at ``--paced-rate`` msg/s, replayed;
   the error of each message's inter-arrival time at the consumer against the recorded one.

    python benches/record.py --runs 3 --total 1000000    # a release build (maturin --release)
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import tickwire as tw

MARKET = ["trade", "quote", "index"]


def sim_process(total: int, rate: int) -> tuple[subprocess.Popen[str], str]:
    cmd = [sys.executable, "-m", "tickwire", "sim", "--rate", str(rate), "--total", str(total)]
    if shutil.which("taskset") and (os.cpu_count() or 1) > 1:
        cmd = ["taskset", "-c", "1", *cmd]
    sim = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    assert sim.stdout is not None
    return sim, sim.stdout.readline().split()[1]


def thread_cpu() -> dict[str, float]:
    """CPU seconds of this process's threads, by thread name (10 ms resolution)."""
    tick = os.sysconf("SC_CLK_TCK")
    out: dict[str, float] = {}
    for task in Path("/proc/self/task").iterdir():
        try:
            stat = (task / "stat").read_text()
        except OSError:
            continue
        name = stat[stat.index("(") + 1 : stat.rindex(")")]
        fields = stat[stat.rindex(")") + 2 :].split()
        out[name] = out.get(name, 0.0) + (int(fields[11]) + int(fields[12])) / tick
    return out


#: Per-thread CPU µs per message of the last `live` run (the I/O thread and the recorder's
#: writer thread).
LAST_THREADS: dict[str, float] = {}


def live(total: int, record: Path | None, rate: int = 0) -> tuple[int, float, float]:
    """Messages read, msg/s (first batch to last) and the process's CPU µs per message (all
    its threads: the I/O thread and the recorder's included), reading until the simulator is
    done."""
    sim, url = sim_process(total, rate)
    try:
        feed = tw.CoinAPI(url=url, data_types=MARKET, heartbeat=False)
        msgs = 0
        quiet = 0
        c0 = time.process_time()
        before = thread_cpu()
        with tw.connect(feed, record=record) as stream:
            t0 = last = 0.0
            while quiet < 2:
                batch = stream.next_batch(timeout=0.5)
                if batch is None:
                    quiet += 1
                    continue
                quiet = 0
                if not t0:
                    t0 = time.perf_counter()
                msgs += len(batch)
                last = time.perf_counter()
            # Before close: the writer thread ends with it. The writer is at most 10 ms behind.
            time.sleep(0.05)
            after = thread_cpu()
        cpu = time.process_time() - c0
        LAST_THREADS.clear()
        for name in ("tickwire-io", "tickwire-record"):  # names cut to 15 bytes
            LAST_THREADS[name] = (after.get(name, 0.0) - before.get(name, 0.0)) / max(msgs, 1) * 1e6
        return msgs, msgs / (last - t0) if last > t0 else 0.0, cpu / max(msgs, 1) * 1e6
    finally:
        sim.terminate()
        sim.wait(10)


def replay_rate(path: Path, cpus: set[int] | None = None) -> tuple[int, float]:
    """Items and items/s of a count-only replay; `cpus`: the CPUs its threads may use (the
    replay reads, decompresses and runs the machine on two threads of its own; threads take
    the process's affinity when they start)."""
    pinned = os.sched_getaffinity(0) if cpus is not None else None
    if cpus is not None:
        os.sched_setaffinity(0, cpus)
    try:
        return _replay_rate(path)
    finally:
        if pinned is not None:
            os.sched_setaffinity(0, pinned)


def _replay_rate(path: Path) -> tuple[int, float]:
    msgs = 0
    t0 = time.perf_counter()
    with tw.replay(path) as stream:
        for batch in stream:
            msgs += len(batch)
    return msgs, msgs / (time.perf_counter() - t0)


def fidelity(path: Path) -> tuple[float, float, float, int]:
    """p50, p99 and max of |inter-arrival error| (µs) replaying `path` at speed=1.0."""
    recorded: list[int] = []
    arrived: list[int] = []
    with tw.replay(path, speed=1.0) as stream:
        for batch in stream:
            now = time.time_ns()
            for m in batch:
                if m.type in MARKET:
                    recorded.append(m.recv_ns)
                    arrived.append(now)
    errors = sorted(
        abs((arrived[i + 1] - arrived[i]) - (recorded[i + 1] - recorded[i])) / 1e3
        for i in range(len(recorded) - 1)
    )
    q = statistics.quantiles(errors, n=100)
    return q[49], q[98], errors[-1], len(errors)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--runs", type=int, default=3)
    p.add_argument("--total", type=int, default=1_000_000, help="messages per full-speed run")
    p.add_argument("--paced-rate", type=int, default=5_000, help="msg/s of the paced session")
    p.add_argument("--paced-s", type=float, default=10.0)
    a = p.parse_args()
    print(f"load average before: {os.getloadavg()}")
    tmp = Path(tempfile.mkdtemp(prefix="tickwire-record-bench-"))
    try:
        # The client (this process and the runtime threads it starts) on CPU 0 only.
        all_cpus = os.sched_getaffinity(0)
        if (os.cpu_count() or 1) > 1:
            os.sched_setaffinity(0, {0})
        plain: list[float] = []
        recorded: list[float] = []
        cpu_plain: list[float] = []
        cpu_recorded: list[float] = []
        io_plain: list[float] = []
        io_recorded: list[float] = []
        writer: list[float] = []
        sizes: list[float] = []
        replays: list[float] = []
        replays_all: list[float] = []
        for run in range(a.runs):
            n, rate, cpu = live(a.total, None)
            plain.append(rate)
            cpu_plain.append(cpu)
            io_plain.append(cpu - LAST_THREADS["tickwire-record"])
            path = tmp / f"run{run}.twr"
            n, rate, cpu = live(a.total, path)
            recorded.append(rate)
            cpu_recorded.append(cpu)
            io_recorded.append(cpu - LAST_THREADS["tickwire-record"])
            writer.append(LAST_THREADS["tickwire-record"])
            sizes.append(path.stat().st_size / n)
            m, r = replay_rate(path)
            replays.append(r)
            replays_all.append(replay_rate(path, all_cpus)[1])
            print(
                f"run {run}: plain {plain[-1]:,.0f} msg/s {cpu_plain[-1]:.2f} µs CPU/msg, "
                f"recording {rate:,.0f} msg/s {cpu:.2f} µs CPU/msg, "
                f"{sizes[-1]:.1f} B/msg, replay {r:,.0f} msg/s ({m:,} items)",
                flush=True,
            )
        mp, mr = statistics.median(plain), statistics.median(recorded)
        print(f"\nfull speed, client on CPU 0, {a.total:,} messages, {a.runs} runs (medians):")
        cp, cr = statistics.median(cpu_plain), statistics.median(cpu_recorded)
        print(f"  without recording  {mp:,.0f} msg/s, {cp:.2f} µs CPU/msg")
        print(
            f"  recording          {mr:,.0f} msg/s, {cr:.2f} µs CPU/msg "
            f"(throughput {(1 - mr / mp) * 100:+.1f} %, CPU {(cr / cp - 1) * 100:+.1f} %)"
        )
        print(
            f"  all but the writer thread (the hot path; inline I/O on one CPU) CPU/msg: "
            f"{statistics.median(io_plain):.2f} µs without, "
            f"{statistics.median(io_recorded):.2f} µs with recording; writer thread "
            f"{statistics.median(writer):.2f} µs"
        )
        print(f"  on disk            {statistics.median(sizes):.1f} bytes/message")
        print(
            f"  replay, count-only {statistics.median(replays):,.0f} msg/s on CPU 0, "
            f"{statistics.median(replays_all):,.0f} msg/s on {len(all_cpus)} CPUs"
        )
        total = int(a.paced_rate * a.paced_s)
        path = tmp / "paced.twr"
        live(total, path, rate=a.paced_rate)
        p50, p99, worst, count = fidelity(path)
        print(
            f"speed=1.0 fidelity ({count:,} inter-arrivals at {a.paced_rate:,} msg/s): "
            f"|error| p50 {p50:.1f} µs, p99 {p99:.1f} µs, max {worst:.1f} µs"
        )
        print(f"load average after: {os.getloadavg()}")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
