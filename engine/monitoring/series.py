"""Per-second series for the dashboard and the health model: a rolling window of closed
seconds plus the one being filled, with a bounded latency reservoir per second."""

from __future__ import annotations

import math
import random
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Final

RESERVOIR: Final = 256


class Second:
    """Mutable accumulator of the current second."""

    __slots__ = (
        "decisions",
        "denials",
        "errors",
        "events_in",
        "events_out",
        "handler_calls",
        "handler_errors",
        "latencies",
        "latency_seen",
        "loop_lag",
        "sec",
    )

    def __init__(self, sec: int) -> None:
        self.sec = sec
        self.events_in = 0
        self.events_out = 0
        self.errors = 0
        self.handler_calls = 0
        self.handler_errors = 0
        self.denials = 0
        self.decisions = 0
        self.latencies: list[float] = []
        self.latency_seen = 0
        self.loop_lag = 0.0

    def add_latency(self, seconds: float) -> None:
        self.latency_seen += 1
        if len(self.latencies) < RESERVOIR:
            self.latencies.append(seconds)
        else:
            j = random.randrange(self.latency_seen)
            if j < RESERVOIR:
                self.latencies[j] = seconds


@dataclass(frozen=True, slots=True)
class Sample:
    """A closed second."""

    sec: int
    connections: int
    events_in: int
    events_out: int
    errors: int
    handler_calls: int
    handler_errors: int
    denials: int
    decisions: int
    p50: float | None
    p99: float | None
    loop_lag: float
    latencies: tuple[float, ...] = field(repr=False)


def percentile(sorted_values: Sequence[float], q: float) -> float | None:
    """Nearest-rank percentile of already sorted values (``None`` when empty)."""
    if not sorted_values:
        return None
    rank = max(1, math.ceil(q * len(sorted_values)))
    return sorted_values[min(rank, len(sorted_values)) - 1]


class Reservoir:
    __slots__ = ("count", "samples", "total")

    def __init__(self) -> None:
        self.samples: list[float] = []
        self.count = 0
        self.total = 0.0

    def add(self, value: float) -> None:
        self.count += 1
        self.total += value
        if len(self.samples) < RESERVOIR:
            self.samples.append(value)
        else:
            j = random.randrange(self.count)
            if j < RESERVOIR:
                self.samples[j] = value


class Series:
    """Closed seconds (at most `seconds`) and the current one."""

    def __init__(self, now: float, seconds: int) -> None:
        self.cur = Second(int(now))
        self.samples: deque[Sample] = deque(maxlen=max(seconds, 1))

    def roll(self, now: float, connections: int) -> Second:
        sec = int(now)
        cur = self.cur
        if sec <= cur.sec:
            return cur
        conns = connections
        lat = sorted(cur.latencies)
        self.samples.append(
            Sample(
                sec=cur.sec,
                connections=conns,
                events_in=cur.events_in,
                events_out=cur.events_out,
                errors=cur.errors,
                handler_calls=cur.handler_calls,
                handler_errors=cur.handler_errors,
                denials=cur.denials,
                decisions=cur.decisions,
                p50=percentile(lat, 0.5),
                p99=percentile(lat, 0.99),
                loop_lag=cur.loop_lag,
                latencies=tuple(lat),
            )
        )
        maxlen = self.samples.maxlen or 1
        for gap in range(max(cur.sec + 1, sec - maxlen), sec):
            self.samples.append(
                Sample(gap, conns, 0, 0, 0, 0, 0, 0, 0, None, None, 0.0, latencies=())
            )
        self.cur = Second(sec)
        return self.cur

    def window(self, now: float, seconds: float) -> list[Sample]:
        cutoff = int(now) - seconds
        out: list[Sample] = []
        for sample in reversed(self.samples):
            if sample.sec < cutoff:
                break
            out.append(sample)
        return out
