"""Out-of-range options get a clear ValueError or a bounded meaning; none can crash the I/O
task or overflow a timer."""

from __future__ import annotations

import asyncio
import math
import os
import subprocess
import sys
import time
from collections.abc import Callable
from typing import Any

import pytest

import tickwire as tw


@pytest.mark.parametrize(
    "kwargs",
    [
        {"overflow": "spill"},
        {"batch_size": 0},
        {"queue_size": 0},
        {"heartbeat_timeout": -1.0},
        {"heartbeat_timeout": math.nan},
        {"connect_timeout": 0.0},
        {"ping_timeout": math.inf},
    ],
)
def test_bad_connect_options_are_value_errors(kwargs: dict[str, Any]) -> None:
    with pytest.raises(ValueError, match=r"\w"):
        tw.connect(tw.CoinAPI(url="ws://127.0.0.1:1/v1/"), **kwargs)


def test_bad_urls_and_policies_are_value_errors() -> None:
    with pytest.raises(ValueError, match="scheme"):
        tw.connect(tw.CoinAPI(url="http://127.0.0.1:1/v1/"))
    with pytest.raises(ValueError, match="initial_delay"):
        tw.ReconnectPolicy(initial_delay=0)
    with pytest.raises(ValueError, match="jitter"):
        tw.ReconnectPolicy(jitter=1.5)
    with pytest.raises(ValueError, match="on_notice"):
        tw.ReconnectPolicy(on_notice="never")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="86400"):
        tw.Faults(disconnect_after_s=1e300)
    with pytest.raises(ValueError, match=">= 1"):
        tw.Faults(gap_every=0)


@pytest.mark.timeout(30)
def test_huge_values_are_bounded_not_fatal(make_sim: Callable[..., Any]) -> None:
    sim = make_sim(rate=500, symbols=5)
    policy = tw.ReconnectPolicy(initial_delay=1e6, max_delay=1e300, factor=1e300)
    feed = tw.CoinAPI(url=sim.url, data_types=("trade",), heartbeat=False)
    with tw.connect(feed, reconnect=policy, heartbeat_timeout=1e300, ping_timeout=1e300) as s:
        # NaN waits not at all; 1e300 s waits (a year at most) for the first batch.
        first = s.next_batch(timeout=math.nan) or s.next_batch(timeout=1e300)
        assert first is not None
        assert isinstance(first[0], tw.Connected)
        assert any(isinstance(m, tw.Trade) for m in s.next_batch(timeout=1e300) or ())


@pytest.mark.parametrize("busy_poll", [-0.1, 2.0, math.nan])
def test_busy_poll_is_bounded(busy_poll: float) -> None:
    with pytest.raises(ValueError, match="busy_poll"):
        tw.connect(tw.CoinAPI(url="ws://127.0.0.1:1/v1/"), busy_poll=busy_poll)


@pytest.mark.timeout(30)
def test_busy_poll_delivers_like_a_sleeping_wait(make_sim: Callable[..., Any]) -> None:
    sim = make_sim(rate=2_000, symbols=5)
    feed = tw.CoinAPI(url=sim.url, data_types=("trade", "quote"), heartbeat=False)
    with tw.connect(feed, busy_poll=0.001) as s:
        got: list[tw.Message] = []
        while len(got) < 200:
            batch = s.next_batch(timeout=2.0)
            assert batch is not None
            got.extend(batch)
        gaps = s.stats().gaps
    assert isinstance(got[0], tw.Connected)
    assert gaps == 0

    async def read_async() -> int:
        n = 0
        async with tw.connect(feed, busy_poll=0.001) as s:
            async for batch in s:
                n += len(batch)
                if n >= 200:
                    break
        return n

    assert asyncio.run(read_async()) >= 200


@pytest.mark.timeout(30)
def test_busy_poll_never_outlasts_the_timeout(make_sim: Callable[..., Any]) -> None:
    sim = make_sim(rate=1_000, symbols=5)
    # A scope that matches nothing: after Connected, the stream stays quiet.
    feed = tw.CoinAPI(url=sim.url, data_types=("trade",), symbols=("NOTHING_$",), heartbeat=False)
    with tw.connect(feed, busy_poll=1.0) as s:
        assert s.next_batch(timeout=5.0) is not None  # Connected
        t0 = time.monotonic()
        assert s.next_batch(timeout=0.05) is None
        assert time.monotonic() - t0 < 0.5  # the 1 s spin was cut to the 0.05 s timeout


@pytest.mark.timeout(60)
def test_two_io_threads_stream(make_sim: Callable[..., Any]) -> None:
    # The runtime is made once per process, so the setting is tried in a fresh interpreter.
    sim = make_sim(rate=2_000, symbols=5)
    code = (
        "import sys, tickwire as tw\n"
        "feed = tw.CoinAPI(url=sys.argv[1], data_types=('trade',), heartbeat=False)\n"
        "with tw.connect(feed) as s:\n"
        "    n = 0\n"
        "    while n < 100:\n"
        "        n += len(s.next_batch(timeout=5.0))\n"
        "    print(n, s.stats().gaps)\n"
    )
    out = _python_child(code, sim.url, env={"TICKWIRE_IO": "threads", "TICKWIRE_IO_THREADS": "2"})
    n, gaps = map(int, out.split())
    assert n >= 100
    assert gaps == 0


