"""The connection machine's figures (issue 10's Done-when), each against a server in a process of
its own, with default options unless a figure says otherwise:

(a) a server that floods pings and reads nothing: seconds until the stream ends the connection,
    and seconds for ``close()`` to free the socket's fd (checked in ``/proc/self/fd``);
(b) a reconnect notice an hour ahead under ``make_before_break``, a trades-only simulator at
    ``--rate`` for ``--seconds``: RSS growth, the switch's delay after the notice, and trades lost
    or repeated (every trade uuid is the simulator's ``trade_uuid(seed, no)``, so the delivered
    ones are checked against every event number the simulator generated);
(c) a notice on every connection: connections in 3 s under ``immediate`` and
    ``make_before_break``;
(d) a refused port: seconds until ``with tw.connect(...)`` raises ``ConnectError``.

    python benches/machine_figures.py                 # every figure, 3 runs ((b): 1)
    python benches/machine_figures.py --only b --rate 200000 --seconds 60

Build with ``maturin develop --release`` first. Prints one line per run and the load average.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import socket
import statistics
import sys
import threading
import time
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

sys.path.insert(0, str(Path(__file__).resolve().parent))
# The raw servers' handshake and frames, shared with the hostile-server tests.
sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

from _simproc import SimProcess, rss_mb

import tickwire as tw
from _rawws import frame, upgrade


def load() -> str:
    return "load average " + " ".join(f"{x:.2f}" for x in os.getloadavg())


# --- raw servers (each runs in a child process) ---------------------------------------------


def _flood(conn: socket.socket, stop: threading.Event) -> None:
    ping = frame(9, b"p" * 125) * 64
    try:
        upgrade(conn)
        conn.settimeout(0.5)
        while not stop.is_set():
            try:
                conn.sendall(ping)
            except TimeoutError:
                continue
    except OSError:
        return


def _notice(conn: socket.socket, stop: threading.Event) -> None:
    try:
        upgrade(conn)
        conn.recv(65536)  # the hello
        before = time.strftime("%Y-%m-%dT%H:%M:%S.0000000Z", time.gmtime(time.time() + 1))
        notice = {"type": "reconnect", "within_seconds": 1, "before_time": before}
        conn.sendall(frame(1, json.dumps(notice).encode()))
        conn.sendall(frame(1, b'{"type":"hearbeat"}'))
        while not stop.is_set() and conn.recv(65536):
            pass
    except OSError:
        return


def _serve(pipe: Connection, kind: str) -> None:
    """Child: a listener whose connections `kind` serves; answers its port, then, on any
    message, how many connections it accepted, and exits."""
    listener = socket.socket()
    if kind == "flood":
        # A small receive buffer fills with the client's pongs in moments.
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    listener.bind(("127.0.0.1", 0))
    listener.listen(64)
    stop = threading.Event()
    accepted: list[socket.socket] = []
    target = _flood if kind == "flood" else _notice

    def accept() -> None:
        while True:
            try:
                conn, _ = listener.accept()
            except OSError:
                return
            accepted.append(conn)
            threading.Thread(target=target, args=(conn, stop), daemon=True).start()

    threading.Thread(target=accept, daemon=True).start()
    pipe.send(listener.getsockname()[1])
    pipe.recv()
    pipe.send(len(accepted))
    stop.set()
    listener.close()
    for c in accepted:
        c.close()


class RawServer:
    def __init__(self, kind: str) -> None:
        ctx = mp.get_context("spawn")
        self.pipe, child = ctx.Pipe()
        self.proc = ctx.Process(target=_serve, args=(child, kind), daemon=True)
        self.proc.start()
        self.port: int = self.pipe.recv()
        self.url = f"ws://127.0.0.1:{self.port}/v1/"

    def close(self) -> int:
        """Stops the server; how many connections it accepted."""
        self.pipe.send("count")
        n: int = self.pipe.recv()
        self.proc.join(10)
        return n


# --- (a) ping flood --------------------------------------------------------------------------


def socket_inode(remote_port: int) -> str | None:
    """The inode of this host's ESTABLISHED TCP socket whose remote port is `remote_port`."""
    for name in ("/proc/net/tcp", "/proc/net/tcp6"):
        with open(name) as f:
            for line in f.read().splitlines()[1:]:
                p = line.split()
                if int(p[2].rsplit(":", 1)[1], 16) == remote_port and p[3] == "01":
                    return p[9]
    return None


def holds_socket(inode: str) -> bool:
    """Whether this process still has an fd on the socket `inode`."""
    for fd in os.listdir("/proc/self/fd"):
        try:
            if os.readlink(f"/proc/self/fd/{fd}") == f"socket:[{inode}]":
                return True
        except OSError:
            continue
    return False


