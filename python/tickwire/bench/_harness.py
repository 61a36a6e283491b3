"""Orchestration: one fresh load server process and one client process per run, interleaved."""

from __future__ import annotations

import argparse
import json
import os
import platform
import selectors
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import IO, Any

from ._common import (
    BATCH_COUNTED,
    PEERS,
    PEERS_BY_NAME,
    Peer,
    core_build,
    dist_version,
    excluded,
    median,
    missing_modules,
    other_load,
)
from ._report import render, write_chart

__all__ = ["main"]

EXIT_OK = 0
EXIT_INVALID = 1  # some run failed validation (the tables say which)
EXIT_USAGE = 2

#: Before a run, each benchmark CPU must be below this busy share (see ``--settle``).
QUIET = 0.10

#: A run is called noisy when something else took at least this share of a benchmark CPU.
NOISY = 0.10


@dataclass
class Settings:
    peers: list[Peer]
    runs: int
    seconds: float
    warmup: float
    rate: int
    total: int | None
    symbols: int
    server_cpu: int | None
    client_cpu: int | None
    timeout: float
    python: str = sys.executable
    notes: list[str] = field(default_factory=list)
    #: Leave runs with more other load than this out of the medians (still listed).
    max_other_load: float | None = None
    #: ``sim`` (the bundled simulator) or ``prerendered`` (pre-rendered messages, repeated).
    load: str = "sim"
    #: tickwire clients negotiate permessage-deflate with the load server.
    compression: bool = False

    @property
    def paced(self) -> bool:
        return self.rate > 0

    @property
    def latency(self) -> bool:
        """Whether latency is recorded: paced, against the simulator (the load server's time
        stamps repeat from pass to pass)."""
        return self.paced and self.load == "sim"

    @property
    def server_name(self) -> str:
        return "load server" if self.load == "prerendered" else "simulator"


