"""NATS JetStream scale-out figures: ``python benches/nats_relay.py`` (a release build, with
``nats-server`` installed; it starts its own broker on a free port with a scratch store).

1. throughput end to end: simulator (unpaced) -> relay -> JetStream -> consumer, msg/s, and CPU
   per message of this process (simulator, relay and consumer together) and of the broker, and
   the bytes JetStream stores per message (from the broker's monitoring endpoint);
2. latency at 10k msg/s: the simulator's ``time_coinapi`` stamp to the consumer, p50/p99
   (the relay's read and publish, JetStream's store and the consumer's read together);
3. failover: two relays with one scope, one closed mid-stream: trades missing and repeated.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections import Counter
from typing import Any

import tickwire as tw

TYPES = ("trade", "quote", "book5", "index", "exrate")
ASSETS = ("USD", "USDT", "USDC", "EUR", "BTC")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Broker:
    def __init__(self) -> None:
        binary = shutil.which("nats-server") or "/usr/sbin/nats-server"
        self.store = tempfile.mkdtemp(prefix="tickwire-js-")
        self.port = free_port()
        self.http_port = free_port()
        self.proc = subprocess.Popen(
            [
                *(binary, "-js", "-a", "127.0.0.1", "-p", str(self.port)),
                *("-sd", self.store, "-m", str(self.http_port)),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=1) as s:
                    if s.recv(4).startswith(b"INFO"):
                        return
            except OSError:
                time.sleep(0.05)
        raise RuntimeError("nats-server did not start")

    @property
    def url(self) -> str:
        return f"nats://127.0.0.1:{self.port}"

    def cpu_s(self) -> float:
        with open(f"/proc/{self.proc.pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def stored(self) -> tuple[int, int]:
        """(messages, bytes) JetStream holds, over every stream."""
        url = f"http://127.0.0.1:{self.http_port}/jsz"
        with urllib.request.urlopen(url, timeout=10) as r:
            info = json.load(r)
        return int(info["messages"]), int(info["bytes"])

    def close(self) -> None:
        self.proc.terminate()
        self.proc.wait()
        shutil.rmtree(self.store, ignore_errors=True)


def feed(sim: Any, types: tuple[str, ...] = TYPES) -> tw.CoinAPI:
    return tw.CoinAPI(url=sim.url, data_types=types, assets=ASSETS)


def drain(stream: tw.Stream, want: int, deadline_s: float = 120.0) -> list[Any]:
    got: list[Any] = []
    deadline = time.monotonic() + deadline_s
    while len(got) < want and time.monotonic() < deadline:
        for m in stream.next_batch(timeout=0.5) or ():
            if not isinstance(m, (tw.Connected, tw.Gap)):
                got.append(m)
    return got


def throughput(total: int, shards: int = 1) -> None:
    broker = Broker()
    try:
        with tw.Simulator(rate=0, total=total, symbols=100, seed=1) as sim:
            cpu0, b0, t0 = time.process_time(), broker.cpu_s(), time.perf_counter()
            # Several shards split the scope by its types (the one list with several entries).
            relay = tw.relay(feed(sim), nats=broker.url, reconnect=None, shards=shards)
            while not relay.stats()["ready"]:
                time.sleep(0.01)
            with tw.connect(tw.Nats(broker.url)) as stream:
                # `total` counts generated events of every type; the scope takes fewer.
                got = drain(stream, total // 2)
                while not sim.stats().finished:
                    time.sleep(0.01)
                got += drain(stream, sum(map(len, sim.sent())) - len(got))
            elapsed = time.perf_counter() - t0
            cpu, bcpu = time.process_time() - cpu0, broker.cpu_s() - b0
            stats = relay.stats()
            relay.close()
            payload = stats["bytes"] / max(stats["published"], 1)
        n = len(got)
        stored, stored_bytes = broker.stored()
        print(
            f"throughput, {shards} shard(s): {n:,} messages ({total:,} events generated)"
            f" in {elapsed:.2f} s"
            f" = {n / elapsed:,.0f} msg/s;"
            f" CPU/msg: this process {cpu / n * 1e6:.2f} us (simulator+relay+consumer),"
            f" broker {bcpu / n * 1e6:.2f} us; stored {stored_bytes / max(stored, 1):.1f}"
            f" bytes/msg for a {payload:.1f}-byte payload; relay {stats}"
        )
    finally:
        broker.close()


def latency(rate: int, seconds: float) -> None:
    broker = Broker()
    try:
        total = int(rate * seconds)
        with tw.Simulator(rate=rate, total=total, symbols=100, seed=2) as sim:
            relay = tw.relay(feed(sim, ("trade",)), nats=broker.url, reconnect=None)
            while not relay.stats()["ready"]:
                time.sleep(0.01)
            with tw.connect(tw.Nats(broker.url, start="new")) as stream:
                got = drain(stream, total // 2)
                lag = stream.stats().lag_us
            relay.close()
        print(
            f"latency at {rate:,} msg/s ({len(got):,} trades): time_coinapi -> consumer"
            f" p50 {lag['p50']:.0f} us, p99 {lag['p99']:.0f} us"
        )
    finally:
        broker.close()


def failover(total: int) -> None:
    broker = Broker()
    try:
        with tw.Simulator(rate=5_000, total=total, symbols=50, seed=3) as sim:
            a = tw.relay(feed(sim, ("trade",)), nats=broker.url, reconnect=None)
            b = tw.relay(feed(sim, ("trade",)), nats=broker.url, reconnect=None)
            while sim.stats().open_connections < 2 or a.stats()["acked"] < total // 4:
                time.sleep(0.01)
            a.close()
            while not sim.stats().finished:
                time.sleep(0.01)
            trades = {r[3] for conn in sim.sent() for r in conn if r[0] == "trade"}
            with tw.connect(tw.Nats(broker.url)) as stream:
                got = drain(stream, len(trades))
                got += drain(stream, 1, deadline_s=1.0)
            deduplicated = b.stats()["deduplicated"]
            b.close()
        seen = Counter(m.uuid for m in got)
        missing = len(trades - set(seen))
        repeated = sum(c - 1 for c in seen.values())
        print(
            f"failover: {len(trades):,} trades, relay a closed after {total // 4:,}:"
            f" {missing} missing, {repeated} repeated ({deduplicated:,} deduplicated by JetStream)"
        )
    finally:
        broker.close()


def main() -> int:
    total = int(sys.argv[1]) if len(sys.argv) > 1 else 200_000
    throughput(total)
    throughput(total, shards=3)
    latency(10_000, 10.0)
    failover(20_000)
    return 0


if __name__ == "__main__":
    sys.exit(main())
