"""One benchmark client, in its own process: ``python -m tickwire.bench.client PEER URL SECONDS``.

It connects with one stack (tickwire or a peer), subscribes to trade, quote, book5 and index,
does the same per-message work as every other client, and prints one JSON line of results.

The per-message work, identical for every client except ``tickwire-count`` and
``tickwire-arrow``:

* parse the frame (the peer's JSON parser; tickwire parses in Rust),
* read ``type``, the key (``symbol_id``, or ``index_id`` for index), ``sequence`` and a price
  (trade ``price``, quote ``ask_price``, book5 best ask, index ``value``),
* count it, and check the sequence per (type, key): anything but +1 counts as a gap,
* add trade prices to a checksum,
* with ``--latency``: read ``time_coinapi`` (peers parse the ISO string; tickwire has it as int
  ns already) and record ``time.time_ns() - time_coinapi``.

``tickwire-count`` only counts ``len(batch)``. ``tickwire-arrow`` does the work per batch, not per
message: ``batch.to_arrow()``, the sum of the trade ``price`` column into the checksum and of the
quote/book5 best ask and index ``value`` columns into ``column_sum`` (pyarrow.compute); its
sequence gaps are the ones the Rust core counted (``stream.stats().gaps``).

Memory: the resident set size (``/proc/self/statm``) is read at the start mark, every second
during the measurement and at the end mark (``rss_start_mb``, ``rss_end_mb``, ``rss_growth``,
``rss_samples``).

Measurement: ``--warmup`` seconds after the subscription, then ``SECONDS`` measured (a timer
thread takes both snapshots), or with ``--total N`` from the first data message to the N-th.
CPU time is the process's own (all threads) from ``getrusage``.
"""

from __future__ import annotations

import argparse
import asyncio
import calendar
import json
import os
import resource
import sys
import threading
import time
import traceback
from array import array
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from ._common import DATA_TYPES, PEERS_BY_NAME, dist_version, percentile, pin_process, thread_cpus

__all__ = ["main"]

HELLO = json.dumps(
    {"type": "hello", "heartbeat": False, "subscribe_data_type": list(DATA_TYPES)},
    separators=(",", ":"),
)


# -- time stamps --------------------------------------------------------------------------------

_MINUTE_NS: dict[str, int] = {}
_FRAC_SCALE = tuple(10 ** (9 - k) for k in range(10))


def iso_ns(s: str) -> int:
    """``2026-01-02T03:04:05.1234567Z`` -> int ns since the epoch (UTC).

    What a careful peer would write for CoinAPI's 7-digit timestamps: ``datetime`` keeps only
    microseconds. The ``YYYY-MM-DDTHH:MM`` prefix is converted once per minute and cached.
    """
    base = _MINUTE_NS.get(s[:16])
    if base is None:
        t = time.strptime(s[:16], "%Y-%m-%dT%H:%M")
        base = calendar.timegm(t) * 1_000_000_000
        if len(_MINUTE_NS) > 1024:
            _MINUTE_NS.clear()
        _MINUTE_NS[s[:16]] = base
    ns = base + int(s[17:19]) * 1_000_000_000
    if len(s) > 21:  # ".<digits>Z"
        frac = s[20:-1]
        ns += int(frac) * _FRAC_SCALE[len(frac)]
    return ns


# -- memory --------------------------------------------------------------------------------------

_PAGE = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096


def rss_mb() -> float:
    """This process's resident set size in MiB (``/proc/self/statm``); NaN off Linux."""
    try:
        with open("/proc/self/statm", "rb") as f:
            resident = int(f.read().split()[1])
    except (OSError, IndexError, ValueError):
        return float("nan")
    return resident * _PAGE / 2**20


# -- the per-message work ------------------------------------------------------------------------


@dataclass
class Mark:
    """A snapshot of the counters and the process's resource usage."""

    perf: float
    unix: float
    cpu: float
    vcsw: int
    ivcsw: int
    messages: int
    nbytes: int
    nlat: int
    rss_mb: float