def build_parser() -> argparse.ArgumentParser:
    peer_lines = "\n".join(f"  {p.name:<26} {p.label}" for p in PEERS)
    p = argparse.ArgumentParser(
        prog="tickwire bench",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description=(
            "Side-by-side: tickwire and installed peer WebSocket+JSON stacks against the bundled "
            "simulator (or the load server, --load prerendered) on 127.0.0.1, each client in its "
            "own process pinned to one CPU, the server in its own process pinned to another. "
            "Runs are interleaved (A B C A B C ...); tables show medians over runs. Peers that "
            "are not installed are skipped."
        ),
        epilog=(
            f"clients:\n{peer_lines}\n\n"
            "Every client except tickwire-count and tickwire-arrow parses each message, reads\n"
            "type, key, sequence and a price, counts it and checks sequence gaps per (type, key);\n"
            "tickwire-arrow sums columns of batch.to_arrow() (core-checked gaps). Every client\n"
            "samples its RSS each second (start -> end MB in the table of runs).\n\n"
            "examples:\n"
            "  python -m tickwire.bench --runs 3 --seconds 5         # full speed (rate 0)\n"
            "  python -m tickwire.bench --rate 10000 --json out.json  # paced: adds latency\n"
            "  python -m tickwire.bench --total 500000 --peers tickwire,picows-orjson\n"
            "  python -m tickwire.bench --load prerendered           # each client's own ceiling\n"
            "  python -m tickwire.bench --load prerendered --compression --peers tickwire\n"
            "  python -m tickwire.bench --seconds 120 --runs 1 --peers tickwire  # RSS flat?\n\n"
            "Exit codes: 0 every run valid, 1 some run invalid, 2 usage."
        ),
    )
    p.add_argument(
        "--peers",
        default=",".join(x.name for x in PEERS),
        help="comma-separated clients to run, in this order (default: all)",
    )
    p.add_argument("--runs", type=int, default=3, help="repetitions of each client (3)")
    p.add_argument("--seconds", type=float, default=5.0, help="measured seconds per run (5)")
    p.add_argument("--warmup", type=float, default=1.0, help="seconds before measuring (1)")
    p.add_argument(
        "--load",
        choices=("sim", "prerendered"),
        default="sim",
        help="sim: the bundled simulator (generates as it goes; latency when paced); prerendered: "
        "200,000 pre-rendered messages sent over and over, sequence numbers gap-free across "
        "passes, several times faster than the simulator, so a client's own ceiling shows; its "
        "time stamps repeat, so no latency is recorded with it (sim)",
    )
    p.add_argument(
        "--rate",
        type=int,
        default=0,
        help="simulator events/s (prerendered: messages/s); 0 = as fast as the socket takes them "
        "(0); >0 adds latency percentiles with --load sim only",
    )
    p.add_argument(
        "--compression",
        action="store_true",
        help="tickwire clients negotiate permessage-deflate; needs --load prerendered and only "
        "tickwire clients (the peers here run uncompressed); the report adds wire B/msg",
    )
    p.add_argument(
        "--total",
        type=int,
        help="instead of --seconds: each client measures its first N messages (same N messages "
        "for every client, so checksums must match)",
    )
    p.add_argument("--symbols", type=int, default=100, help="simulated symbols (100)")
    p.add_argument("--server-cpu", type=int, help="CPU for the simulator (default: 1)")
    p.add_argument("--client-cpu", type=int, help="CPU for every client (default: 0)")
    p.add_argument("--no-pin", action="store_true", help="do not pin processes to CPUs")
    p.add_argument("--timeout", type=float, help="seconds before a run is killed (auto)")
    p.add_argument("--json", metavar="PATH", help="write settings, every run and the summary")
    p.add_argument(
        "--chart",
        metavar="PATH",
        default="tickwire-bench.png",
        help="PNG bar chart (needs matplotlib) (tickwire-bench.png)",
    )
    p.add_argument("--no-chart", action="store_true", help="do not draw the chart")
    p.add_argument(
        "--settle",
        type=float,
        default=30.0,
        metavar="S",
        help="before each run, wait up to S seconds for the benchmark CPUs to be idle (30; 0: off)",
    )
    p.add_argument("--list", action="store_true", help="list clients and whether installed")
    p.add_argument(
        "--report",
        metavar="JSON",
        nargs="+",
        help="print the report (and chart) of earlier --json files with the same settings, their "
        "runs merged; runs nothing",
    )
    p.add_argument(
        "--max-other-load",
        type=float,
        metavar="F",
        help="leave runs whose other load exceeded F (0..1) out of the medians; they stay listed",
    )
    return p


def machine() -> dict[str, Any]:
    """What the numbers were measured on."""
    model = "unknown"
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.startswith("model name"):
                    model = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    return {
        "nproc": os.cpu_count(),
        "cpus_allowed": len(os.sched_getaffinity(0)),
        "cpu_model": model,
        "python": platform.python_version(),
        "implementation": platform.python_implementation(),
        "platform": platform.platform(),
        "loadavg_start": list(os.getloadavg()),
    }


def _readline(stream: IO[bytes], timeout: float) -> bytes | None:
    """One line from a child's stdout, or ``None`` if none arrives within ``timeout``."""
    sel = selectors.DefaultSelector()
    sel.register(stream, selectors.EVENT_READ)
    try:
        if not sel.select(timeout):
            return None
        return stream.readline()
    finally:
        sel.close()


def _stop(proc: subprocess.Popen[bytes], grace: float) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(grace)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)


def _server_util(server: dict[str, Any], window: Sequence[float] | None) -> float | None:
    """The simulator's CPU use (fraction of one CPU) during the client's measured window."""
    samples = server.get("cpu_samples") or []
    if not window or len(samples) < 2:
        return None
    lo, hi = window
    inside = [(t, c) for t, c in samples if lo <= t <= hi]
    if len(inside) < 2:
        return None
    (t0, c0), (t1, c1) = inside[0], inside[-1]
    return (c1 - c0) / (t1 - t0) if t1 > t0 else None


