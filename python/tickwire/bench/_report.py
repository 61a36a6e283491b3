"""Markdown tables for stdout (pasteable into BENCHMARKS.md) and the optional PNG chart."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

from ._common import excluded

if TYPE_CHECKING:
    from ._harness import Settings

__all__ = ["chart_context", "chart_footnote", "chart_labels", "render", "write_chart"]

#: A run whose load server used at least this share of its CPU was limited by the server.
SIM_BOUND = 0.95


def _num(v: Any, fmt: str = ",.0f") -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "-"
    return format(v, fmt)


def _pct(v: Any) -> str:
    return "-" if v is None else f"{100 * v:.0f}%"


def _ratio(v: Any) -> str:
    return "-" if v is None else f"{v:.2f}x"


def _status(s: Settings, r: dict[str, Any]) -> str:
    if not r.get("ok"):
        return f"INVALID: {r.get('error')}"
    return "ok, not in medians (other load)" if excluded(s.max_other_load, r) else "ok"


def _run_noise(r: dict[str, Any]) -> str:
    o = r.get("other_load")
    if not o:
        return "-"
    steal = f", steal {_pct(o['steal'])}" if o.get("steal", 0.0) >= 0.01 else ""
    return f"{_pct(o['client_cpu'])} / {_pct(o['server_cpu'])}{steal}"


def _noise_cell(r: dict[str, Any]) -> str:
    """Median and worst share of a benchmark CPU used by other processes during the runs."""
    if r.get("other_load_median") is None:
        return "-"
    return f"{_pct(r['other_load_median'])} ({_pct(r['other_load_worst'])})"


def _rss(r: dict[str, Any]) -> str:
    """RSS at the start and the end of the measured window, and the growth."""
    a, b = r.get("rss_start_mb"), r.get("rss_end_mb")
    if a is None or b is None:
        return "-"
    growth = r.get("rss_growth")
    return f"{a:.1f}→{b:.1f}" + (f" ({100 * growth:+.1f}%)" if growth is not None else "")


def _table(head: list[str], rows: list[list[str]], right: set[int]) -> list[str]:
    align = ["---:" if i in right else ":---" for i in range(len(head))]
    lines = ["| " + " | ".join(head) + " |", "|" + "|".join(align) + "|"]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    return lines


def render(
    s: Settings,
    rows: list[dict[str, Any]],
    runs: list[dict[str, Any]],
    info: dict[str, Any],
    versions: dict[str, str | None],
    notes: list[str],
    command: str,
) -> str:
    """The whole report: context, the summary table, every run, notes."""
    sim = "sim" if s.load == "sim" else "prerendered"
    unit = "simulator events/s" if s.load == "sim" else "pre-rendered messages/s"
    mode = (
        f"paced at {s.rate:,} {unit}"
        if s.paced
        else f"full speed ({s.server_name} rate 0: as fast as the socket takes it)"
    )
    if s.load == "prerendered":
        mode += ", pre-rendered load" + (" (permessage-deflate)" if s.compression else "")
    span = (
        f"first {s.total:,} messages per run"
        if s.total is not None
        else f"{s.seconds:g} s measured after {s.warmup:g} s warm-up"
    )
    pin = (
        "not pinned"
        if s.client_cpu is None
        else f"{s.server_name} on CPU {s.server_cpu}, every client on CPU {s.client_cpu}"
    )
    out = [
        f"## tickwire bench: {mode}",
        "",
        f"- command: `{command}`",
        f"- {s.runs} run{'' if s.runs == 1 else 's'} per client, interleaved; {span}; "
        "medians over valid runs"
        + (
            f" whose other load was <= {s.max_other_load:.0%}"
            if s.max_other_load is not None
            else ""
        ),
        f"- {pin}; subscription trade+quote+book5+index, {s.symbols} symbols"
        + (
            "; load server: 200,000 pre-rendered messages repeated, sequences gap-free "
            "across passes, time stamps repeating (no latency)"
            if s.load == "prerendered"
            else ""
        )
        + ("; tickwire clients negotiate permessage-deflate" if s.compression else ""),
        f"- machine: {info['nproc']} CPUs ({info['cpu_model']}), Python {info['python']}, "
        f"load average at start {info['loadavg_start'][0]:.2f}",
        "- versions: " + ", ".join(f"{k} {v}" for k, v in sorted(versions.items())),
    ]
    core = info.get("tickwire_core")
    if core and core.get("sha256"):
        kind = "DEBUG build" if core["debug_assertions"] else "release build"
        out.append(
            f"- tickwire core: `{core['path']}` ({kind}, {core['size_mb']} MB, "
            f"modified {core['mtime']}, sha256 {core['sha256']}...)"
        )
    io_modes = sorted({str(r["io_mode"]) for r in runs if r.get("io_mode")})
    if io_modes:
        out.append(
            f"- tickwire I/O mode: {', '.join(io_modes)} (`TICKWIRE_IO`; auto is inline for a "
            "process pinned to one CPU)"
        )
    out.append("")
    right = set(range(1, 13))
    wire = any(r.get("wire_bytes_per_msg") is not None for r in rows)
    best_rate = next((r["best_peer_rate"] for r in rows if r["best_peer_rate"]), None)
    best_cpu = next((r["best_peer_cpu"] for r in rows if r["best_peer_cpu"]), None)
    table: list[list[str]] = []
    if not s.latency:
        head = [
            "client",
            "msg/s",
            "min-max msg/s",
            "MB/s",
            *(["wire B/msg"] if wire else []),
            "CPU s / M msgs",
            "client CPU",
            f"{sim} CPU",
            "msg/s ÷ best peer" + (f" ({best_rate})" if best_rate else ""),
            "other load",
            "valid runs",
        ]
        for r in rows:
            bound = (r["server_cpu_util"] or 0.0) >= SIM_BOUND
            table.append(
                [
                    r["label"],
                    _num(r["msg_per_s"]) + (" *" if bound else ""),
                    f"{_num(r['msg_per_s_min'])}-{_num(r['msg_per_s_max'])}",
                    _num(r["mb_per_s"], ".1f"),
                    *([_num(r.get("wire_bytes_per_msg"), ".1f")] if wire else []),
                    _num(r["cpu_per_m"], ".2f"),
                    _pct(r["cpu_util"]),
                    _pct(r["server_cpu_util"]),
                    _ratio(r["rate_vs_best_peer"]),
                    _noise_cell(r),
                    f"{r['valid']}/{r['runs']}",
                ]
            )
    else:
        head = [
            "client",
            "msg/s",
            "CPU s / M msgs",
            "client CPU",
            "p50 µs",
            "p90 µs",
            "p99 µs",
            "p99.9 µs",
            "max µs",
            "CPU ÷ best peer" + (f" ({best_cpu})" if best_cpu else ""),
            "other load",
            "valid runs",
        ]
        for r in rows:
            lat = r.get("latency_us") or {}
            table.append(
                [
                    r["label"],
                    _num(r["msg_per_s"]),
                    _num(r["cpu_per_m"], ".2f"),
                    _pct(r["cpu_util"]),
                    *(_num(lat.get(q)) for q in ("p50", "p90", "p99", "p99.9", "max")),
                    _ratio(r["cpu_vs_best_peer"]),
                    _noise_cell(r),
                    f"{r['valid']}/{r['runs']}",
                ]
            )
    out += _table(head, table, right)
    if not s.latency and any((r["server_cpu_util"] or 0.0) >= SIM_BOUND for r in rows):
        out += [
            "",
            f"\\* the {s.server_name} used >= {SIM_BOUND:.0%} of its CPU: this client was not the "
            "bottleneck, so its msg/s is a lower bound (see its CPU s / M msgs instead).",
        ]
    out += [
        "",
        "CPU = the process's own user+system time, all threads (getrusage), during the measured "
        f"window; `client CPU` / `{sim} CPU` = share of one CPU used in that window; `other "
        f"load` = share of the client's CPU (or of the {s.server_name}'s, when it was near "
        "saturation) used by anything else in that window (median over runs, worst in brackets)"
        + (
            "; `wire B/msg` = bytes the load server wrote to the socket per message (frames, "
            "after compression), over the whole connection"
            if wire
            else ""
        )
        + "; `RSS MB` = the client's resident set size at the start and the end of the "
        "measured window (sampled every second in between; JSON `rss_samples`)"
        + (
            "; latency = receive wall clock (`time.time_ns()` when the client has the parsed "
            "message) - the simulator's `time_coinapi` stamp (taken at generation)."
            if s.latency
            else "."
        ),
        "",
        "### Every run",
        "",
    ]
    detail: list[list[str]] = []
    for r in runs:
        lat = r.get("latency_us") or {}
        detail.append(
            [
                str(r.get("round", "")),
                r["peer"],
                _num(r.get("msg_per_s")),
                _num(r.get("cpu_per_m"), ".2f"),
                _pct(r.get("server_cpu_util")),
                _run_noise(r),
                *([_num(lat.get("p99"))] if s.latency else []),
                _rss(r),
                str(r.get("gaps", "-")),
                _num(r.get("total_messages")),
                _num(r.get("checksum"), ".6f") if r.get("checksum") else "-",
                _status(s, r),
            ]
        )
    dhead = ["round", "client", "msg/s", "CPU s / M", f"{sim} CPU", "other load c/s"]
    dhead += ["p99 µs"] if s.latency else []
    dhead += ["RSS MB start→end", "gaps", "messages counted", "checksum (Σ trade prices)"]
    dhead += ["status"]
    out += _table(dhead, detail, set(range(2, len(dhead) - 1)))
    failed = [r for r in rows if r["errors"]]
    if notes or failed:
        out += ["", "### Notes", ""]
        out += [f"- {n}" for n in notes]
        out += [f"- {r['peer']}: {'; '.join(r['errors'])}" for r in failed]
    return "\n".join(out)


def _saturated(s: Settings, r: dict[str, Any]) -> bool:
    """The load server, not the client, limited this throughput row (as the table marks it)."""
    return not s.latency and (r.get("server_cpu_util") or 0.0) >= SIM_BOUND


def chart_labels(s: Settings, rows: list[dict[str, Any]]) -> list[str]:
    """Bar labels: the table's, with its `*` where the load server was saturated."""
    return [r["label"] + (" *" if _saturated(s, r) else "") for r in rows]