class Tally:
    """Counters and sequence checks; one per client process."""

    __slots__ = (
        "checksum",
        "end",
        "errors",
        "first_error",
        "gaps",
        "last",
        "lat",
        "limit",
        "messages",
        "nbytes",
        "other",
        "rss",
        "start",
        "stop",
        "threads",
        "trigger",
    )

    def __init__(self, limit: int | None) -> None:
        self.messages = 0
        self.nbytes = 0
        self.gaps = 0
        self.other = 0
        self.errors = 0
        self.first_error: str | None = None
        self.checksum = 0.0
        self.last: dict[tuple[str, str], int] = {}
        self.lat = array("q")
        #: (perf_counter, RSS MiB): at both marks and every second between them.
        self.rss: list[tuple[float, float]] = []
        self.limit = limit
        # With a total, `data` calls `_triggered` at message 1 (start) and at `limit` (end);
        # -1 never matches, so the duration mode pays the same single comparison.
        self.trigger = 1 if limit is not None else -1
        self.start: Mark | None = None
        self.end: Mark | None = None
        self.stop = False
        #: Threads and their allowed CPUs, read at the end mark (the client still running).
        self.threads: tuple[int, list[int]] | None = None

    def data(self, t: str, key: str, seq: int, price: float) -> None:
        """One market-data message: count, sequence check, checksum."""
        self.messages += 1
        k = (t, key)
        prev = self.last.get(k)
        if prev is not None and seq != prev + 1:
            self.gaps += 1
        self.last[k] = seq
        if t == "trade":
            self.checksum += price
        if self.messages == self.trigger:
            self._triggered()

    def count(self, n: int) -> None:
        """``n`` messages counted without looking at them (``tickwire-count``)."""
        self.messages += n
        if self.trigger > 0 and self.messages >= self.trigger:
            self._triggered()

    def stamp(self, time_coinapi_ns: int) -> None:
        """Latency of one message: now minus the simulator's generation stamp."""
        self.lat.append(time.time_ns() - time_coinapi_ns)

    def notice(self, t: str, message: str | None) -> None:
        """A message that is not market data (a server error, a tickwire event)."""
        self.other += 1
        if t == "error":
            self.errors += 1
            if self.first_error is None:
                self.first_error = message

    def mark(self) -> Mark:
        ru = resource.getrusage(resource.RUSAGE_SELF)
        m = Mark(
            perf=time.perf_counter(),
            unix=time.time(),
            cpu=ru.ru_utime + ru.ru_stime,
            vcsw=ru.ru_nvcsw,
            ivcsw=ru.ru_nivcsw,
            messages=self.messages,
            nbytes=self.nbytes,
            nlat=len(self.lat),
            rss_mb=rss_mb(),
        )
        self.rss.append((m.perf, m.rss_mb))
        return m

    def sample_rss(self) -> None:
        """One RSS sample between the marks (from the clock thread)."""
        self.rss.append((time.perf_counter(), rss_mb()))

    def _triggered(self) -> None:
        if self.start is None:
            self.start = self.mark()
            self.trigger = self.limit if self.limit is not None and self.limit > 1 else -1
            if self.trigger == -1:
                self._finish()
        else:
            self._finish()

    def _finish(self) -> None:
        self.end = self.mark()
        self.trigger = -1
        self.threads = thread_cpus()
        self.stop = True


class Clock:
    """Duration mode: a thread takes the start mark after the warm-up and the end mark after
    the measured seconds, then sets ``tally.stop``. Receive loops check only ``tally.stop``.
    In both modes the thread samples the RSS every second between the marks."""

    def __init__(self, tally: Tally, warmup: float, seconds: float | None) -> None:
        self._tally = tally
        self._warmup = warmup
        self._seconds = seconds
        self._cancel = threading.Event()
        self._thread = threading.Thread(target=self._run, name="bench-clock", daemon=True)

    def begin(self) -> None:
        """Called once the subscription is sent."""
        self._thread.start()

    def cancel(self) -> None:
        self._cancel.set()

    def _run(self) -> None:
        tally = self._tally
        if self._seconds is None:  # --total: the receive loop takes the marks
            while not self._cancel.wait(1.0) and tally.end is None:
                if tally.start is not None:
                    tally.sample_rss()
            return
        if self._cancel.wait(self._warmup):
            return
        tally.start = tally.mark()
        deadline = tally.start.perf + self._seconds
        while (left := deadline - time.perf_counter()) > 0:
            if self._cancel.wait(min(1.0, left)):
                return
            if time.perf_counter() < deadline:
                tally.sample_rss()
        tally.end = tally.mark()
        tally.threads = thread_cpus()
        tally.stop = True


