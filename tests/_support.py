"""Helpers shared by the end-to-end tests: reading a stream to the end of what the simulator
sent, and turning the simulator's record into what the client must deliver."""

from __future__ import annotations

import asyncio
import time
from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import tickwire as tw

#: Every market-data type the simulator generates (CoinAPI names).
ALL_TYPES: tuple[str, ...] = (
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
#: An asset filter that every simulated symbol and exrate pair matches (see :func:`feed`).
QUOTE_ASSETS: tuple[str, ...] = ("USD", "USDT", "USDC", "EUR", "BTC")
#: Types keyed by symbol_id.
SYMBOL_TYPES: tuple[str, ...] = (
    "trade",
    "quote",
    "book",
    "book5",
    "book20",
    "book50",
    "book_l3",
    "ohlcv",
)

DATA_CLASSES: tuple[type[Any], ...] = (
    tw.Trade,
    tw.Quote,
    tw.Book,
    tw.BookL3,
    tw.Ohlcv,
    tw.Exrate,
    tw.Index,
)
EVENT_CLASSES: tuple[type[Any], ...] = (
    tw.Connected,
    tw.Disconnected,
    tw.Gap,
    tw.Stale,
    tw.Dropped,
    tw.Switched,
    tw.ParseError,
)

#: The class each wire type must arrive as.
CLASS_OF_TYPE: dict[str, type[Any]] = {
    "trade": tw.Trade,
    "quote": tw.Quote,
    "book": tw.Book,
    "book5": tw.Book,
    "book20": tw.Book,
    "book50": tw.Book,
    "book_l3": tw.BookL3,
    "ohlcv": tw.Ohlcv,
    "exrate": tw.Exrate,
    "index": tw.Index,
    "heartbeat": tw.Heartbeat,
    "reconnect": tw.ReconnectNotice,
    "error": tw.ServerError,
    "connected": tw.Connected,
    "disconnected": tw.Disconnected,
    "gap": tw.Gap,
    "stale": tw.Stale,
    "dropped": tw.Dropped,
    "switched": tw.Switched,
    "parse_error": tw.ParseError,
}

Record = tuple[str, "str | None", "int | None", "str | None"]


def is_data(msg: Any) -> bool:
    """A market-data message (what the simulator records), not an event or a notice."""
    return isinstance(msg, DATA_CLASSES)


def key_of(msg: Any) -> str:
    """The key the simulator records: symbol_id, index_id, or ``BASE/QUOTE`` for an exrate."""
    if isinstance(msg, tw.Index):
        return str(msg.index_id)
    if isinstance(msg, tw.Exrate):
        return f"{msg.asset_id_base}/{msg.asset_id_quote}"
    return str(msg.symbol_id)


def record_of(msg: Any) -> Record:
    """A delivered data message in the simulator's ``sent()`` form: (type, key, sequence, uuid)."""
    seq = getattr(msg, "sequence", None)
    uuid = msg.uuid if isinstance(msg, tw.Trade) else None
    return (msg.type, key_of(msg), seq, uuid)


@dataclass
class Expected:
    """What a client must deliver for one simulator connection's record."""

    data: list[Record] = field(default_factory=list)  # in order, duplicates removed
    gaps: list[tuple[str, str | None, int, int]] = field(default_factory=list)
    duplicates: int = 0
    malformed: int = 0

    @property
    def counts(self) -> Counter[str]:
        return Counter(r[0] for r in self.data)


def expected_from(sent: Sequence[Record]) -> Expected:
    """Apply DESIGN.md's sequence rules to what the simulator wrote on one connection.

    Per (type, key): the first message sets the baseline, +1 is in order, a jump is a gap
    (reported before the message), ``<= last`` is a duplicate (counted and dropped).
    """
    exp = Expected()
    last: dict[tuple[str, str | None], int] = {}
    for rec in sent:
        t, key, seq, _uuid = rec
        if t == "malformed":
            exp.malformed += 1
            continue
        if seq is None:
            exp.data.append(rec)
            continue
        prev = last.get((t, key))
        if prev is not None and seq <= prev:
            exp.duplicates += 1
            continue
        if prev is not None and seq != prev + 1:
            exp.gaps.append((t, key, prev + 1, seq))
        last[(t, key)] = seq
        exp.data.append(rec)
    return exp


def sequences_by_key(records: Iterable[Record]) -> dict[tuple[str, str | None], list[int]]:
    out: dict[tuple[str, str | None], list[int]] = defaultdict(list)
    for t, key, seq, _uuid in records:
        if seq is not None:
            out[(t, key)].append(seq)
    return dict(out)


@dataclass
class Collected:
    """Everything a stream delivered, flattened in order, plus the batch sizes."""

    items: list[Any] = field(default_factory=list)
    batch_sizes: list[int] = field(default_factory=list)
    stats: Any = None

    def add(self, batch: Any) -> None:
        self.batch_sizes.append(len(batch))
        self.items.extend(batch)

    @property
    def data(self) -> list[Any]:
        return [m for m in self.items if is_data(m)]

    def of(self, cls: type[Any]) -> list[Any]:
        return [m for m in self.items if isinstance(m, cls)]


class _Quiet:
    """Decides when a finished simulator's output has all arrived: ``quiet`` seconds without
    anything but heartbeats after ``sim.stats().finished``."""

    def __init__(self, sim: Any, quiet: float, deadline: float) -> None:
        self.sim = sim
        self.quiet = quiet
        self.deadline = time.monotonic() + deadline
        self.last = time.monotonic()

    def saw(self, batch: Any) -> None:
        if any(not isinstance(m, tw.Heartbeat) for m in batch):
            self.last = time.monotonic()

    def done(self) -> bool:
        now = time.monotonic()
        if now > self.deadline:
            raise AssertionError(
                f"stream not drained before the deadline; simulator stats: {self.sim.stats()!r}"
            )
        return bool(self.sim.stats().finished) and now - self.last >= self.quiet


def collect_sync(
    stream: Any, sim: Any, *, how: str = "iter", quiet: float = 1.0, deadline: float = 60.0
) -> Collected:
    """Read ``stream`` until ``sim`` has finished and nothing but heartbeats came for ``quiet`` s.

    ``how="iter"`` uses ``for batch in stream`` (woken by the simulator's 1 s heartbeats when
    quiet); ``how="next_batch"`` polls ``next_batch(timeout=0.2)``.
    """
    got = Collected()
    q = _Quiet(sim, quiet, deadline)
    if how == "iter":
        for batch in stream:
            got.add(batch)
            q.saw(batch)
            if q.done():
                break
    elif how == "next_batch":
        while not q.done():
            batch = stream.next_batch(timeout=0.2)
            if batch is not None:
                got.add(batch)
                q.saw(batch)
    else:
        raise ValueError(how)
    got.stats = stream.stats()
    return got


async def collect_async(
    stream: Any, sim: Any, *, quiet: float = 1.0, deadline: float = 60.0
) -> Collected:
    """``async for`` twin of :func:`collect_sync` (heartbeats wake the loop when quiet)."""
    got = Collected()
    q = _Quiet(sim, quiet, deadline)

    async def run() -> None:
        async for batch in stream:
            got.add(batch)
            q.saw(batch)
            if q.done():
                break

    await asyncio.wait_for(run(), deadline + 5)
    got.stats = stream.stats()
    return got


def feed(sim: Any, **kw: Any) -> Any:
    """A CoinAPI feed for ``sim``: every market type and every symbol unless narrowed.

    CoinAPI sends exrates only to a scope with an asset filter, and an asset filter also
    narrows the symbols; every simulated symbol is quoted in one of ``QUOTE_ASSETS`` and every
    exrate pair names one, so this filter keeps the whole market.
    """
    kw.setdefault("data_types", ALL_TYPES)
    kw.setdefault("assets", QUOTE_ASSETS)
    return tw.CoinAPI(url=sim.url, **kw)
