"""Prometheus text over ``stream.stats()``, its scrape endpoint on 127.0.0.1, and the CLI's
``--metrics`` and ``--table``."""

from __future__ import annotations

import re
import subprocess
import sys
import time
import urllib.error
import urllib.request
from typing import Any

import pytest

import tickwire as tw
from _support import feed
from tickwire import metrics


def samples(text: str) -> dict[str, float]:
    """``name{labels} value`` lines as a dict (labels kept in the name)."""
    out: dict[str, float] = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            name, value = line.rsplit(" ", 1)
            out[name] = float(value)
    return out


def read_some(stream: Any, n: int = 200) -> None:
    end = time.monotonic() + 20
    while stream.stats().messages < n:
        assert time.monotonic() < end
        stream.next_batch(timeout=0.5)


def test_prometheus_text_has_every_counter_and_the_latency(sim: Any) -> None:
    with tw.connect(feed(sim, data_types=["trade"])) as stream:
        read_some(stream)
        stats = stream.stats()
        text = metrics.prometheus_text(stats, {"feed": 'sim "1"'})
    got = samples(text)
    assert got['tickwire_messages_total{feed="sim \\"1\\""}'] == stats.messages
    assert got['tickwire_bytes_total{feed="sim \\"1\\""}'] == stats.bytes
    for name in ("gaps", "duplicates", "dropped", "parse_errors", "reconnects", "batches"):
        assert f'tickwire_{name}_total{{feed="sim \\"1\\""}}' in got
    assert "# TYPE tickwire_messages_total counter" in text
    p50 = got['tickwire_latency_seconds{feed="sim \\"1\\"",quantile="0.5"}']
    assert p50 == pytest.approx(stats.latency_us["p50"] / 1e6)
    assert 'tickwire_latency_seconds{feed="sim \\"1\\"",quantile="1"}' in got
    # Every sample line belongs to a declared metric.
    declared = set(re.findall(r"^# TYPE (\S+) ", text, re.M))
    assert {re.sub(r"\{.*", "", k) for k in got} <= declared


def test_serve_answers_scrapes_on_loopback(sim: Any) -> None:
    with (
        tw.connect(feed(sim, data_types=["trade"])) as stream,
        metrics.serve(stream, "127.0.0.1:0") as endpoint,
    ):
        read_some(stream)
        host, port = endpoint.address
        assert host == "127.0.0.1"
        assert port > 0
        with urllib.request.urlopen(endpoint.url, timeout=10) as r:
            assert r.status == 200
            assert r.headers["Content-Type"].startswith("text/plain; version=0.0.4")
            first = samples(r.read().decode())["tickwire_messages_total"]
        read_some(stream, int(first) + 100)
        with urllib.request.urlopen(endpoint.url, timeout=10) as r:
            second = samples(r.read().decode())["tickwire_messages_total"]
        assert second > first, "each scrape takes a fresh snapshot"
        with pytest.raises(urllib.error.HTTPError) as err:
            urllib.request.urlopen(endpoint.url.replace("/metrics", "/other"), timeout=10)
        assert err.value.code == 404
        err.value.close()


@pytest.mark.parametrize("text", ["nonsense", "127.0.0.1:", "127.0.0.1:http", ":80", "h:70000"])
def test_bad_addresses_are_refused(text: str) -> None:
    with pytest.raises(ValueError, match=r"HOST:PORT|port"):
        metrics.parse_address(text)


def test_ipv6_address() -> None:
    assert metrics.parse_address("[::1]:9464") == ("::1", 9464)


@pytest.mark.timeout(60)
def test_cli_table_and_metrics_against_the_simulator(make_sim: Any) -> None:
    sim = make_sim(rate=2_000, symbols=5)
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "tickwire",
            "stream",
            "coinapi",
            "--url",
            sim.url,
            "--types",
            "trade,quote",
            "--table",
            "--seconds",
            "4",
            "--metrics",
            "127.0.0.1:0",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        stdin=subprocess.DEVNULL,
        text=True,
    )
    try:
        assert proc.stderr is not None
        line = proc.stderr.readline()
        m = re.search(r"metrics at (http://127\.0\.0\.1:\d+/metrics)", line)
        assert m, line
        end = time.monotonic() + 20
        while True:
            with urllib.request.urlopen(m.group(1), timeout=10) as r:
                got = samples(r.read().decode())
            if got["tickwire_messages_total"] > 0:
                break
            assert time.monotonic() < end, got
            time.sleep(0.1)
        out, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 0, err
    frames = [f for f in out.split("\ntickwire ") if f.strip()]
    assert len(frames) >= 2, out
    last = frames[-1]
    assert re.search(r"symbol\s+type\s+last\s+msg/s\s+messages\s+gaps\s+latency", last)
    rows = re.findall(
        r"^(\w+_SPOT_\w+)\s+(trade|quote)\s+([\d,.]+)\s+([\d,]+)\s+([\d,]+)\s+(\d+)", last, re.M
    )
    assert len(rows) == 5, last
    assert all(int(r[4].replace(",", "")) > 0 for r in rows)


def test_cli_bad_metrics_address_is_a_usage_error() -> None:
    r = subprocess.run(
        [sys.executable, "-m", "tickwire", "stream", "coinapi", "--metrics", "nonsense"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert r.returncode == 2
    assert len(r.stderr.strip().splitlines()) == 1
    assert "--metrics" in r.stderr
