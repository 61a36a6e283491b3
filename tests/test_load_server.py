"""The benchmark's pre-rendered load (``tickwire._core.LoadServer``): a real WebSocket server on
127.0.0.1 whose pre-rendered messages repeat with sequence numbers that keep counting, so a
client sees a gap-free feed across passes, optionally compressed (permessage-deflate)."""

from __future__ import annotations

import pytest

import tickwire as tw
from tickwire._core import LoadServer

TYPES = ("trade", "quote", "book5", "index")


def take(stream: tw.Stream, n: int) -> list[tw.Message]:
    out: list[tw.Message] = []
    while len(out) < n:
        batch = stream.next_batch(timeout=5.0)
        assert batch is not None, f"stream ended after {len(out)} messages"
        out.extend(batch)
    return out


@pytest.mark.timeout(60)
@pytest.mark.parametrize("compression", [False, True])
def test_passes_continue_sequences_without_gaps(compression: bool) -> None:
    with LoadServer(host="127.0.0.1", messages=500, symbols=10, compression=compression) as srv:
        feed = tw.CoinAPI(url=srv.url, data_types=TYPES, heartbeat=False)
        with tw.connect(feed, reconnect=None, compression=compression) as stream:
            msgs = take(stream, 5_000)  # ten passes over the 500 rendered messages
            st = stream.stats()
        stats = srv.stats()
    data = [m for m in msgs if isinstance(m, (tw.Trade, tw.Quote, tw.Book, tw.Index))]
    assert len(data) >= 5_000 - 1  # everything but the Connected event
    assert st.gaps == 0
    assert st.duplicates == 0
    assert st.parse_errors == 0
    assert not any(isinstance(m, (tw.Gap, tw.ParseError)) for m in msgs)
    last: dict[tuple[str, str], int] = {}
    for m in data:
        key = (m.type, m.index_id if isinstance(m, tw.Index) else m.symbol_id)
        if key in last:
            assert m.sequence == last[key] + 1
        last[key] = m.sequence
    assert stats["connections"] == 1
    assert stats["messages_sent"] >= 5_000
    if compression:
        # Deflate was negotiated and pays off on JSON this repetitive.
        assert stats["wire_bytes"] < stats["payload_bytes"] / 2
    else:
        assert stats["wire_bytes"] > stats["payload_bytes"]


def test_binds_loopback_only() -> None:
    with pytest.raises(OSError, match="loopback"):
        LoadServer(host="0.0.0.0")
    with pytest.raises(ValueError, match="messages"):
        LoadServer(messages=0)
