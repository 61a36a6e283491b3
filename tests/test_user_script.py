"""The typing example is also a working program: run it against the simulator."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

SCRIPT = Path(__file__).parent / "typing" / "user_script.py"


@pytest.mark.timeout(60)
@pytest.mark.parametrize("flag", [[], ["--async"]], ids=["sync", "async"])
def test_user_script_runs(make_sim: Any, flag: list[str]) -> None:
    sim = make_sim(rate=5_000, symbols=30)
    r = subprocess.run(
        [sys.executable, str(SCRIPT), sim.url, "--count", "300", *flag],
        capture_output=True,
        text=True,
        timeout=50,
        stdin=subprocess.DEVNULL,
        check=False,
    )
    assert r.returncode == 0, r.stderr
    m = re.search(r"trades=(\d+) quotes=(\d+) gaps=(\d+) symbols=(\d+)", r.stdout)
    assert m, r.stdout
    trades, quotes, gaps, symbols = map(int, m.groups())
    assert trades + quotes >= 300
    assert gaps == 0
    assert symbols >= 1
    for line in r.stdout.splitlines():
        if " bid=" in line:
            assert line.startswith(("BINANCE_", "COINBASE_")), line
    assert re.search(r"messages=\d+ batches=\d+ gaps=0 duplicates=0", r.stdout)
