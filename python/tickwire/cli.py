"""The ``tickwire`` command line: ``demo``, ``sim``, ``stream``, ``record``, ``replay``,
``convert`` and ``bench``.

``tickwire demo``            simulator + client in one process: live progress, then a summary
``tickwire sim``             serve the bundled simulator until Ctrl-C (``--replay FILE``: serve
                             a recording instead)
``tickwire stream coinapi``  a real CoinAPI endpoint (key from ``COINAPI_KEY``) as JSON lines,
                             or a live table (``--table``); ``--metrics`` serves Prometheus text
``tickwire stream moment``   a real Moment stream (key from ``MOMENT_API_KEY``), the same way
``tickwire record coinapi``  what ``stream`` would print, recorded into ``.twr`` files instead
``tickwire replay FILE``     a recording played back as ``stream`` prints it (``--speed 1``: in
                             recorded time); ``convert FILE --parquet DIR``: Parquet per type
``tickwire bench``           tickwire side by side with the peer clients that are installed

Exit codes (all subcommands):

* 0 -- finished: the time or count asked for was reached, the server ended the stream, or the
  user pressed Ctrl-C (the documented way to stop ``sim`` and an open-ended ``stream``)
* 1 -- a tickwire error (cannot connect, protocol error, stream closed) or, for ``demo``, no data
* 2 -- usage: bad arguments, or a required environment variable is missing
* 3 -- the server rejected the API key (``AuthError``)

Only public ``tickwire`` names are used here, so this module doubles as an example of the API.
"""

from __future__ import annotations

import argparse
import ipaddress
import json
import math
import os
import signal
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from types import FrameType
from typing import Any, NoReturn, TextIO
from urllib.parse import urlsplit

import tickwire as tw
from tickwire import _recording_cli, metrics
from tickwire._table import LiveTable

__all__ = ["main"]

EXIT_OK = 0
EXIT_ERROR = 1
EXIT_USAGE = 2
EXIT_AUTH = 3


class UsageError(Exception):
    """Bad input found after parsing (a feed or simulator refused a value): exit 2, one line."""


class _Parser(argparse.ArgumentParser):
    """argparse with one-line usage errors: ``tickwire demo: argument --seconds: ...``."""

    def error(self, message: str) -> NoReturn:
        self.exit(EXIT_USAGE, f"{self.prog}: {message} (see {self.prog} --help)\n")


#: Every CoinAPI market-data type the simulator generates.
MARKET_TYPES: tuple[str, ...] = (
    "trade",
    "quote",
    "book",
    "book5",
    "book20",
    "book50",
    "book_l3",
    "ohlcv",
    "exrate",
    "index",
)

#: CoinAPI sends exrates only to a scope with an asset filter, and that filter then narrows the
#: symbols too. Every simulated symbol is quoted in one of these and every simulated exrate pair
#: names one, so the demo's scope still covers the whole market.
DEMO_ASSETS: tuple[str, ...] = ("USD", "USDT", "USDC", "EUR", "BTC")

#: ``.type`` of the events tickwire itself puts in the stream.
EVENT_TYPES: frozenset[str] = frozenset(
    {"connected", "disconnected", "gap", "stale", "dropped", "switched", "parse_error"}
)

#: ``.type`` of server notices that are neither market data nor tickwire events.
NOTICE_TYPES: frozenset[str] = frozenset(
    {"heartbeat", "reconnect", "error", "success", "subscription"}
)


def message_to_dict(msg: tw.Message) -> dict[str, Any]:
    """Return one message or event as a JSON-ready dict: ``type``, ``recv_ns``, then its fields."""
    return msg.to_dict()


# --------------------------------------------------------------------------------------------
# demo


class _Progress:
    """The live line: rewritten in place on a terminal, one plain line per second otherwise."""

    def __init__(self, out: TextIO, *, tty: bool) -> None:
        self.out = out
        self.tty = tty
        self.interval = 0.25 if tty else 1.0
        self.started = time.monotonic()
        self.last_at = self.started
        self.last_count = 0
        self.width = 0

    def due(self, now: float) -> bool:
        return now - self.last_at >= self.interval

    def show(self, now: float, data: int, gaps: int, stats: tw.Stats) -> None:
        rate = (data - self.last_count) / max(now - self.last_at, 1e-9)
        self.last_at, self.last_count = now, data
        lat = stats.latency_us
        line = (
            f"{now - self.started:6.1f}s  messages {data:>12,}  {rate:>11,.0f} msg/s  "
            f"gaps {gaps:,}  duplicates {stats.duplicates:,}  "
            f"latency p50 {_fmt_us(lat.get('p50'))} p99 {_fmt_us(lat.get('p99'))}"
        )
        if self.tty:
            pad = max(self.width - len(line), 0)
            self.width = len(line)
            self.out.write("\r" + line + " " * pad)
        else:
            self.out.write(line + "\n")
        self.out.flush()

    def finish(self) -> None:
        if self.tty and self.width:
            self.out.write("\n")
            self.out.flush()