def flood_disconnect() -> float:
    srv = RawServer("flood")
    feed = tw.CoinAPI("k", url=srv.url, data_types=["trade"])
    started = time.monotonic()
    gone = None
    try:
        with tw.connect(feed) as stream:
            while gone is None and time.monotonic() - started < 60:
                batch = stream.next_batch(timeout=0.2) or []
                gone = next((m for m in batch if isinstance(m, tw.Disconnected)), None)
            elapsed = time.monotonic() - started
    finally:
        srv.close()
    if gone is None:
        raise SystemExit("the stream stayed wedged for 60 s")
    print(f"  ended after {elapsed:.2f} s: {gone.reason}")
    return elapsed


def flood_close() -> float:
    srv = RawServer("flood")
    feed = tw.CoinAPI("k", url=srv.url, data_types=["trade"])
    stream = tw.connect(feed)
    try:
        stream.__enter__()
        inode = None
        # The pongs back up until tickwire's flush blocks (within a second or two); 5 s is
        # well inside the 10 s write_timeout.
        until = time.monotonic() + 5
        while time.monotonic() < until:
            stream.next_batch(timeout=0.1)
            inode = inode or socket_inode(srv.port)
        if inode is None or not holds_socket(inode):
            raise SystemExit("no connection to close")
        started = time.monotonic()
        stream.close()
        while holds_socket(inode) and time.monotonic() - started < 30:
            time.sleep(0.001)
        took = time.monotonic() - started
    finally:
        srv.close()
    print(f"  close() freed the fd after {took:.3f} s")
    return took


# --- (b) an hour-ahead notice ----------------------------------------------------------------

M1, M2, M3 = 0x9E3779B97F4A7C15, 0xBF58476D1CE4E5B9, 0x94D049BB133111EB


def mix64(z: pa.Array) -> pa.Array:
    """The simulator's SplitMix64 finaliser over a uint64 array (arrow's unsigned arithmetic
    wraps, as Rust's `wrapping_*` do)."""

    def u64(v: int) -> pa.Scalar:
        return pa.scalar(v, pa.uint64())

    z = pc.add(z, u64(M1))
    z = pc.multiply(pc.bit_wise_xor(z, pc.shift_right(z, u64(30))), u64(M2))
    z = pc.multiply(pc.bit_wise_xor(z, pc.shift_right(z, u64(27))), u64(M3))
    return pc.bit_wise_xor(z, pc.shift_right(z, u64(31)))


def shown_uuid_high(generated: int, seed: int = 0) -> pa.Array:
    """The high 64 bits of each trade uuid the simulator made (event numbers 0..generated),
    as its text shows them (UUIDv4: the version nibble is forced to 4)."""
    no = pa.array(range(generated), pa.uint64())
    hi = mix64(pc.bit_wise_xor(pa.scalar(seed, pa.uint64()), mix64(no)))
    return pc.bit_wise_or(
        pc.bit_wise_and(hi, pa.scalar(~0xF000 & (2**64 - 1), pa.uint64())),
        pa.scalar(0x4000, pa.uint64()),
    )


def uuid_high(u: str) -> int:
    return int(u[0:8] + u[9:13] + u[14:18], 16)


def notice_hour_ahead(rate: int, seconds: float, notice_after: float) -> dict[str, Any]:
    total = int(rate * seconds)
    sim = SimProcess(rate=rate, symbols=100, total=total, generate=["trade"])
    url = sim.start(reconnect_notice_after_s=notice_after, reconnect_within_s=3600.0)
    feed = tw.CoinAPI(url=url, data_types=["trade"], heartbeat=True)
    # Room for every trade's uuid (high 64 bits), touched before the first RSS sample, so the
    # check costs the measurement nothing.
    seen = pa.allocate_buffer(8 * total, resizable=False)
    view = memoryview(seen).cast("Q")
    for i in range(0, len(view), 512):
        view[i] = 0
    n = 0
    notice_at = switched_at = None
    events: list[str] = []
    rss: list[float] = []
    start_rss = rss_mb()
    with tw.connect(feed, reconnect=tw.ReconnectPolicy(on_notice="make_before_break")) as stream:
        started = time.monotonic()
        deadline = started + seconds + 60
        last_sample = 0.0
        while time.monotonic() < deadline:
            batch = stream.next_batch(timeout=0.2)
            now = time.monotonic()
            if now - last_sample >= 0.25:
                rss.append(rss_mb())
                last_sample = now
            if batch is None:
                if sim.finished() and stream.stats().queue_depth == 0:
                    break
                continue
            for m in batch:
                if isinstance(m, tw.Trade):
                    if n < total:
                        view[n] = uuid_high(m.uuid)
                    n += 1
                elif not isinstance(m, tw.Heartbeat):
                    events.append(type(m).__name__)
                    if isinstance(m, tw.ReconnectNotice) and notice_at is None:
                        notice_at = now
                    if isinstance(m, tw.Switched) and switched_at is None:
                        switched_at = now
        took = time.monotonic() - started
    generated = sim_generated(sim)
    sim.close()
    delivered = pa.Array.from_buffers(pa.uint64(), min(n, total), [None, seen])
    expected = shown_uuid_high(generated)
    got = pc.is_in(expected, value_set=delivered)
    positions = pc.indices_nonzero(got).to_pylist()
    first = positions[0] if positions else 0
    unique = len(pc.unique(delivered))
    foreign = len(delivered) - pc.sum(pc.is_in(delivered, value_set=expected)).as_py()
    return {
        "rate": n / took,
        "delivered": n,
        "generated": generated,
        "repeated": n - unique,
        # Event numbers from the first delivered one to the last generated, not delivered.
        "lost": (generated - first) - len(positions),
        "foreign": foreign,
        "switch_s": None if notice_at is None or switched_at is None else switched_at - notice_at,
        "rss_start": start_rss,
        "rss_peak": max(rss),
        "events": events,
        "took": took,
    }