def _wire(server: dict[str, Any]) -> dict[str, float]:
    """Bytes per message the load server wrote to the socket (frames, compressed or not) and
    the JSON behind them, over the whole connection; nothing for the simulator."""
    n = int(server.get("messages_sent") or 0)
    if not n or server.get("wire_bytes") is None:
        return {}
    return {
        "wire_bytes_per_msg": server["wire_bytes"] / n,
        "payload_bytes_per_msg": server["payload_bytes"] / n,
    }


def _proc_stat() -> dict[int, tuple[float, float]]:
    """Per CPU: (busy seconds, stolen seconds) since boot, from ``/proc/stat``."""
    tick = os.sysconf("SC_CLK_TCK")
    out: dict[int, tuple[float, float]] = {}
    try:
        with open("/proc/stat", encoding="ascii") as f:
            for line in f:
                if line.startswith("cpu") and line[3].isdigit():
                    name, *vals = line.split()
                    v = [int(x) for x in vals[:8]]
                    user, nice, system, _idle, _iowait, irq, softirq, steal = v
                    busy = user + nice + system + irq + softirq
                    out[int(name[3:])] = (busy / tick, steal / tick)
    except (OSError, ValueError):
        pass
    return out


def _other_load(
    s: Settings, stat: list[tuple[float, dict[int, tuple[float, float]]]], r: dict[str, Any]
) -> dict[str, float] | None:
    """What else used the client's and the simulator's CPUs during the measured window
    (busy time of the CPU minus the process's own CPU time), and time stolen by a hypervisor;
    each as a share of the window."""
    window = r.get("window_unix")
    if not window or s.client_cpu is None or s.server_cpu is None:
        return None
    inside = [(t, v) for t, v in stat if window[0] <= t <= window[1]]
    if len(inside) < 2:
        return None
    (t0, a), (t1, b) = inside[0], inside[-1]
    span = t1 - t0
    if span <= 0:
        return None

    def delta(cpu: int, i: int) -> float:
        return (b.get(cpu, (0.0, 0.0))[i] - a.get(cpu, (0.0, 0.0))[i]) / span

    client_own = float(r.get("cpu_util") or 0.0)
    server_own = float(r.get("server_cpu_util") or 0.0)
    if s.client_cpu == s.server_cpu:
        client_own += server_own
    return {
        "client_cpu": max(0.0, delta(s.client_cpu, 0) - client_own),
        "server_cpu": max(0.0, delta(s.server_cpu, 0) - server_own)
        if s.server_cpu != s.client_cpu
        else 0.0,
        "steal": max(delta(s.client_cpu, 1), delta(s.server_cpu, 1)),
    }


def _settle(s: Settings, limit: float) -> float | None:
    """Waits (up to ``limit`` seconds) until the benchmark CPUs are nearly idle, so a run does
    not start in the middle of someone else's build; returns the seconds waited, or ``None``
    if they never went quiet (the run goes ahead and its ``other load`` will say so)."""
    cpus = {c for c in (s.client_cpu, s.server_cpu) if c is not None}
    if limit <= 0 or not cpus:
        return 0.0
    t0 = time.monotonic()
    while True:
        a, ta = _proc_stat(), time.monotonic()
        time.sleep(0.5)
        b, tb = _proc_stat(), time.monotonic()
        busy = max((b[c][0] - a[c][0]) / (tb - ta) for c in cpus if c in a and c in b)
        if busy < QUIET:
            return time.monotonic() - t0
        if time.monotonic() - t0 > limit:
            return None


def run_once(s: Settings, peer: Peer) -> dict[str, Any]:
    """One run: a fresh simulator, one client, both bounded by timeouts."""
    # The simulator's stderr goes to a file: a pipe nobody reads could fill and block it.
    with tempfile.TemporaryFile() as server_err:
        return _run_once(s, peer, server_err)


