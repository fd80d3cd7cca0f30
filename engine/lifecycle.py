"""Where the process is in its life, as /readyz reports it. Pure state, no I/O."""

from __future__ import annotations

import enum
from dataclasses import dataclass, field


class Phase(enum.Enum):
    STARTING = "starting"
    SERVING = "serving"
    DRAINING = "draining"
    STOPPED = "stopped"


@dataclass(slots=True)
class Lifecycle:
    phase: Phase = Phase.STARTING
    history: list[Phase] = field(default_factory=lambda: [Phase.STARTING])

    def advance(self, phase: Phase) -> None:
        """Phases only move forward; a late 'serving' after a drain began is ignored."""
        order = list(Phase)
        if order.index(phase) > order.index(self.phase):
            self.phase = phase
            self.history.append(phase)

    @property
    def ready(self) -> bool:
        return self.phase is Phase.SERVING
