"""Records that flow from the :class:`Monitor` to sinks, one stream each."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Final, Literal

Stream = Literal["security", "errors", "lifecycle", "metrics"]
STREAMS: Final[tuple[Stream, ...]] = ("security", "errors", "lifecycle", "metrics")

Labels = tuple[tuple[str, str], ...]

_SECRET_WORDS: Final = ("token", "password", "secret", "authorization", "cookie", "api_key")


@dataclass(frozen=True, slots=True)
class EventRecord:
    """One security, errors or lifecycle record; ``fields`` is JSON-ready and redacted."""

    stream: Stream
    ts: float
    fields: Mapping[str, object]

    def to_json(self) -> dict[str, object]:
        """One JSON object: ``{"ts", "stream", **fields}``."""
        out: dict[str, object] = {"ts": self.ts, "stream": self.stream}
        for key, value in self.fields.items():
            if key not in out:
                out[key] = value
        return out


@dataclass(frozen=True, slots=True)
class TimingSeries:
    """Timing samples (milliseconds) of one metric in one interval.

    ``samples_ms`` is a bounded reservoir; ``count`` is how many were observed in total.
    """

    name: str
    labels: Labels
    samples_ms: tuple[float, ...]
    count: int
    sum_ms: float


@dataclass(frozen=True, slots=True)
class MetricsSnapshot:
    """Aggregated metric points of one flush interval (the ``metrics`` stream).

    Counters are deltas since the previous snapshot; gauges are current values.
    """

    ts: float
    interval_seconds: float
    counters: tuple[tuple[str, Labels, float], ...]
    gauges: tuple[tuple[str, Labels, float], ...]
    timings: tuple[TimingSeries, ...]

    @property
    def stream(self) -> Stream:
        """Always ``metrics``."""
        return "metrics"

    def to_json(self) -> dict[str, object]:
        """Summarised JSON form (timings as count/sum/max, not raw samples)."""
        return {
            "ts": self.ts,
            "stream": "metrics",
            "interval_seconds": self.interval_seconds,
            "counters": [{"name": n, "labels": dict(lb), "value": v} for n, lb, v in self.counters],
            "gauges": [{"name": n, "labels": dict(lb), "value": v} for n, lb, v in self.gauges],
            "timings": [
                {
                    "name": t.name,
                    "labels": dict(t.labels),
                    "count": t.count,
                    "sum_ms": t.sum_ms,
                    "max_ms": max(t.samples_ms, default=0.0),
                }
                for t in self.timings
            ],
        }


Record = EventRecord | MetricsSnapshot


def redact(fields: Mapping[str, object], _depth: int = 0) -> dict[str, object]:
    """Copy ``fields`` into JSON-ready values, masking secret-looking keys (also nested)."""
    out: dict[str, object] = {}
    for key, value in fields.items():
        k = str(key)
        lowered = k.lower()
        if any(word in lowered for word in _SECRET_WORDS):
            out[k] = "***"
        else:
            out[k] = _jsonable(value, _depth + 1)
    return out


def _jsonable(value: object, depth: int) -> object:
    if value is None or isinstance(value, bool | int | float | str):
        return value
    if depth > 4:
        return repr(value)
    if isinstance(value, Mapping):
        return redact(value, depth)
    if isinstance(value, list | tuple | set | frozenset):
        return [_jsonable(v, depth + 1) for v in value]
    return str(value)
