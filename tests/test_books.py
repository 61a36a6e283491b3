"""Maintained order books (``books=True``): after every batch, each valid book equals the
simulator's own book at the sequence the book has reached, across dropped updates, crossed
updates, mid-stream snapshots, gaps, reconnects and make-before-break switches."""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import pytest

import tickwire as tw

BOOK_TYPES = ("book", "book_l3")


@dataclass
class Run:
    """What one books=True run saw."""

    compared: Counter[str] = field(default_factory=Counter)
    resets: list[tw.BookReset] = field(default_factory=list)
    synced: list[tw.BookSynced] = field(default_factory=list)
    #: (type, symbol) compared equal after having been reset at least once.
    healed: set[tuple[str, str]] = field(default_factory=set)
    items: list[Any] = field(default_factory=list)
    connections: int = 0


def same_book(book: tw.OrderBook, truth: tw.OrderBook) -> None:
    if book.type == "book":
        assert book.bids == truth.bids
        assert book.asks == truth.asks
    else:
        assert book.orders() == truth.orders()
        for mine, theirs in ((book.bids, truth.bids), (book.asks, truth.asks)):
            # Levels of orders are float sums on the client, integer sums in the simulator.
            assert [p for p, _ in mine] == [p for p, _ in theirs]
            assert [s for _, s in mine] == pytest.approx([s for _, s in theirs], rel=1e-9)
    assert book.time_exchange == truth.time_exchange


def run(
    sim: Any,
    stream: tw.Stream,
    *,
    seconds: float,
    enough: Callable[[Run], bool] = lambda _: False,
) -> Run:
    """Reads for up to ``seconds``, checking every valid book against the simulator's after
    each batch."""
    out = Run()
    conn = -1
    last_conn: dict[tuple[str, str], int] = {}
    # The simulator numbers every connection it accepted, a successor that was given up
    # included: each of ours maps to the first of its not yet taken that knows the book.
    sim_conn: dict[int, int] = {}
    reset_seen: set[tuple[str, str]] = set()
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline and not enough(out):
        batch = stream.next_batch(timeout=0.5)
        if batch is None:
            continue
        touched: set[tuple[str, str]] = set()
        for m in batch:
            out.items.append(m)
            if isinstance(m, (tw.Connected, tw.Switched)):
                conn += 1
                # Kept current: `enough` may ask for it.
                out.connections = conn + 1
            elif isinstance(m, (tw.Book, tw.BookL3)) and m.type in BOOK_TYPES:
                last_conn[(m.type, m.symbol_id)] = conn
                touched.add((m.type, m.symbol_id))
            elif isinstance(m, tw.BookReset):
                out.resets.append(m)
                reset_seen.add((m.book_type, m.symbol_id))
            elif isinstance(m, tw.BookSynced):
                out.synced.append(m)
        for t, sym in touched:
            book = stream.book(sym, type=t)
            if book is None or not book.valid:
                continue
            c = last_conn[(t, sym)]
            if c not in sim_conn:
                first = max([c, *(j + 1 for j in sim_conn.values())])
                for j in range(first, sim.stats().connections):
                    if sim.book(sym, t, connection=j, sequence=book.sequence) is not None:
                        sim_conn[c] = j
                        break
            truth = sim.book(sym, t, connection=sim_conn.get(c, c), sequence=book.sequence)
            assert truth is not None, (t, sym, book.sequence)
            same_book(book, truth)
            out.compared[t] += 1
            if (t, sym) in reset_seen:
                out.healed.add((t, sym))
    return out


def check_events_in_place(items: list[Any]) -> None:
    """A gap reset follows its Gap, a crossed reset precedes the crossing message, and a
    synced follows the snapshot that made its book valid."""
    for i, m in enumerate(items):
        if isinstance(m, tw.BookReset) and m.reason == "gap":
            g = items[i - 1]
            assert isinstance(g, tw.Gap)
            assert (g.key, g.msg_type) == (m.symbol_id, m.book_type)
        if isinstance(m, tw.BookSynced):
            snap = items[i - 1]
            assert isinstance(snap, (tw.Book, tw.BookL3))
            assert snap.is_snapshot
            assert (snap.symbol_id, snap.type) == (m.symbol_id, m.book_type)
        if isinstance(m, tw.BookReset) and m.reason == "crossed":
            nxt = items[i + 1]
            assert isinstance(nxt, (tw.Book, tw.BookL3))
            assert nxt.symbol_id == m.symbol_id


