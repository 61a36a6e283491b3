"""The live per-symbol table of ``tickwire stream ... --table``: last price, rate, gaps and
latency per key, redrawn in place on a terminal (a fresh frame per refresh otherwise)."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any, TextIO

from . import _core as tw

__all__ = ["LiveTable"]

#: Clear the screen and home the cursor (ANSI), so each frame replaces the last.
_REDRAW = "\x1b[H\x1b[J"


@dataclass
class _Row:
    count: int = 0
    window: int = 0
    gaps: int = 0
    last: float | None = None
    last_type: str = ""
    latency_ns: int = 0
    rate: float = 0.0
    latency_us: float | None = None


def _key_and_price(msg: Any) -> tuple[str, float | None] | None:
    """The row a message belongs to and the price it shows; None for what has no key."""
    if isinstance(msg, tw.Trade):
        return msg.symbol_id, msg.price
    if isinstance(msg, tw.Quote):
        return msg.symbol_id, (msg.bid_price + msg.ask_price) / 2
    if isinstance(msg, tw.Book):
        bid = msg.bids[0][0] if msg.bids else None
        ask = msg.asks[0][0] if msg.asks else None
        mid = (bid + ask) / 2 if bid is not None and ask is not None else bid or ask
        return msg.symbol_id, mid
    if isinstance(msg, tw.BookL3 | tw.Ohlcv):
        return msg.symbol_id, getattr(msg, "price_close", None)
    if isinstance(msg, tw.Index):
        return msg.index_id, msg.value
    if isinstance(msg, tw.Exrate):
        return f"{msg.asset_id_base}/{msg.asset_id_quote}", msg.rate
    if isinstance(msg, tw.PriceUpdate):
        return msg.instrument_id, msg.price
    return None


@dataclass
class LiveTable:
    """Accumulates batches; :meth:`render` draws the rows with the most messages."""

    rows: int = 20
    interval: float = 0.5
    started: float = field(default_factory=time.monotonic)
    _by_key: dict[str, _Row] = field(default_factory=dict)
    _last_render: float = field(default_factory=time.monotonic)
    _events: dict[str, int] = field(default_factory=dict)

    def add(self, batch: Any) -> None:
        now_ns = time.time_ns()
        for msg in batch:
            if isinstance(msg, tw.Gap):
                self._row(str(msg.key)).gaps += 1
                continue
            got = _key_and_price(msg)
            if got is None:
                self._events[msg.type] = self._events.get(msg.type, 0) + 1
                continue
            key, price = got
            row = self._row(key)
            row.count += 1
            row.window += 1
            row.latency_ns += now_ns - msg.recv_ns
            row.last_type = msg.type
            if price is not None:
                row.last = price

    @property
    def messages(self) -> int:
        """Keyed messages added so far."""
        return sum(r.count for r in self._by_key.values())

    def _row(self, key: str) -> _Row:
        row = self._by_key.get(key)
        if row is None:
            row = self._by_key[key] = _Row()
        return row

    def due(self, now: float) -> bool:
        return now - self._last_render >= self.interval

    def render(self, now: float, stats: tw.Stats) -> str:
        """One frame; the per-row rate and latency are over the time since the last frame."""
        span = max(now - self._last_render, 1e-9)
        self._last_render = now
        for row in self._by_key.values():
            row.rate = row.window / span
            row.latency_us = row.latency_ns / row.window / 1e3 if row.window else None
            row.window = 0
            row.latency_ns = 0
        lat = stats.latency_us
        lines = [
            f"tickwire  {now - self.started:7.1f}s  messages {stats.messages:,}  "
            f"gaps {stats.gaps:,}  duplicates {stats.duplicates:,}  dropped {stats.dropped:,}  "
            f"reconnects {stats.reconnects:,}  latency p50 {_us(lat.get('p50'))} "
            f"p99 {_us(lat.get('p99'))}",
            "",
            f"{'symbol':<34}{'type':<10}{'last':>16}{'msg/s':>10}{'messages':>12}"
            f"{'gaps':>7}{'latency':>12}",
        ]
        top = sorted(self._by_key.items(), key=lambda kv: (-kv[1].count, kv[0]))[: self.rows]
        for key, row in top:
            last = "-" if row.last is None else f"{row.last:,.6g}"
            lines.append(
                f"{key[:33]:<34}{row.last_type[:9]:<10}{last:>16}{row.rate:>10,.0f}"
                f"{row.count:>12,}{row.gaps:>7,}{_us(row.latency_us):>12}"
            )
        hidden = len(self._by_key) - len(top)
        if hidden > 0:
            lines.append(f"... and {hidden:,} more keys")
        if self._events:
            lines.append("")
            lines.append(
                "events and notices: "
                + ", ".join(f"{t} {n:,}" for t, n in sorted(self._events.items()))
            )
        return "\n".join(lines) + "\n"

    def show(self, out: TextIO, now: float, stats: tw.Stats, *, tty: bool) -> None:
        frame = self.render(now, stats)
        out.write((_REDRAW if tty else "\n") + frame)
        out.flush()


def _us(value: float | None) -> str:
    return "-" if value is None else f"{value:,.0f} us"
