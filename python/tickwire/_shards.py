"""Splitting one feed's scope into several venue connections (a relay's shards).

CoinAPI's filters combine as a cross product (PROTOCOLS.md 1.4: every data type x every
matching symbol x every period), so a scope splits along one list only, every other list kept
whole in each shard; the union of the shards is then the original scope. The list split is the
first of these with two or more parts:

1. ``symbols``: when every entry is exact (``SYMBOL$``), each goes to the shard a stable hash
   of its text names (CRC-32, the same on every machine and run, and a symbol keeps its shard
   when others are added). Otherwise entries are grouped, an entry with every entry it is a
   prefix of (``BINANCE_`` with ``BINANCE_SPOT_`` and ``BINANCE_SPOT_BTC_USDT$``), and the
   groups are dealt to the shards in the order given: shards never share a symbol.
2. ``exchanges``: entries dealt in order (a symbol has one exchange: disjoint).
3. ``index_ids``, when the types are ``index`` only; ``periods``, when they are ``ohlcv``
   only (elsewhere these lists restrict one type, and splitting them would repeat the others).
4. ``data_types``: dealt in order (disjoint).
5. ``assets``: dealt in order. Not disjoint: ``BTC_USD`` matches both ``BTC`` and ``USD``, so
   two shards receive it; JetStream stores it once by its message id (docs/nats.md), and the
   relay counts it under ``deduplicated``.

Moment: a prices stream's explicit ``instruments`` split by the same hash; ``subscribe_all``
and the orders stream are one stream each and do not split.

There are at most as many shards as parts; a hash split that leaves a shard empty has one
shard fewer (an empty list would mean "everything").
"""

from __future__ import annotations

import dataclasses
import zlib
from collections.abc import Sequence
from typing import Any

from ._feeds import CoinAPI, Moment

#: The most shards one relay opens: each is a venue connection, which plans limit.
MAX_SHARDS = 64


def _hashed(entries: Sequence[str], shards: int) -> list[tuple[str, ...]]:
    parts: list[list[str]] = [[] for _ in range(shards)]
    for e in entries:
        parts[zlib.crc32(e.encode()) % shards].append(e)
    return [tuple(p) for p in parts if p]


def _dealt(groups: Sequence[Sequence[str]], shards: int) -> list[tuple[str, ...]]:
    parts: list[list[str]] = [[] for _ in range(min(shards, len(groups)))]
    for i, g in enumerate(groups):
        parts[i % len(parts)].extend(g)
    return [tuple(p) for p in parts]


def _prefix_groups(symbols: Sequence[str]) -> list[list[str]]:
    """Entries that can match a common symbol, together; groups in order of first entry."""
    stems = [s.removesuffix("$") for s in symbols]
    exact = [s.endswith("$") for s in symbols]
    group = list(range(len(symbols)))

    def root(i: int) -> int:
        while group[i] != i:
            group[i] = group[group[i]]
            i = group[i]
        return i

    for i in range(len(symbols)):
        for j in range(i):
            # A prefix entry covers every entry starting with it; two exact entries overlap
            # only when equal.
            a, b = stems[i], stems[j]
            overlap = (
                (not exact[i] and b.startswith(a))
                or (not exact[j] and a.startswith(b))
                or (exact[i] and exact[j] and a == b)
            )
            if overlap:
                group[root(i)] = root(j)
    by_root: dict[int, list[str]] = {}
    for i, s in enumerate(symbols):
        by_root.setdefault(root(i), []).append(s)
    return list(by_root.values())


def _split_coinapi(feed: CoinAPI, shards: int) -> list[CoinAPI]:
    types = set(feed.data_types)
    candidates: list[tuple[str, list[tuple[str, ...]]]] = []
    if feed.symbols:
        if all(s.endswith("$") for s in feed.symbols):
            candidates.append(("symbols", _hashed(list(dict.fromkeys(feed.symbols)), shards)))
        else:
            candidates.append(("symbols", _dealt(_prefix_groups(feed.symbols), shards)))
    candidates.append(("exchanges", _dealt([[e] for e in dict.fromkeys(feed.exchanges)], shards)))
    if types <= {"index"}:
        candidates.append(
            ("index_ids", _dealt([[e] for e in dict.fromkeys(feed.index_ids)], shards))
        )
    if types <= {"ohlcv"}:
        candidates.append(("periods", _dealt([[e] for e in dict.fromkeys(feed.periods)], shards)))
    candidates.append(("data_types", _dealt([[e] for e in dict.fromkeys(feed.data_types)], shards)))
    candidates.append(("assets", _dealt([[e] for e in dict.fromkeys(feed.assets)], shards)))
    for name, parts in candidates:
        if len(parts) >= 2:
            changes: list[dict[str, Any]] = [{name: part} for part in parts]
            return [dataclasses.replace(feed, **c) for c in changes]
    raise ValueError(
        "cannot shard this scope: no list among symbols, exchanges, data_types and assets has "
        "two or more entries (an unfiltered list means everything and cannot be split)"
    )


def split(feed: CoinAPI | Moment, shards: int) -> list[CoinAPI | Moment]:
    """``feed``'s scope as at most ``shards`` feeds whose scopes together make it (see the
    module's rules). ``shards=1`` is ``[feed]``."""
    if isinstance(shards, bool) or not isinstance(shards, int):
        raise TypeError(f"shards must be an int, not {type(shards).__name__}")
    if not 1 <= shards <= MAX_SHARDS:
        raise ValueError(f"shards must be between 1 and {MAX_SHARDS}, not {shards}")
    if shards == 1:
        return [feed]
    if isinstance(feed, CoinAPI):
        return list(_split_coinapi(feed, shards))
    if feed.stream == "prices" and not feed.subscribe_all and len(feed.instruments) >= 2:
        parts = _hashed(list(dict.fromkeys(feed.instruments)), shards)
        if len(parts) >= 2:
            return [dataclasses.replace(feed, instruments=part) for part in parts]
    raise ValueError(
        "cannot shard this Moment feed: only a prices stream with two or more explicit "
        "instruments splits (subscribe_all and the orders stream are one stream each)"
    )