def check_no_update_twice_across_connections(items: list[Any]) -> None:
    """No book update is delivered by two connections: after a switch, the successor's
    updates the old connection already delivered are folded into the snapshot it delivers.
    (A crossed-book fault repeats an update's times on one connection, so identity is
    counted per connection.)"""
    conn = -1
    first: dict[tuple[str, str, int, int], int] = {}
    for m in items:
        if isinstance(m, (tw.Connected, tw.Switched)):
            conn += 1
        elif isinstance(m, (tw.Book, tw.BookL3)) and m.type in BOOK_TYPES and not m.is_snapshot:
            ident = (m.type, m.symbol_id, m.time_exchange, m.time_coinapi)
            assert first.setdefault(ident, conn) == conn, (ident, first[ident], conn)


@pytest.mark.timeout(90)
def test_exact_symbols_reset_resync_and_match_the_simulator(make_sim: Callable[..., Any]) -> None:
    # No mid-stream snapshot fault here: an invalid book can only come back through the
    # out-and-back-in resync.
    sim = make_sim(
        rate=60_000,
        symbols=12,
        seed=3,
        faults=tw.Faults(book_drop_every=90, book_cross_every=131, gap_every=457),
    )
    symbols = [
        "BITSTAMP_SPOT_BTC_USD",
        "COINBASE_SPOT_ETH_USD",
        "BINANCE_SPOT_BTC_USDT",
        "COINBASE_SPOT_BTC_USD",
        "BITSTAMP_SPOT_BTC_USDT",
        "BINANCE_SPOT_ETH_USDT",
    ]
    feed = tw.CoinAPI(
        url=sim.url, data_types=BOOK_TYPES, symbols=[s + "$" for s in symbols], heartbeat=True
    )
    with tw.connect(feed, books=True) as stream:
        r = run(
            sim,
            stream,
            seconds=60,
            enough=lambda r: sum(r.compared.values()) > 3000 and len(r.healed) >= 4,
        )
        stats = stream.stats()
    assert r.compared["book"] > 500, r.compared
    assert r.compared["book_l3"] > 500, r.compared
    reasons = Counter(x.reason for x in r.resets)
    assert reasons["gap"] > 0, reasons
    assert reasons["crossed"] > 0, reasons
    assert set(reasons) <= {"gap", "crossed"}
    # Every book that was reset came back (a resync's snapshot) and matched again.
    assert len(r.healed) >= 4, (r.healed, reasons)
    check_events_in_place(r.items)
    assert r.connections == 1
    assert stats.book_updates_dropped > 0
    first_synced = {(x.book_type, x.symbol_id) for x in r.synced}
    assert first_synced == {(t, s) for t in BOOK_TYPES for s in symbols}