def _fmt_us(value: float | None) -> str:
    return "-" if value is None else f"{value:,.0f} us"


def _summary(
    out: TextIO,
    *,
    url: str,
    elapsed: float,
    counts: Counter[str],
    stats: tw.Stats,
    interrupted: bool,
    saturated: bool = False,
) -> int:
    """Print the summary table; return the number of market-data messages."""
    data_types = sorted(t for t in counts if t not in EVENT_TYPES and t not in NOTICE_TYPES)
    data = sum(counts[t] for t in data_types)
    how = "stopped by Ctrl-C after" if interrupted else "ran"
    out.write(f"\ntickwire demo {how} {elapsed:.1f} s against the simulator at {url}\n\n")
    out.write(f"  {'type':<16}{'messages':>14}\n")
    for t in data_types:
        out.write(f"  {t:<16}{counts[t]:>14,}\n")
    out.write(f"  {'-' * 30}\n")
    out.write(f"  {'total':<16}{data:>14,}\n")
    out.write(f"  {'rate':<16}{data / max(elapsed, 1e-9):>14,.0f} msg/s\n\n")
    other = sorted(t for t in counts if t in EVENT_TYPES or t in NOTICE_TYPES)
    if other:
        out.write("  events and notices: ")
        out.write(", ".join(f"{t} {counts[t]:,}" for t in other) + "\n")
    out.write(
        f"  gaps {stats.gaps:,}  duplicates {stats.duplicates:,}  "
        f"parse errors {stats.parse_errors:,}  dropped {stats.dropped:,}  "
        f"reconnects {stats.reconnects:,}\n"
    )
    out.write(f"  bytes {stats.bytes:,}  batches {stats.batches:,}\n")
    lat = stats.latency_us
    label = "latency socket read -> Python"
    if saturated:
        # At full speed the client is the bottleneck: the figure is time spent queued.
        label += " (at full speed: queueing, not the client's latency)"
    out.write(
        f"  {label}: "
        f"p50 {_fmt_us(lat.get('p50'))}  p99 {_fmt_us(lat.get('p99'))}  "
        f"max {_fmt_us(lat.get('max'))}\n"
    )
    out.flush()
    return data


def _paced_latency(out: TextIO, args: argparse.Namespace) -> None:
    """The latency line a full-speed run cannot give: the same market at a rate the client
    keeps up with, for ``--paced-seconds``."""
    rate = int(args.paced_rate)
    seconds = float(args.paced_seconds)
    with tw.Simulator(
        rate=rate, symbols=int(args.symbols), seed=int(args.seed), total=None, record=False
    ) as sim:
        feed = tw.CoinAPI(
            url=sim.url, data_types=MARKET_TYPES, symbols=_demo_filter(args), assets=DEMO_ASSETS
        )
        with tw.connect(feed) as stream:
            deadline = time.monotonic() + seconds
            while (left := deadline - time.monotonic()) > 0:
                stream.next_batch(timeout=min(left, 0.1))
            stats = stream.stats()
    lat = stats.latency_us
    out.write(
        f"  latency at {rate:,} msg/s (paced, {seconds:g} s, {stats.messages:,} messages): "
        f"p50 {_fmt_us(lat.get('p50'))}  p99 {_fmt_us(lat.get('p99'))}  "
        f"max {_fmt_us(lat.get('max'))}\n"
    )
    out.flush()


def _read_for(
    streams: Sequence[tw.Stream],
    seconds: float,
    counts: Counter[str],
    progress: _Progress,
) -> tuple[float, bool]:
    """Reads every stream in turn for ``seconds``, counting types and showing progress."""
    started = time.monotonic()
    deadline = started + seconds
    try:
        while (now := time.monotonic()) < deadline:
            for stream in streams:
                wait = 0.1 / len(streams)
                batch = stream.next_batch(timeout=min(wait, max(deadline - now, 0.0)))
                if batch is not None:
                    counts.update(m.type for m in batch)
            now = time.monotonic()
            if progress.due(now):
                data = sum(
                    n for t, n in counts.items() if t not in EVENT_TYPES and t not in NOTICE_TYPES
                )
                progress.show(now, data, counts["gap"], streams[0].stats())
    except KeyboardInterrupt:
        return time.monotonic() - started, True
    return time.monotonic() - started, False


