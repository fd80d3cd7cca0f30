"""``statsd`` sink: UDP datagrams (counters ``|c``, gauges ``|g``, timings ``|ms``), batched."""

from __future__ import annotations

import re
import socket
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal, Self

import anyio.to_thread

from engine.monitoring.records import EventRecord, Labels, MetricsSnapshot, Record, Stream
from engine.monitoring.sinks.base import SINKS, DropCallback, Sink, SinkOptions

__all__ = ["StatsdOptions", "StatsdSink", "packets", "snapshot_lines"]

TagFormat = Literal["dogstatsd", "graphite", "none"]
_UNSAFE_NAME = re.compile(r"[^A-Za-z0-9_.\-]")
_UNSAFE_TAG = re.compile(r"[,|#:@\s]")


@dataclass(frozen=True, slots=True, kw_only=True)
class StatsdOptions(SinkOptions):
    """Options of a ``statsd`` sink.

    :param host: statsd host.
    :param port: statsd UDP port.
    :param prefix: prepended to every metric name (``prefix.name``).
    :param max_packet_bytes: payload bound of one datagram (1432 fits a 1500-byte MTU).
    :param tag_format: ``dogstatsd`` (``|#k:v``), ``graphite`` (labels as name segments), ``none``.
    """

    streams: tuple[Stream, ...] = ("metrics",)
    host: str = "127.0.0.1"
    port: int = 8125
    prefix: str = "engine"
    max_packet_bytes: int = 1432
    tag_format: TagFormat = "dogstatsd"

    @classmethod
    def from_profile(cls, mapping: Mapping[str, object]) -> Self:
        """Build from a schema-valid ``[monitoring.sinks.<id>]`` table of type ``statsd``."""
        host = mapping.get("host", "127.0.0.1")
        port = mapping.get("port", 8125)
        prefix = mapping.get("prefix", "engine")
        size = mapping.get("max_packet_bytes", 1432)
        tag_format = mapping.get("tag_format", "dogstatsd")
        if not isinstance(host, str) or not isinstance(prefix, str):
            raise TypeError("host and prefix must be strings")
        if not isinstance(port, int) or not 0 < port < 65536:
            raise ValueError("port must be 1..65535")
        if not isinstance(size, int) or size < 64:
            raise ValueError("max_packet_bytes must be >= 64")
        if tag_format not in ("dogstatsd", "graphite", "none"):
            raise ValueError("tag_format must be dogstatsd, graphite or none")
        return cls(
            host=host,
            port=port,
            prefix=prefix,
            max_packet_bytes=size,
            tag_format=tag_format,
            **cls._common(mapping),
        )


def _base_name(name: str, timing: bool) -> str:
    name = name.removeprefix("engine_").removesuffix("_total")
    if timing:
        name = name.removesuffix("_seconds")
    return name


def _line(
    prefix: str, name: str, labels: Labels, value: str, kind: str, fmt: TagFormat, rate: float = 1
) -> str:
    full = f"{prefix}.{name}" if prefix else name
    if fmt == "graphite":
        for _, v in labels:
            full += "." + (_UNSAFE_NAME.sub("_", v.strip("/")) or "root")
    full = _UNSAFE_NAME.sub("_", full)
    text = f"{full}:{value}|{kind}"
    if rate < 1:
        text += f"|@{rate:.6g}"
    if fmt == "dogstatsd" and labels:
        text += "|#" + ",".join(f"{k}:{_UNSAFE_TAG.sub('_', v)}" for k, v in labels)
    return text


def _num(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else f"{value:.6g}"


def snapshot_lines(snapshot: MetricsSnapshot, prefix: str, fmt: TagFormat) -> Iterator[str]:
    """Statsd lines for one metrics snapshot."""
    for name, labels, value in snapshot.counters:
        if value:
            yield _line(prefix, _base_name(name, False), labels, _num(value), "c", fmt)
    for name, labels, value in snapshot.gauges:
        yield _line(prefix, _base_name(name, False), labels, _num(max(value, 0.0)), "g", fmt)
    for series in snapshot.timings:
        if not series.samples_ms:
            continue
        rate = len(series.samples_ms) / series.count if series.count else 1.0
        name = _base_name(series.name, True)
        for sample in series.samples_ms:
            yield _line(prefix, name, series.labels, f"{sample:.3f}", "ms", fmt, rate)


def event_line(record: EventRecord, prefix: str, fmt: TagFormat) -> str:
    """A counter line for a security/errors/lifecycle record."""
    kind = record.fields.get("type") or record.fields.get("code") or record.fields.get("kind")
    labels: Labels = (("type", str(kind)),) if kind is not None else ()
    return _line(prefix, f"{record.stream}_events", labels, "1", "c", fmt)


def packets(lines: Sequence[str], max_bytes: int) -> tuple[list[bytes], int]:
    """Pack newline-joined lines into datagrams of at most ``max_bytes``.

    :returns: the packets and how many lines were too long to send at all.
    """
    out: list[bytes] = []
    current = bytearray()
    too_long = 0
    for text in lines:
        data = text.encode("utf-8")
        if len(data) > max_bytes:
            too_long += 1
            continue
        extra = len(data) + (1 if current else 0)
        if len(current) + extra > max_bytes:
            out.append(bytes(current))
            current = bytearray()
        if current:
            current += b"\n"
        current += data
    if current:
        out.append(bytes(current))
    return out, too_long


@SINKS.register("statsd")
class StatsdSink(Sink[StatsdOptions]):
    """Sends metric snapshots (and counts of other records) to statsd over UDP."""

    type_name = "statsd"
    options_type = StatsdOptions
    EXAMPLE = (
        '[monitoring.sinks.statsd]\ntype = "statsd"\nhost = "127.0.0.1"\nport = 8125\n'
        'prefix = "engine"\nstreams = ["metrics"]\n'
    )

    def __init__(
        self, sink_id: str, options: StatsdOptions, on_drop: DropCallback | None = None
    ) -> None:
        super().__init__(sink_id, options, on_drop)
        self._sock: socket.socket | None = None
        self._addr: tuple[Any, ...] | None = None
        self.sent_packets = 0

    def _connect(self) -> None:
        info = socket.getaddrinfo(
            self.options.host, self.options.port, type=socket.SOCK_DGRAM, proto=socket.IPPROTO_UDP
        )
        family, kind, proto, _, addr = info[0]
        sock = socket.socket(family, kind, proto)
        sock.setblocking(False)
        self._sock = sock
        self._addr = addr

    async def write(self, records: Sequence[Record]) -> None:
        """Pack the batch into datagrams and send them (non-blocking; failures count as drops)."""
        if self._sock is None:
            await anyio.to_thread.run_sync(self._connect)  # DNS may block
        assert self._sock is not None
        assert self._addr is not None
        opts = self.options
        lines: list[str] = []
        for record in records:
            if isinstance(record, MetricsSnapshot):
                lines.extend(snapshot_lines(record, opts.prefix, opts.tag_format))
            else:
                lines.append(event_line(record, opts.prefix, opts.tag_format))
        datagrams, too_long = packets(lines, opts.max_packet_bytes)
        if too_long:
            self._drop(too_long)
        for datagram in datagrams:
            try:
                self._sock.sendto(datagram, self._addr)
                self.sent_packets += 1
            except OSError:
                self._drop(1)

    def close_resources(self) -> None:
        """Close the socket."""
        if self._sock is not None:
            self._sock.close()
            self._sock = None
