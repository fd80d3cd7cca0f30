"""The monitor's background work while the engine runs: sink writers, the event-loop lag
probe and the periodic metrics flush; on the way out, flushing and closing the sinks."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

import anyio

if TYPE_CHECKING:
    from engine.monitoring.monitor import Monitor


async def probe(monitor: Monitor) -> None:
    interval = max(monitor.options.loop_lag_interval_seconds, 0.01)
    every = max(monitor.options.metrics_interval_seconds, interval)
    next_flush = monitor._clock() + every
    while True:
        started = time.perf_counter()
        await anyio.sleep(interval)
        monitor.loop_lag(max(time.perf_counter() - started - interval, 0.0))
        now = monitor._clock()
        if monitor._aggregate and now >= next_flush:
            monitor.flush_metrics(now)
            next_flush = now + every


async def run(monitor: Monitor) -> None:
    """Run sink writers and the loop-lag probe until cancelled; then flush the sinks."""
    try:
        async with anyio.create_task_group() as tg:
            for sink in monitor.sinks:
                if sink.streams:
                    tg.start_soon(sink.run)
            tg.start_soon(probe, monitor)
    finally:
        with anyio.CancelScope(shield=True):
            monitor.flush_metrics()
            for sink in monitor.sinks:
                await sink.flush()


async def aclose(monitor: Monitor) -> None:
    """Flush and close every sink (idempotent)."""
    if monitor._closed:
        return
    monitor._closed = True
    with anyio.CancelScope(shield=True):
        monitor.flush_metrics()
        for sink in monitor.sinks:
            await sink.aclose()