def chart_context(s: Settings) -> str:
    """The title's bracket: run count and pinning, as the run had them."""
    runs = f"{s.runs} run{'' if s.runs == 1 else 's'} per client"
    pin = "one pinned client CPU" if s.client_cpu is not None else "not pinned"
    return f"{runs}, {pin}"


def chart_footnote(s: Settings, rows: list[dict[str, Any]]) -> str:
    """The table's saturation note, when any bar carries the mark."""
    if not any(_saturated(s, r) for r in rows):
        return ""
    return (
        f"* the {s.server_name} used >= {SIM_BOUND:.0%} of its CPU ({s.server_name} saturated): "
        "that msg/s is a lower bound"
    )


def write_chart(s: Settings, rows: list[dict[str, Any]], path: str) -> str:
    """Draws the summary as a PNG; returns a line saying what happened."""
    try:
        # Optional (not a tickwire dependency), hence the ignores for a machine without it.
        import matplotlib  # type: ignore[import-not-found, unused-ignore]

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt  # type: ignore[import-not-found, unused-ignore]
    except ImportError as e:  # not installed, or installed without a dependency (numpy)
        return f"chart skipped: matplotlib cannot be imported ({e}); pip install matplotlib"
    rows = [r for r in rows if r["valid"]]
    if not rows:
        return "chart skipped: no valid runs"
    labels = chart_labels(s, rows)
    colors = ["tab:orange" if r["ours"] else "tab:blue" for r in rows]
    fig, axes = plt.subplots(1, 2, figsize=(13, 0.45 * len(rows) + 1.8))
    left, right = axes
    if not s.latency:
        rate = [r["msg_per_s"] / 1e3 for r in rows]
        err = [
            [(r["msg_per_s"] - r["msg_per_s_min"]) / 1e3 for r in rows],
            [(r["msg_per_s_max"] - r["msg_per_s"]) / 1e3 for r in rows],
        ]
        left.barh(labels, rate, xerr=err, color=colors)
        left.set_xlabel("thousand messages/s (median, min-max); higher is better")
        title = f"paced at {s.rate:,}/s" if s.paced else "full speed"
        if s.load == "prerendered":
            title += ", pre-rendered load" + (", deflate" if s.compression else "")
    else:
        qs = ("p50", "p99", "p99.9")
        height = 0.8 / len(qs)
        ys = range(len(rows))
        for j, q in enumerate(qs):
            vals = [(r.get("latency_us") or {}).get(q, float("nan")) for r in rows]
            left.barh([y + (j - 1) * height for y in ys], vals, height=height, label=q)
        left.set_yticks(list(ys), labels)
        left.set_xscale("log")
        left.set_xlabel("one-way latency µs (median over runs, log scale); lower is better")
        left.legend()
        title = f"paced at {s.rate:,} events/s"
    left.invert_yaxis()
    right.barh(labels, [r["cpu_per_m"] for r in rows], color=colors)
    right.set_xlabel("client CPU seconds per million messages; lower is better")
    right.set_yticks([])
    right.invert_yaxis()
    fig.suptitle(f"tickwire bench, {title} ({chart_context(s)})")
    footnote = chart_footnote(s, rows)
    if footnote:
        fig.text(0.01, 0.005, footnote, fontsize=8, ha="left", va="bottom")
    fig.tight_layout(rect=(0, 0.04 if footnote else 0, 1, 1))
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return f"wrote chart {path}"
