"""``tickwire record``, ``replay`` and ``convert``: keep a session in ``.twr`` recordings, play
one back as the stream it was, or turn it into one Parquet table per message type.

The format and what a recording holds are in ``docs/recording.md``. These commands share the
exit codes of :mod:`tickwire.cli`: a file that is missing or that this tickwire cannot read (not
a recording, a newer format version) is a usage error (2); damage found part-way through a
replay ends it with an error naming the offset (1), after everything before the damage.
"""

from __future__ import annotations

import argparse
import importlib
import json
import re
import sys
import time
from collections import Counter
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import tickwire as tw
from tickwire._table import LiveTable

__all__ = ["add_commands", "record", "serve", "sim_options"]

#: Refresh of the counters line ``record`` prints to stderr.
COUNTERS_EVERY_S = 1.0


def _cli() -> Any:
    # Imported late: tickwire.cli imports this module while building its parser.
    from tickwire import cli

    return cli


def _usage(message: str) -> Exception:
    err: Exception = _cli().UsageError(message)
    return err


# --------------------------------------------------------------------------------------------
# record


def _recording_path(out_dir: Path, venue: str) -> Path:
    """``DIR/<venue>-<UTC timestamp>.twr``; a numeric suffix if that name is taken (two
    recordings started within the same second)."""
    stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    path = out_dir / f"{venue}-{stamp}.twr"
    n = 1
    while path.exists() or any(out_dir.glob(f"{path.stem}.*.twr")):
        path = out_dir / f"{venue}-{stamp}-{n}.twr"
        n += 1
    return path


def _files_of(path: Path) -> list[Path]:
    """The recording's files on disk: ``<stem>.twr`` and its rotations ``<stem>.<n>.twr``."""
    rotated = [
        p
        for p in path.parent.glob(f"{path.stem}.*.twr")
        if p.name[len(path.stem) + 1 : -4].isdigit()
    ]
    return ([path] if path.exists() else []) + sorted(
        rotated, key=lambda p: int(p.name[len(path.stem) + 1 : -4])
    )


def _counters(stream: tw.Stream, path: Path, started: float) -> str:
    st = stream.stats()
    files = _files_of(path)
    size = sum(p.stat().st_size for p in files if p.exists())
    return (
        f"tickwire record: {time.monotonic() - started:6.1f}s  messages {st.messages:,}  "
        f"gaps {st.gaps}  parse errors {st.parse_errors}  reconnects {st.reconnects}  "
        f"files {len(files)}  {size / 1e6:,.2f} MB on disk"
    )


def record(feed: tw.CoinAPI | tw.Moment, args: argparse.Namespace) -> int:
    """``tickwire record``: connects with a recorder and reads (and drops) every batch until
    ``--seconds`` or Ctrl-C, printing counters to stderr once a second."""
    cli = _cli()
    out_dir = Path(args.out)
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise _usage(f"cannot use --out {str(out_dir)!r}: {exc.strerror or exc}") from None
    venue = "coinapi" if isinstance(feed, tw.CoinAPI) else "moment"
    path = _recording_path(out_dir, venue)
    try:
        recorder = tw.Recorder(
            str(path),
            rotate_mb=args.rotate_mb,
            rotate_s=args.rotate_s,
        )
        stream = tw.connect(feed, record=recorder)
    except ValueError as exc:
        raise _usage(str(exc)) from None
    rotated = args.rotate_mb is not None or args.rotate_s is not None
    shown = path.with_name(f"{path.stem}.<n>.twr") if rotated else path
    print(f"tickwire record: writing {shown}", file=sys.stderr, flush=True)
    started = time.monotonic()
    deadline = None if args.seconds is None else started + float(args.seconds)
    shown_at = started
    try:
        with stream:
            while True:
                timeout = cli._wait(deadline)
                if timeout is None:
                    break
                stream.next_batch(timeout=timeout)
                now = time.monotonic()
                if now - shown_at >= COUNTERS_EVERY_S:
                    print(_counters(stream, path, started), file=sys.stderr, flush=True)
                    shown_at = now
                if stream.state == "closed":
                    break
    except KeyboardInterrupt:
        pass
    finally:
        # Closing the stream finishes the recording (last block, index); only then are the
        # sizes final.
        stream.close()
        print(_counters(stream, path, started), file=sys.stderr, flush=True)
        for p in _files_of(path):
            print(str(p), flush=True)
    return int(cli.EXIT_OK)


# --------------------------------------------------------------------------------------------
# replay


def _existing_file(text: str) -> str:
    p = Path(text)
    if not p.exists() and not p.with_name(f"{p.stem}.0.twr").exists():
        # `<stem>.twr` also names a rotated recording by its parts `<stem>.<n>.twr`.
        raise argparse.ArgumentTypeError(f"no such file: {text!r}")
    if not p.exists():
        return text
    if not p.is_file():
        raise argparse.ArgumentTypeError(f"not a file: {text!r}")
    return text


