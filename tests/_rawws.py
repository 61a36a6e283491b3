"""The server half of a WebSocket handshake and unmasked frames, for raw hostile servers on
127.0.0.1 (the tests' and the machine benchmark's): just enough RFC 6455 to misbehave with."""

from __future__ import annotations

import base64
import hashlib
import socket
import struct

GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"


def upgrade(conn: socket.socket) -> None:
    """Reads the upgrade request and accepts it."""
    request = b""
    while b"\r\n\r\n" not in request:
        chunk = conn.recv(4096)
        if not chunk:
            raise EOFError
        request += chunk
    key = next(
        line.split(":", 1)[1].strip()
        for line in request.decode().split("\r\n")
        if line.lower().startswith("sec-websocket-key:")
    )
    accept = base64.b64encode(hashlib.sha1(key.encode() + GUID).digest()).decode()
    conn.sendall(
        (
            "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
            f"Connection: Upgrade\r\nSec-WebSocket-Accept: {accept}\r\n\r\n"
        ).encode()
    )


def frame(opcode: int, payload: bytes) -> bytes:
    """One final, unmasked server frame (payloads under 64 KiB)."""
    n = len(payload)
    head = bytes([0x80 | opcode])
    head += bytes([n]) if n < 126 else bytes([126]) + struct.pack("!H", n)
    return head + payload