# -- handlers: one frame or message -> Tally ----------------------------------------------------

DictHandler = Callable[[dict[str, Any]], None]


def dict_handler(tally: Tally, latency: bool) -> DictHandler:
    """The work on a message parsed into a dict (json, orjson)."""
    data = tally.data
    stamp = tally.stamp if latency else None

    def handle(d: dict[str, Any]) -> None:
        t = d["type"]
        if t == "trade":
            data(t, d["symbol_id"], d["sequence"], d["price"])
        elif t == "quote":
            data(t, d["symbol_id"], d["sequence"], d["ask_price"])
        elif t == "book5":
            data(t, d["symbol_id"], d["sequence"], d["asks"][0]["price"])
        elif t == "index":
            data(t, d["index_id"], d["sequence"], d["value"])
        else:
            tally.notice(t, d.get("message"))
            return
        if stamp is not None:
            stamp(iso_ns(d["time_coinapi"]))

    return handle


def msgspec_handler(tally: Tally, latency: bool) -> Callable[[Any], None]:
    """msgspec's idiomatic fast path: a tagged union of Structs naming only the fields used
    (the decoder skips the rest); anything else falls back to a generic decode."""
    import msgspec  # type: ignore[import-not-found, unused-ignore]  # optional peer library

    # defstruct rather than class statements: this module uses postponed annotations, which
    # msgspec cannot resolve for classes local to a function.
    level = msgspec.defstruct("Level", [("price", float), ("size", float)])
    common = [("sequence", int), ("time_coinapi", str)]

    def struct(tag: str, fields: list[tuple[str, Any]]) -> Any:
        return msgspec.defstruct(f"M_{tag}", fields, tag_field="type", tag=tag)

    MTrade = struct("trade", [("symbol_id", str), *common, ("price", float)])
    MQuote = struct("quote", [("symbol_id", str), *common, ("ask_price", float)])
    # `level` is a class made at run time: a valid type to msgspec, not to mypy.
    MBook = struct("book5", [("symbol_id", str), *common, ("asks", list[level])])  # type: ignore[valid-type]
    MIndex = struct("index", [("index_id", str), *common, ("value", float)])

    decode = msgspec.json.Decoder(MTrade | MQuote | MBook | MIndex).decode
    generic = msgspec.json.Decoder().decode
    invalid = msgspec.ValidationError
    data = tally.data
    stamp = tally.stamp if latency else None

    def handle(payload: Any) -> None:
        try:
            m = decode(payload)
        except invalid:
            d = generic(payload)
            tally.notice(str(d.get("type")), d.get("message"))
            return
        cls = type(m)
        if cls is MTrade:
            data("trade", m.symbol_id, m.sequence, m.price)
        elif cls is MQuote:
            data("quote", m.symbol_id, m.sequence, m.ask_price)
        elif cls is MBook:
            data("book5", m.symbol_id, m.sequence, m.asks[0].price)
        else:
            data("index", m.index_id, m.sequence, m.value)
        if stamp is not None:
            stamp(iso_ns(m.time_coinapi))

    return handle


# -- the clients -------------------------------------------------------------------------------


@dataclass
class Run:
    url: str
    tally: Tally
    clock: Clock
    latency: bool
    cpu: int | None
    #: tickwire clients offer permessage-deflate (``--compression``).
    compression: bool = False


def _loads(parser: str) -> Callable[[Any], Any]:
    if parser == "orjson":
        import orjson  # type: ignore[import-not-found, unused-ignore]  # optional peer library

        loads: Callable[[Any], Any] = orjson.loads
        return loads
    return json.loads