def cmd_demo(args: argparse.Namespace) -> int:
    if args.protocol == "moment":
        return _demo_moment(args)
    seconds = float(args.seconds)
    out = sys.stdout
    tty = out.isatty() and not args.plain
    counts: Counter[str] = Counter()
    with tw.Simulator(
        rate=int(args.rate),
        symbols=int(args.symbols),
        seed=int(args.seed),
        total=None,
        record=False,
    ) as sim:
        url = sim.url
        feed = tw.CoinAPI(
            url=url, data_types=MARKET_TYPES, symbols=_demo_filter(args), assets=DEMO_ASSETS
        )
        out.write(f"tickwire demo: simulator at {url}, {seconds:g} s, Ctrl-C to stop early\n")
        out.flush()
        progress = _Progress(out, tty=tty)
        with tw.connect(feed) as stream:
            elapsed, interrupted = _read_for([stream], seconds, counts, progress)
            stats = stream.stats()
        progress.finish()
    full_speed = int(args.rate) == 0
    data = _summary(
        out,
        url=url,
        elapsed=elapsed,
        counts=counts,
        stats=stats,
        interrupted=interrupted,
        saturated=full_speed,
    )
    if data == 0:
        print("tickwire demo: no market data arrived", file=sys.stderr)
        return EXIT_ERROR
    if full_speed and not interrupted and float(args.paced_seconds) > 0:
        # Ctrl-C here ends the demo like anywhere else (exit 0, see main).
        _paced_latency(out, args)
    return EXIT_OK


def _demo_moment(args: argparse.Namespace) -> int:
    """Moment mode: the price stream (every instrument) and the order stream side by side."""
    out = sys.stdout
    counts: Counter[str] = Counter()
    rate = int(args.rate) or 20_000
    with tw.Simulator("moment", rate=rate, seed=int(args.seed), record=False) as sim:
        prices = tw.Moment("prices", url=sim.url_for("prices"), subscribe_all=True)
        orders = tw.Moment("orders", url=sim.url_for("orders"))
        out.write(
            f"tickwire demo (moment): prices and orders at {sim.url}, {float(args.seconds):g} s, "
            "Ctrl-C to stop early\n"
        )
        out.flush()
        progress = _Progress(out, tty=out.isatty() and not args.plain)
        with tw.connect(prices) as price_stream, tw.connect(orders) as order_stream:
            elapsed, interrupted = _read_for(
                [price_stream, order_stream], float(args.seconds), counts, progress
            )
            stats = price_stream.stats()
            order_gaps = order_stream.stats().gaps
        progress.finish()
    data = _summary(
        out, url=sim.url, elapsed=elapsed, counts=counts, stats=stats, interrupted=interrupted
    )
    out.write(f"  order stream: msg_number gaps {order_gaps:,}\n")
    if data == 0:
        print("tickwire demo: no data arrived", file=sys.stderr)
        return EXIT_ERROR
    return EXIT_OK


def _demo_filter(args: argparse.Namespace) -> tuple[str, ...]:
    return tuple(args.filter or ())


# --------------------------------------------------------------------------------------------
# sim


def cmd_sim(args: argparse.Namespace) -> int:
    seconds = None if args.seconds is None else float(args.seconds)
    if args.replay or args.speed is not None:
        return _recording_cli.serve(args, seconds)
    try:
        simulator = tw.Simulator(
            args.protocol,
            host=str(args.host),
            port=int(args.port),
            rate=int(args.rate),
            symbols=int(args.symbols),
            seed=int(args.seed),
            total=None if args.total is None else int(args.total),
            heartbeat_spelling=str(args.heartbeat_spelling),
            api_key=args.api_key,
            generate=list(args.generate) if args.generate else None,
        )
    except (ValueError, OverflowError) as exc:
        raise UsageError(str(exc)) from None
    except OSError as exc:
        # Not loopback, or the port is taken: say which, in one line.
        print(f"tickwire sim: {exc}", file=sys.stderr)
        return EXIT_USAGE if "loopback" in str(exc) else EXIT_ERROR
    return serve_for(simulator, str(args.protocol), seconds, generated=True)


