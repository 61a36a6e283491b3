"""Prometheus metrics over ``stream.stats()``: the text format, and a small scrape endpoint.

::

    import tickwire as tw
    from tickwire import metrics

    with tw.connect(feed) as stream, metrics.serve(stream, "127.0.0.1:9464") as endpoint:
        print(endpoint.url)            # http://127.0.0.1:9464/metrics
        for batch in stream: ...

``prometheus_text(stats)`` is the library hook: it turns one :class:`tickwire.Stats` snapshot
into exposition text, for an application that already runs an HTTP server. Counters are
cumulative over the stream's life; latency and lag are the stream's quantiles (the stream
keeps quantiles, not buckets), exposed as gauges with a ``quantile`` label.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any

from ._core import Stats

__all__ = ["MetricsServer", "parse_address", "prometheus_text", "serve"]

#: (attribute of Stats, metric name, help): cumulative counts.
COUNTERS: tuple[tuple[str, str, str], ...] = (
    ("messages", "tickwire_messages_total", "Messages delivered (events not counted)."),
    ("bytes", "tickwire_bytes_total", "Payload bytes read from the socket (after inflate)."),
    ("batches", "tickwire_batches_total", "Batches handed to Python."),
    ("gaps", "tickwire_gaps_total", "Sequence gaps seen (Gap events)."),
    ("duplicates", "tickwire_duplicates_total", "Duplicates dropped by sequence checks."),
    ("dropped", "tickwire_dropped_total", "Messages dropped by the overflow policy."),
    ("parse_errors", "tickwire_parse_errors_total", "Frames that could not be parsed."),
    ("reconnects", "tickwire_reconnects_total", "Connections re-made after the first."),
)
#: Point-in-time values; those a Stats of this version lacks are left out.
GAUGES: tuple[tuple[str, str, str, float], ...] = (
    ("last_frame_age_s", "tickwire_last_frame_age_seconds", "Seconds since the last frame.", 1.0),
    ("queue_depth", "tickwire_queue_depth", "Messages waiting in the queue.", 1.0),
    ("queue_high_water", "tickwire_queue_high_water", "Most messages ever queued at once.", 1.0),
)
#: (attribute holding {p50, p99, max} in microseconds, metric name, help).
QUANTILES: tuple[tuple[str, str, str], ...] = (
    ("latency_us", "tickwire_latency_seconds", "Socket read to Python, per message."),
    ("lag_us", "tickwire_lag_seconds", "Receive time minus the venue's time stamp."),
)
_QUANTILE_OF = {"p50": "0.5", "p90": "0.9", "p99": "0.99", "p99.9": "0.999", "max": "1"}


def _labels(base: Mapping[str, str], **more: str) -> str:
    items = {**base, **more}
    if not items:
        return ""
    inner = ",".join(
        f'{k}="{v.replace(chr(92), chr(92) * 2).replace(chr(34), chr(92) + chr(34))}"'
        for k, v in items.items()
    )
    return "{" + inner + "}"


def prometheus_text(stats: Stats, labels: Mapping[str, str] | None = None) -> str:
    """One stats snapshot in the Prometheus text exposition format (version 0.0.4)."""
    base = dict(labels or {})
    out: list[str] = []
    for attr, name, doc in COUNTERS:
        value = getattr(stats, attr, None)
        if value is None:
            continue
        out += [f"# HELP {name} {doc}", f"# TYPE {name} counter"]
        out.append(f"{name}{_labels(base)} {int(value)}")
    for attr, name, doc, scale in GAUGES:
        if not hasattr(stats, attr):
            continue
        value = getattr(stats, attr)
        out += [f"# HELP {name} {doc}", f"# TYPE {name} gauge"]
        out.append(
            f"{name}{_labels(base)} {'NaN' if value is None else repr(float(value) * scale)}"
        )
    for attr, name, doc in QUANTILES:
        quantiles: Mapping[str, float | None] | None = getattr(stats, attr, None)
        if quantiles is None:
            continue
        out += [f"# HELP {name} {doc} Quantiles of the stream's window.", f"# TYPE {name} gauge"]
        for key, q in _QUANTILE_OF.items():
            if key in quantiles:
                v = quantiles[key]
                shown = "NaN" if v is None else repr(float(v) / 1e6)
                out.append(f"{name}{_labels(base, quantile=q)} {shown}")
    return "\n".join(out) + "\n"


def parse_address(text: str) -> tuple[str, int]:
    """``HOST:PORT`` (``[::1]:PORT`` for IPv6) as a bind address; port 0 picks a free one."""
    host, sep, port = text.rpartition(":")
    if not sep or not host:
        raise ValueError(f"expected HOST:PORT, got {text!r}")
    host = host.strip("[]")
    try:
        number = int(port)
    except ValueError:
        raise ValueError(f"the port must be a number, got {port!r}") from None
    if not 0 <= number <= 65535:
        raise ValueError(f"the port must be 0-65535, got {number}")
    return host, number


class MetricsServer:
    """An HTTP endpoint serving ``GET /metrics`` from a thread; close it (or use ``with``)."""

    def __init__(
        self,
        stats: Callable[[], Stats],
        host: str,
        port: int,
        labels: Mapping[str, str] | None = None,
    ) -> None:
        source = stats
        extra = dict(labels or {})

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                if self.path.split("?")[0] not in ("/metrics", "/"):
                    self.send_error(404, "only /metrics here")
                    return
                body = prometheus_text(source(), extra).encode()
                self.send_response(200)
                self.send_header("Content-Type", "text/plain; version=0.0.4; charset=utf-8")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: Any) -> None:
                # Scrapes are routine; the access log would drown the output.
                return

        self._server = ThreadingHTTPServer((host, port), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(
            target=self._server.serve_forever, name="tickwire-metrics", daemon=True
        )
        self._thread.start()

    @property
    def address(self) -> tuple[str, int]:
        host, port = self._server.server_address[:2]
        return str(host), int(port)

    @property
    def url(self) -> str:
        host, port = self.address
        shown = f"[{host}]" if ":" in host else host
        return f"http://{shown}:{port}/metrics"

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(5)

    def __enter__(self) -> MetricsServer:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


def serve(
    stream: Any, address: str = "127.0.0.1:9464", labels: Mapping[str, str] | None = None
) -> MetricsServer:
    """Serves ``stream.stats()`` (or any object with ``stats()``) as Prometheus text at
    ``http://ADDRESS/metrics`` until closed. Each scrape takes a fresh snapshot."""
    host, port = parse_address(address)
    return MetricsServer(stream.stats, host, port, labels)
