"""``tickwire bench``: tickwire side by side with other Python WebSocket + JSON stacks.

One invocation runs every installed client against the bundled simulator on 127.0.0.1,
interleaved and repeated, each client in its own process pinned to one CPU and the simulator in
its own process pinned to another, and reports msg/s, MB/s, CPU seconds per million messages
and, when paced (``--rate``), one-way latency percentiles. Every run is validated (messages
counted, sequence gaps, a checksum). ``python -m tickwire.bench --help`` lists the options.

The processes (each is also runnable by hand)::

    python -m tickwire.bench           the harness: subprocess orchestration and the report
    python -m tickwire.bench.server    the pinned simulator; prints its URL, then its counters
    python -m tickwire.bench.client    one pinned client; prints one JSON line of results

Peers are optional and not dependencies of tickwire:
``pip install websockets orjson aiohttp picows msgspec websocket-client matplotlib``.
"""

from __future__ import annotations

from ._common import PEERS, Peer
from ._harness import main

__all__ = ["PEERS", "Peer", "main"]