def serve_for(simulator: Any, what: str, seconds: float | None, *, generated: bool) -> int:
    """Prints the simulator's URLs, serves for ``seconds`` (or until Ctrl-C), then prints what
    it sent; closes it. ``what`` names what is served in the stderr line."""
    with simulator as sim:
        if sim.protocol == "coinapi":
            print(f"coinapi {sim.url}", flush=True)
        else:
            print(f"prices {sim.url_for('prices')}", flush=True)
            print(f"orders {sim.url_for('orders')}", flush=True)
        until = f"for {seconds:g} s" if seconds is not None else "until Ctrl-C"
        print(f"tickwire sim: serving {what} {until}", file=sys.stderr, flush=True)
        deadline = None if seconds is None else time.monotonic() + seconds
        try:
            while deadline is None or time.monotonic() < deadline:
                time.sleep(0.1 if deadline is None else min(0.1, deadline - time.monotonic()))
        except KeyboardInterrupt:
            pass
        st = sim.stats()
        tail = f", {st.generated:,} generated" if generated else ""
        print(
            f"tickwire sim: {st.connections} connections, {st.messages_sent:,} messages, "
            f"{st.bytes_sent:,} bytes sent{tail}",
            file=sys.stderr,
            flush=True,
        )
    return EXIT_OK


# --------------------------------------------------------------------------------------------
# stream


def _split(values: Iterable[str] | None) -> tuple[str, ...]:
    """Accept both ``--types trade quote`` and ``--types trade,quote``."""
    out: list[str] = []
    for v in values or ():
        out.extend(p for p in v.split(",") if p)
    return tuple(out)


def cmd_stream_moment(args: argparse.Namespace) -> int:
    # A loopback URL is the simulator, which needs a key only when started with --api-key.
    if not os.environ.get("MOMENT_API_KEY") and not (args.url and is_loopback_url(args.url)):
        print("tickwire stream moment: set MOMENT_API_KEY to your Moment key", file=sys.stderr)
        return EXIT_USAGE
    feed = _feed(
        tw.Moment,
        args.stream,
        environment=str(args.environment),
        url=args.url,
        instruments=_split(args.instruments),
        subscribe_all=bool(args.all),
        start_msg_number=args.start_msg_number,
        auth_in_query=bool(args.auth_in_query),
        allow_insecure=bool(args.allow_insecure),
    )
    return _print_stream(feed, args)


def _feed(make: Callable[..., Any], *args: Any, **kw: Any) -> Any:
    """A feed from the command line's values; a value the feed refuses is a usage error."""
    try:
        return make(*args, **kw)
    except (ValueError, TypeError) as exc:
        raise UsageError(str(exc)) from None


def cmd_stream_coinapi(args: argparse.Namespace) -> int:
    # A loopback URL is the simulator, which needs a key only when started with --api-key.
    if not os.environ.get("COINAPI_KEY") and not is_loopback_url(str(args.url)):
        print("tickwire stream coinapi: set COINAPI_KEY to your CoinAPI key", file=sys.stderr)
        return EXIT_USAGE
    types = _split(args.types) or ("trade",)
    feed = _feed(
        tw.CoinAPI,
        url=str(args.url),
        data_types=types,
        symbols=_split(args.symbols),
        assets=_split(args.assets),
        exchanges=_split(args.exchanges),
        periods=_split(args.periods),
        index_ids=_split(args.index_ids),
        allow_insecure=bool(args.allow_insecure),
    )
    return _print_stream(feed, args)


def _say_what_it_waits_for(stream: tw.Stream) -> None:
    """Until the first connection is made (or given up), says on stderr what the stream
    waits for, e.g. "connecting to …, attempt 2, retrying in 0.4 s: connection refused"."""
    shown = None
    while stream.state == "connecting":
        waiting = stream.waiting
        if waiting is not None and waiting != shown:
            print(f"tickwire stream: {waiting}", file=sys.stderr, flush=True)
            shown = waiting
        time.sleep(0.05)


def _print_stream(feed: tw.CoinAPI | tw.Moment, args: argparse.Namespace) -> int:
    """Prints one JSON object per message (or the live table) until the count, the time or
    Ctrl-C; serves ``--metrics`` meanwhile."""
    if getattr(args, "nats", None):
        return _relay(feed, args)
    if getattr(args, "out", None) is not None:
        return _recording_cli.record(feed, args)
    try:
        stream = tw.connect(feed, keep_raw=bool(args.raw))
    except ValueError as exc:
        # Refused before any I/O: a URL, an option, or ws:// with a key to a host that is not
        # loopback (--allow-insecure): the user's input.
        raise UsageError(str(exc)) from None
    endpoint = None
    if args.metrics is not None:
        host, port = args.metrics
        try:
            endpoint = metrics.MetricsServer(stream.stats, host, port)
        except OSError as exc:
            stream.close()
            print(f"tickwire stream: cannot serve metrics at {host}:{port}: {exc}", file=sys.stderr)
            return EXIT_ERROR
        print(f"tickwire stream: metrics at {endpoint.url}", file=sys.stderr, flush=True)
    try:
        _say_what_it_waits_for(stream)
        with stream:
            if args.table:
                _table_loop(stream, args)
            else:
                _json_loop(stream, args)
    finally:
        if endpoint is not None:
            endpoint.close()
    return EXIT_OK


