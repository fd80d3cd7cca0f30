"""Connection caps: per user per namespace, per IP, and global.

Caps count namespace connections (one per Socket.IO ``connect`` to a namespace), the unit the
server admits or refuses. Anonymous connections (``user=None``) are bounded by the IP and
global caps only. The counter drops entries that reach zero so its memory tracks live
connections, not every address ever seen.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, TypeVar

from engine.policies.decision import ALLOW, Decision, Deny

__all__ = ["ConnectionCaps", "ConnectionCounts"]

K = TypeVar("K")


class ConnectionCounts:
    """Live connection counts; mutate only through :meth:`add` and :meth:`remove`."""

    __slots__ = ("_by_ip", "_by_user", "total")

    def __init__(self) -> None:
        self.total = 0
        self._by_ip: dict[str, int] = {}
        self._by_user: dict[tuple[str, str], int] = {}

    def for_ip(self, ip: str) -> int:
        return self._by_ip.get(ip, 0)

    def for_user(self, ns: str, user: str) -> int:
        return self._by_user.get((ns, user), 0)

    def add(self, ns: str, user: str | None, ip: str) -> None:
        """Record an admitted connection."""
        self.total += 1
        self._by_ip[ip] = self._by_ip.get(ip, 0) + 1
        if user is not None:
            self._by_user[ns, user] = self._by_user.get((ns, user), 0) + 1

    def remove(self, ns: str, user: str | None, ip: str) -> None:
        """Record a disconnect; tolerant of unknown entries so a double disconnect is harmless."""
        if ip in self._by_ip:
            self.total = max(0, self.total - 1)
            _decrement(self._by_ip, ip)
        if user is not None:
            _decrement(self._by_user, (ns, user))

    @property
    def tracked_ips(self) -> int:
        return len(self._by_ip)


def _decrement(table: dict[K, int], key: K) -> None:
    count = table.get(key, 0)
    if count <= 1:
        table.pop(key, None)
    else:
        table[key] = count - 1


@dataclass(frozen=True, slots=True)
class ConnectionCaps:
    """Caps from ``[security.connections]``; ``None`` disables a cap.

    :param max_per_user: connections one user may hold in one namespace (a namespace's own
        ``max_connections_per_user`` overrides it).
    :param max_per_ip: connections from one client IP, all namespaces together.
    :param max_total: connections to this process, all namespaces together.
    """

    max_per_user: int | None = None
    max_per_ip: int | None = None
    max_total: int | None = None

    @classmethod
    def from_profile(cls, mapping: Mapping[str, Any]) -> ConnectionCaps:
        """Build from the validated ``security.connections`` table."""
        return cls(
            max_per_user=_opt_int(mapping.get("max_per_user")),
            max_per_ip=_opt_int(mapping.get("max_per_ip")),
            max_total=_opt_int(mapping.get("max_total")),
        )

    def admit(
        self,
        counts: ConnectionCounts,
        ns: str,
        user: str | None,
        ip: str,
        *,
        namespace_max_per_user: int | None = None,
    ) -> Decision:
        """May one more connection be added to ``counts``? Checks global, then IP, then user."""
        if self.max_total is not None and counts.total >= self.max_total:
            return Deny("too_many_connections", "the server is at its connection limit")
        if self.max_per_ip is not None and counts.for_ip(ip) >= self.max_per_ip:
            return Deny("too_many_connections", "too many connections from your address")
        per_user = (
            namespace_max_per_user if namespace_max_per_user is not None else self.max_per_user
        )
        if user is not None and per_user is not None and counts.for_user(ns, user) >= per_user:
            return Deny("too_many_connections", "too many connections for this user")
        return ALLOW


def _opt_int(value: Any) -> int | None:
    return None if value is None else int(value)
