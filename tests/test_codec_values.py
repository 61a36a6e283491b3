"""Impossible numbers on the wire are ParseErrors, never baselines: a CoinAPI sequence above
2**53, or a Moment ``msg_number`` whose date part is not a date, must not silence the stream
after it (later messages of the key are still delivered, and a reconnect does not ask to start
from the bad number). A raw ``websockets`` server on 127.0.0.1 sends the frames."""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest

import tickwire as tw

websockets = pytest.importorskip("websockets")
from websockets.asyncio.server import ServerConnection, serve  # noqa: E402

U64_MAX = 2**64 - 1
DAY = 20240501_0000000000


def trade(seq: int) -> str:
    return json.dumps(
        {
            "type": "trade",
            "symbol_id": "BITSTAMP_SPOT_BTC_USD",
            "sequence": seq,
            "time_exchange": "2024-05-01T14:30:00.1234567Z",
            "time_coinapi": "2024-05-01T14:30:00.2345678Z",
            "uuid": f"770C7A3B-7258-4441-8182-{seq % 10**12:012d}",
            "price": 64000.5,
            "size": 0.05,
            "taker_side": "BUY",
        },
        separators=(",", ":"),
    )


def order(number: int) -> str:
    return json.dumps(
        {
            "msg_type": "order_update",
            "msg_number": str(number),
            "event_type": "new",
            "order": {"id": f"mo_{number % 1000}", "status": "new", "side": "buy"},
        },
        separators=(",", ":"),
    )


@dataclass
class Server:
    """Connection `i` gets `scripts[i]` (the last one repeats), then a close."""

    scripts: list[list[str]]
    url: str = ""
    paths: list[str] = field(default_factory=list)


def serving(scripts: list[list[str]]) -> Callable[[], Iterator[Server]]:
    def run() -> Iterator[Server]:
        state = Server(scripts)
        ready = threading.Event()
        stop: list[tuple[asyncio.AbstractEventLoop, asyncio.Event]] = []

        async def handler(ws: ServerConnection) -> None:
            assert ws.request is not None
            n = len(state.paths)
            state.paths.append(ws.request.path)
            for f in state.scripts[min(n, len(state.scripts) - 1)]:
                await ws.send(f)
            await ws.close()

        async def main() -> None:
            async with serve(handler, "127.0.0.1", 0, compression=None) as srv:
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

    return run


def read_all(stream: Any) -> list[Any]:
    items: list[Any] = []
    for batch in stream:
        items.extend(batch)
    return items


@pytest.mark.timeout(30)
@pytest.mark.parametrize(
    "sequences",
    [
        [1, U64_MAX, 2, 3],
        [U64_MAX, 1, 2, 3],
        [1, 2**53 + 1, 2, 3],
    ],
    ids=["after-a-trade", "as-the-baseline", "2**53+1"],
)
def test_sequence_above_2_pow_53_is_a_parse_error(sequences: list[int]) -> None:
    for server in serving([[trade(s) for s in sequences]])():
        feed = tw.CoinAPI(url=server.url, data_types=["trade"], heartbeat=False)
        with tw.connect(feed, reconnect=None) as stream:
            items = read_all(stream)
            stats = stream.stats()
        trades = [m.sequence for m in items if isinstance(m, tw.Trade)]
        errors = [m for m in items if isinstance(m, tw.ParseError)]
        assert trades == [1, 2, 3]
        assert len(errors) == 1 and "above 2**53" in errors[0].reason
        assert stats.gaps == 0
        assert not any(isinstance(m, tw.Gap) for m in items)


@pytest.mark.timeout(30)
@pytest.mark.parametrize("bad", [9999999999999999999, 202413010000000000, 1])
def test_msg_number_without_a_date_is_a_parse_error(bad: int) -> None:
    first = [order(DAY + 1), order(bad), order(DAY + 2), order(DAY + 3)]
    for server in serving([first, [order(DAY + 3), order(DAY + 4)]])():
        feed = tw.Moment("orders", url=server.url)
        policy = tw.ReconnectPolicy(initial_delay=0.05, max_attempts=1)
        with tw.connect(feed, reconnect=policy) as stream:
            items = read_all(stream)
        numbers = [m.msg_number for m in items if isinstance(m, tw.OrderUpdate)]
        errors = [m for m in items if isinstance(m, tw.ParseError)]
        assert numbers == [DAY + n for n in (1, 2, 3, 4)]
        assert len(errors) == 1 and "does not start with a date" in errors[0].reason
        # The reconnect resumes after the last real order, not from the bad number.
        assert len(server.paths) >= 2
        assert server.paths[1].endswith(f"start_msg_number={DAY + 3:018}")
