"""Feeds and policies: immutable descriptions of what to connect to and how to recover."""

from __future__ import annotations

import ipaddress
import os
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Literal
from urllib.parse import urlencode, urlsplit

OnNotice = Literal["make_before_break", "immediate", "wait_for_close"]


def _strings(name: str, values: Iterable[str] | str) -> tuple[str, ...]:
    if isinstance(values, str):
        return (values,)
    out = tuple(values)
    for v in out:
        if not isinstance(v, str):
            raise TypeError(f"{name} must hold strings, not {type(v).__name__}")
    return out


def _is_loopback(host: str) -> bool:
    """127.0.0.0/8, ::1 (also IPv4-mapped) or ``localhost``: addresses that never leave the
    machine."""
    if host.lower().rstrip(".") == "localhost":
        return True
    try:
        addr = ipaddress.ip_address(host)
    except ValueError:
        return False
    if isinstance(addr, ipaddress.IPv6Address) and addr.ipv4_mapped is not None:
        return addr.ipv4_mapped.is_loopback
    return addr.is_loopback


def check_transport(url: str, allow_insecure: bool) -> None:
    """Refuses, before any I/O, a plain ``ws://`` URL to a host that is not loopback: the key
    (upgrade header or ``auth_token``) would cross the network in clear. Nothing of the key is
    named in the error."""
    parts = urlsplit(url)
    if parts.scheme.lower() != "ws" or allow_insecure:
        return
    host = parts.hostname or ""
    if not _is_loopback(host):
        raise ValueError(
            f"refusing ws:// to {host!r}: the API key would travel unencrypted; use wss://, "
            "or pass allow_insecure=True (--allow-insecure on the command line) if the "
            "network is trusted"
        )


@dataclass(frozen=True)
class ReconnectPolicy:
    """Exponential backoff with jitter, reset after a connection that lived 10 s.

    Attempt ``n`` (0-based) waits
    ``min(max_delay, initial_delay * factor**n) * uniform(1 - jitter, 1 + jitter)``.
    Until the stream's first connection is made (its first frame after the opening request),
    ``initial_attempts`` dials are tried; then entering the stream raises ``ConnectError`` (or
    ``AuthError``) naming the last cause. Reconnect notices are paced by the same backoff.
    """

    on_notice: OnNotice = "make_before_break"
    initial_delay: float = 0.1
    max_delay: float = 30.0
    factor: float = 2.0
    jitter: float = 0.2
    max_attempts: int | None = None
    initial_attempts: int = 3

    def __post_init__(self) -> None:
        if self.on_notice not in ("make_before_break", "immediate", "wait_for_close"):
            raise ValueError(f"unknown on_notice {self.on_notice!r}")
        if not self.initial_delay > 0:
            raise ValueError("initial_delay must be > 0 (the first retry never waits 0)")
        if self.max_delay < self.initial_delay:
            raise ValueError("max_delay must be >= initial_delay")
        if self.factor < 1:
            raise ValueError("factor must be >= 1")
        if not 0 <= self.jitter < 1:
            raise ValueError("jitter must be in [0, 1)")
        if self.max_attempts is not None and self.max_attempts < 0:
            raise ValueError("max_attempts must be >= 0")
        if self.initial_attempts < 1:
            raise ValueError("initial_attempts must be >= 1")


@dataclass(frozen=True)
class CoinAPI:
    """The CoinAPI market-data WebSocket (V1). Each option maps to one ``hello`` field.

    The key comes from ``api_key`` or the ``COINAPI_KEY`` environment variable and travels
    in the ``X-CoinAPI-Key`` upgrade header; it never appears in a repr or an error.
    :func:`tickwire.connect` refuses a plain ``ws://`` URL to a host other than loopback
    unless ``allow_insecure=True``.
    """

    api_key: str | None = field(default=None, repr=False)
    url: str = "wss://ws.coinapi.io/v1/"
    data_types: tuple[str, ...] = ("trade",)
    symbols: tuple[str, ...] = ()
    assets: tuple[str, ...] = ()
    exchanges: tuple[str, ...] = ()
    periods: tuple[str, ...] = ()
    index_ids: tuple[str, ...] = ()
    heartbeat: bool = True
    update_limit_ms_quote: int | None = None
    update_limit_ms_book_snapshot: int | None = None
    update_limit_ms_exrate: int | None = None
    update_limit_ms_index: int | None = None
    allow_insecure: bool = False

    def __init__(
        self,
        api_key: str | None = None,
        *,
        url: str = "wss://ws.coinapi.io/v1/",
        data_types: Iterable[str] = ("trade",),
        symbols: Iterable[str] = (),
        assets: Iterable[str] = (),
        exchanges: Iterable[str] = (),
        periods: Iterable[str] = (),
        index_ids: Iterable[str] = (),
        heartbeat: bool = True,
        update_limit_ms_quote: int | None = None,
        update_limit_ms_book_snapshot: int | None = None,
        update_limit_ms_exrate: int | None = None,
        update_limit_ms_index: int | None = None,
        allow_insecure: bool = False,
    ) -> None:
        key = api_key if api_key is not None else os.environ.get("COINAPI_KEY")
        values = {
            "api_key": key,
            "url": url,
            "data_types": _strings("data_types", data_types),
            "symbols": _strings("symbols", symbols),
            "assets": _strings("assets", assets),
            "exchanges": _strings("exchanges", exchanges),
            "periods": _strings("periods", periods),
            "index_ids": _strings("index_ids", index_ids),
            "heartbeat": bool(heartbeat),
            "update_limit_ms_quote": update_limit_ms_quote,
            "update_limit_ms_book_snapshot": update_limit_ms_book_snapshot,
            "update_limit_ms_exrate": update_limit_ms_exrate,
            "update_limit_ms_index": update_limit_ms_index,
            "allow_insecure": bool(allow_insecure),
        }
        for name, value in values.items():
            object.__setattr__(self, name, value)

    def _url(self) -> str:
        return self.url

    def _headers(self) -> list[tuple[str, str]]:
        return [("X-CoinAPI-Key", self.api_key)] if self.api_key else []


