"""``prometheus`` sink: exposition of the Monitor's registry at a path the app serves."""

from __future__ import annotations

import hmac
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Self

from engine.monitoring.records import Record, Stream
from engine.monitoring.sinks.base import SINKS, DropCallback, Sink, SinkOptions

__all__ = ["PrometheusOptions", "PrometheusSink", "bearer_ok", "parse_bind"]


@dataclass(frozen=True, slots=True, kw_only=True)
class PrometheusOptions(SinkOptions):
    """Options of a ``prometheus`` sink.

    :param path: HTTP path of the exposition.
    :param bearer_token: when set, scrapes need ``Authorization: Bearer <token>`` (secret).
    :param bind: optional separate ``host:port`` listener for the exposition.
    """

    streams: tuple[Stream, ...] = ("metrics",)
    path: str = "/metrics"
    bearer_token: str | None = field(default=None, repr=False)
    bind: str | None = None

    @classmethod
    def from_profile(cls, mapping: Mapping[str, object]) -> Self:
        """Build from a schema-valid ``[monitoring.sinks.<id>]`` table of type ``prometheus``."""
        path = mapping.get("path", "/metrics")
        token = mapping.get("bearer_token")
        bind = mapping.get("bind")
        if not isinstance(path, str) or not path.startswith("/"):
            raise ValueError("path must start with '/'")
        if token is not None and (not isinstance(token, str) or not token):
            raise ValueError("bearer_token must be a non-empty string")
        if bind is not None:
            if not isinstance(bind, str):
                raise TypeError("bind must be a string")
            parse_bind(bind)
        return cls(path=path, bearer_token=token, bind=bind, **cls._common(mapping))


def parse_bind(bind: str) -> tuple[str, int]:
    """Split ``host:port`` (``[::1]:9100`` for IPv6)."""
    host, sep, port = bind.rpartition(":")
    if not sep or not port.isdigit() or not 0 <= int(port) < 65536:
        raise ValueError(f"bind must be host:port, got {bind!r}")
    return host.strip("[]") or "0.0.0.0", int(port)


def _header(headers: Mapping[str, str], name: str) -> str | None:
    value = headers.get(name)
    if value is not None:
        return value
    lowered = name.lower()
    for key, val in headers.items():
        if key.lower() == lowered:
            return val
    return None


def bearer_ok(headers: Mapping[str, str], token: str | None) -> bool:
    """Whether ``Authorization: Bearer <token>`` matches (constant time); no token: allowed."""
    if token is None:
        return True
    value = _header(headers, "authorization")
    if value is None:
        return False
    scheme, _, given = value.strip().partition(" ")
    if scheme.lower() != "bearer":
        return False
    return hmac.compare_digest(given.strip().encode("utf-8"), token.encode("utf-8"))


@SINKS.register("prometheus")
class PrometheusSink(Sink[PrometheusOptions]):
    """Pull sink: takes no records; the app serves :meth:`Monitor.render_prometheus` at ``path``."""

    type_name = "prometheus"
    options_type = PrometheusOptions
    EXAMPLE = '[monitoring.sinks.prom]\ntype = "prometheus"\npath = "/metrics"\n'

    def __init__(
        self, sink_id: str, options: PrometheusOptions, on_drop: DropCallback | None = None
    ) -> None:
        super().__init__(sink_id, options, on_drop)
        self.streams = frozenset()

    def authorized(self, headers: Mapping[str, str]) -> bool:
        """Whether a scrape with these headers may read the metrics."""
        return bearer_ok(headers, self.options.bearer_token)

    async def write(self, records: Sequence[Record]) -> None:
        """Nothing to push: Prometheus pulls."""