#: ``tickwire-spin``'s busy_poll: longer than the gap between messages at 10k msg/s, so at
#: paced rates it never sleeps (a CPU's worth of spinning for the lowest latency).
SPIN_S = 0.001


def run_tickwire(run: Run, *, count_only: bool, busy_poll: float = 0.0) -> dict[str, Any]:
    import tickwire as tw

    tally = run.tally
    feed = tw.CoinAPI(url=run.url, data_types=DATA_TYPES, heartbeat=False)
    # Deflate only with --compression (against the load server; the simulator negotiates none
    # and no peer asks for it); reconnect=None so a dropped connection ends the run instead of
    # being papered over.
    with tw.connect(feed, reconnect=None, compression=run.compression, busy_poll=busy_poll) as s:
        pin_process(run.cpu)
        run.clock.begin()
        if count_only:
            for batch in s:
                tally.count(len(batch))
                if tally.stop:
                    break
        else:
            handle = tickwire_handler(tally, run.latency)
            for batch in s:
                for m in batch:
                    handle(m)
                    if tally.stop:
                        break
                if tally.stop:
                    break
        out = _tickwire_stats(s.stats())
    if count_only:
        tally.gaps = int(out["core_gaps"])  # Python never looked: the core's check counts
    return out


def tickwire_handler(tally: Tally, latency: bool) -> Callable[[Any], None]:
    """The work on one tickwire message (attributes of the frozen message objects)."""
    import tickwire as tw

    data = tally.data
    stamp = tally.stamp if latency else None
    trade, quote, book, index, server_error = tw.Trade, tw.Quote, tw.Book, tw.Index, tw.ServerError

    def handle(m: Any) -> None:
        if isinstance(m, trade):
            data("trade", m.symbol_id, m.sequence, m.price)
        elif isinstance(m, quote):
            data("quote", m.symbol_id, m.sequence, m.ask_price)
        elif isinstance(m, book):
            data("book5", m.symbol_id, m.sequence, m.asks[0][0])
        elif isinstance(m, index):
            data("index", m.index_id, m.sequence, m.value)
        else:
            tally.notice(m.type, m.message if isinstance(m, server_error) else None)
            return
        if stamp is not None:
            stamp(m.time_coinapi)

    return handle


async def run_tickwire_async(run: Run) -> dict[str, Any]:
    import tickwire as tw

    tally = run.tally
    feed = tw.CoinAPI(url=run.url, data_types=DATA_TYPES, heartbeat=False)
    handle = tickwire_handler(tally, run.latency)
    async with tw.connect(feed, reconnect=None, compression=run.compression) as s:
        pin_process(run.cpu)
        run.clock.begin()
        async for batch in s:
            for m in batch:
                handle(m)
                if tally.stop:
                    break
            if tally.stop:
                break
        return _tickwire_stats(s.stats())


def run_tickwire_arrow(run: Run) -> dict[str, Any]:
    """Columnar: per batch, ``to_arrow()`` and column sums in pyarrow; no per-message Python.

    Counts ``len(batch)`` (like ``tickwire-count``, so with ``--total`` it stops at the end of
    the batch that reaches N); the sequence check is the core's (``stats().gaps``)."""
    # Optional (a peer-side dependency); untyped where installed, absent elsewhere.
    import pyarrow as pa  # type: ignore[import-untyped, import-not-found, unused-ignore]
    import pyarrow.compute as pc  # type: ignore[import-untyped, import-not-found, unused-ignore]

    import tickwire as tw

    tally = run.tally
    record_batch, total = pa.record_batch, pc.sum

    def column_sum(table: Any, column: str) -> float:
        value = total(record_batch(table).column(column)).as_py()
        return float(value) if value is not None else 0.0

    # Best ask of quotes and book5, index values: summed so the columns are really read.
    others = (("quote", "ask_price"), ("book5", "ask_price"), ("index", "value"))
    other_sum = 0.0
    feed = tw.CoinAPI(url=run.url, data_types=DATA_TYPES, heartbeat=False)
    with tw.connect(feed, reconnect=None, compression=run.compression) as s:
        pin_process(run.cpu)
        run.clock.begin()
        for batch in s:
            tables = batch.to_arrow()
            trade = tables.get("trade")
            if trade is not None:
                tally.checksum += column_sum(trade, "price")
            for name, column in others:
                table = tables.get(name)
                if table is not None:
                    other_sum += column_sum(table, column)
            tally.count(len(batch))
            if tally.stop:
                break
        out = _tickwire_stats(s.stats())
    tally.gaps = int(out["core_gaps"])
    out["column_sum"] = other_sum
    return out


