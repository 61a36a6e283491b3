"""The simulator in a process of its own, so the client's RSS is measured alone; and the
tallies the memory and soak benchmarks share."""

from __future__ import annotations

import multiprocessing as mp
import os
import time
from dataclasses import dataclass
from multiprocessing.connection import Connection
from typing import Any

import tickwire as tw
from tickwire.cli import DEMO_ASSETS, MARKET_TYPES

#: Every market type, and an asset filter every simulated symbol and exrate pair matches
#: (the demo's own scope).
ALL_TYPES = MARKET_TYPES
QUOTE_ASSETS = DEMO_ASSETS


def rss_mb() -> float:
    """This process's resident set, MB."""
    with open("/proc/self/statm") as f:
        pages = int(f.read().split()[1])
    return pages * os.sysconf("SC_PAGE_SIZE") / 2**20


def _serve(conn: Connection, port: int, kw: dict[str, Any]) -> None:
    """Child: serve one simulator per request on `port`; each ("start", faults) starts one,
    ("finished",) and ("generated",) answer its progress, ("stop",) closes it and answers its
    stats; ("exit",) ends the child."""
    sim: Any = None
    while True:
        msg = conn.recv()
        if msg[0] == "start":
            faults = tw.Faults(**msg[1]) if msg[1] else None
            # The port may still be held by the previous simulator's closing sockets.
            for attempt in range(100):
                try:
                    sim = tw.Simulator(port=port, faults=faults, record=False, **kw)
                    break
                except OSError:
                    if attempt == 99:
                        raise
                    time.sleep(0.1)
            conn.send(sim.url)
        elif msg[0] == "finished":
            st = sim.stats()
            conn.send(st.finished)
        elif msg[0] == "generated":
            conn.send(sim.stats().generated)
        elif msg[0] == "stop":
            # Read before closing: a closed simulator has no counters. With `total=` the
            # simulator has finished sending by now, so this is exact.
            st = sim.stats()
            sim.close()
            conn.send({"messages_sent": st.messages_sent, "connections": st.connections})
            sim = None
        else:
            if sim is not None:
                sim.close()
            return


class SimProcess:
    """A simulator in a child process on a fixed loopback port: it can be replaced (a new
    simulator, new faults) while a client keeps reconnecting to the same URL."""

    def __init__(self, **kw: Any) -> None:
        import socket

        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]
        kw.setdefault("host", "127.0.0.1")
        ctx = mp.get_context("spawn")
        self.conn, child = ctx.Pipe()
        self.proc = ctx.Process(target=_serve, args=(child, self.port, kw), daemon=True)
        self.proc.start()
        self.sent = 0
        self.connections = 0

    def start(self, **faults: Any) -> str:
        self.conn.send(("start", {k: v for k, v in faults.items() if v is not None}))
        url: str = self.conn.recv()
        return url

    def finished(self) -> bool:
        """True once a simulator started with `total=` has sent it all."""
        self.conn.send(("finished",))
        done: bool = self.conn.recv()
        return done

    def stop(self) -> None:
        self.conn.send(("stop",))
        st = self.conn.recv()
        self.sent += st["messages_sent"]
        self.connections += st["connections"]

    def close(self) -> None:
        self.conn.send(("exit",))
        self.proc.join(10)


@dataclass
class Tally:
    """What the consumer saw, in the units `Dropped.count` counts."""

    data: int = 0
    gaps: int = 0
    parse_frames: int = 0
    parse_events: int = 0
    dropped: int = 0
    dropped_events: int = 0
    connected: int = 0

    def take(self, batch: Any) -> None:
        for m in batch:
            if isinstance(m, tw.Gap):
                self.gaps += 1
            elif isinstance(m, tw.ParseError):
                self.parse_frames += m.count
                self.parse_events += 1
            elif isinstance(m, tw.Dropped):
                self.dropped += m.count
                self.dropped_events += 1
            elif isinstance(m, tw.Connected):
                self.connected += 1
            elif isinstance(m, (tw.Disconnected, tw.Stale, tw.Switched)):
                pass
            else:
                self.data += 1

    def check(self, stats: Any, sent: int | None) -> list[str]:
        """The accounting identities; an empty list when every count adds up."""
        bad = []
        queued_in = stats.messages + stats.gaps + stats.parse_errors
        out = self.data + self.gaps + self.parse_frames + self.dropped
        if out != queued_in:
            bad.append(f"delivered+dropped {out:,} != queued {queued_in:,}")
        if stats.dropped != self.dropped:
            bad.append(f"stats.dropped {stats.dropped:,} != sum(Dropped.count) {self.dropped:,}")
        if sent is not None:
            read = stats.messages + stats.duplicates + stats.parse_errors
            if read != sent:
                bad.append(f"client read {read:,} frames, simulator sent {sent:,}")
        return bad
