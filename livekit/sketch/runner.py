"""The per-tick SketchRunner: bus snapshot -> update(p, t) -> Conditioning, with nothing in a tick fatal."""

from __future__ import annotations

import logging
import math
import traceback
import types
from collections.abc import Mapping
from dataclasses import dataclass, replace
from pathlib import Path

from controllers.base import TempoState
from livekit.sketch.conditioning import ConditioningBuilder, apply_overrides, build_conditioning
from livekit.sketch.params import ParamBus
from livekit.sketch.settings import SketchError
from livekit.sketch.base import Sketch
from livekit.sketch.values import TickValues
from pipeline.conditioning import Conditioning

log = logging.getLogger("livekit.sketch")  # sketch errors are logged under livekit.sketch, where they always were


@dataclass(frozen=True)
class TickResult:
    """One tick's output: the engine's conditioning, every target's value, and the scene."""

    conditioning: Conditioning
    values: Mapping[str, float]
    scene: int | None
    t_s: float  # seconds since the first tick
    ok: bool = True  # False: this tick failed and repeats the previous result
    rolled_back: str | None = None  # set on the tick a freshly reloaded sketch failed and the last good one returned


@dataclass(frozen=True)
class SketchErrors:
    """Errors the live loop absorbed (for the HUD)."""

    count: int = 0
    last: str | None = None  # "ZeroDivisionError: division by zero (show.py:14 in update)"


class SketchRunner:
    """Runs a sketch tick by tick: bus snapshot -> update(p, t) -> Conditioning; nothing in a tick is fatal.

    Call `tick` and `reload` from one thread (the one that feeds the engine); controllers push into `bus` from theirs.
    """

    LOG_EVERY_S = 10.0  # a repeating error is logged again at most this often
    PROBATION_TICKS = 30  # a reloaded sketch that fails within this many ticks (1 s at 30 fps) is rolled back

    def __init__(self, sketch_cls: type[Sketch], bus: ParamBus | None = None) -> None:
        self.bus = bus if bus is not None else ParamBus()
        self._builder = ConditioningBuilder()
        self._errors = SketchErrors()
        self._logged: tuple[str, float] | None = None
        self._previous: TickResult | None = None
        self._start_s: float | None = None
        self._last_good: tuple | None = None  # (class, spec, instance) of the sketch before a reload, on probation
        self._probation = 0  # ticks the reloaded sketch must still pass
        self._rolled_back: str | None = None  # a rollback that happened in reload(), told on the next tick
        self._load(sketch_cls)

    def _load(self, sketch_cls: type[Sketch]) -> bool:
        """Install a sketch class; False when its setup() raised (recorded)."""
        spec = sketch_cls.spec()
        try:
            sketch = sketch_cls()
        except Exception as exc:
            raise SketchError(f"{sketch_cls.__name__}() failed: {type(exc).__name__}: {exc}") from exc
        self._install(sketch_cls, spec, sketch)
        try:
            self.sketch.setup()
        except Exception as exc:  # the show goes on; update() may still work
            self._record(exc, "setup", None)
            return False
        return True

    def _install(self, sketch_cls: type[Sketch], spec: object, sketch: Sketch) -> None:
        self.bus.configure(spec.mapping)
        self.sketch_cls, self.spec, self.sketch = sketch_cls, spec, sketch
        self._names = frozenset(self.bus.names)
        self._has_update = sketch_cls.update is not Sketch.update

    def reload(self, sketch_cls: type[Sketch]) -> bool:
        """Switch to a new version of the sketch (bus, phase, seed, smoothing go on); True if the model must reload.

        The new version is on probation for PROBATION_TICKS ticks: if its setup() or a tick fails in that time, the
        last good sketch comes back (instance and state included) and TickResult.rolled_back says why, once."""
        old = self.spec.model_key
        self._last_good, self._probation = (self.sketch_cls, self.spec, self.sketch), self.PROBATION_TICKS
        if not self._load(sketch_cls):  # its setup() failed: the last good sketch stays
            self._rolled_back = self._roll_back()
        return self.spec.model_key != old

    def _roll_back(self) -> str:
        """Reinstall the last good sketch; the one-line reason for TickResult.rolled_back (the caller shows it)."""
        cls, spec, sketch = self._last_good
        failed = self._errors.last or "an error"
        self._last_good, self._probation = None, 0
        self._install(cls, spec, sketch)
        return f"reloaded sketch failed ({failed}); rolled back to the last good version"

    @property
    def errors(self) -> SketchErrors:
        """How many tick errors were absorbed, and the last one."""
        return self._errors

    def _record(self, exc: Exception, where: str, now_s: float | None) -> None:
        frames = traceback.extract_tb(exc.__traceback__)
        path = getattr(self.sketch_cls, "__livekit_path__", None)
        mine = [f for f in frames if path is not None and f.filename == str(path)] or frames[-1:]
        at = f" ({Path(mine[-1].filename).name}:{mine[-1].lineno} in {mine[-1].name})" if mine else ""
        message = f"{type(exc).__name__} in {where}: {exc}{at}"
        self._errors = SketchErrors(self._errors.count + 1, message)
        last = self._logged
        if last is None or last[0] != message or now_s is None or now_s - last[1] >= self.LOG_EVERY_S:
            log.error("sketch error (%d so far): %s", self._errors.count, message, exc_info=last is None)
            self._logged = (message, now_s if now_s is not None else -math.inf)

    def tick(self, now_s: float, tempo: TempoState | None = None) -> TickResult:
        """Evaluate one tick at now_s (time.monotonic()); on any error the previous result repeats with ok=False."""
        if self._start_s is None:
            self._start_s = now_s
        t_s = now_s - self._start_s
        rolled_back, self._rolled_back = self._rolled_back, None  # said once, on this tick
        stage = "mappings"
        try:
            snap = self.bus.snapshot(now_s, tempo)
            values = dict(snap.values)
            if self._has_update:
                stage = "update"
                self.sketch.update(TickValues(values, self._names), t_s)
                if values.get("scene") is not None and values.get("scene") != snap.get("scene"):
                    self.bus.set("scene", values["scene"])  # applies from the next tick
            stage = "conditioning"
            settings = apply_overrides(self.spec.settings_for(snap.scene), snap.overrides)
            conditioning = self._builder.build(settings, values, now_s)
        except Exception as exc:  # nothing is fatal in the live loop: count, log (rate-limited), keep the last
            self._builder.skip(now_s)
            self._record(exc, stage, now_s)
            if self._last_good is not None:  # the freshly reloaded sketch failed within its probation
                rolled_back = self._roll_back()
            if self._previous is not None:
                return replace(self._previous, t_s=t_s, ok=False, rolled_back=rolled_back)
            fallback = build_conditioning(self.spec.conditioning, {})
            return TickResult(fallback, types.MappingProxyType({}), None, t_s, ok=False, rolled_back=rolled_back)
        if self._last_good is not None:
            self._probation -= 1
            if self._probation <= 0:  # the new version proved itself
                self._last_good = None
        self._previous = TickResult(conditioning, types.MappingProxyType(values), snap.scene, t_s)
        return replace(self._previous, rolled_back=rolled_back) if rolled_back else self._previous
