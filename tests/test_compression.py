"""permessage-deflate (RFC 7692) interop: tickwire's client against the Python ``websockets``
server with compression on, on 127.0.0.1."""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest

import tickwire as tw

websockets = pytest.importorskip("websockets")
from websockets.asyncio.server import ServerConnection, serve  # noqa: E402

COUNT = 2_000


def frame(seq: int) -> str:
    return json.dumps(
        {
            "type": "trade",
            "symbol_id": "BITSTAMP_SPOT_BTC_USD",
            "sequence": seq,
            "time_exchange": "2024-05-01T14:30:00.1234567Z",
            "time_coinapi": "2024-05-01T14:30:00.2345678Z",
            "uuid": f"770C7A3B-7258-4441-8182-{seq:012d}",
            "price": 64000.5 + seq,
            "size": 0.05,
            "taker_side": "BUY",
        }
    )


@dataclass
class Server:
    url: str = ""
    deflate: bool = False
    extensions: list[str] = field(default_factory=list)
    hellos: list[dict[str, Any]] = field(default_factory=list)


@pytest.fixture(params=["deflate", None], ids=["server-deflate", "server-plain"])
def server(request: pytest.FixtureRequest) -> Iterator[Server]:
    """A websockets server that answers a hello with COUNT trades, then closes."""
    state = Server(deflate=request.param == "deflate")
    ready = threading.Event()
    stop: list[tuple[asyncio.AbstractEventLoop, asyncio.Event]] = []

    async def handler(ws: ServerConnection) -> None:
        state.hellos.append(json.loads(await ws.recv()))
        assert ws.response is not None
        state.extensions.append(ws.response.headers.get("Sec-WebSocket-Extensions", ""))
        for seq in range(1, COUNT + 1):
            await ws.send(frame(seq))
        await ws.close()

    async def main() -> None:
        async with serve(handler, "127.0.0.1", 0, compression=request.param) as srv:
            port = next(iter(srv.sockets)).getsockname()[1]
            state.url = f"ws://127.0.0.1:{port}/v1/"
            done = asyncio.Event()
            stop.append((asyncio.get_running_loop(), done))
            ready.set()
            await done.wait()

    thread = threading.Thread(target=asyncio.run, args=(main(),), daemon=True)
    thread.start()
    assert ready.wait(10)
    yield state
    loop, done = stop[0]
    loop.call_soon_threadsafe(done.set)
    thread.join(10)


@pytest.mark.timeout(30)
@pytest.mark.parametrize("compression", [True, False])
def test_deflate_is_negotiated_and_every_message_arrives(server: Server, compression: bool) -> None:
    feed = tw.CoinAPI(url=server.url, data_types=["trade"], heartbeat=False)
    trades: list[tw.Trade] = []
    with tw.connect(feed, compression=compression, reconnect=None) as stream:
        for batch in stream:
            trades.extend(m for m in batch if isinstance(m, tw.Trade))
    assert [t.sequence for t in trades] == list(range(1, COUNT + 1))
    assert trades[-1].price == 64000.5 + COUNT
    assert stream.stats().gaps == 0
    assert server.hellos[0]["type"] == "hello"
    # Offered by default; in use only when the server wants it too.
    negotiated = "permessage-deflate" in server.extensions[0]
    assert negotiated == (compression and server.deflate)
