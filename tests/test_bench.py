"""`tickwire bench` end to end, briefly: real server and client processes on 127.0.0.1, the
run validated (counts, gaps, checksums) and written as JSON."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest


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