MomentStreamName = Literal["prices", "orders"]

_MOMENT_PATHS = {"prices": "data/price-stream/", "orders": "trading/order-stream/"}
#: Moment's two hosts: ``live.moment-api.com`` and ``paper.moment-api.com`` (PROTOCOLS.md).
_MOMENT_ENVIRONMENTS = ("paper", "live")


@dataclass(frozen=True)
class Moment:
    """Moment's real-time Prices or Orders stream.

    The key comes from ``api_key`` or ``MOMENT_API_KEY`` and travels as
    ``Authorization: Bearer``; ``auth_in_query=True`` sends it as the ``auth_token`` query
    parameter instead, for proxies that strip headers. It never appears in a repr, an error or a
    URL tickwire shows. :func:`tickwire.connect` refuses a plain ``ws://`` URL to a host other
    than loopback unless ``allow_insecure=True``.
    """

    stream: MomentStreamName
    api_key: str | None = field(default=None, repr=False)
    environment: str = "paper"
    version: int = 1
    url: str | None = None
    instruments: tuple[str, ...] = ()
    subscribe_all: bool = False
    start_msg_number: int | None = None
    auth_in_query: bool = False
    allow_insecure: bool = False

    def __init__(
        self,
        stream: MomentStreamName,
        api_key: str | None = None,
        *,
        environment: str = "paper",
        version: int = 1,
        url: str | None = None,
        instruments: Iterable[str] = (),
        subscribe_all: bool = False,
        start_msg_number: int | None = None,
        auth_in_query: bool = False,
        allow_insecure: bool = False,
    ) -> None:
        if stream not in _MOMENT_PATHS:
            raise ValueError(f'stream must be "prices" or "orders", not {stream!r}')
        if environment not in _MOMENT_ENVIRONMENTS:
            raise ValueError(f'environment must be "paper" or "live", not {environment!r}')
        if start_msg_number is not None and stream != "orders":
            raise ValueError("start_msg_number applies to the orders stream only")
        if start_msg_number is not None and not 0 <= start_msg_number < 10**19:
            raise ValueError("start_msg_number must be YYYYMMDD followed by 10 digits")
        ids = _strings("instruments", instruments)
        if ids and stream != "prices":
            raise ValueError("instruments apply to the prices stream only")
        key = api_key if api_key is not None else os.environ.get("MOMENT_API_KEY")
        values = {
            "stream": stream,
            "api_key": key,
            "environment": environment,
            "version": int(version),
            "url": url,
            "instruments": ids,
            "subscribe_all": bool(subscribe_all),
            "start_msg_number": start_msg_number,
            "auth_in_query": bool(auth_in_query),
            "allow_insecure": bool(allow_insecure),
        }
        for name, value in values.items():
            object.__setattr__(self, name, value)

    def _url(self) -> str:
        base = self.url or (
            f"wss://{self.environment}.moment-api.com/v{self.version}/{_MOMENT_PATHS[self.stream]}"
        )
        if self.auth_in_query and self.api_key:
            sep = "&" if "?" in base else "?"
            return f"{base}{sep}{urlencode({'auth_token': self.api_key})}"
        return base

    def _headers(self) -> list[tuple[str, str]]:
        if self.api_key and not self.auth_in_query:
            return [("Authorization", f"Bearer {self.api_key}")]
        return []
