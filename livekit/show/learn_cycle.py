"""MIDI learn from the stage: L arms the sketch's targets one after another; the next moving control binds."""

from __future__ import annotations

from typing import Any, Callable


class LearnCycle:
    """Cycles MIDI learn through a sorted list of target names, then off."""

    def __init__(self, bus: Any, notify: Callable[[str], None]) -> None:
        self.bus = bus
        self._notify = notify
        self.targets: list[str] = sorted(bus.names)

    def refresh(self) -> None:
        """Take the bus's current targets (after a reload)."""
        self.targets = sorted(self.bus.names)

    def next(self) -> str | None:
        """Arm the next target (or turn learn off after the last one); the armed name, or None."""
        if not self.targets:
            return None
        current = self.bus.learning
        i = (self.targets.index(current) + 1) if current in self.targets else 0
        if i >= len(self.targets):
            self.bus.cancel_learn()
            self._notify("MIDI learn off")
            return None
        self.bus.learn(self.targets[i])
        self._notify(f"MIDI learn: move a control for '{self.targets[i]}' (L: next)")
        return self.targets[i]
