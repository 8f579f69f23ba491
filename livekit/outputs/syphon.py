"""Syphon output (macOS): displayed frames shared as a Metal texture through syphon-python. Not tested on CI (Linux).

Written against syphon-python's documented API (SyphonMetalServer, create_mtl_texture, copy_image_to_mtl_texture);
the package is imported only when a Syphon output is asked for.
"""

from __future__ import annotations

import logging
import sys
from typing import Any

import numpy as np

log = logging.getLogger(__name__)


class SyphonUnavailable(RuntimeError):
    """Syphon asked for off macOS, or syphon-python is not installed."""


def _load_syphon() -> tuple[Any, Any, Any]:
    if sys.platform != "darwin":
        raise SyphonUnavailable(f"Syphon output works on macOS only (this is {sys.platform}); use NDI out instead")
    try:
        import syphon
        from syphon.utils.numpy import copy_image_to_mtl_texture
        from syphon.utils.raw import create_mtl_texture
    except ImportError as exc:
        raise SyphonUnavailable("Syphon output needs syphon-python: pip install syphon-python") from exc
    return syphon, create_mtl_texture, copy_image_to_mtl_texture


class SyphonOutput:
    """A Syphon server named ``name``; ``send(frame)`` publishes one HxWx3 uint8 RGB frame."""

    def __init__(self, name: str = "livekit") -> None:
        if not isinstance(name, str) or not name.strip():
            raise ValueError(f"a Syphon server needs a non-empty name, got {name!r}")
        self.name = name.strip()
        syphon, self._create_texture, self._copy = _load_syphon()
        self._server = syphon.SyphonMetalServer(self.name)
        self._texture: Any = None
        self._rgba: np.ndarray | None = None
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
            if self._rgba is None or self._rgba.shape[:2] != (height, width):
                self._rgba = np.full((height, width, 4), 255, np.uint8)
                self._texture = self._create_texture(self._server.device, width, height)
            self._rgba[..., :3] = frame
            self._copy(self._rgba, self._texture)
            self._server.publish_frame_texture(self._texture)
        except Exception as exc:  # never stops the show
            self.errors += 1
            if self.problem is None:
                self.problem = f"Syphon output {self.name!r}: {exc}"
                log.warning("%s (further failures are counted, not logged)", self.problem)
            return False
        self.frames_sent += 1
        return True

    def close(self) -> None:
        """Stop the Syphon server; idempotent."""
        if not self._closed:
            self._closed = True
            self._server.stop()
