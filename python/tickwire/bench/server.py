"""The benchmark's load process: ``python -m tickwire.bench.server --load L --rate R --cpu C``.

Pins itself (every thread, before the server starts its runtime), serves CoinAPI on 127.0.0.1
(any free port) and prints one JSON line ``{"url": ...}``. The load is either the bundled
simulator (``--load sim``: generates the market as it goes, stamps ``time_coinapi`` at
generation) or the load server (``--load prerendered``: 200,000 pre-rendered messages sent over and
over, sequence numbers continuing gap-free from pass to pass; several times faster than the
simulator, so a client's own ceiling shows, but its time stamps repeat: no latency with it). It
then samples its own CPU time every 100 ms until its stdin closes (the harness closes it after the
client is done) or ``--max-seconds`` pass, and prints a second JSON line: the server's counters
and the CPU samples, so the harness can tell whether the server was the bottleneck.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import select
import sys
import time
from typing import Any

from ._common import pin_process, thread_cpus

__all__ = ["main"]

#: Distinct messages the load server renders (one pass); it then repeats them.
PRERENDERED_MESSAGES = 200_000


def _cpu() -> float:
    ru = resource.getrusage(resource.RUSAGE_SELF)
    return ru.ru_utime + ru.ru_stime


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m tickwire.bench.server",
        description="The pinned load server process of tickwire's benchmark.",
    )
    p.add_argument(
        "--load",
        choices=("sim", "prerendered"),
        default="sim",
        help="sim: the bundled simulator; prerendered: pre-rendered messages, repeated (sim)",
    )
    p.add_argument(
        "--rate",
        type=int,
        default=0,
        help="sim: events/s, prerendered: messages/s per connection; 0 = as fast as the socket (0)",
    )
    p.add_argument("--symbols", type=int, default=100, help="simulated symbols (100)")
    p.add_argument("--seed", type=int, default=0, help="generator seed (0)")
    p.add_argument(
        "--compression",
        action="store_true",
        help="prerendered only: accept permessage-deflate when the client offers it",
    )
    p.add_argument("--cpu", type=int, help="pin every thread of this process to this CPU")
    p.add_argument("--max-seconds", type=float, default=600.0, help="stop after this long (600)")
    return p


def start(args: argparse.Namespace) -> Any:
    """The load server (a context manager with ``.url`` and ``.stats()``), started."""
    # Imported after pinning: the server's threads inherit the mask.
    import tickwire as tw
    from tickwire import _core

    if args.load == "prerendered":
        return _core.LoadServer(
            messages=PRERENDERED_MESSAGES,
            symbols=args.symbols,
            seed=args.seed,
            rate=args.rate,
            compression=args.compression,
        )
    # No send record: a benchmark runs long and must not grow the server's memory. Paced runs
    # spin, so each message is stamped and sent at its own time (the timer's 1 ms bursts would
    # make the latency columns measure the bursts).
    return tw.Simulator(
        rate=args.rate,
        symbols=args.symbols,
        seed=args.seed,
        record=False,
        spin_pacing=args.rate > 0,
    )


def counters(load: str, server: Any) -> dict[str, Any]:
    """The server's counters, in one shape for both loads (``bytes_sent``: bytes of the
    frames as sent; the load server adds the JSON payload bytes before compression)."""
    if load == "prerendered":
        st: dict[str, int] = server.stats()
        return {
            "connections": st["connections"],
            "messages_sent": st["messages_sent"],
            "bytes_sent": st["wire_bytes"],
            "wire_bytes": st["wire_bytes"],
            "payload_bytes": st["payload_bytes"],
        }
    sim = server.stats()
    return {
        "connections": sim.connections,
        "messages_sent": sim.messages_sent,
        "bytes_sent": sim.bytes_sent,
        "generated": sim.generated,
    }


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.compression and args.load != "prerendered":
        parser.error("--compression needs --load prerendered (the simulator does not negotiate it)")
    pin_process(args.cpu)
    samples: list[tuple[float, float]] = []
    t0 = time.monotonic()
    with start(args) as server:
        pin_process(args.cpu)
        threads, cpus = thread_cpus()
        hello = {"url": server.url, "load": args.load, "threads": threads, "cpus": cpus}
        sys.stdout.write(json.dumps(hello) + "\n")
        sys.stdout.flush()
        while time.monotonic() - t0 < args.max_seconds:
            samples.append((time.time(), _cpu()))
            readable, _, _ = select.select([sys.stdin], [], [], 0.1)
            if readable and not os.read(sys.stdin.fileno(), 4096):
                break  # EOF: the harness is done with us
        samples.append((time.time(), _cpu()))
        out: dict[str, Any] = {
            "load": args.load,
            **counters(args.load, server),
            "max_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,  # KiB
            "cpu_samples": samples,
        }
    sys.stdout.write(json.dumps(out) + "\n")
    sys.stdout.flush()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