def _tickwire_stats(st: Any) -> dict[str, Any]:
    import tickwire as tw

    return {
        "io_mode": tw.io_mode(),
        "core_messages": st.messages,
        "core_bytes": st.bytes,
        "core_batches": st.batches,
        "core_gaps": st.gaps,
        "core_duplicates": st.duplicates,
        "core_dropped": st.dropped,
        "core_parse_errors": st.parse_errors,
        "core_latency_us": dict(st.latency_us),
    }


async def run_websockets(run: Run, parser: str) -> dict[str, Any]:
    # websockets' asyncio client, compression off (the simulator offers none anyway), frames
    # taken as bytes (decode=False): both parsers accept bytes, so no str round trip.
    from websockets.asyncio.client import connect  # type: ignore[import-not-found, unused-ignore]

    tally = run.tally
    loads = _loads(parser)
    handle = dict_handler(tally, run.latency)
    async with connect(run.url, compression=None) as ws:
        await ws.send(HELLO)
        run.clock.begin()
        recv = ws.recv
        while not tally.stop:
            frame = await recv(decode=False)
            tally.nbytes += len(frame)
            handle(loads(frame))
    return {}


async def run_aiohttp(run: Run) -> dict[str, Any]:
    import aiohttp  # type: ignore[import-not-found, unused-ignore]  # optional peer library

    tally = run.tally
    loads = _loads("orjson")
    handle = dict_handler(tally, run.latency)
    text = aiohttp.WSMsgType.TEXT
    async with (
        aiohttp.ClientSession() as session,
        session.ws_connect(run.url, autoping=True, compress=0) as ws,
    ):
        await ws.send_str(HELLO)
        run.clock.begin()
        async for msg in ws:
            if msg.type == text:
                data = msg.data
                tally.nbytes += len(data)  # str of ASCII JSON: characters == bytes
                handle(loads(data))
            else:
                break  # close, closing or error frames end the stream
            if tally.stop:
                break
    return {}


async def run_picows(run: Run, parser: str) -> dict[str, Any]:
    # picows' callback API: on_ws_frame is called from the protocol's data_received; the
    # payload memoryview is valid during the callback, which is all the parser needs.
    import picows  # type: ignore[import-not-found, unused-ignore]  # optional peer library

    tally = run.tally
    text = picows.WSMsgType.TEXT
    close = picows.WSMsgType.CLOSE
    hello = HELLO.encode()
    clock = run.clock

    # Subclassing needs the real picows; without it this function is never called.
    class Listener(picows.WSListener):  # type: ignore[misc, unused-ignore]
        def on_ws_connected(self, transport: Any) -> None:
            transport.send(text, hello)
            clock.begin()

    if parser == "msgspec":
        handle = msgspec_handler(tally, run.latency)

        class Frames(Listener):
            def on_ws_frame(self, transport: Any, frame: Any) -> None:
                # Frames already read in the same data_received call keep coming after
                # disconnect(); `stop` makes the client ignore them, like the other loops.
                if frame.msg_type == text and not tally.stop:
                    tally.nbytes += frame.payload_size
                    handle(frame.get_payload_as_memoryview())  # decodes inside
                elif tally.stop or frame.msg_type == close:
                    transport.disconnect()

    else:
        loads = _loads("orjson")
        handle_dict = dict_handler(tally, run.latency)

        class Frames(Listener):  # type: ignore[no-redef]  # one of two variants
            def on_ws_frame(self, transport: Any, frame: Any) -> None:
                # Frames already read in the same data_received call keep coming after
                # disconnect(); `stop` makes the client ignore them, like the other loops.
                if frame.msg_type == text and not tally.stop:
                    tally.nbytes += frame.payload_size
                    handle_dict(loads(frame.get_payload_as_memoryview()))
                elif tally.stop or frame.msg_type == close:
                    transport.disconnect()

    transport, _ = await picows.ws_connect(Frames, run.url)
    await transport.wait_disconnected()
    return {}


