"""statsd sink: a real UDP socket on 127.0.0.1:0 receives the expected datagrams."""

from __future__ import annotations

import socket
from collections.abc import Iterator

import pytest

from engine.monitoring import Monitor, MonitoringOptions
from engine.monitoring.sinks.statsd import packets


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
def udp() -> Iterator[socket.socket]:
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.1", 0))
    sock.settimeout(5.0)
    yield sock
    sock.close()


def monitor_for(port: int, **extra: object) -> Monitor:
    options = MonitoringOptions.from_profile(
        {"sinks": {"sd": {"type": "statsd", "port": port, "prefix": "app", **extra}}}
    )
    return Monitor(
        options,
        profile_name="t",
        config_hash="h",
        declared_events={"/chat": frozenset({"message"})},
    )


def receive_lines(sock: socket.socket, expected: int) -> tuple[list[str], list[bytes]]:
    """Receive until ``expected`` lines arrived (the socket timeout fails the test otherwise)."""
    lines: list[str] = []
    datagrams: list[bytes] = []
    while len(lines) < expected:
        data, _ = sock.recvfrom(65535)
        datagrams.append(data)
        lines.extend(data.decode().split("\n"))
    return lines, datagrams


@pytest.mark.anyio
async def test_counters_gauges_and_timings_arrive(udp: socket.socket) -> None:
    m = monitor_for(udp.getsockname()[1])
    m.connection_opened("/chat")
    m.event_in("/chat", "message", 10)
    m.event_in("/chat", "message", 10)
    m.event_in("/chat", "nope", 1)
    m.handler_finished("/chat", "message", 0.0125, error=False)
    m.flush_metrics()
    await m.aclose()
    lines, _ = receive_lines(udp, 8)
    assert "app.events_in:2|c|#namespace:/chat,event:message" in lines
    assert "app.events_in:1|c|#namespace:/chat,event:other" in lines
    assert "app.bytes_in:21|c|#namespace:/chat" in lines
    assert "app.connects:1|c|#namespace:/chat" in lines
    assert "app.connections:1|g|#namespace:/chat" in lines
    assert "app.active_bans:0|g" in lines
    assert "app.handler_duration:12.500|ms|#namespace:/chat,event:message" in lines


@pytest.mark.anyio
async def test_graphite_names_and_packet_bound(udp: socket.socket) -> None:
    m = monitor_for(udp.getsockname()[1], tag_format="graphite", max_packet_bytes=200)
    for i in range(300):
        m.handler_finished("/chat", "message", i / 1000, error=False)
    m.flush_metrics()
    await m.aclose()
    lines, datagrams = receive_lines(udp, 258)  # 256 timings + 2 gauges
    timing = [x for x in lines if x.startswith("app.handler_duration.chat.message:")]
    assert len(timing) == 256  # reservoir bound, sent with a sample rate
    assert all(x.endswith("|ms|@0.853333") for x in timing)
    assert all(len(d) <= 200 for d in datagrams)


def test_packets_split_at_bound() -> None:
    lines = [f"a.b:{i}|c" for i in range(1000)]
    out, too_long = packets([*lines, "x" * 2000], 1432)
    assert too_long == 1
    assert all(len(p) <= 1432 for p in out)
    assert b"\n".join(out).decode().split("\n") == lines
