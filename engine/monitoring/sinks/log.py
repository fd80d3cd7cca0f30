"""``log`` sink: records through Python :mod:`logging`, formatted as one JSON object per line."""

from __future__ import annotations

import json
import logging
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Literal, Self

import anyio.to_thread

from engine.monitoring.records import Record
from engine.monitoring.sinks.base import SINKS, DropCallback, Sink, SinkOptions

__all__ = ["JsonFormatter", "LogOptions", "LogSink"]

Output = Literal["stderr", "stdout", "none"]
_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")


class JsonFormatter(logging.Formatter):
    """Formats a log record as JSON: time, level, logger, message, plus ``record.engine`` fields."""

    def format(self, record: logging.LogRecord) -> str:
        """One JSON object, no trailing newline."""
        out: dict[str, object] = {
            "time": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            + f".{int(record.msecs):03d}Z",
            "level": record.levelname,
            "logger": record.name,
        }
        fields = getattr(record, "engine", None)
        if isinstance(fields, Mapping):
            for key, value in fields.items():
                out.setdefault(str(key), value)
        else:
            out["message"] = record.getMessage()
        if record.exc_info:
            out["exception"] = self.formatException(record.exc_info)
        return json.dumps(out, separators=(",", ":"), default=str, ensure_ascii=False)


@dataclass(frozen=True, slots=True, kw_only=True)
class LogOptions(SinkOptions):
    """Options of a ``log`` sink.

    :param logger: logger name.
    :param level: level records are logged at.
    :param output: attach a JSON handler writing to ``stderr``/``stdout``, or ``none`` to rely on
        the application's logging configuration (the message is then the JSON text).
    """

    logger: str = "engine.monitoring.events"
    level: str = "INFO"
    output: Output = "stderr"

    @classmethod
    def from_profile(cls, mapping: Mapping[str, object]) -> Self:
        """Build from a schema-valid ``[monitoring.sinks.<id>]`` table of type ``log``."""
        logger = mapping.get("logger", "engine.monitoring.events")
        level = str(mapping.get("level", "INFO")).upper()
        output = mapping.get("output", "stderr")
        if not isinstance(logger, str) or not logger:
            raise ValueError("logger must be a non-empty string")
        if level not in _LEVELS:
            raise ValueError(f"level must be one of {_LEVELS}")
        if output not in ("stderr", "stdout", "none"):
            raise ValueError("output must be stderr, stdout or none")
        return cls(logger=logger, level=level, output=output, **cls._common(mapping))


@SINKS.register("log")
class LogSink(Sink[LogOptions]):
    """Logs each record at the configured level, JSON formatted."""

    type_name = "log"
    options_type = LogOptions
    EXAMPLE = (
        '[monitoring.sinks.console]\ntype = "log"\nlogger = "engine.events"\nlevel = "INFO"\n'
        'streams = ["security", "errors", "lifecycle"]\n'
    )

    def __init__(
        self, sink_id: str, options: LogOptions, on_drop: DropCallback | None = None
    ) -> None:
        super().__init__(sink_id, options, on_drop)
        self.logger = logging.getLogger(options.logger)
        self.level = logging.getLevelName(options.level)
        self._handler: logging.Handler | None = None
        if options.output != "none":
            stream = sys.stderr if options.output == "stderr" else sys.stdout
            handler = logging.StreamHandler(stream)
            handler.setFormatter(JsonFormatter())
            self.logger.addHandler(handler)
            if self.logger.getEffectiveLevel() > self.level:
                self.logger.setLevel(self.level)
            self.logger.propagate = False
            self._handler = handler

    def _emit(self, records: Sequence[Record]) -> None:
        for record in records:
            fields = record.to_json()
            message = json.dumps(fields, separators=(",", ":"), default=str, ensure_ascii=False)
            self.logger.log(self.level, message, extra={"engine": fields})

    async def write(self, records: Sequence[Record]) -> None:
        """Log the batch in a worker thread (handlers may block)."""
        if self.logger.isEnabledFor(self.level):
            await anyio.to_thread.run_sync(self._emit, records)

    def close_resources(self) -> None:
        """Detach the handler this sink installed."""
        if self._handler is not None:
            self.logger.removeHandler(self._handler)
            self._handler.close()
            self._handler = None
