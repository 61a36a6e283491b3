"""What the harness, the client and the server processes share: the peer list, pinning, stats.

Nothing here imports a peer library, so the harness can list peers without loading them.
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib.metadata
import importlib.util
import os
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

#: The CoinAPI data types every client subscribes to (the simulator generates more; those are
#: not sent to a connection that did not ask for them).
DATA_TYPES: tuple[str, ...] = ("trade", "quote", "book5", "index")


@dataclass(frozen=True)
class Peer:
    """One client stack in the comparison."""

    #: The id used on the command line and in JSON (``--peers``).
    name: str
    #: The label in tables and charts; says exactly what runs.
    label: str
    #: Import names the client needs; a missing one skips the peer with a note.
    modules: tuple[str, ...]
    #: Distribution names whose versions are reported.
    dists: tuple[str, ...]
    #: ``True`` for tickwire itself (excluded from "best peer").
    ours: bool = False


PEERS: tuple[Peer, ...] = (
    Peer("tickwire", "tickwire (sync, objects)", ("tickwire",), ("tickwire",), ours=True),
    Peer(
        "tickwire-async",
        "tickwire (asyncio, objects)",
        ("tickwire",),
        ("tickwire",),
        ours=True,
    ),
    Peer(
        "tickwire-spin",
        "tickwire (sync, objects, busy_poll=1 ms)",
        ("tickwire",),
        ("tickwire",),
        ours=True,
    ),
    Peer(
        "tickwire-count",
        "tickwire (no per-message Python work)",
        ("tickwire",),
        ("tickwire",),
        ours=True,
    ),
    Peer(
        "tickwire-arrow",
        "tickwire (columnar, batch.to_arrow())",
        ("tickwire", "pyarrow"),
        ("tickwire", "pyarrow"),
        ours=True,
    ),
    Peer("websockets-json", "websockets + json", ("websockets", "json"), ("websockets",)),
    Peer(
        "websockets-orjson",
        "websockets + orjson",
        ("websockets", "orjson"),
        ("websockets", "orjson"),
    ),
    Peer("aiohttp-orjson", "aiohttp + orjson", ("aiohttp", "orjson"), ("aiohttp", "orjson")),
    Peer("picows-orjson", "picows + orjson", ("picows", "orjson"), ("picows", "orjson")),
    Peer("picows-msgspec", "picows + msgspec", ("picows", "msgspec"), ("picows", "msgspec")),
    Peer(
        "websocket-client-orjson",
        "websocket-client + orjson",
        ("websocket", "orjson"),
        ("websocket-client", "orjson"),
    ),
)

PEERS_BY_NAME: dict[str, Peer] = {p.name: p for p in PEERS}

#: Clients that count whole batches (``len(batch)``): with ``--total`` they overshoot N to the
#: end of a batch, so their message counts and checksums are not compared with the others.
BATCH_COUNTED: frozenset[str] = frozenset({"tickwire-count", "tickwire-arrow"})


def missing_modules(peer: Peer) -> list[str]:
    """The import names of ``peer`` that are not installed."""
    return [m for m in peer.modules if importlib.util.find_spec(m) is None]


def dist_version(dist: str) -> str | None:
    """The installed version of a distribution, or ``None``."""
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return None


def pin_process(cpu: int | None) -> None:
    """Pins every thread of this process to ``cpu`` (threads created later inherit it).

    ``os.sched_setaffinity(0, ...)`` only moves the calling thread, so each task id under
    ``/proc/self/task`` is pinned; the Rust runtimes start their threads later and inherit the
    mask from the thread that spawns them.
    """
    if cpu is None:
        return
    for tid in _task_ids():
        # The thread may have ended meanwhile, or may not be ours to move: thread_cpus() tells.
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.sched_setaffinity(tid, {cpu})


def thread_cpus() -> tuple[int, list[int]]:
    """(number of threads, sorted union of the CPUs they are allowed on)."""
    tids = _task_ids()
    cpus: set[int] = set()
    for tid in tids:
        with contextlib.suppress(ProcessLookupError):
            cpus |= os.sched_getaffinity(tid)
    return len(tids), sorted(cpus)


def _task_ids() -> list[int]:
    try:
        return [int(t) for t in os.listdir("/proc/self/task")]
    except OSError:  # not Linux: only the calling thread
        return [0]


def percentile(sorted_values: Sequence[float], q: float) -> float:
    """The ``q``-th percentile (0..100) of already sorted values, nearest-rank."""
    if not sorted_values:
        return float("nan")
    rank = max(1, -(-len(sorted_values) * q // 100))  # ceil(n * q / 100), at least 1
    return float(sorted_values[min(len(sorted_values), int(rank)) - 1])


def median(values: Sequence[float]) -> float:
    """The median (mean of the middle two for an even count); NaN when empty."""
    s = sorted(values)
    if not s:
        return float("nan")
    mid = len(s) // 2
    return float(s[mid]) if len(s) % 2 else (s[mid - 1] + s[mid]) / 2


def core_build() -> dict[str, Any]:
    """Which compiled tickwire core the clients will load: path, size, mtime, a hash, and
    whether it was built with debug assertions (a debug build is several times slower, and a
    shared checkout can be rebuilt under a running benchmark)."""
    spec = importlib.util.find_spec("tickwire._core")
    path = spec.origin if spec is not None else None
    if not path or not os.path.exists(path):
        return {"path": path}
    st = os.stat(path)
    digest = hashlib.sha256()
    debug = False
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
            # Only debug builds keep the standard library's `precondition_check` helpers.
            debug = debug or b"precondition_check" in chunk
    return {
        "path": path,
        "size_mb": round(st.st_size / 2**20, 1),
        "mtime": datetime.fromtimestamp(st.st_mtime, timezone.utc).isoformat(timespec="seconds"),
        "sha256": digest.hexdigest()[:16],
        "debug_assertions": debug,
    }


def other_load(r: dict[str, Any]) -> float:
    """The share of a benchmark CPU that something else took during a run's window, where it
    could matter: always on the client's CPU; on the simulator's only when the simulator needed
    most of its CPU (with room to spare, other load there does not slow the feed)."""
    o = r.get("other_load") or {}
    server = float(o.get("server_cpu", 0.0))
    if server + float(r.get("server_cpu_util") or 0.0) < 0.9:
        server = 0.0
    return max(float(o.get("client_cpu", 0.0)), server, float(o.get("steal", 0.0)))


def excluded(limit: float | None, r: dict[str, Any]) -> bool:
    """Whether a run is left out of the medians by ``--max-other-load limit``."""
    return limit is not None and other_load(r) > limit