def run_websocket_client(run: Run) -> dict[str, Any]:
    # websocket-client's blocking WebSocket.recv loop. skip_utf8_validation=True is the
    # library's documented speed option: without wsaccel its validator is pure Python; recv()
    # still decodes the text frame to str (which checks UTF-8 in C).
    import websocket  # type: ignore[import-not-found, unused-ignore]  # optional peer library

    tally = run.tally
    loads = _loads("orjson")
    handle = dict_handler(tally, run.latency)
    ws = websocket.create_connection(run.url, skip_utf8_validation=True, timeout=30)
    try:
        ws.send(HELLO)
        run.clock.begin()
        recv = ws.recv
        while not tally.stop:
            frame = recv()
            if not frame:  # "" after a close frame
                break
            tally.nbytes += len(frame)
            handle(loads(frame))
    finally:
        ws.close(timeout=1)
    return {}


def run_peer(name: str, run: Run) -> dict[str, Any]:
    """Runs one client to the end of its measurement; returns client-specific extras."""
    if name == "tickwire":
        return run_tickwire(run, count_only=False)
    if name == "tickwire-spin":
        return run_tickwire(run, count_only=False, busy_poll=SPIN_S)
    if name == "tickwire-count":
        return run_tickwire(run, count_only=True)
    if name == "tickwire-arrow":
        return run_tickwire_arrow(run)
    if name == "tickwire-async":
        return asyncio.run(run_tickwire_async(run))
    if name == "websockets-json":
        return asyncio.run(run_websockets(run, "json"))
    if name == "websockets-orjson":
        return asyncio.run(run_websockets(run, "orjson"))
    if name == "aiohttp-orjson":
        return asyncio.run(run_aiohttp(run))
    if name == "picows-orjson":
        return asyncio.run(run_picows(run, "orjson"))
    if name == "picows-msgspec":
        return asyncio.run(run_picows(run, "msgspec"))
    if name == "websocket-client-orjson":
        return run_websocket_client(run)
    raise ValueError(f"unknown peer {name!r}")


# -- results -------------------------------------------------------------------------------------


def results(name: str, tally: Tally, extra: dict[str, Any], latency: bool) -> dict[str, Any]:
    """The JSON line: window rates, CPU, validation counters, latency percentiles."""
    start, end = tally.start, tally.end
    out: dict[str, Any] = {"peer": name, "ok": False, "error": None}
    out.update(
        total_messages=tally.messages,
        gaps=tally.gaps,
        other=tally.other,
        server_errors=tally.errors,
        first_server_error=tally.first_error,
        checksum=tally.checksum,
    )
    out.update(extra)
    out.update(_memory(tally))
    if start is None or end is None:
        out["error"] = (
            "the stream ended before the measurement did"
            + (f" (server error: {tally.first_error})" if tally.first_error else "")
            + f"; {tally.messages} messages counted"
        )
        return out
    n = end.messages - start.messages
    secs = end.perf - start.perf
    cpu = end.cpu - start.cpu
    if name.startswith("tickwire"):
        # Python never sees tickwire's frame sizes; use the core's average payload size.
        core_n, core_b = extra.get("core_messages", 0), extra.get("core_bytes", 0)
        per_msg = core_b / core_n if core_n else float("nan")
        nbytes = n * per_msg
    else:
        nbytes = float(end.nbytes - start.nbytes)
    out.update(
        ok=n > 0 and tally.gaps == 0,
        messages=n,
        seconds=secs,
        window_unix=[start.unix, end.unix],
        msg_per_s=n / secs if secs > 0 else 0.0,
        mb_per_s=nbytes / secs / 1e6 if secs > 0 else 0.0,
        bytes_per_msg=nbytes / n if n else 0.0,
        cpu_s=cpu,
        cpu_per_m=cpu / n * 1e6 if n else float("nan"),
        cpu_util=cpu / secs if secs > 0 else 0.0,
        vcsw_per_m=(end.vcsw - start.vcsw) / n * 1e6 if n else float("nan"),
        ivcsw_per_m=(end.ivcsw - start.ivcsw) / n * 1e6 if n else float("nan"),
    )
    if not out["ok"]:
        out["error"] = "no messages" if n == 0 else f"{tally.gaps} sequence gaps"
    if latency:
        lat = sorted(tally.lat[start.nlat : end.nlat])
        out["latency_us"] = {
            "samples": len(lat),
            **{f"p{q:g}": percentile(lat, q) / 1e3 for q in (50, 90, 99, 99.9)},
            "max": (lat[-1] / 1e3) if lat else float("nan"),
        }
    return out


