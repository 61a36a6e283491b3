"""`Stream`: sync and asyncio iteration over batches from the Rust core."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterable, Iterator
from types import TracebackType
from typing import TYPE_CHECKING, Literal

from . import _core
from ._core import ArrowBatch, Batch, ConnectError, OrderBook, Stats, StreamClosed
from ._feeds import CoinAPI, Moment, ReconnectPolicy, check_transport
from ._nats import Nats, stream_core

if TYPE_CHECKING:
    from ._record import PathLike, Recorder

Overflow = Literal["block", "drop_oldest", "conflate"]

_UNSET = ReconnectPolicy()


def _list(values: Iterable[str]) -> list[str]:
    return [values] if isinstance(values, str) else list(values)


def _scope(*lists: Iterable[str]) -> dict[str, list[str]]:
    """The scope keywords of ``StreamCore.change_scope``, as lists, in order."""
    names = ("data_types", "symbols", "assets", "exchanges", "periods", "index_ids")
    return dict(zip((*names, "instruments"), map(_list, lists), strict=True))


class Stream:
    """A live stream of batches. Made by :func:`connect`; the connection is made in the
    background, and entering the stream (``with`` / ``async with``) waits for it."""

    def __init__(self, core: _core.StreamCore, connect_timeout: float) -> None:
        self._core = core
        self._connect_timeout = connect_timeout
        self._ended = False
        # The loop watching the wake-up fd, and the future a waiting __anext__ sleeps on. The
        # fd stays registered between waits: one epoll registration per stream, not per batch.
        self._loop: asyncio.AbstractEventLoop | None = None
        self._waiter: asyncio.Future[None] | None = None

    def __repr__(self) -> str:
        if self._core.closed:
            state = "closed"
        elif self._ended:
            state = "ended"
        else:
            state = "open"
        return (
            f"<tickwire.Stream id={self._core.id} {self._core.url} {state}, "
            f"{self._core.stats().messages:,} messages>"
        )

    # -- sync ---------------------------------------------------------------------------
    def __enter__(self) -> Stream:
        # The core ends the stream after its initial attempts, so this wait is bounded by
        # them; the timeout is only a backstop.
        if not self._core.wait_connected(self._connect_timeout):
            raise ConnectError(
                f"no connection within {self._connect_timeout:.1f} s"
                + (f" ({self.waiting})" if self.waiting else "")
            )
        return self

    @property
    def state(self) -> str:
        """The connection's state: ``"connecting"``, ``"open"``, ``"probing"`` (our ping is
        out), ``"holding"`` (a make-before-break successor is being opened and read),
        ``"switching"``, ``"closing"`` or ``"closed"``."""
        return self._core.state

    @property
    def waiting(self) -> str | None:
        """What the stream waits for while not connected, e.g. ``"connecting to …, attempt 2,
        retrying in 0.4 s: connection refused"``; ``None`` once connected."""
        return self._core.waiting

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def __iter__(self) -> Iterator[Batch]:
        return self

    def __next__(self) -> Batch:
        batch = self.next_batch()
        if batch is None:
            raise StopIteration
        return batch

    def next_batch(self, timeout: float | None = None) -> Batch | None:
        """The next batch; ``None`` on timeout or at the end of the stream.

        Waits with the GIL released; Ctrl-C interrupts the wait.
        """
        if self._ended:
            if self._core.closed:
                raise StreamClosed("the stream is closed")
            return None
        got = self._core.poll(timeout)
        if isinstance(got, Batch):
            return got
        if got is False:
            self._ended = True
        return None

    # -- asyncio ------------------------------------------------------------------------
    async def __aenter__(self) -> Stream:
        while not self._core.connected_or_arm():
            await self._readable()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def __aiter__(self) -> AsyncIterator[Batch]:
        return self

    async def __anext__(self) -> Batch:
        if self._ended:
            if self._core.closed:
                raise StreamClosed("the stream is closed")
            raise StopAsyncIteration
        while True:
            try:
                got = self._core.poll_or_arm()
            except BaseException:
                self._unwatch()
                raise
            if isinstance(got, Batch):
                return got
            if got is False:
                self._ended = True
                self._unwatch()
                raise StopAsyncIteration
            await self._readable()

    async def _readable(self) -> None:
        """Sleeps until the core writes to its wake-up fd (once per ready batch)."""
        loop = asyncio.get_running_loop()
        if self._loop is not loop:
            self._unwatch()
            loop.add_reader(self._core.wake_fd, self._wake)
            self._loop = loop
        self._waiter = loop.create_future()
        try:
            await self._waiter
        finally:
            self._waiter = None

    def _wake(self) -> None:
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def _unwatch(self) -> None:
        loop, self._loop = self._loop, None
        if loop is not None and not loop.is_closed():
            loop.remove_reader(self._core.wake_fd)

    def queue(self, maxsize: int = 0) -> asyncio.Queue[Batch]:
        """An ``asyncio.Queue`` fed with this stream's batches by a task, for fan-out.

        The task ends with the stream; iteration errors are re-raised by the task.
        """
        q: asyncio.Queue[Batch] = asyncio.Queue(maxsize)

        async def pump() -> None:
            async for batch in self:
                await q.put(batch)

        self._pump = asyncio.get_running_loop().create_task(pump())
        return q

    # -- control ------------------------------------------------------------------------
    def subscribe(
        self,
        *,
        data_types: Iterable[str] = (),
        symbols: Iterable[str] = (),
        assets: Iterable[str] = (),
        exchanges: Iterable[str] = (),
        periods: Iterable[str] = (),
        index_ids: Iterable[str] = (),
        instruments: Iterable[str] = (),
        all: bool = False,
    ) -> None:
        """Adds to the subscription live.

        CoinAPI takes the feed's keyword names (``data_types=``, ``symbols=``, ...); Moment
        prices take ``instruments=`` (CUSIP or ISIN) or ``all=True``. The change is also
        remembered for every reconnect.
        """
        self._core.change_scope(
            True,
            **_scope(data_types, symbols, assets, exchanges, periods, index_ids, instruments),
            all=all,
        )

    def unsubscribe(
        self,
        *,
        data_types: Iterable[str] = (),
        symbols: Iterable[str] = (),
        assets: Iterable[str] = (),
        exchanges: Iterable[str] = (),
        periods: Iterable[str] = (),
        index_ids: Iterable[str] = (),
        instruments: Iterable[str] = (),
        all: bool = False,
    ) -> None:
        """Removes from the subscription live; the keywords of :meth:`subscribe`."""
        self._core.change_scope(
            False,
            **_scope(data_types, symbols, assets, exchanges, periods, index_ids, instruments),
            all=all,
        )

    def stats(self) -> Stats:
        return self._core.stats()

    def book(self, symbol: str, type: Literal["book", "book_l3"] = "book") -> OrderBook | None:
        """The maintained order book of ``symbol`` (streams made with ``books=True``).

        ``None`` until the book's first snapshot. The book is a live view: each read shows it
        as of the batches already returned, never a later state.
        """
        return self._core.book(symbol, type)

    def books_to_arrow(self, depth: int = 10) -> ArrowBatch:
        """The top ``depth`` levels of every maintained book, one row per level."""
        return self._core.books_to_arrow(depth)

    def close(self) -> None:
        """Closes the connection; iterating afterwards raises :class:`StreamClosed`. A stream
        made with ``record=`` returns once its recording is complete (last block and index
        written), within ``close_timeout`` + 2 s."""
        self._ended = True
        self._unwatch()
        self._core.close()