def _python_child(code: str, *args: str, env: dict[str, str]) -> str:
    """Standard output of ``code`` run by a fresh interpreter (the I/O runtime is made once per
    process, so each setting needs its own) with ``env`` added to the environment."""
    out = subprocess.run(
        [sys.executable, "-c", code, *args],
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 0, out.stderr
    return out.stdout


def _io_mode_in_child(env: dict[str, str], pin_first: bool) -> str:
    code = "import os, tickwire as tw\n"
    if pin_first:
        code += "os.sched_setaffinity(0, {sorted(os.sched_getaffinity(0))[0]})\n"
    code += "print(tw.io_mode())\n"
    return _python_child(code, env=env).strip()


def test_io_mode_follows_the_environment_and_the_cpu_mask() -> None:
    # The mode is fixed once per process, so each case runs in a fresh interpreter.
    assert _io_mode_in_child({"TICKWIRE_IO": "inline"}, pin_first=False) == "inline"
    assert _io_mode_in_child({"TICKWIRE_IO": "threads"}, pin_first=True) == "threads"
    assert _io_mode_in_child({"TICKWIRE_IO": "auto"}, pin_first=True) == "inline"
    if len(os.sched_getaffinity(0)) > 1:
        assert _io_mode_in_child({"TICKWIRE_IO": "auto"}, pin_first=False) == "threads"


def test_inline_io_streams_sync_and_async(make_sim: Callable[..., Any]) -> None:
    # Sync waits read the socket themselves; asyncio and a busy consumer rely on the background
    # thread. Both must deliver every message in order.
    sim = make_sim(rate=5_000, symbols=5)
    code = (
        "import asyncio, sys, time, tickwire as tw\n"
        "feed = tw.CoinAPI(url=sys.argv[1], data_types=('trade',), heartbeat=False)\n"
        "with tw.connect(feed) as s:\n"
        "    n = 0\n"
        "    while n < 2000:\n"
        "        n += len(s.next_batch(timeout=5.0))\n"
        "        if n > 1000:\n"
        "            t = time.monotonic()\n"
        "            while time.monotonic() - t < 0.02:\n"
        "                pass\n"
        "    sync = (n, s.stats().gaps)\n"
        "async def main():\n"
        "    async with tw.connect(feed) as s:\n"
        "        n = 0\n"
        "        async for b in s:\n"
        "            n += len(b)\n"
        "            if n >= 2000:\n"
        "                return n, s.stats().gaps\n"
        "print(tw.io_mode(), *sync, *asyncio.run(main()))\n"
    )
    out = _python_child(code, sim.url, env={"TICKWIRE_IO": "inline"})
    mode, n_sync, gaps_sync, n_async, gaps_async = out.split()
    assert mode == "inline"
    assert int(n_sync) >= 2000
    assert int(n_async) >= 2000
    assert int(gaps_sync) == 0
    assert int(gaps_async) == 0


def _stamps(make_sim: Callable[..., Any], spin: bool) -> list[int]:
    """`time_coinapi` of 400 messages generated at 2,000/s."""
    sim = make_sim(rate=2_000, symbols=20, spin_pacing=spin, record=False)
    feed = tw.CoinAPI(url=sim.url, data_types=("trade", "quote", "index"), heartbeat=False)
    stamps: list[int] = []
    with tw.connect(feed) as s:
        while len(stamps) < 400:
            for m in s.next_batch(timeout=5.0) or ():
                if isinstance(m, (tw.Trade, tw.Quote, tw.Index)):
                    stamps.append(m.time_coinapi)
    return stamps


@pytest.mark.parametrize("spin", [False, True], ids=["timer", "spin"])
def test_both_pacings_stream_in_time_order(make_sim: Callable[..., Any], spin: bool) -> None:
    # Functional only: how evenly each pacing spaces messages depends on the machine's load,
    # so it is measured in BENCHMARKS.md rather than asserted here.
    stamps = _stamps(make_sim, spin)
    assert len(stamps) >= 400
    assert stamps == sorted(stamps)


def test_uvloop_consumer_gets_every_message(make_sim: Callable[..., Any]) -> None:
    # uvloop watches the stream's wake-up descriptor (inline I/O: the epoll set holding the
    # socket) through libuv rather than a selector; both I/O modes must deliver in order.
    import uvloop

    sim = make_sim(rate=5_000, symbols=5)
    feed = tw.CoinAPI(url=sim.url, data_types=("trade",), heartbeat=False)

    async def consume() -> tuple[int, int]:
        async with tw.connect(feed) as s:
            n = 0
            async for b in s:
                n += len(b)
                if n >= 2000:
                    break
            return n, s.stats().gaps

    n, gaps = uvloop.run(consume())
    assert n >= 2000
    assert gaps == 0