def _until(args: argparse.Namespace) -> tuple[int | None, float | None]:
    count = None if args.count is None else int(args.count)
    deadline = None if args.seconds is None else time.monotonic() + float(args.seconds)
    return count, deadline


def _wait(deadline: float | None) -> float | None:
    """The next wait: half a second, less near the deadline; None once it has passed."""
    if deadline is None:
        return 0.5
    left = deadline - time.monotonic()
    return None if left <= 0 else min(0.5, left)


def _json_loop(stream: tw.Stream, args: argparse.Namespace) -> None:
    count, deadline = _until(args)
    show_events = not args.data_only
    seen = 0
    out = sys.stdout
    try:
        while count is None or seen < count:
            timeout = _wait(deadline)
            if timeout is None:
                break
            batch = stream.next_batch(timeout=timeout)
            if batch is None:
                continue
            lines = []
            for msg in batch:
                is_data = msg.type not in EVENT_TYPES and msg.type not in NOTICE_TYPES
                if is_data or show_events:
                    d = message_to_dict(msg)
                    if args.raw:
                        # Events carry no wire text (ParseError's `raw` is a field).
                        d.setdefault("raw", getattr(msg, "raw", None))
                    lines.append(json.dumps(d, separators=(",", ":")))
                if is_data:
                    seen += 1
                    if count is not None and seen >= count:
                        break
            if lines:
                out.write("\n".join(lines) + "\n")
                out.flush()
    except KeyboardInterrupt:
        pass


def _table_loop(stream: tw.Stream, args: argparse.Namespace) -> None:
    count, deadline = _until(args)
    out = sys.stdout
    tty = out.isatty()
    table = LiveTable(rows=int(args.table_rows), interval=0.5 if tty else 1.0)
    try:
        while count is None or table.messages < count:
            timeout = _wait(deadline)
            if timeout is None:
                break
            batch = stream.next_batch(timeout=min(timeout, table.interval))
            if batch is not None:
                table.add(batch)
            now = time.monotonic()
            if table.due(now):
                table.show(out, now, stream.stats(), tty=tty)
    except KeyboardInterrupt:
        pass
    # The final state, whatever the refresh timing was.
    table.show(out, time.monotonic(), stream.stats(), tty=tty)


def _metrics_address(text: str) -> tuple[str, int]:
    try:
        return metrics.parse_address(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _relay(feed: tw.CoinAPI | tw.Moment, args: argparse.Namespace) -> int:
    """``tickwire relay``: publishes ``feed`` to JetStream, printing the relay's counters as a
    JSON line each second, until the time or Ctrl-C."""
    deadline = None if args.seconds is None else time.monotonic() + float(args.seconds)
    try:
        relay = tw.relay(
            feed, nats=str(args.nats), stream=str(args.nats_stream), shards=int(args.shards)
        )
    except ValueError as e:
        print(f"tickwire relay: {e}", file=sys.stderr)
        return EXIT_USAGE
    try:
        while deadline is None or time.monotonic() < deadline:
            wait = 1.0 if deadline is None else max(0.0, min(1.0, deadline - time.monotonic()))
            time.sleep(wait)
            print(_relay_counters(relay), flush=True)
    except KeyboardInterrupt:
        pass
    finally:
        relay.close()
    print(_relay_counters(relay), flush=True)
    return EXIT_OK


def _relay_counters(relay: tw.Relay) -> str:
    """The relay's totals as one JSON line, with each shard's under ``per_shard`` when several."""
    counters: dict[str, Any] = dict(relay.stats())
    if len(relay.feeds) > 1:
        counters["per_shard"] = relay.shard_stats()
    return json.dumps(counters, separators=(",", ":"))


# --------------------------------------------------------------------------------------------
# entry point


def _positive_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value) or value <= 0:
        raise argparse.ArgumentTypeError(f"must be a finite number > 0, got {text}")
    return value


def _non_negative_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value) or value < 0:
        raise argparse.ArgumentTypeError(f"must be a finite number >= 0, got {text}")
    return value


