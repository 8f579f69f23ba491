"""Hot reload: the sketch file is polled; a change that loads is applied live, one that does not keeps the old one."""

from __future__ import annotations

from pathlib import Path

RELOAD_POLL_S = 0.25  # how often the sketch file's mtime is checked (hot reload applies within 1 s)


class SketchWatcher:
    """Tells when the sketch file changed since the last look (polled at most every RELOAD_POLL_S)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._mtime = path.stat().st_mtime
        self._next_check_s = 0.0

    def due(self, now_s: float) -> bool:
        """Whether the periodic checks should run at now_s (and schedule the next one)."""
        if now_s < self._next_check_s:
            return False
        self._next_check_s = now_s + RELOAD_POLL_S
        return True

    def changed(self) -> bool:
        """Whether the file's mtime moved since the last call (a missing file counts as unchanged)."""
        try:
            mtime = self.path.stat().st_mtime
        except OSError:
            return False
        if mtime == self._mtime:
            return False
        self._mtime = mtime
        return True
