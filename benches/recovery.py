"""Recovery time per fault: the longest silence between two data messages around each fault the
simulator injects, 3 runs each, median. ``python benches/recovery.py`` (a release build)."""

from __future__ import annotations

import itertools
import statistics
import time
from typing import Any

import tickwire as tw

DATA = (tw.Trade, tw.Quote, tw.Index)


def notice() -> tw.Faults:
    return tw.Faults(reconnect_notice_after_s=1.0, reconnect_within_s=1.0)


CASES: list[tuple[str, tw.Faults, tw.ReconnectPolicy, float]] = [
    (
        "stall (heartbeat_timeout 3 s)",
        tw.Faults(stall_after_s=1.0, stall_s=60),
        tw.ReconnectPolicy(),
        8,
    ),
    ("abrupt disconnect", tw.Faults(disconnect_after_s=1.0), tw.ReconnectPolicy(), 4),
    ("server error then close", tw.Faults(error_after_s=1.0), tw.ReconnectPolicy(), 4),
    (
        "reconnect notice, make_before_break",
        notice(),
        tw.ReconnectPolicy(on_notice="make_before_break"),
        6,
    ),
    (
        "reconnect notice, immediate",
        notice(),
        tw.ReconnectPolicy(on_notice="immediate"),
        5,
    ),
    (
        "reconnect notice, wait_for_close",
        notice(),
        tw.ReconnectPolicy(on_notice="wait_for_close"),
        5,
    ),
]


def run(faults: tw.Faults, policy: tw.ReconnectPolicy, seconds: float) -> list[Any]:
    with tw.Simulator(rate=2000, symbols=10, faults=faults, record=False) as sim:
        feed = tw.CoinAPI(url=sim.url, data_types=("trade", "quote", "index"), heartbeat=True)
        items: list[Any] = []
        with tw.connect(feed, reconnect=policy) as stream:
            end = time.monotonic() + seconds
            while time.monotonic() < end:
                batch = stream.next_batch(timeout=0.2)
                if batch is not None:
                    items.extend(batch)
    return items


def longest_silence_ms(items: list[Any]) -> float:
    data = [m for m in items if isinstance(m, DATA)]
    return max(b.recv_ns - a.recv_ns for a, b in itertools.pairwise(data)) / 1e6


def main() -> None:
    for name, faults, policy, seconds in CASES:
        holes = []
        events: list[str] = []
        for _ in range(3):
            items = run(faults, policy, seconds)
            holes.append(longest_silence_ms(items))
            events = [type(m).__name__ for m in items if not isinstance(m, (*DATA, tw.Heartbeat))]
        runs = ", ".join(f"{h:.1f}" for h in holes)
        print(f"{name}: {statistics.median(holes):.1f} ms (runs {runs}); events {events}")


if __name__ == "__main__":
    main()