def _run_once(s: Settings, peer: Peer, server_err: IO[bytes]) -> dict[str, Any]:
    server_cmd = [s.python, "-m", "tickwire.bench.server", "--load", s.load]
    server_cmd += ["--rate", str(s.rate), "--symbols", str(s.symbols)]
    server_cmd += ["--max-seconds", str(s.timeout + 30)]
    if s.compression:
        server_cmd += ["--compression"]
    if s.server_cpu is not None:
        server_cmd += ["--cpu", str(s.server_cpu)]
    record: dict[str, Any] = {"peer": peer.name, "ok": False}
    server = subprocess.Popen(
        server_cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=server_err
    )
    try:
        assert server.stdout is not None
        assert server.stdin is not None
        line = _readline(server.stdout, 30)
        if not line:
            _stop(server, 5)
            server_err.seek(0)
            tail = server_err.read().decode(errors="replace").strip().splitlines()[-3:]
            record["error"] = f"the {s.server_name} did not start: {tail}"
            return record
        url = json.loads(line)["url"]
        client_cmd = [s.python, "-m", "tickwire.bench.client", peer.name, url, str(s.seconds)]
        client_cmd += ["--warmup", str(s.warmup)]
        if s.total is not None:
            client_cmd += ["--total", str(s.total)]
        if s.latency:
            client_cmd += ["--latency"]
        if s.compression:
            client_cmd += ["--compression"]
        if s.client_cpu is not None:
            client_cmd += ["--cpu", str(s.client_cpu)]
        client = subprocess.Popen(client_cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        # Sample every CPU's busy time while the client runs, to see what else ran there.
        stat: list[tuple[float, dict[int, tuple[float, float]]]] = []
        deadline = time.monotonic() + s.timeout
        while True:
            stat.append((time.time(), _proc_stat()))
            try:
                out, err = client.communicate(timeout=0.1)
                break
            except subprocess.TimeoutExpired:
                if time.monotonic() > deadline:
                    _stop(client, 2)
                    out, err = client.communicate()
                    record["error"] = f"timed out after {s.timeout:g} s"
                    break
        lines = out.decode(errors="replace").strip().splitlines()
        if lines:
            try:
                record.update(json.loads(lines[-1]))
            except json.JSONDecodeError:
                record["error"] = f"unreadable client output: {lines[-1][:200]!r}"
        elif "error" not in record:
            tail = err.decode(errors="replace").strip().splitlines()[-3:]
            record["error"] = f"client exited {client.returncode} without a result: {tail}"
        server.stdin.close()
        line = _readline(server.stdout, 10)
        if line:
            stats = json.loads(line)
            record["server"] = {k: v for k, v in stats.items() if k != "cpu_samples"}
            record["server_cpu_util"] = _server_util(stats, record.get("window_unix"))
            record.update(_wire(stats))
        record["other_load"] = _other_load(s, stat, record)
    finally:
        _stop(server, 5)
    return record


def summarize(s: Settings, runs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Medians per client over its valid runs, and the ratio to the best peer."""
    rows: list[dict[str, Any]] = []
    for peer in s.peers:
        mine = [r for r in runs if r["peer"] == peer.name]
        good = [r for r in mine if r.get("ok") and not excluded(s.max_other_load, r)]
        row: dict[str, Any] = {
            "peer": peer.name,
            "label": peer.label,
            "ours": peer.ours,
            "runs": len(mine),
            "valid": len(good),
            "gaps": sum(int(r.get("gaps", 0)) for r in mine),
            "errors": sorted({str(r["error"]) for r in mine if r.get("error")}),
        }

        def med(key: str, rs: list[dict[str, Any]] = good) -> float | None:
            vals = [float(r[key]) for r in rs if r.get(key) is not None]
            return median(vals) if vals else None

        for key in ("msg_per_s", "mb_per_s", "cpu_per_m", "cpu_util", "server_cpu_util"):
            row[key] = med(key)
        for key in ("vcsw_per_m", "ivcsw_per_m", "bytes_per_msg"):
            row[key] = med(key)
        for key in ("wire_bytes_per_msg", "payload_bytes_per_msg", "rss_growth", "rss_end_mb"):
            row[key] = med(key)
        rates = [float(r["msg_per_s"]) for r in good]
        row["msg_per_s_min"] = min(rates) if rates else None
        row["msg_per_s_max"] = max(rates) if rates else None
        if s.latency:
            lat: dict[str, float] = {}
            for q in ("p50", "p90", "p99", "p99.9", "max"):
                vals = [float(r["latency_us"][q]) for r in good if r.get("latency_us")]
                if vals:
                    lat[q] = median(vals)
            worst = [float(r["latency_us"]["max"]) for r in good if r.get("latency_us")]
            if worst:
                lat["worst_max"] = max(worst)
            row["latency_us"] = lat
        noise = [other_load(r) for r in good if r.get("other_load")]
        row["other_load_median"] = median(noise) if noise else None
        row["other_load_worst"] = max(noise) if noise else None
        row["checksums"] = [r.get("checksum") for r in mine]
        rows.append(row)
    peers = [r for r in rows if not r["ours"] and r["valid"]]
    best_rate = max(peers, key=lambda r: r["msg_per_s"] or 0.0, default=None)
    best_cpu = min(peers, key=lambda r: r["cpu_per_m"] or float("inf"), default=None)
    for r in rows:
        r["best_peer_rate"] = best_rate["peer"] if best_rate else None
        r["best_peer_cpu"] = best_cpu["peer"] if best_cpu else None
        r["rate_vs_best_peer"] = (
            r["msg_per_s"] / best_rate["msg_per_s"]
            if best_rate and r["msg_per_s"] and best_rate["msg_per_s"]
            else None
        )
        r["cpu_vs_best_peer"] = (
            r["cpu_per_m"] / best_cpu["cpu_per_m"]
            if best_cpu and r["cpu_per_m"] and best_cpu["cpu_per_m"]
            else None
        )
    return rows


def _checksum_note(s: Settings, runs: list[dict[str, Any]]) -> str | None:
    if s.total is None:
        return None
    objects = [r for r in runs if r.get("ok") and r["peer"] not in BATCH_COUNTED]
    sums = {repr(r.get("checksum")) for r in objects}
    counts = {r.get("total_messages") for r in objects}
    if len(sums) <= 1 and len(counts) <= 1:
        return f"checksums: all {len(objects)} runs agree ({next(iter(sums), 'none')})."
    by: dict[str, list[str]] = {}
    for r in objects:
        by.setdefault(repr(r.get("checksum")), []).append(r["peer"])
    detail = "; ".join(f"{k}: {sorted(set(v))}" for k, v in by.items())
    return f"CHECKSUMS DIFFER across clients over the same {s.total} messages: {detail}"


def _rereport(paths: list[str], chart: str | None, max_other_load: float | None) -> int:
    """Reports one or more earlier ``--json`` files with the same settings as one benchmark
    (their runs merged, rounds renumbered in file order)."""
    docs = []
    for path in paths:
        with open(path, encoding="utf-8") as f:
            docs.append(json.load(f))
    st = docs[0]["settings"]
    # load and compression: files from before these options ran the simulator, uncompressed.
    defaults: dict[str, Any] = {"load": "sim", "compression": False}
    same = ("rate", "seconds", "warmup", "total", "symbols", "server_cpu", "client_cpu", *defaults)
    for d in docs[1:]:
        if any(d["settings"].get(k, defaults.get(k)) != st.get(k, defaults.get(k)) for k in same):
            raise SystemExit(f"--report: settings differ between files ({', '.join(same)})")
    runs: list[dict[str, Any]] = []
    rounds = 0
    for d in docs:
        for r in d["runs"]:
            runs.append({**r, "round": rounds + r["round"]})
        rounds += d["settings"]["runs"]
    peers = list(dict.fromkeys(n for d in docs for n in d["settings"]["peers"]))
    doc = {
        **docs[0],
        "command": " + ".join(d["command"] for d in docs),
        "notes": list(dict.fromkeys(n for d in docs for n in d["notes"])),
        "runs": runs,
    }
    doc["machine"] = {
        **docs[0]["machine"],
        "tickwire_core_changed": any(d["machine"].get("tickwire_core_changed") for d in docs)
        or len({json.dumps(d["machine"].get("tickwire_core"), sort_keys=True) for d in docs}) > 1,
    }
    s = Settings(
        peers=[PEERS_BY_NAME[n] for n in peers],
        runs=rounds,
        seconds=st["seconds"],
        warmup=st["warmup"],
        rate=st["rate"],
        total=st["total"],
        symbols=st["symbols"],
        server_cpu=st["server_cpu"],
        client_cpu=st["client_cpu"],
        timeout=0.0,
        max_other_load=max_other_load,
        load=st.get("load", "sim"),
        compression=st.get("compression", False),
    )
    return EXIT_OK if report(doc, s, chart) else EXIT_INVALID


def _progress(msg: str) -> None:
    sys.stderr.write(msg + "\n")
    sys.stderr.flush()


def _check_load(
    parser: argparse.ArgumentParser, args: argparse.Namespace, names: list[str]
) -> None:
    """``--compression`` needs the load server (the simulator negotiates no deflate) and
    tickwire clients only (the peers here cannot negotiate it)."""
    if not args.compression:
        return
    if args.load != "prerendered":
        parser.error(
            "--compression needs --load prerendered: the simulator does not negotiate deflate"
        )
    others = [n for n in names if not PEERS_BY_NAME[n].ours]
    if others:
        parser.error(
            f"--compression runs tickwire clients only; {', '.join(others)} cannot negotiate "
            "permessage-deflate here (drop them from --peers)"
        )


def main(argv: list[str] | None = None) -> int:
    """``tickwire bench``: returns the exit code (0 valid, 1 some run invalid, 2 usage)."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.list:
        for p in PEERS:
            miss = missing_modules(p)
            state = "installed" if not miss else f"missing: {', '.join(miss)}"
            print(f"{p.name:<26} {p.label:<40} {state}")
        return EXIT_OK
    if args.report:
        return _rereport(args.report, None if args.no_chart else args.chart, args.max_other_load)
    names = [n.strip() for n in args.peers.split(",") if n.strip()]
    unknown = [n for n in names if n not in PEERS_BY_NAME]
    if unknown or not names:
        parser.error(f"unknown client(s) {unknown}; choose from {', '.join(PEERS_BY_NAME)}")
    if args.runs < 1 or args.seconds <= 0 or args.warmup < 0 or args.rate < 0:
        parser.error("--runs >= 1, --seconds > 0, --warmup >= 0 and --rate >= 0 please")
    if args.total is not None and args.total < 2:
        parser.error("--total must be at least 2")
    _check_load(parser, args, names)

    notes: list[str] = []
    peers: list[Peer] = []
    for n in names:
        peer = PEERS_BY_NAME[n]
        miss = missing_modules(peer)
        if miss:
            notes.append(f"skipped {n}: not installed ({', '.join(miss)})")
        else:
            peers.append(peer)
    if not peers:
        print("\n".join(notes))
        return EXIT_INVALID

    ncpu = len(os.sched_getaffinity(0))
    server_cpu, client_cpu = args.server_cpu, args.client_cpu
    if args.no_pin:
        server_cpu = client_cpu = None
        notes.append("processes not pinned (--no-pin)")
    else:
        allowed = sorted(os.sched_getaffinity(0))
        if server_cpu is None:
            server_cpu = allowed[1] if ncpu > 1 else allowed[0]
        if client_cpu is None:
            client_cpu = allowed[0]
        if server_cpu == client_cpu:
            notes.append(f"server and clients share CPU {client_cpu}: fewer than 2 CPUs allowed")
    timeout = args.timeout or (
        args.warmup + args.seconds + 60 if args.total is None else 60 + args.total / 20_000
    )
    s = Settings(
        peers=peers,
        runs=args.runs,
        seconds=args.seconds,
        warmup=args.warmup,
        rate=args.rate,
        total=args.total,
        symbols=args.symbols,
        server_cpu=server_cpu,
        client_cpu=client_cpu,
        timeout=timeout,
        notes=notes,
        max_other_load=args.max_other_load,
        load=args.load,
        compression=args.compression,
    )
    if s.load == "prerendered" and s.paced:
        notes.append(
            "paced pre-rendered load: no latency recorded (the load server's time stamps repeat)"
        )
    info = machine()
    if any(p.ours for p in peers):
        info["tickwire_core"] = core_build()
        if info["tickwire_core"].get("debug_assertions"):
            notes.append(
                "THE TICKWIRE CORE IS A DEBUG BUILD (debug assertions on): its numbers are not "
                "representative; rebuild with `maturin develop --release`"
            )
    versions = {d: dist_version(d) for p in peers for d in p.dists}
    runs: list[dict[str, Any]] = []
    started = time.time()
    for i in range(s.runs):
        for peer in s.peers:
            waited = _settle(s, args.settle)
            r = run_once(s, peer)
            r["settle_wait_s"] = waited
            r["round"] = i + 1
            runs.append(r)
            if r.get("ok"):
                _progress(
                    f"[{i + 1}/{s.runs}] {peer.name:<26} {r['msg_per_s']:>11,.0f} msg/s  "
                    f"{r['cpu_per_m']:6.2f} CPU s/M msgs"
                    + (f"  p99 {r['latency_us']['p99']:,.0f} us" if r.get("latency_us") else "")
                    + (
                        f"  RSS {r['rss_start_mb']:.1f}->{r['rss_end_mb']:.1f} MB"
                        if r.get("rss_end_mb") is not None
                        else ""
                    )
                )
            else:
                _progress(f"[{i + 1}/{s.runs}] {peer.name:<26} INVALID: {r.get('error')}")
    info["loadavg_end"] = list(os.getloadavg())
    info["elapsed_s"] = time.time() - started
    if "tickwire_core" in info:
        info["tickwire_core_changed"] = core_build() != info["tickwire_core"]
    command = "python -m tickwire.bench " + " ".join(sys.argv[1:] if argv is None else argv)
    doc = {
        "command": command,
        "settings": {
            "peers": [p.name for p in s.peers],
            "runs": s.runs,
            "seconds": s.seconds,
            "warmup": s.warmup,
            "rate": s.rate,
            "total": s.total,
            "symbols": s.symbols,
            "server_cpu": s.server_cpu,
            "client_cpu": s.client_cpu,
            "load": s.load,
            "compression": s.compression,
        },
        "machine": info,
        "versions": versions,
        "notes": notes,
        "runs": runs,
    }
    ok = report(doc, s, chart=None if args.no_chart else args.chart)
    if args.json:
        with open(args.json, "w", encoding="utf-8") as f:
            json.dump(doc, f, indent=1)
        print(f"\nwrote {args.json}")
    return EXIT_OK if ok else EXIT_INVALID


def report(doc: dict[str, Any], s: Settings, chart: str | None) -> bool:
    """Prints the report of a finished benchmark (adds ``summary`` to ``doc``); returns whether
    every run was valid."""
    runs: list[dict[str, Any]] = doc["runs"]
    notes = list(doc["notes"])
    noisy = [r for r in runs if r.get("other_load") and other_load(r) >= NOISY]
    if noisy:
        notes.append(
            f"{len(noisy)} of {len(runs)} runs had other load >= {NOISY:.0%} of the client's CPU "
            f"(or of the {s.server_name}'s, when it needed it), from other processes or hypervisor "
            "steal: "
            + ", ".join(f"{r['peer']} round {r['round']} ({other_load(r):.0%})" for r in noisy)
            + "; their numbers are less trustworthy"
        )
    unsettled = [r for r in runs if "settle_wait_s" in r and r["settle_wait_s"] is None]
    if unsettled:
        notes.append(
            f"{len(unsettled)} runs started although the benchmark CPUs were still busy with "
            "something else after waiting (--settle)"
        )
    checksum = _checksum_note(s, runs)
    if checksum:
        notes.append(checksum)
    if doc["machine"].get("tickwire_core_changed"):
        notes.append("THE TICKWIRE CORE CHANGED ON DISK DURING THE BENCHMARK: results mix builds")
    rows = summarize(s, runs)
    doc["summary"] = rows
    print(render(s, rows, runs, doc["machine"], doc["versions"], notes, doc["command"]))
    if chart:
        print(write_chart(s, rows, chart))
    return all(r.get("ok") for r in runs) and not (checksum and "DIFFER" in checksum)
