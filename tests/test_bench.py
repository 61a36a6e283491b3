"""`tickwire bench` end to end, briefly: real server and client processes on 127.0.0.1, the
run validated (counts, gaps, checksums) and written as JSON."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tickwire.bench._harness import Settings
from tickwire.bench._report import chart_context, chart_footnote, chart_labels


@pytest.mark.parametrize("rate", [0, 5_000])
def test_bench_runs_and_validates_tickwire_clients(tmp_path: Path, rate: int) -> None:
    out = tmp_path / "bench.json"
    cmd = [
        sys.executable,
        "-m",
        "tickwire.bench",
        "--peers",
        "tickwire,tickwire-spin,tickwire-count",
    ]
    cmd += ["--runs", "1", "--seconds", "0.5", "--warmup", "0.3", "--rate", str(rate)]
    cmd += ["--no-chart", "--settle", "0", "--json", str(out)]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr
    doc = json.loads(out.read_text())
    runs = doc["runs"]
    assert {r["peer"] for r in runs} == {"tickwire", "tickwire-spin", "tickwire-count"}
    for r in runs:
        assert r["ok"], r
        assert r["gaps"] == 0
        assert r["messages"] > 0
        assert r["io_mode"] in ("inline", "threads")
    if rate:
        assert "p50" in (runs[0].get("latency_us") or {})


def _settings(runs: int, rate: int = 0, client_cpu: int | None = None) -> Settings:
    return Settings(
        peers=[],
        runs=runs,
        seconds=1.0,
        warmup=0.0,
        rate=rate,
        total=None,
        symbols=10,
        server_cpu=None,
        client_cpu=client_cpu,
        timeout=10.0,
    )


def test_chart_says_run_counts_and_pinning_as_they_were() -> None:
    assert chart_context(_settings(1)) == "1 run per client, not pinned"
    assert chart_context(_settings(3, client_cpu=1)) == "3 runs per client, one pinned client CPU"


def test_chart_carries_the_tables_saturation_mark() -> None:
    rows = [
        {"label": "tickwire", "server_cpu_util": 0.99},
        {"label": "websockets", "server_cpu_util": 0.40},
    ]
    s = _settings(1)
    assert chart_labels(s, rows) == ["tickwire *", "websockets"]
    assert "simulator saturated" in chart_footnote(s, rows)
    calm = [{"label": "tickwire", "server_cpu_util": 0.5}]
    assert chart_labels(s, calm) == ["tickwire"]
    assert chart_footnote(s, calm) == ""
    # Paced (latency) runs are not throughput-bound: no mark.
    assert chart_labels(_settings(1, rate=1000), rows) == ["tickwire", "websockets"]