@pytest.mark.timeout(90)
def test_filtered_scope_takes_mid_stream_snapshots_and_survives_a_reconnect(
    make_sim: Callable[..., Any],
) -> None:
    # No lost or crossing updates: books go invalid only at the disconnect (which asks for no
    # refresh; the next connection sends every snapshot), so the reconnect path is the one
    # tested. Gaps and crossings in a filtered scope heal through refreshes (the next test).
    sim = make_sim(
        rate=40_000,
        symbols=40,
        seed=5,
        faults=tw.Faults(book_snapshot_every=23, disconnect_after_s=1.0),
    )
    feed = tw.CoinAPI(
        url=sim.url, data_types=BOOK_TYPES, exchanges=["BITSTAMP", "KRAKEN"], heartbeat=True
    )
    policy = tw.ReconnectPolicy(initial_delay=0.05)
    with tw.connect(feed, books=True, reconnect=policy) as stream:
        r = run(
            sim,
            stream,
            seconds=60,
            enough=lambda r: (
                r.connections >= 2 and sum(r.compared.values()) > 2500 and len(r.healed) >= 4
            ),
        )
        arrow = stream.books_to_arrow(depth=3)
    assert r.connections == 2
    assert not any(isinstance(m, tw.Switched) for m in r.items)
    reasons = Counter(x.reason for x in r.resets)
    assert set(reasons) == {"disconnected"}, reasons
    assert r.compared["book"] > 300, r.compared
    assert r.compared["book_l3"] > 300, r.compared
    # Books reset by the disconnect, valid again from the next connection's snapshots.
    assert len(r.healed) >= 4
    # Mid-stream snapshots replaced valid books quietly: no more synced than first
    # snapshots on the two connections.
    assert len(r.synced) <= 2 * len({(m.book_type, m.symbol_id) for m in r.synced})
    check_events_in_place(r.items)
    # Disconnected is followed by one reset per then-valid book, before anything else.
    i = next(i for i, m in enumerate(r.items) if isinstance(m, tw.Disconnected))
    after = r.items[i + 1 : i + 1 + reasons["disconnected"]]
    assert all(isinstance(m, tw.BookReset) and m.reason == "disconnected" for m in after)
    syms = {m.symbol_id for m in r.items if isinstance(m, (tw.Book, tw.BookL3))}
    assert syms
    assert all(s.startswith(("BITSTAMP_", "KRAKEN_")) for s in syms)
    assert len(arrow) > 0
    assert arrow.column_names[:3] == ["symbol_id", "type", "side"]


@pytest.mark.timeout(120)
def test_filtered_scope_resyncs_through_a_new_connection_and_matches_again(
    make_sim: Callable[..., Any],
) -> None:
    # No mid-stream snapshots and no disconnects: an invalid book of a filtered scope can
    # only come back through a refresh (a successor connection's snapshots, swapped in).
    sim = make_sim(
        rate=40_000,
        symbols=40,
        seed=11,
        faults=tw.Faults(book_drop_every=150, book_cross_every=211),
    )
    feed = tw.CoinAPI(
        url=sim.url, data_types=BOOK_TYPES, exchanges=["BITSTAMP", "KRAKEN"], heartbeat=True
    )
    with tw.connect(feed, books=True) as stream:
        r = run(
            sim,
            stream,
            seconds=90,
            enough=lambda r: (
                r.connections >= 3 and sum(r.compared.values()) > 3000 and len(r.healed) >= 6
            ),
        )
        stats = stream.stats()
    switches = [m for m in r.items if isinstance(m, tw.Switched)]
    assert len(switches) >= 2, len(switches)
    assert not any(isinstance(m, tw.Disconnected) for m in r.items)
    reasons = Counter(x.reason for x in r.resets)
    assert reasons["gap"] > 0, reasons
    assert reasons["crossed"] > 0, reasons
    assert set(reasons) <= {"gap", "crossed"}, reasons
    # Books reset on one connection, healed by a successor's snapshot, equal again.
    assert len(r.healed) >= 6, (r.healed, reasons)
    assert r.compared["book"] > 500, r.compared
    assert r.compared["book_l3"] > 500, r.compared
    check_events_in_place(r.items)
    check_no_update_twice_across_connections(r.items)
    # Each refresh's books come back with BookSynced right after their snapshot.
    i = r.items.index(switches[0])
    healed_there = [m for m in r.items[i:] if isinstance(m, tw.BookSynced)]
    assert healed_there
    # Successor updates the old connection had delivered were held back (folded into the
    # snapshot delivered), in the hold or after the switch.
    assert sum(x.overlap_dropped for x in switches) + stats.duplicates > 0
    syms = {m.symbol_id for m in r.items if isinstance(m, (tw.Book, tw.BookL3))}
    assert all(s.startswith(("BITSTAMP_", "KRAKEN_")) for s in syms)


