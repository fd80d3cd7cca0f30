"""Monitoring sinks, registered by their profile ``type`` string in :data:`SINKS`."""

from engine.monitoring.sinks.base import SINKS, DropCallback, Sink, SinkConfig, SinkOptions
from engine.monitoring.sinks.jsonl import JsonlOptions, JsonlSink, JsonlWriter
from engine.monitoring.sinks.log import JsonFormatter, LogOptions, LogSink
from engine.monitoring.sinks.prometheus import PrometheusOptions, PrometheusSink, bearer_ok
from engine.monitoring.sinks.statsd import StatsdOptions, StatsdSink

__all__ = [
    "SINKS",
    "DropCallback",
    "JsonFormatter",
    "JsonlOptions",
    "JsonlSink",
    "JsonlWriter",
    "LogOptions",
    "LogSink",
    "PrometheusOptions",
    "PrometheusSink",
    "Sink",
    "SinkConfig",
    "SinkOptions",
    "StatsdOptions",
    "StatsdSink",
    "bearer_ok",
]
