"""The command line, run as a user would: ``python -m tickwire ...`` in a subprocess."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

import tickwire as tw

TYPES_IN_SUMMARY = ("trade", "quote", "book", "book5", "book_l3", "ohlcv", "exrate", "index")


def tickwire_cmd(*args: str, env: dict[str, str] | None = None, timeout: float = 60) -> Any:
    return subprocess.run(
        [sys.executable, "-m", "tickwire", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=env,
        stdin=subprocess.DEVNULL,
        check=False,
    )


def test_help() -> None:
    r = tickwire_cmd("--help")
    assert r.returncode == 0
    for sub in ("demo", "sim", "stream"):
        assert sub in r.stdout


def test_version() -> None:
    r = tickwire_cmd("--version")
    assert r.returncode == 0
    assert tw.__version__ in r.stdout


def test_usage_error_exits_2() -> None:
    r = tickwire_cmd("demo", "--seconds", "-1")
    assert r.returncode == 2
    r = tickwire_cmd("nosuchcommand")
    assert r.returncode == 2


def test_console_script_is_installed() -> None:
    script = Path(sys.executable).with_name("tickwire")
    if not script.exists():
        pytest.skip("tickwire not installed as a script beside this interpreter")
    r = subprocess.run([str(script), "--help"], capture_output=True, text=True, check=False)
    assert r.returncode == 0
    assert "demo" in r.stdout


@pytest.mark.timeout(60)
def test_demo_runs_and_summarises() -> None:
    r = tickwire_cmd("demo", "--seconds", "2", "--rate", "5000", "--symbols", "20")
    assert r.returncode == 0, r.stderr
    out = r.stdout
    # Not a TTY: plain progress lines, then the summary table.
    assert re.search(r"messages\s+[\d,]+\s+[\d,]+ msg/s", out), out
    assert "total" in out
    assert "msg/s" in out
    assert "gaps" in out
    assert "parse errors" in out
    assert "latency" in out
    for t in TYPES_IN_SUMMARY:
        assert re.search(rf"^\s+{t}\s+[\d,]+$", out, re.M), (t, out)
    total = re.search(r"^\s+total\s+([\d,]+)$", out, re.M)
    assert total is not None
    assert int(total.group(1).replace(",", "")) > 0


@pytest.mark.timeout(60)
def test_sim_serves_until_interrupted() -> None:
    proc = subprocess.Popen(
        [sys.executable, "-m", "tickwire", "sim", "--rate", "2000", "--symbols", "10"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        stdin=subprocess.DEVNULL,
        text=True,
    )
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        m = re.fullmatch(r"coinapi (ws://127\.0\.0\.1:(\d+)/v1/)\n", line)
        assert m, line
        url = m.group(1)
        f = tw.CoinAPI(url=url, data_types=["trade"])
        with tw.connect(f, reconnect=None) as stream:
            got: list[Any] = []
            end = time.monotonic() + 20
            while not any(isinstance(x, tw.Trade) for x in got) and time.monotonic() < end:
                batch = stream.next_batch(timeout=1)
                if batch is not None:
                    got.extend(batch)
        assert any(isinstance(x, tw.Trade) for x in got)
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=20)
        assert proc.returncode == 0, err
        assert "connections" in err
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()


@pytest.mark.timeout(30)
def test_sim_with_seconds_ends_by_itself() -> None:
    r = tickwire_cmd("sim", "--seconds", "0.5")
    assert r.returncode == 0, r.stderr
    assert re.match(r"coinapi ws://127\.0\.0\.1:\d+/v1/$", r.stdout.splitlines()[0])


def _env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "COINAPI_KEY"}
    env.update(extra)
    return env


def test_stream_without_key_exits_2() -> None:
    r = tickwire_cmd("stream", "coinapi", env=_env())
    assert r.returncode == 2
    assert "COINAPI_KEY" in r.stderr


@pytest.mark.timeout(60)
def test_stream_prints_json_lines(make_sim: Any) -> None:
    # The simulator stands in for the real endpoint: no traffic leaves the machine.
    sim = make_sim(rate=2_000, symbols=20, api_key="k")
    r = tickwire_cmd(
        "stream",
        "coinapi",
        "--url",
        sim.url,
        "--types",
        "trade,quote",
        "--symbols",
        "BINANCE_",
        "--count",
        "50",
        env=_env(COINAPI_KEY="k"),
    )
    assert r.returncode == 0, r.stderr
    docs = [json.loads(line) for line in r.stdout.splitlines()]
    data = [d for d in docs if d["type"] in ("trade", "quote")]
    assert len(data) == 50
    assert docs[0]["type"] == "connected"
    for d in data:
        assert d["symbol_id"].startswith("BINANCE_")
        assert isinstance(d["sequence"], int)
        assert isinstance(d["recv_ns"], int)
    trades = [d for d in data if d["type"] == "trade"]
    for d in trades:
        assert set(d) >= {"uuid", "price", "size", "taker_side", "time_exchange"}


@pytest.mark.timeout(60)
def test_stream_wrong_key_exits_3_without_the_key(make_sim: Any) -> None:
    sim = make_sim(rate=1_000, symbols=10, api_key="k")
    secret = "not-the-key-8d1e"
    r = tickwire_cmd(
        "stream", "coinapi", "--url", sim.url, "--count", "1", env=_env(COINAPI_KEY=secret)
    )
    assert r.returncode == 3, (r.stdout, r.stderr)
    assert secret not in r.stdout
    assert secret not in r.stderr


def assert_one_line_usage_error(r: Any, *expected: str) -> None:
    """Exit 2, one line on stderr naming the problem, no traceback, nothing on stdout."""
    assert r.returncode == 2, (r.stdout, r.stderr)
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1, r.stderr
    assert "Traceback" not in r.stderr
    for text in expected:
        assert text in lines[0], lines[0]


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (("stream", "coinapi", "--url", "https://ws.coinapi.io/v1/"), ("ws://", "https")),
        (("stream", "coinapi", "--url", "notaurl"), ("--url", "notaurl")),
        (("stream", "coinapi", "--url", "ws://"), ("no host",)),
        (("stream", "coinapi", "--url", "ws://127.0.0.1:99999/"), ("not a URL",)),
        (("stream", "moment", "prices", "--url", "http://127.0.0.1:1/"), ("ws://",)),
        (("stream", "moment", "prices", "--environment", "prod"), ("--environment", "prod")),
        (("stream", "coinapi", "--count", "-3"), ("--count",)),
        (("stream", "coinapi", "--seconds", "nan"), ("--seconds",)),
        (("demo", "--seconds", "inf"), ("--seconds",)),
        (("demo", "--rate", "fast"), ("--rate",)),
        (("sim", "--port", "99999"), ("--port", "0-65535")),
        (("sim", "--protocol", "fix"), ("--protocol",)),
        (("nosuchcommand",), ("nosuchcommand",)),
        (("stream",), ("VENUE",)),
    ],
    ids=lambda v: " ".join(v),
)
def test_bad_arguments_are_one_line_usage_errors(
    args: tuple[str, ...], expected: tuple[str, ...]
) -> None:
    r = tickwire_cmd(*args, env=_env(COINAPI_KEY="k", MOMENT_API_KEY="k"))
    assert_one_line_usage_error(r, *expected)


def test_a_value_the_feed_refuses_is_a_usage_error() -> None:
    # Parsed fine, refused by tw.Moment: instruments belong to the prices stream.
    r = tickwire_cmd(
        "stream",
        "moment",
        "orders",
        "--url",
        "ws://127.0.0.1:1/v1/trading/order-stream/",
        "--instruments",
        "912810SX7",
    )
    assert_one_line_usage_error(r, "instruments")


def test_sim_on_a_non_loopback_host_is_a_usage_error() -> None:
    r = tickwire_cmd("sim", "--host", "8.8.8.8", "--seconds", "1")
    assert_one_line_usage_error(r, "loopback")


def test_moment_refuses_an_unknown_environment() -> None:
    with pytest.raises(ValueError, match="paper"):
        tw.Moment("prices", environment="prod")


@pytest.mark.timeout(60)
def test_stream_from_the_simulator_needs_no_key(make_sim: Any) -> None:
    sim = make_sim(rate=2_000, symbols=10)
    r = tickwire_cmd(
        "stream", "coinapi", "--url", sim.url, "--count", "5", "--data-only", env=_env()
    )
    assert r.returncode == 0, r.stderr
    docs = [json.loads(line) for line in r.stdout.splitlines()]
    assert [d["type"] for d in docs] == ["trade"] * 5


@pytest.mark.timeout(60)
def test_sim_api_key_lets_exit_3_be_tried_offline() -> None:
    proc = subprocess.Popen(
        [sys.executable, "-m", "tickwire", "sim", "--api-key", "right-key", "--rate", "500"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        stdin=subprocess.DEVNULL,
        text=True,
    )
    try:
        assert proc.stdout is not None
        m = re.fullmatch(r"coinapi (ws://\S+)\n", proc.stdout.readline())
        assert m
        url = m.group(1)
        wrong = tickwire_cmd(
            "stream", "coinapi", "--url", url, "--count", "1", env=_env(COINAPI_KEY="wrong-key")
        )
        assert wrong.returncode == 3, (wrong.stdout, wrong.stderr)
        assert "rejected" in wrong.stderr
        assert "wrong-key" not in wrong.stderr
        right = tickwire_cmd(
            "stream",
            "coinapi",
            "--url",
            url,
            "--count",
            "1",
            "--data-only",
            env=_env(COINAPI_KEY="right-key"),
        )
        assert right.returncode == 0, right.stderr
        assert json.loads(right.stdout)["type"] == "trade"
        proc.send_signal(signal.SIGINT)
        proc.communicate(timeout=20)
        assert proc.returncode == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()


@pytest.mark.timeout(90)
def test_full_speed_demo_labels_queueing_and_adds_paced_latency() -> None:
    r = tickwire_cmd(
        "demo", "--seconds", "1", "--symbols", "10", "--paced-rate", "2000", "--paced-seconds", "1"
    )
    assert r.returncode == 0, r.stderr
    assert re.search(r"latency socket read -> Python \(at full speed: queueing", r.stdout), r.stdout
    paced = re.search(
        r"latency at 2,000 msg/s \(paced, 1 s, ([\d,]+) messages\): p50 [\d,]+ us", r.stdout
    )
    assert paced, r.stdout
    assert int(paced.group(1).replace(",", "")) > 0


@pytest.mark.timeout(60)
def test_paced_demo_has_no_queueing_label() -> None:
    r = tickwire_cmd("demo", "--seconds", "1", "--rate", "2000", "--symbols", "10")
    assert r.returncode == 0, r.stderr
    assert "queueing" not in r.stdout
    assert "(paced" not in r.stdout
