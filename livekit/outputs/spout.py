"""Spout output (Windows): displayed frames shared through SpoutGL's sendImage. Not tested on CI (Linux).

Written against SpoutGL's documented API (SpoutSender, setSenderName, sendImage, releaseSender, GL enums); the
package is imported only when a Spout output is asked for.
"""

from __future__ import annotations

import logging
import sys
from typing import Any

import numpy as np

log = logging.getLogger(__name__)


class SpoutUnavailable(RuntimeError):
    """Spout asked for off Windows, or SpoutGL is not installed."""


def _load_spout() -> Any:
    if sys.platform != "win32":
        raise SpoutUnavailable(f"Spout output works on Windows only (this is {sys.platform}); use NDI out instead")
    try:
        import SpoutGL
    except ImportError as exc:
        raise SpoutUnavailable("Spout output needs SpoutGL: pip install SpoutGL") from exc
    return SpoutGL


class SpoutOutput:
    """A Spout sender named ``name``; ``send(frame)`` publishes one HxWx3 uint8 RGB frame."""

    def __init__(self, name: str = "livekit") -> None:
        if not isinstance(name, str) or not name.strip():
            raise ValueError(f"a Spout sender needs a non-empty name, got {name!r}")
        self.name = name.strip()
        spout = _load_spout()
        self._gl_rgb = spout.enums.GL_RGB
        self._sender = spout.SpoutSender()
        self._sender.setSenderName(self.name)
        self.frames_sent = 0
        self.errors = 0
        self.problem: str | None = None
        self._closed = False

    def send(self, frame: np.ndarray) -> bool:
        """Publish one frame; False (counted, logged once) if it could not be sent."""
        if self._closed:
            return False
        try:
            height, width = frame.shape[:2]
            pixels = np.ascontiguousarray(frame, dtype=np.uint8)
            if not self._sender.sendImage(pixels, width, height, self._gl_rgb, False, 0):
                raise RuntimeError("sendImage returned False (no OpenGL context?)")
        except Exception as exc:  # never stops the show
            self.errors += 1
            if self.problem is None:
                self.problem = f"Spout output {self.name!r}: {exc}"
                log.warning("%s (further failures are counted, not logged)", self.problem)
            return False
        self.frames_sent += 1
        return True

    def close(self) -> None:
        """Release the Spout sender; idempotent."""
        if not self._closed:
            self._closed = True
            self._sender.releaseSender()
