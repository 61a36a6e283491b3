"""Record and replay: :class:`Recorder` for ``connect(..., record=)``, and :func:`replay`."""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass

from . import _core
from ._stream import Stream

PathLike = str | os.PathLike[str]


@dataclass(frozen=True, init=False)
class Recorder:
    """Where and how ``tickwire.connect(feed, record=...)`` records a stream.

    Every frame as received (after inflate, control frames included) with its ``recv_ns``,
    what tickwire sent (keys scrubbed) and the connections' boundaries go to ``path``,
    zstd-compressed in blocks of 256 KiB or 100 ms (a crash loses at most the block being
    filled). With ``rotate_mb`` or ``rotate_s`` the recording moves to a new file once the
    current one reaches that size or age; the files are then named ``<stem>.<n>.twr``
    (``n`` from 0), and :func:`replay` given ``<stem>.twr`` plays them in order.
    """

    path: str
    rotate_mb: float | None
    rotate_s: float | None

    def __init__(
        self,
        path: PathLike,
        *,
        rotate_mb: float | None = None,
        rotate_s: float | None = None,
    ) -> None:
        for name, value in (("rotate_mb", rotate_mb), ("rotate_s", rotate_s)):
            if value is not None and not value > 0:
                raise ValueError(f"{name} must be positive or None, not {value!r}")
        object.__setattr__(self, "path", os.fspath(path))
        object.__setattr__(self, "rotate_mb", rotate_mb)
        object.__setattr__(self, "rotate_s", rotate_s)


def record_arg(record: PathLike | Recorder | None) -> tuple[str, float | None, float | None] | None:
    """``connect``'s ``record=`` as the core takes it."""
    if record is None:
        return None
    if not isinstance(record, Recorder):
        record = Recorder(record)
    return (record.path, record.rotate_mb, record.rotate_s)


def replay(
    path_or_paths: PathLike | Sequence[PathLike],
    speed: float | None = None,
    start_ns: int | None = None,
    end_ns: int | None = None,
    *,
    batch_size: int = 1024,
    queue_size: int = 262_144,
    keep_raw: bool = False,
) -> Stream:
    """A stream of a recording's messages and events, with the same API as a live one.

    The recorded frames run through the same decoder and stream logic as live ones, so
    ``Gap``, ``ParseError``, ``Stale`` and ``Switched`` are derived again; ``Connected`` and
    ``Disconnected`` come from the recording; ``recv_ns`` is the recorded value. Batch
    boundaries and ``Dropped`` are not reproduced (a ``Dropped`` in a replay says the recorder
    lost records because the disk could not keep up). ``speed=None`` replays as fast as
    possible; ``speed=1.0`` keeps the recorded timing (2.0 twice as fast). ``start_ns`` and
    ``end_ns`` bound ``recv_ns``; the index finds the start without decompressing what is
    before it. A file that is not a recording, or of a newer format version, raises
    ``ProtocolError`` here; a damaged or cut-short one replays up to the damage and then
    raises ``ProtocolError`` naming its byte offset.
    """
    paths = [path_or_paths] if isinstance(path_or_paths, (str, os.PathLike)) else path_or_paths
    core = _core.replay_stream(
        [os.fspath(p) for p in paths],
        speed=speed,
        start_ns=start_ns,
        end_ns=end_ns,
        batch_size=batch_size,
        queue_size=queue_size,
        keep_raw=keep_raw,
    )
    return Stream(core, 1.0)