_PART = re.compile(r"^(?P<base>.*)\.(?P<n>\d+)\.twr$")


def _parts_in_order(files: list[str]) -> list[str]:
    """Consecutive parts of one rotated recording in part order: a shell glob gives
    ``x.10.twr`` before ``x.2.twr``. Anything else keeps the order given."""
    out: list[str] = []
    run: list[tuple[int, str]] = []
    run_base = None
    for f in [*files, None]:
        m = _PART.match(f) if f is not None else None
        base = m.group("base") if m else None
        if run and (base is None or base != run_base):
            out.extend(name for _, name in sorted(run))
            run = []
        if m and f is not None:
            run_base = base
            run.append((int(m.group("n")), f))
        elif f is not None:
            out.append(f)
    return out


def _open_replay(
    args: argparse.Namespace, *, speed: float | None, keep_raw: bool = False
) -> tw.Stream:
    """The replay stream. A file refused before anything is replayed (not a recording, a
    newer format version, unreadable) is the user's input: a usage error."""
    files = _parts_in_order(list(args.files))
    try:
        return tw.replay(
            files,
            speed=speed,
            start_ns=args.start,
            end_ns=args.end,
            keep_raw=keep_raw,
        )
    except (ValueError, OSError, tw.ProtocolError) as exc:
        raise _usage(str(exc)) from None


def cmd_replay(args: argparse.Namespace) -> int:
    stream = _open_replay(args, speed=args.speed, keep_raw=bool(args.raw))
    with stream:
        if args.table:
            _replay_table(stream, args)
        else:
            _replay_json(stream, args)
    return int(_cli().EXIT_OK)


def _replay_json(stream: tw.Stream, args: argparse.Namespace) -> None:
    cli = _cli()
    show_events = not args.data_only
    count = args.count
    seen = 0
    out = sys.stdout
    for batch in stream:
        lines = []
        for msg in batch:
            is_data = msg.type not in cli.EVENT_TYPES and msg.type not in cli.NOTICE_TYPES
            if is_data or show_events:
                d = cli.message_to_dict(msg)
                if args.raw:
                    d.setdefault("raw", getattr(msg, "raw", None))
                lines.append(json.dumps(d, separators=(",", ":")))
            if is_data:
                seen += 1
                if count is not None and seen >= count:
                    break
        if lines:
            out.write("\n".join(lines) + "\n")
            out.flush()
        if count is not None and seen >= count:
            return


def _replay_table(stream: tw.Stream, args: argparse.Namespace) -> None:
    out = sys.stdout
    tty = out.isatty()
    table = LiveTable(rows=int(args.table_rows), interval=0.5 if tty else 1.0)
    for batch in stream:
        table.add(batch)
        now = time.monotonic()
        if table.due(now):
            table.show(out, now, stream.stats(), tty=tty)
        if args.count is not None and table.messages >= args.count:
            break
    table.show(out, time.monotonic(), stream.stats(), tty=tty)


# --------------------------------------------------------------------------------------------
# convert


def cmd_convert(args: argparse.Namespace) -> int:
    cli = _cli()
    try:
        # Through importlib: pyarrow is an optional extra and ships no type information.
        pa = importlib.import_module("pyarrow")
        pq = importlib.import_module("pyarrow.parquet")
    except ImportError:
        print(
            "tickwire convert: --parquet needs pyarrow: pip install 'tickwire[parquet]'",
            file=sys.stderr,
        )
        return int(cli.EXIT_USAGE)
    out = Path(args.parquet)
    if out.exists() and not out.is_dir():
        raise _usage(f"--parquet {str(out)!r} exists and is not a directory")
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise _usage(f"cannot use --parquet {str(out)!r}: {exc.strerror or exc}") from None
    stream = _open_replay(args, speed=None)
    writers: dict[str, Any] = {}
    rows: Counter[str] = Counter()
    try:
        with stream:
            for batch in stream:
                for msg_type, columns in batch.to_arrow().items():
                    rb = pa.record_batch(columns)
                    writer = writers.get(msg_type)
                    if writer is None:
                        writer = pq.ParquetWriter(str(out / f"{msg_type}.parquet"), rb.schema)
                        writers[msg_type] = writer
                    if rb.schema != writer.schema:
                        # A column typed by its values (all null in the first batch, say):
                        # the file keeps its first schema.
                        rb = rb.cast(writer.schema)
                    writer.write_batch(rb)
                    rows[msg_type] += rb.num_rows
    finally:
        # Written so far stays readable even when the replay ends with an error.
        for writer in writers.values():
            writer.close()
        for msg_type in sorted(rows):
            path = out / f"{msg_type}.parquet"
            print(f"tickwire convert: {path}: {rows[msg_type]:,} rows", file=sys.stderr)
    return int(cli.EXIT_OK)


# --------------------------------------------------------------------------------------------
# sim --replay


