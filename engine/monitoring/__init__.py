"""Monitoring: Prometheus metrics, event sinks, the health model and the live dashboard.

The server adapter reports to one :class:`Monitor`; the app serves
:meth:`Monitor.render_prometheus`, :meth:`Monitor.stats` and :func:`dashboard_html`.
"""

from engine.monitoring.dashboard import (
    ADMIN_COOKIE,
    admin_cookie,
    check_admin,
    dashboard_html,
    login_html,
)
from engine.monitoring.health import HealthInputs, HealthOptions, HealthReport, assess
from engine.monitoring.monitor import Monitor
from engine.monitoring.options import AdminUIOptions, DashboardOptions, MonitoringOptions
from engine.monitoring.sinks import SINKS, Sink, SinkConfig, SinkOptions, bearer_ok

__all__ = [
    "ADMIN_COOKIE",
    "SINKS",
    "AdminUIOptions",
    "DashboardOptions",
    "HealthInputs",
    "HealthOptions",
    "HealthReport",
    "Monitor",
    "MonitoringOptions",
    "Sink",
    "SinkConfig",
    "SinkOptions",
    "admin_cookie",
    "assess",
    "bearer_ok",
    "check_admin",
    "dashboard_html",
    "login_html",
]