def connect(
    feed: CoinAPI | Moment | Nats,
    *,
    batch_size: int = 1024,
    queue_size: int = 262_144,
    queue_bytes: int = 256 * 2**20,
    overflow: Overflow = "block",
    heartbeat_timeout: float | None = None,
    ping_timeout: float | None = 10.0,
    connect_timeout: float = 10.0,
    reconnect: ReconnectPolicy | None = _UNSET,
    compression: bool = True,
    max_message_size: int = 16 * 2**20,
    ca_file: str | None = None,
    keep_raw: bool = False,
    busy_poll: float = 0.0,
    write_timeout: float = 10.0,
    close_timeout: float = 2.0,
    books: bool = False,
    record: PathLike | Recorder | None = None,
) -> Stream:
    """Starts streaming ``feed`` in the background and returns the :class:`Stream`.

    Never blocks: errors surface when the stream is entered or iterated. ``busy_poll``
    (seconds, off by default) makes each wait spin that long, GIL released, before it sleeps:
    on the socket with inline I/O, on the queue with an I/O thread (``tickwire.io_mode()``).
    It trades a busy CPU for the sleep and wake-up. ``write_timeout`` bounds every send,
    ping and pong flush (a server that stops reading ends the connection); ``close_timeout``
    bounds a close, after which the socket is released anyway.

    ``books=True`` maintains the CoinAPI ``book`` and ``book_l3`` order books in the core
    (:meth:`Stream.book`), with ``BookReset``/``BookSynced`` events in the batches; the raw
    book messages are still delivered.

    ``record`` (a path or a :class:`Recorder`) records the stream for :func:`replay`: every
    frame received, what was sent (keys scrubbed) and the connections' boundaries, written by
    a thread of its own; ``close()`` returns once the recording is complete.
    """
    from ._record import record_arg

    if isinstance(feed, Nats):
        if record is not None:
            raise ValueError("record= records WebSocket feeds (CoinAPI, Moment), not Nats")
        nats = stream_core(
            feed,
            batch_size=batch_size,
            queue_size=queue_size,
            overflow=overflow,
            connect_timeout=connect_timeout,
        )
        return Stream(nats, connect_timeout)
    if not isinstance(feed, (CoinAPI, Moment)):
        raise TypeError(
            f"feed must be tickwire.CoinAPI, tickwire.Moment or tickwire.Nats, "
            f"not {type(feed).__name__}"
        )
    scope = (
        feed
        if isinstance(feed, CoinAPI)
        else CoinAPI(url=feed._url(), data_types=(), heartbeat=False)
    )
    policy = (
        None
        if reconnect is None
        else (
            reconnect.on_notice,
            reconnect.initial_delay,
            reconnect.max_delay,
            reconnect.factor,
            reconnect.jitter,
            reconnect.max_attempts,
        )
    )
    check_transport(feed._url(), feed.allow_insecure)
    moment = feed if isinstance(feed, Moment) else None
    core = _core.StreamCore(
        feed._url(),
        protocol="moment" if moment else "coinapi",
        headers=feed._headers(),
        moment_stream=moment.stream if moment else None,
        instruments=list(moment.instruments) if moment else [],
        subscribe_all=moment.subscribe_all if moment else False,
        start_msg_number=moment.start_msg_number if moment else None,
        data_types=list(scope.data_types),
        symbols=list(scope.symbols),
        assets=list(scope.assets),
        exchanges=list(scope.exchanges),
        periods=list(scope.periods),
        index_ids=list(scope.index_ids),
        heartbeat=scope.heartbeat,
        update_limit_ms_quote=scope.update_limit_ms_quote,
        update_limit_ms_book_snapshot=scope.update_limit_ms_book_snapshot,
        update_limit_ms_exrate=scope.update_limit_ms_exrate,
        update_limit_ms_index=scope.update_limit_ms_index,
        batch_size=batch_size,
        queue_size=queue_size,
        queue_bytes=queue_bytes,
        overflow=overflow,
        heartbeat_timeout=heartbeat_timeout,
        ping_timeout=ping_timeout,
        connect_timeout=connect_timeout,
        reconnect=policy,
        compression=compression,
        max_message_size=max_message_size,
        ca_file=ca_file,
        keep_raw=keep_raw,
        busy_poll=busy_poll,
        write_timeout=write_timeout,
        close_timeout=close_timeout,
        initial_attempts=reconnect.initial_attempts if reconnect is not None else 1,
        books=books,
        record=record_arg(record),
    )
    # Each initial attempt: the upgrade and the first frame within connect_timeout each,
    # then a backoff delay.
    attempts = reconnect.initial_attempts if reconnect is not None else 1
    delay = reconnect.max_delay if reconnect is not None else 0.0
    return Stream(core, attempts * (2 * connect_timeout + delay) + 1.0)