def _positive_int(text: str) -> int:
    value = int(text)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be > 0, got {text}")
    return value


def _port(text: str) -> int:
    value = int(text)
    if not 0 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"must be a port number 0-65535, got {text}")
    return value


def _ws_url(text: str) -> str:
    """A ``ws://`` or ``wss://`` URL with a host."""
    try:
        parts = urlsplit(text)
        host = parts.hostname
        parts.port  # noqa: B018 -- raises ValueError for a bad port
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"not a URL: {text!r} ({exc})") from None
    if parts.scheme not in ("ws", "wss"):
        raise argparse.ArgumentTypeError(
            f"must be a ws:// or wss:// URL, got {text!r}"
            + (f" (scheme {parts.scheme!r})" if parts.scheme else "")
        )
    if not host:
        raise argparse.ArgumentTypeError(f"the URL has no host: {text!r}")
    return text


def is_loopback_url(url: str) -> bool:
    """True when ``url`` points at this machine (127.0.0.0/8, ::1, localhost): the simulator."""
    host = urlsplit(url).hostname or ""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _non_negative_int(text: str) -> int:
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be >= 0, got {text}")
    return value


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="tickwire",
        description="Real-time market data with a Rust core: demo, simulator, live streams.",
        epilog="Exit codes: 0 done, 1 tickwire error, 2 usage, 3 API key rejected.",
    )
    parser.add_argument("--version", action="version", version=f"tickwire {tw.__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    demo = sub.add_parser(
        "demo",
        help="simulator + client in one process: live progress, then a summary",
        description="Start the bundled simulator and a client subscribed to every market type; "
        "show live progress, then a summary table.",
    )
    demo.add_argument(
        "--rate",
        type=_non_negative_int,
        default=0,
        help="simulated events per second; 0 = as fast as the socket takes them (default)",
    )
    demo.add_argument("--seconds", type=_positive_float, default=10.0, help="run time (10)")
    demo.add_argument(
        "--symbols", type=_non_negative_int, default=100, help="number of simulated symbols (100)"
    )
    demo.add_argument(
        "--filter",
        action="append",
        metavar="SYMBOL",
        help="subscribe only to this symbol_id prefix (trailing $: exact); repeatable",
    )
    demo.add_argument("--seed", type=int, default=0, help="simulator seed (0)")
    demo.add_argument(
        "--protocol", choices=("coinapi", "moment"), default="coinapi", help="venue (coinapi)"
    )
    demo.add_argument(
        "--paced-rate",
        type=_positive_int,
        default=20_000,
        help="after a full-speed run, measure latency at this rate too (20000 msg/s)",
    )
    demo.add_argument(
        "--paced-seconds",
        type=_non_negative_float,
        default=2.0,
        help="how long the paced latency run takes; 0 = skip it (2)",
    )
    demo.add_argument("--plain", action="store_true", help="plain lines even on a terminal")
    demo.set_defaults(func=cmd_demo)

    sim = sub.add_parser(
        "sim",
        help="serve the bundled simulator until Ctrl-C",
        description="Serve the bundled market simulator; prints its URL(s), one per line.",
    )
    sim.add_argument("--protocol", choices=("coinapi", "moment"), default="coinapi")
    sim.add_argument("--host", default="127.0.0.1", help="address to bind (127.0.0.1)")
    sim.add_argument("--port", type=_port, default=0, help="0 = any free port (0)")
    sim.add_argument("--rate", type=_non_negative_int, default=10_000, help="events/s (10000)")
    sim.add_argument("--symbols", type=_non_negative_int, default=100, help="symbols (100)")
    sim.add_argument("--seed", type=int, default=0, help="seed (0)")
    sim.add_argument("--total", type=_non_negative_int, default=None, help="stop after N events")
    sim.add_argument("--heartbeat-spelling", choices=("heartbeat", "hearbeat"), default="heartbeat")
    sim.add_argument("--seconds", type=_positive_float, default=None, help="serve this long")
    sim.add_argument(
        "--api-key",
        default=None,
        metavar="KEY",
        help="accept only this key (others get HTTP 401, so `stream` exits 3); none by default",
    )
    sim.add_argument(
        "--generate", nargs="+", metavar="TYPE", help="CoinAPI: generate only these types"
    )
    _recording_cli.sim_options(sim)
    sim.set_defaults(func=cmd_sim)

    stream = sub.add_parser(
        "stream",
        help="stream a real endpoint as JSON lines",
        description="Stream a real market-data endpoint and print one JSON object per line.",
    )
    venues = stream.add_subparsers(dest="venue", required=True, metavar="VENUE")
    coinapi = venues.add_parser(
        "coinapi",
        help="CoinAPI market data (key from COINAPI_KEY)",
        description="Stream CoinAPI market data; the key is read from COINAPI_KEY.",
    )
    _coinapi_scope(coinapi)
    _output_options(coinapi)
    coinapi.set_defaults(func=cmd_stream_coinapi)

    moment = venues.add_parser(
        "moment",
        help="Moment real-time prices or orders (key from MOMENT_API_KEY)",
        description="Stream Moment's real-time Prices or Orders API; the key is read from "
        "MOMENT_API_KEY.",
    )
    _moment_scope(moment)
    _output_options(moment)
    moment.set_defaults(func=cmd_stream_moment)

    _relay_parser(sub)
    _recording_cli.add_commands(sub, _record_scope)

    bench = sub.add_parser(
        "bench",
        help="tickwire side by side with the installed peer clients",
        description="Run tickwire's side-by-side benchmark (see python -m tickwire.bench -h).",
        add_help=False,
    )
    bench.add_argument("bench_args", nargs=argparse.REMAINDER)
    bench.set_defaults(func=cmd_bench)
    return parser


