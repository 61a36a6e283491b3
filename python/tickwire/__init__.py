"""tickwire: a real-time market-data client for Python with a Rust core.

The Rust core owns the WebSocket, the timers, SIMD JSON parsing, sequence checks and
reconnects; Python receives batches of typed, frozen messages.

Exceptions::

    TickwireError
    ├── ConnectError    the server could not be reached, or reconnecting gave up
    ├── AuthError       the server refused the API key (never retried)
    ├── ProtocolError   the server broke the protocol beyond recovery
    └── StreamClosed    the stream was closed and then used
"""

from __future__ import annotations

import logging

from ._core import (
    AllocationUpdate,
    ArrowBatch,
    AuthError,
    Batch,
    Book,
    BookL3,
    BookReset,
    BookSynced,
    Connected,
    ConnectError,
    Disconnected,
    Dropped,
    Exrate,
    Faults,
    Gap,
    Heartbeat,
    Index,
    Message,
    Metadata,
    Ohlcv,
    OrderBook,
    OrderUpdate,
    ParseError,
    PriceUpdate,
    ProtocolError,
    Quote,
    ReconnectNotice,
    ServerError,
    SimStats,
    Simulator,
    Stale,
    Stats,
    StreamClosed,
    Subscription,
    Success,
    Switched,
    SystemUpdate,
    TickwireError,
    Trade,
    Unknown,
    __version__,
    io_mode,
)
from ._feeds import CoinAPI, Moment, ReconnectPolicy
from ._nats import Nats, Relay, relay
from ._record import Recorder, replay
from ._stream import Stream, connect

logging.getLogger("tickwire").addHandler(logging.NullHandler())

__all__ = [
    "AllocationUpdate",
    "ArrowBatch",
    "AuthError",
    "Batch",
    "Book",
    "BookL3",
    "BookReset",
    "BookSynced",
    "CoinAPI",
    "ConnectError",
    "Connected",
    "Disconnected",
    "Dropped",
    "Exrate",
    "Faults",
    "Gap",
    "Heartbeat",
    "Index",
    "Message",
    "Metadata",
    "Moment",
    "Nats",
    "Ohlcv",
    "OrderBook",
    "OrderUpdate",
    "ParseError",
    "PriceUpdate",
    "ProtocolError",
    "Quote",
    "ReconnectNotice",
    "ReconnectPolicy",
    "Recorder",
    "Relay",
    "ServerError",
    "SimStats",
    "Simulator",
    "Stale",
    "Stats",
    "Stream",
    "StreamClosed",
    "Subscription",
    "Success",
    "Switched",
    "SystemUpdate",
    "TickwireError",
    "Trade",
    "Unknown",
    "__version__",
    "connect",
    "io_mode",
    "relay",
    "replay",
]
