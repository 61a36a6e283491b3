"""Scale-out over NATS JetStream: :func:`relay` publishes a feed, :class:`Nats` reads it back."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from types import TracebackType
from typing import Any, Literal

from . import _core
from ._feeds import CoinAPI, Moment, _strings
from ._shards import split

Start = Literal["all", "new"] | int


@dataclass(frozen=True, init=False)
class Nats:
    """Relayed messages from the JetStream stream ``stream`` at ``url``.

    ``subjects`` are subject filters (``tickwire.<venue>.<type>.<key>``, wildcards allowed;
    empty: everything); each gets its own consumer, merged into one stream. ``durable`` names
    durable consumers (the server remembers their position); ``start`` is ``"all"``,
    ``"new"`` or a stream sequence to start at.
    """

    url: str
    stream: str
    subjects: tuple[str, ...]
    durable: str | None
    start: Start

    def __init__(
        self,
        url: str = "nats://127.0.0.1:4222",
        *,
        stream: str = "TICKWIRE",
        subjects: Iterable[str] | str = (),
        durable: str | None = None,
        start: Start = "all",
    ) -> None:
        if isinstance(start, bool) or not (
            start in ("all", "new") or (isinstance(start, int) and start > 0)
        ):
            raise ValueError(f'start must be "all", "new" or a stream sequence, not {start!r}')
        object.__setattr__(self, "url", url)
        object.__setattr__(self, "stream", stream)
        object.__setattr__(self, "subjects", _strings("subjects", subjects))
        object.__setattr__(self, "durable", durable)
        object.__setattr__(self, "start", start)


def stream_core(
    feed: Nats,
    *,
    batch_size: int,
    queue_size: int,
    overflow: str,
    connect_timeout: float,
) -> _core.StreamCore:
    """The core of ``tickwire.connect(Nats(...))``."""
    return _core.nats_stream(
        feed.url,
        stream=feed.stream,
        subjects=list(feed.subjects),
        durable=feed.durable,
        start=feed.start,
        batch_size=batch_size,
        queue_size=queue_size,
        overflow=overflow,
        connect_timeout=connect_timeout,
    )


class Relay:
    """A running relay: tickwire streams (one per shard, each a venue connection with its own
    reconnects) whose venue messages the Rust core publishes to JetStream, one NATS message
    each, with pipelined acks. Made by :func:`relay`."""

    def __init__(self, core: _core.RelayCore, feeds: tuple[CoinAPI | Moment, ...]) -> None:
        self._core = core
        #: Each shard's feed, in shard order: the scope its venue connection subscribes to.
        self.feeds = feeds

    def stats(self) -> dict[str, int | bool]:
        """Summed over the shards: ``published``, ``bytes`` (payload bytes published),
        ``acked``, ``deduplicated``, ``retried``, ``in_flight``, ``lag`` (envelopes waiting in
        the relayed streams' queues); ``ready`` once the JetStream stream exists; ``shards``,
        how many."""
        return self._core.stats()

    def shard_stats(self) -> list[dict[str, int | bool]]:
        """:meth:`stats` for each shard (without ``shards``), in the order of :attr:`feeds`."""
        return self._core.shard_stats()

    def close(self, timeout: float = 10.0) -> bool:
        """Stops relaying and waits up to ``timeout`` seconds for the acks in flight."""
        return self._core.close(timeout)

    def __enter__(self) -> Relay:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


def relay(
    feed: CoinAPI | Moment,
    *,
    nats: str = "nats://127.0.0.1:4222",
    stream: str = "TICKWIRE",
    window: int = 4096,
    shards: int = 1,
    **options: Any,
) -> Relay:
    """Relays ``feed`` to the JetStream stream ``stream`` at ``nats`` (created with subjects
    ``tickwire.>`` when missing). ``options`` are :func:`tickwire.connect`'s; ``window`` is
    the most publishes per shard awaiting their ack at once, past which the shard stops taking
    from its stream's queue and the ``overflow`` policy applies.

    ``shards=N`` splits the scope over at most N venue connections, each a full stream with
    its own reconnects and make-before-break (rules in ``tickwire._shards``: exact symbols by
    a stable hash, filter lists by entry); ``relay.feeds`` shows each shard's scope."""
    from ._stream import connect

    if not isinstance(feed, (CoinAPI, Moment)):
        raise TypeError(
            f"feed must be tickwire.CoinAPI or tickwire.Moment, not {type(feed).__name__}"
        )
    feeds = tuple(split(feed, shards))
    options["keep_raw"] = True
    streams: list[Any] = []
    try:
        for part in feeds:
            streams.append(connect(part, **options))
        venue = "moment" if isinstance(feed, Moment) else "coinapi"
        core = _core.RelayCore([s._core for s in streams], nats, stream, venue, window)
    except BaseException:
        for s in streams:
            s.close()
        raise
    return Relay(core, feeds)