def _coinapi_scope(p: argparse.ArgumentParser) -> None:
    """The CoinAPI feed options of ``stream coinapi`` (and ``record coinapi``)."""
    p.add_argument(
        "--url",
        type=_ws_url,
        default="wss://ws.coinapi.io/v1/",
        help="endpoint URL; a loopback one (the simulator) needs no COINAPI_KEY",
    )
    p.add_argument(
        "--types", nargs="+", metavar="TYPE", help="data types, e.g. trade quote (trade)"
    )
    p.add_argument(
        "--symbols", nargs="+", metavar="SYMBOL", help="symbol_id prefixes; trailing $: exact"
    )
    p.add_argument("--assets", nargs="+", metavar="ASSET", help="asset ids or BASE/QUOTE")
    p.add_argument("--exchanges", nargs="+", metavar="EXCHANGE", help="exchange ids")
    p.add_argument("--periods", nargs="+", metavar="PERIOD", help="OHLCV periods")
    p.add_argument("--index-ids", nargs="+", metavar="INDEX", help="index ids")


def _moment_scope(p: argparse.ArgumentParser) -> None:
    """The Moment feed options of ``stream moment`` (and ``record moment``)."""
    p.add_argument("stream", choices=("prices", "orders"))
    p.add_argument(
        "--environment", choices=("paper", "live"), default="paper", help="paper or live (paper)"
    )
    p.add_argument(
        "--url",
        type=_ws_url,
        default=None,
        help="endpoint URL (overrides --environment); a loopback one needs no MOMENT_API_KEY",
    )
    p.add_argument("--instruments", nargs="+", metavar="ID", help="CUSIPs or ISINs (prices)")
    p.add_argument("--all", action="store_true", help="subscribe to every instrument")
    p.add_argument(
        "--start-msg-number",
        type=int,
        default=None,
        help="start orders at this msg_number",
    )
    p.add_argument(
        "--auth-in-query", action="store_true", help="send the key as auth_token, not a header"
    )


def _record_scope(venues: Any, venue: str) -> argparse.ArgumentParser:
    """``record coinapi|moment``: the stream command's feed, recorded (``_print_stream``)."""
    p: argparse.ArgumentParser
    if venue == "coinapi":
        p = venues.add_parser("coinapi", help="CoinAPI market data (key from COINAPI_KEY)")
        _coinapi_scope(p)
        p.set_defaults(func=cmd_stream_coinapi)
    else:
        p = venues.add_parser("moment", help="Moment prices or orders (key from MOMENT_API_KEY)")
        _moment_scope(p)
        p.set_defaults(func=cmd_stream_moment)
    return p