@pytest.mark.timeout(60)
def test_make_before_break_swaps_books_without_a_reset(make_sim: Callable[..., Any]) -> None:
    sim = make_sim(
        rate=40_000,
        symbols=3,
        seed=7,
        faults=tw.Faults(reconnect_notice_after_s=1.0, reconnect_within_s=1.0),
    )
    feed = tw.CoinAPI(url=sim.url, data_types=BOOK_TYPES, heartbeat=True)
    policy = tw.ReconnectPolicy(on_notice="make_before_break")
    with tw.connect(feed, books=True, reconnect=policy) as stream:
        r = run(
            sim,
            stream,
            seconds=30,
            enough=lambda r: (
                any(isinstance(m, tw.Switched) for m in r.items) and sum(r.compared.values()) > 1500
            ),
        )
    assert sum(isinstance(m, tw.Switched) for m in r.items) == 1
    assert r.resets == [], r.resets
    assert not any(isinstance(m, (tw.Disconnected, tw.Gap)) for m in r.items)
    # Books kept matching the simulator's after the switch, on the new connection.
    i = next(i for i, m in enumerate(r.items) if isinstance(m, tw.Switched))
    assert any(isinstance(m, (tw.Book, tw.BookL3)) for m in r.items[i:])
    check_no_update_twice_across_connections(r.items)
    assert r.compared["book"] > 100, r.compared
    assert r.compared["book_l3"] > 100, r.compared


def test_book_api(make_sim: Callable[..., Any]) -> None:
    sim = make_sim(rate=20_000, symbols=2, seed=1)
    sym = "BITSTAMP_SPOT_BTC_USD"
    feed = tw.CoinAPI(url=sim.url, data_types=["book", "book_l3"], symbols=[sym + "$"])
    with tw.connect(feed, books=True) as stream:
        assert stream.book(sym) is None
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            stream.next_batch(timeout=0.5)
            if stream.book(sym) is not None and stream.book(sym, type="book_l3") is not None:
                break
        book = stream.book(sym)
        l3 = stream.book(sym, type="book_l3")
        assert book is not None
        assert l3 is not None
        assert book.valid
        assert (book.type, book.symbol_id, l3.type) == ("book", sym, "book_l3")
        bid, ask = book.best_bid(), book.best_ask()
        assert bid is not None
        assert ask is not None
        assert bid[0] < ask[0]
        bids, asks = book.depth(3)
        assert (bids, asks) == (book.bids[:3], book.asks[:3])
        assert [p for p, _ in book.bids] == sorted((p for p, _ in book.bids), reverse=True)
        assert [p for p, _ in book.asks] == sorted(p for p, _ in book.asks)
        with pytest.raises(TypeError, match="book_l3"):
            book.orders()
        orders = l3.orders()
        assert orders
        assert {side for _, side, _, _ in orders} <= {"bid", "ask"}
        best = l3.bids[0]
        at_best = [s for _, side, p, s in orders if side == "bid" and p == best[0]]
        assert sum(at_best) == pytest.approx(best[1])
        t = book.to_arrow(depth=2)
        assert len(t) == 4
        assert t.column_names == [
            "symbol_id",
            "type",
            "side",
            "level",
            "price",
            "size",
            "sequence",
            "time_exchange",
            "valid",
        ]
        assert repr(book).startswith("OrderBook(symbol_id='BITSTAMP_SPOT_BTC_USD', type='book'")
        with pytest.raises(ValueError, match="book5"):
            stream.book(sym, type="book5")  # type: ignore[arg-type]
        truth = sim.book(sym)
        assert truth is not None
        assert truth.valid
        assert sim.book("NOPE") is None
        with pytest.raises(ValueError, match="book20"):
            sim.book(sym, "book20")
    plain_feed = tw.CoinAPI(url=sim.url, data_types=["book"], symbols=[sym])
    with tw.connect(plain_feed) as plain, pytest.raises(ValueError, match="books=True"):
        plain.book(sym)
    assert tw.BookReset.__name__ == "BookReset"
    assert tw.BookSynced.__name__ == "BookSynced"
    f = tw.Faults(book_drop_every=5, book_cross_every=6, book_snapshot_every=7)
    assert (f.book_drop_every, f.book_cross_every, f.book_snapshot_every) == (5, 6, 7)
    with pytest.raises(ValueError, match="book_drop_every"):
        tw.Faults(book_drop_every=0)
