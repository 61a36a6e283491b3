"""Rust log records in Python's ``logging``: levels follow the ``tickwire`` logger, records
keep their own time and stream, records waiting while nobody reads are handed over anyway, and
what the bounded buffer gives up is counted."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any

import pytest

import tickwire as tw
from tickwire import _core


def wait_for(cond: Callable[[], bool], limit: float = 10.0) -> None:
    end = time.monotonic() + limit
    while not cond():
        assert time.monotonic() < end, "condition not met in time"
        time.sleep(0.02)


def tickwire_records(caplog: pytest.LogCaptureFixture, text: str) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.name == "tickwire" and text in r.getMessage()]


@pytest.mark.timeout(30)
def test_debug_records_appear_when_the_logger_allows_them(
    caplog: pytest.LogCaptureFixture, make_sim: Any
) -> None:
    sim = make_sim(rate=500, symbols=5)
    with caplog.at_level(logging.DEBUG, logger="tickwire"):
        # A stream's start re-reads the logger's level.
        with tw.connect(tw.CoinAPI(url=sim.url)) as stream:
            stream.next_batch(timeout=5)
        sim.close()
        # The simulator's own connection-end record is DEBUG.
        wait_for(lambda: bool(tickwire_records(caplog, "sim connection")))
    rec = tickwire_records(caplog, "sim connection")[0]
    assert rec.levelno == logging.DEBUG
    assert rec.rust_target.startswith("_core::sim")  # type: ignore[attr-defined]
    assert rec.pathname.endswith(".rs")
    assert rec.lineno > 0


@pytest.mark.timeout(30)
def test_debug_records_are_not_even_made_above_debug(
    caplog: pytest.LogCaptureFixture, make_sim: Any
) -> None:
    sim = make_sim(rate=500, symbols=5)
    with caplog.at_level(logging.INFO, logger="tickwire"):
        with tw.connect(tw.CoinAPI(url=sim.url)) as stream:
            stream.next_batch(timeout=5)
            _core._log_test("debug", "never made", 10)
            assert _core._log_state()[1] == 0
            _core._log_test("info", "made", 1)
            stream.stats()
        assert tickwire_records(caplog, "made 0")
    assert not tickwire_records(caplog, "never made")


@pytest.mark.timeout(30)
def test_records_keep_their_time_and_stream_and_arrive_while_nobody_reads(
    caplog: pytest.LogCaptureFixture, closed_port: int
) -> None:
    # Enough first attempts to see six retries before the stream gives up.
    policy = tw.ReconnectPolicy(initial_delay=0.05, max_delay=0.05, jitter=0.0, initial_attempts=20)
    with caplog.at_level(logging.INFO, logger="tickwire"):
        stream = tw.connect(tw.CoinAPI(url=f"ws://127.0.0.1:{closed_port}/v1/"), reconnect=policy)
        try:
            # Nobody calls into the stream: the flusher hands the retry warnings over.
            wait_for(lambda: len(tickwire_records(caplog, "retrying")) >= 6)
        finally:
            stream.close()
    retries = tickwire_records(caplog, "retrying")
    created = [r.created for r in retries]
    # Each warning carries the time of its own failed attempt, 50 ms apart, not the time of
    # the hand-over (the flusher hands over at most every 100 ms, several at once).
    assert created == sorted(created)
    assert len(set(created)) == len(created)
    assert created[5] - created[0] >= 5 * 0.05 * 0.9
    for r in retries:
        assert r.levelno == logging.WARNING
        assert r.stream_id == stream._core.id  # type: ignore[attr-defined]
        assert r.url == f"ws://127.0.0.1:{closed_port}/v1/"  # type: ignore[attr-defined]
        assert abs(r.relativeCreated - (r.created - logging._startTime) * 1000) < 1  # type: ignore[attr-defined]


@pytest.mark.timeout(30)
def test_records_past_the_buffer_are_counted(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.INFO, logger="tickwire"):
        _core._log_test("info", "flood", 1)  # lets the level be read and settles the flusher
        wait_for(lambda: bool(tickwire_records(caplog, "flood 0")))
        caplog.clear()
        # One burst while the GIL is held: the flusher cannot take any of it meanwhile.
        _core._log_test("warn", "burst", 3000)
        wait_for(lambda: bool(tickwire_records(caplog, "burst 2999")))
    notes = tickwire_records(caplog, "log records were dropped")
    assert len(notes) == 1
    assert notes[0].dropped == 3000 - 1024  # type: ignore[attr-defined]
    assert notes[0].levelno == logging.WARNING
    kept = tickwire_records(caplog, "burst ")
    assert len(kept) == 1024
    assert kept[0].getMessage() == f"burst {3000 - 1024}"