def _relay_parser(sub: Any) -> None:
    """``tickwire relay coinapi|moment``: the stream commands' scope options, to JetStream."""
    relay = sub.add_parser(
        "relay",
        help="publish a real endpoint's messages to NATS JetStream",
        description="Relay a market-data endpoint to a NATS JetStream stream (docs/nats.md).",
    )
    venues = relay.add_subparsers(dest="venue", required=True, metavar="VENUE")
    coinapi = venues.add_parser("coinapi", help="CoinAPI market data (key from COINAPI_KEY)")
    coinapi.add_argument("--url", default="wss://ws.coinapi.io/v1/", help="endpoint URL")
    coinapi.add_argument("--types", nargs="+", metavar="TYPE", help="data types (trade)")
    coinapi.add_argument("--symbols", nargs="+", metavar="SYMBOL", help="symbol_id prefixes")
    coinapi.add_argument("--assets", nargs="+", metavar="ASSET", help="asset ids or BASE/QUOTE")
    coinapi.add_argument("--exchanges", nargs="+", metavar="EXCHANGE", help="exchange ids")
    coinapi.add_argument("--periods", nargs="+", metavar="PERIOD", help="OHLCV periods")
    coinapi.add_argument("--index-ids", nargs="+", metavar="INDEX", help="index ids")
    coinapi.set_defaults(func=cmd_stream_coinapi)
    moment = venues.add_parser("moment", help="Moment prices or orders (key from MOMENT_API_KEY)")
    moment.add_argument("stream", choices=("prices", "orders"))
    moment.add_argument("--environment", default="paper", help="paper or live (paper)")
    moment.add_argument("--url", default=None, help="endpoint URL (overrides --environment)")
    moment.add_argument("--instruments", nargs="+", metavar="ID", help="CUSIPs or ISINs (prices)")
    moment.add_argument("--all", action="store_true", help="subscribe to every instrument")
    moment.add_argument("--start-msg-number", type=int, default=None, help="from msg_number N")
    moment.add_argument("--auth-in-query", action="store_true", help="key as auth_token")
    moment.set_defaults(func=cmd_stream_moment)
    for p in (coinapi, moment):
        p.add_argument("--nats", default="nats://127.0.0.1:4222", help="NATS server URL")
        p.add_argument("--nats-stream", default="TICKWIRE", help="JetStream stream (TICKWIRE)")
        p.add_argument(
            "--shards",
            type=_positive_int,
            default=1,
            help="split the scope over N venue connections (1)",
        )
        p.add_argument("--seconds", type=_positive_float, default=None, help="stop after S s")
        p.add_argument(
            "--allow-insecure", action="store_true", help="allow ws:// (key in clear) to others"
        )


def _output_options(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--count", type=_non_negative_int, default=None, help="stop after N data messages"
    )
    p.add_argument("--seconds", type=_positive_float, default=None, help="stop after S s")
    p.add_argument("--raw", action="store_true", help="include each message's raw text")
    p.add_argument(
        "--data-only", action="store_true", help="leave out events, heartbeats and notices"
    )
    p.add_argument(
        "--allow-insecure", action="store_true", help="allow ws:// (key in clear) to other hosts"
    )
    p.add_argument(
        "--table",
        action="store_true",
        help="a live table per symbol (last price, msg/s, gaps, latency) instead of JSON lines",
    )
    p.add_argument(
        "--table-rows", type=_positive_int, default=20, help="symbols the table shows (20)"
    )
    p.add_argument(
        "--metrics",
        type=_metrics_address,
        default=None,
        metavar="HOST:PORT",
        help="serve Prometheus metrics at http://HOST:PORT/metrics while streaming",
    )


def cmd_bench(args: argparse.Namespace) -> int:
    from . import bench

    return bench.main(list(args.bench_args))  # reached only through build_parser() users


def _sigterm(signum: int, frame: FrameType | None) -> None:
    # Treat SIGTERM like Ctrl-C so the simulator and streams close cleanly.
    raise KeyboardInterrupt


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``tickwire`` command; return its exit code."""
    words = list(sys.argv[1:] if argv is None else argv)
    if words[:1] == ["bench"]:
        # The benchmark has its own parser; hand it every word, --help included.
        from . import bench

        return bench.main(words[1:])
    args = build_parser().parse_args(words)
    func: Callable[[argparse.Namespace], int] = args.func
    in_main_thread = threading.current_thread() is threading.main_thread()
    previous = signal.signal(signal.SIGTERM, _sigterm) if in_main_thread else None
    try:
        return func(args)
    except UsageError as exc:
        print(f"tickwire {args.command}: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except tw.AuthError as exc:
        print(f"tickwire: API key rejected: {exc}", file=sys.stderr)
        return EXIT_AUTH
    except tw.TickwireError as exc:
        print(f"tickwire: {type(exc).__name__}: {exc}", file=sys.stderr)
        return EXIT_ERROR
    except BrokenPipeError:
        # Output piped into `head` and friends: not an error. Point stdout at devnull so the
        # interpreter's final flush does not complain again.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return EXIT_OK
    except KeyboardInterrupt:
        return EXIT_OK
    finally:
        if in_main_thread:
            signal.signal(signal.SIGTERM, previous)


if __name__ == "__main__":
    sys.exit(main())
