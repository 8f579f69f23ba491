"""The video outputs of a show (NDI, Syphon, Spout) as one fan-out: every displayed frame to each, none fatal."""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import numpy as np

log = logging.getLogger(__name__)
KINDS = ("ndi", "syphon", "spout")


@dataclass(frozen=True)
class OutputSpec:
    """One requested video output: its kind (ndi, syphon, spout) and the name receivers see."""

    kind: str
    name: str = "livekit"

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"unknown video output {self.kind!r}; choose one of {KINDS}")
        if not isinstance(self.name, str) or not self.name.strip():
            raise ValueError(f"a {self.kind} output needs a non-empty name, got {self.name!r}")


def ndi_out(name: str = "livekit") -> OutputSpec:
    """An NDI source NAME for a sketch's `outputs = [ndi_out("livekit")]` (same as --ndi-out NAME)."""
    return OutputSpec("ndi", name)


def syphon_out(name: str = "livekit") -> OutputSpec:
    """A Syphon server NAME (macOS) for a sketch's `outputs` (same as --syphon-out NAME)."""
    return OutputSpec("syphon", name)


def spout_out(name: str = "livekit") -> OutputSpec:
    """A Spout sender NAME (Windows) for a sketch's `outputs` (same as --spout-out NAME)."""
    return OutputSpec("spout", name)


def open_output(spec: OutputSpec, fps: float = 60.0) -> Any:
    """Open one output; raises ValueError with one clear line when its library or platform is missing."""
    try:
        if spec.kind == "ndi":
            from livekit.outputs.ndi import NdiOutput

            return NdiOutput(spec.name, fps=fps)
        if spec.kind == "syphon":
            from livekit.outputs.syphon import SyphonOutput

            return SyphonOutput(spec.name)
        from livekit.outputs.spout import SpoutOutput

        return SpoutOutput(spec.name)
    except RuntimeError as exc:  # NdiUnavailable / SyphonUnavailable / SpoutUnavailable
        raise ValueError(f"{spec.kind} output {spec.name!r}: {exc}") from exc


class VideoOutputs:
    """Sends each frame to every open output; an output that fails is reported once and keeps the show going."""

    def __init__(self, specs: Iterable[OutputSpec], fps: float = 60.0) -> None:
        self.outputs: list[Any] = []
        try:
            for spec in specs:
                self.outputs.append(open_output(spec, fps))
        except BaseException:
            self.close()
            raise
        self._reported: set[int] = set()
        self._last_key: Any = None
        self.errors = 0

    def __bool__(self) -> bool:
        return bool(self.outputs)

    def send(self, frame: np.ndarray, key: Any = None) -> None:
        """Publish one frame to every output (skipped when `key` equals the previous frame's key)."""
        if key is not None and key == self._last_key:
            return
        self._last_key = key
        for i, out in enumerate(self.outputs):
            try:
                ok = out.send(frame)
            except Exception as exc:  # a library error: count it, say it once, keep the show going
                ok, problem = False, f"{type(exc).__name__}: {exc}"
            else:
                problem = getattr(out, "problem", None)
            if not ok:
                self.errors += 1
                if i not in self._reported:
                    self._reported.add(i)
                    log.warning("video output %s failed (reported once): %s", getattr(out, "name", i), problem)

    def close(self) -> None:
        """Close every output."""
        for out in self.outputs:
            try:
                out.close()
            except Exception as exc:
                log.warning("closing video output %s: %s", getattr(out, "name", "?"), exc)
        self.outputs = []
