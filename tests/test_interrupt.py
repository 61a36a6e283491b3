"""Ctrl-C interrupts a blocked sync wait and leaves the stream closable."""

from __future__ import annotations

import os
import signal
import threading
import time
from collections.abc import Callable
from typing import Any

import pytest

import tickwire as tw


@pytest.mark.timeout(20)
def test_sigint_interrupts_a_blocked_next_batch(make_sim: Callable[..., Any]) -> None:
    sim = make_sim(rate=10, symbols=5)
    # A scope that matches nothing, without heartbeats: the wait below would never end.
    feed = tw.CoinAPI(url=sim.url, symbols=["NOSUCH_$"], heartbeat=False)
    stream = tw.connect(feed)
    assert stream.next_batch(timeout=5) is not None  # the Connected event
    timer = threading.Timer(0.3, os.kill, (os.getpid(), signal.SIGINT))
    started = time.monotonic()
    timer.start()
    with pytest.raises(KeyboardInterrupt):
        stream.next_batch()
    assert time.monotonic() - started < 2
    stream.close()
    with pytest.raises(tw.StreamClosed):
        stream.next_batch()