def sim_generated(sim: SimProcess) -> int:
    """Events the simulator generated (with ``total=``, final once it finished)."""
    sim.conn.send(("generated",))
    g: int = sim.conn.recv()
    return g


# --- (c) a notice on every connection, (d) a refused port ------------------------------------


def notice_every_connection(on_notice: str) -> int:
    srv = RawServer("notice")
    feed = tw.CoinAPI("k", url=srv.url, data_types=["trade"])
    with tw.connect(feed, reconnect=tw.ReconnectPolicy(on_notice=on_notice)) as stream:
        started = time.monotonic()
        while time.monotonic() - started < 3:
            stream.next_batch(timeout=0.1)
    return srv.close()


def refused_port() -> float:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    feed = tw.CoinAPI(url=f"ws://127.0.0.1:{port}/v1/")
    started = time.monotonic()
    try:
        with tw.connect(feed):
            pass
    except tw.ConnectError as e:
        took = time.monotonic() - started
        print(f"  ConnectError after {took:.3f} s: {e}")
        return took
    raise SystemExit("entering the stream did not raise")


def summary(name: str, values: list[float], unit: str, bound: str) -> None:
    # Counts (no unit) print as whole numbers, times to the millisecond.
    fmt = ".3f" if unit else ".0f"
    runs = ", ".join(f"{v:{fmt}}" for v in values)
    median = f"{statistics.median(values):{fmt}}"
    print(f"{name}: median {median} {unit} (runs {runs}; {bound}); {load()}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--only", default="abcd", help="which figures, e.g. 'ad'")
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--rate", type=int, default=200_000, help="(b): simulator msg/s")
    ap.add_argument("--seconds", type=float, default=60.0, help="(b): length of the run")
    ap.add_argument("--notice-after", type=float, default=5.0, help="(b): seconds in")
    args = ap.parse_args()
    print(f"tickwire {tw.__version__}, io {tw._core.io_mode()}, {load()}")
    if "a" in args.only:
        ends = [flood_disconnect() for _ in range(args.runs)]
        summary("(a) ping flood: connection ended after", ends, "s", "target <= 20 s")
        frees = [flood_close() for _ in range(args.runs)]
        summary("(a) ping flood: close() freed the fd after", frees, "s", "close_timeout 2 s")
    if "b" in args.only:
        r = notice_hour_ahead(args.rate, args.seconds, args.notice_after)
        print(
            f"(b) notice an hour ahead, make_before_break, {args.seconds:.0f} s at "
            f"{r['rate']:,.0f} trades/s achieved (asked {args.rate:,}): RSS "
            f"{r['rss_start']:.1f} -> peak {r['rss_peak']:.1f} MB "
            f"(+{r['rss_peak'] - r['rss_start']:.1f}, target <= 96); switch "
            f"{r['switch_s'] if r['switch_s'] is None else round(r['switch_s'], 3)} s after "
            f"the notice (target <= 5); {r['delivered']:,} trades delivered of "
            f"{r['generated']:,} generated: lost {r['lost']}, repeated {r['repeated']}, "
            f"foreign {r['foreign']}; events {r['events']}; {load()}"
        )
    if "c" in args.only:
        for mode in ("immediate", "make_before_break"):
            counts = [float(notice_every_connection(mode)) for _ in range(args.runs)]
            summary(
                f"(c) notice on every connection, {mode}: connections in 3 s",
                counts,
                "",
                "target <= 12",
            )
    if "d" in args.only:
        waits = [refused_port() for _ in range(args.runs)]
        summary("(d) refused port: ConnectError after", waits, "s", "target <= 15 s")


if __name__ == "__main__":
    main()