def _memory(tally: Tally) -> dict[str, Any]:
    """RSS at the marks, its growth over the window, and every sample (seconds from the start
    mark, MiB)."""
    start, end = tally.start, tally.end
    if start is None:
        return {}
    last = end.perf if end is not None else float("inf")
    samples = sorted(x for x in tally.rss if start.perf <= x[0] <= last)
    out: dict[str, Any] = {
        "rss_start_mb": start.rss_mb,
        "rss_samples": [[round(t - start.perf, 3), round(mb, 2)] for t, mb in samples],
    }
    if end is not None:
        out["rss_end_mb"] = end.rss_mb
        out["rss_growth"] = end.rss_mb / start.rss_mb - 1 if start.rss_mb > 0 else float("nan")
    return out


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m tickwire.bench.client",
        description="One benchmark client; prints one JSON line of results.",
    )
    p.add_argument("peer", choices=sorted(PEERS_BY_NAME))
    p.add_argument("url", help="the load server's CoinAPI URL (ws://127.0.0.1:PORT/v1/)")
    p.add_argument("seconds", type=float, help="measured seconds (ignored with --total)")
    p.add_argument("--warmup", type=float, default=1.0, help="seconds before measuring (1)")
    p.add_argument("--total", type=int, help="measure from the first data message to the N-th")
    p.add_argument(
        "--latency",
        action="store_true",
        help="record time_coinapi -> receive (simulator only: the load server's stamps repeat)",
    )
    p.add_argument(
        "--compression",
        action="store_true",
        help="tickwire clients offer permessage-deflate (peers do not support it here)",
    )
    p.add_argument("--cpu", type=int, help="pin every thread of this process to this CPU")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    pin_process(args.cpu)
    tally = Tally(args.total)
    clock = Clock(tally, args.warmup, None if args.total is not None else args.seconds)
    run = Run(args.url, tally, clock, args.latency, args.cpu, args.compression)
    peer = PEERS_BY_NAME[args.peer]
    if args.compression and not peer.ours:
        build_parser().error(f"--compression: {args.peer} cannot negotiate permessage-deflate")
    error: str | None = None
    extra: dict[str, Any] = {}
    try:
        extra = run_peer(args.peer, run)
    except Exception as e:  # reported in the JSON line; the harness marks the run failed
        error = f"{type(e).__name__}: {e}"
        extra = {"traceback": traceback.format_exc()}
    out = results(args.peer, tally, extra, args.latency)
    if error is not None:
        if out["ok"]:
            out["close_error"] = error  # the measurement was complete; tearing down failed
        else:
            out["error"] = error if out["error"] is None else f"{out['error']}; {error}"
    clock.cancel()
    threads, cpus = tally.threads or thread_cpus()
    out.update(
        threads=threads,
        cpus=cpus,
        max_rss_mb=resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,  # Linux: KiB
        pid=os.getpid(),
        versions={d: dist_version(d) for d in peer.dists},
    )
    sys.stdout.write(json.dumps(out) + "\n")
    sys.stdout.flush()
    return 0 if out.get("ok") else 1


if __name__ == "__main__":
    raise SystemExit(main())