def serve(args: argparse.Namespace, seconds: float | None) -> int:
    """``tickwire sim --replay FILE...``: serves the recording (``tw.Simulator(replay=)``) so
    clients in other processes, peers included, can run against it."""
    cli = _cli()
    if not args.replay:
        raise _usage("--speed needs --replay")
    try:
        simulator = tw.Simulator(
            host=str(args.host),
            port=int(args.port),
            replay=_parts_in_order(list(args.replay)),
            speed=args.speed,
        )
    except (ValueError, FileNotFoundError) as exc:
        raise _usage(str(exc)) from None
    except OSError as exc:
        print(f"tickwire sim: {exc}", file=sys.stderr)
        return int(cli.EXIT_USAGE if "loopback" in str(exc) else cli.EXIT_ERROR)
    return int(cli.serve_for(simulator, "the recording", seconds, generated=False))


def sim_options(p: argparse.ArgumentParser) -> None:
    """``tickwire sim``'s ``--replay`` and ``--speed``."""
    cli = _cli()
    p.add_argument(
        "--replay",
        nargs="+",
        type=_existing_file,
        metavar="FILE",
        help="serve a recording instead: the n-th client gets the n-th recorded connection",
    )
    p.add_argument(
        "--speed",
        type=cli._positive_float,
        default=None,
        help="with --replay: 1 = the recorded timing; default: as fast as the client reads",
    )


# --------------------------------------------------------------------------------------------
# parsers


def _replay_source(p: argparse.ArgumentParser) -> None:
    cli = _cli()
    p.add_argument(
        "files",
        nargs="+",
        type=_existing_file,
        metavar="FILE",
        help="a recording, or its files in order (rotated files: <stem>.twr <stem>.1.twr ...)",
    )
    p.add_argument(
        "--start", type=cli._non_negative_int, default=None, metavar="NS", help="from recv_ns"
    )
    p.add_argument(
        "--end", type=cli._non_negative_int, default=None, metavar="NS", help="until recv_ns"
    )


def add_commands(sub: Any, scope: Any) -> None:
    """Adds ``record``, ``replay`` and ``convert`` to the ``tickwire`` parser. ``scope(p)``
    adds a venue's feed options (the same as ``tickwire stream``'s) to ``p``."""
    cli = _cli()
    rec = sub.add_parser(
        "record",
        help="record a live endpoint into .twr files",
        description="Connect as `tickwire stream` does and record every frame received "
        "into DIR/<venue>-<UTC timestamp>.twr (docs/recording.md); counters go to stderr, "
        "the files written to stdout. Ctrl-C ends it cleanly.",
    )
    venues = rec.add_subparsers(dest="venue", required=True, metavar="VENUE")
    for venue in ("coinapi", "moment"):
        p = scope(venues, venue)
        p.add_argument("--out", required=True, metavar="DIR", help="directory for the files")
        p.add_argument(
            "--rotate-mb",
            type=cli._positive_float,
            default=None,
            metavar="MB",
            help="start a new file <stem>.<n>.twr after this many MB",
        )
        p.add_argument(
            "--rotate-s",
            type=cli._positive_float,
            default=None,
            metavar="S",
            help="start a new file after this many seconds",
        )
        p.add_argument("--seconds", type=cli._positive_float, default=None, help="stop after S s")
        p.add_argument(
            "--allow-insecure", action="store_true", help="allow ws:// (key in clear) to others"
        )

    rep = sub.add_parser(
        "replay",
        help="play a recording back as JSON lines",
        description="Replay a recording through tickwire's decoder and stream logic and print "
        "one JSON object per line (as `tickwire stream` does), or a table.",
    )
    _replay_source(rep)
    rep.add_argument(
        "--speed",
        type=cli._positive_float,
        default=None,
        help="1 = the recorded timing, 2 = twice as fast; default: as fast as possible",
    )
    rep.add_argument(
        "--count", type=cli._non_negative_int, default=None, help="stop after N data messages"
    )
    rep.add_argument("--raw", action="store_true", help="include each message's raw text")
    rep.add_argument(
        "--data-only", action="store_true", help="leave out events, heartbeats and notices"
    )
    rep.add_argument("--table", action="store_true", help="a table per symbol instead")
    rep.add_argument(
        "--table-rows", type=cli._positive_int, default=20, help="symbols the table shows (20)"
    )
    rep.set_defaults(func=cmd_replay)

    conv = sub.add_parser(
        "convert",
        help="convert a recording to Parquet (needs pyarrow)",
        description="Replay a recording as fast as possible and write one Parquet file per "
        "message type into OUT (typed columns, as batch.to_arrow() gives them). Needs "
        "pyarrow: pip install 'tickwire[parquet]'.",
    )
    _replay_source(conv)
    conv.add_argument(
        "--parquet", required=True, metavar="OUT", help="output directory (<type>.parquet)"
    )
    conv.set_defaults(func=cmd_convert)
