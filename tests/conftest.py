"""Fixtures: simulators on 127.0.0.1, port 0 (never a fixed port, never another address)."""

from __future__ import annotations

import socket
from collections.abc import Callable, Iterator
from typing import Any

import pytest

import tickwire as tw

LOOPBACK = "127.0.0.1"


@pytest.fixture
def make_sim() -> Iterator[Callable[..., Any]]:
    """Start ``tw.Simulator(**kw)`` on 127.0.0.1:0; every one started is closed afterwards."""
    started: list[Any] = []

    def start(**kw: Any) -> Any:
        kw["host"] = LOOPBACK
        kw["port"] = 0
        sim = tw.Simulator(**kw)
        started.append(sim)
        return sim

    yield start
    for sim in reversed(started):
        sim.close()


@pytest.fixture
def sim(make_sim: Callable[..., Any]) -> Any:
    """A CoinAPI simulator streaming at 2 000 events/s with no end."""
    return make_sim(rate=2_000, symbols=20)


@pytest.fixture
def closed_port() -> int:
    """A loopback port nothing listens on (bound, read back, released)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((LOOPBACK, 0))
        port: int = s.getsockname()[1]
    return port
