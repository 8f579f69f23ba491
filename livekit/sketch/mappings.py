"""Mapping evaluation: sources -> target values once per tick (livekit.sketch.conditioning makes the Conditioning).

Each target (a built-in such as ``morph`` or ``guidance``, or a declared Param) takes its value, newest first, from
its source or from a direct set (OSC ``/livekit/<name>``, a scene, ``ParamBus.set``); then it is clamped to its range
and smoothed. A source that sets no range of its own is stretched onto the target's range (a bare knob spans a Param's
whole range).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Protocol

from controllers.base import TempoState
from controllers.tempo import beat_at as tempo_beat_at
from livekit.sketch.sources import (RELATIVE_STEP, KeyInput, LfoInput, Op, RelativeInput, Source, apply_curve,
                                    lfo_value)

DEFAULT_BPM = 120.0  # beat-synced LFOs, tempo phases and quantisation run on this grid while no tempo is running


class Takeover(Protocol):
    """Soft takeover in knob space (0..1 inside the source's range); controllers.takeover.TakeoverBank fits."""

    def jump(self, name: str, value: float) -> None:
        """The target was set elsewhere to `value` (knob space): the knob must catch it."""

    def move(self, name: str, knob: float) -> float | None:
        """The knob moved: the value to apply, or None while it has not caught up."""


@dataclass(frozen=True)
class Target:
    """What a target does with its source: default, value range, smoothing, and whether it counts triggers."""

    name: str
    default: float | None = None  # value while nothing has spoken; None = inactive (absent from the values)
    source: Source | None = None
    span: tuple[float, float] | None = None  # a source without its own .range() is stretched onto this range
    clamp: tuple[float, float] | None = None  # final values stay inside this range
    smoothing_s: float = 0.0  # one-pole smoothing time constant of the final value (Param smoothing)
    trigger: bool = False  # counts events per tick (seed_step) instead of holding a level


# Built-in targets. span = the range a bare knob covers; learn a knob to `guidance` and it sweeps 1..3.
MAX_VALUE = 1e12  # no control value is larger: beyond this a transform overflowed (rejected, the last good held)
BUILTIN_TARGETS: dict[str, Target] = {
    t.name: t
    for t in (
        Target("morph", None, span=(0.0, 1.0), clamp=(0.0, 1.0)),  # 0..1 across the prompt list
        Target("seed_morph", None, span=(0.0, 1.0), clamp=(0.0, 1.0)),  # 0..1 across the seed list
        Target("seed_step", None, trigger=True),  # each event steps to the next seed
        Target("prompt_step", None, trigger=True),  # each event steps to the next prompt
        Target("noise_walk", 0.0, span=(0.0, 1.0)),  # noise-walk speed, radians per second
        Target("motion", 0.0, span=(0.0, 1.0)),  # pattern animation speed, cycles per second (builtin model)
        Target("guidance", 1.0, span=(1.0, 3.0)),  # CFG scale
        Target("delta", 1.0, span=(0.0, 1.0)),  # residual-CFG delta
        Target("strength", 0.5, span=(0.0, 1.0), clamp=(0.0, 1.0)),  # img2img strength
        Target("control_scale", 1.0, span=(0.0, 2.0), clamp=(0.0, 2.0)),  # ControlNet strength (0 = no ControlNet)
        Target("scene", None),  # scene index (or name through a direct set)
    )
}


def weight_target(index: int) -> Target:
    """The built-in target `weight_<index>`: a multiplier on one prompt's weight."""
    return Target(f"weight_{index}", None, span=(0.0, 1.0), clamp=(0.0, math.inf))


def seed_weight_target(index: int) -> Target:
    """The target `seed_weight_<index>` (OSC /livekit/seed/<i>/weight): that seed's weight in the blend."""
    return Target(f"seed_weight_{index}", None, span=(0.0, 1.0), clamp=(0.0, math.inf))


@dataclass(frozen=True)
class SceneSpec:
    """One scene: its name, the full target table while it is active, and the constants it sets on entry."""

    name: str
    targets: Mapping[str, Target]
    sets: Mapping[str, float] = field(default_factory=dict)


@dataclass(frozen=True)
class MappingSpec:
    """Every target of a sketch, and its scenes."""

    targets: Mapping[str, Target] = field(default_factory=dict)
    scenes: tuple[SceneSpec, ...] = ()

    def all_targets(self) -> list[Target]:
        """The targets of the base table and of every scene."""
        return list(self.targets.values()) + [t for s in self.scenes for t in s.targets.values()]


@dataclass(frozen=True)
class InputFrame:
    """A consistent copy of the bus's raw inputs at one tick."""

    now_s: float
    tempo: TempoState | None
    seq: int  # the bus's event counter: newer events and sets have larger numbers
    latest: Mapping[str, tuple[float | str, int]]  # key -> (value, seq) of its newest event
    counts: Mapping[str, int]  # key -> trigger count (rising edges, or every event for impulse keys)
    rel: Mapping[str, float]  # key -> accumulated relative-encoder steps


@dataclass(frozen=True)
class _Clock:
    t_s: float  # seconds since the evaluator's first tick
    dt_s: float  # seconds since the previous tick
    beat: float  # beat count (tempo, or DEFAULT_BPM free-running)
    beats_per_bar: int
    seq: int


def beat_at(tempo: TempoState | None, now_s: float, t_s: float) -> float:
    """The beat count at now_s: the tempo's, extrapolated, or a DEFAULT_BPM grid when no tempo runs."""
    if tempo is None or not tempo.running:
        return t_s * DEFAULT_BPM / 60.0
    return tempo_beat_at(tempo, now_s)


def _remap(v: float, a: float, b: float, lo: float, hi: float) -> float:
    return lo + (v - a) / (b - a) * (hi - lo)


class _SourceState:
    """The running state of one Source in one target: counters, encoder position, smoothing, held values."""

    def __init__(self, source: Source, count_from_now: bool, initial: float | None) -> None:
        self.source = source
        self._fresh = True
        self._good: float | None = None  # the last value that passed every transform (held when one overflows)
        self._count_from_now = count_from_now  # ignore events that came before this state existed
        self._base = 0.0  # counter (events or encoder steps) already consumed
        self._pos = initial  # relative encoder position 0..1
        self._last: float | None = None  # previous level, for rising edges of computed inputs
        self._ops: list[dict] = [{} for _ in source.ops]
        o = source.origin
        self._pulse_level = isinstance(o, KeyInput) and o.mode == "pulse"

    def _consume(self, total: float) -> float:
        if self._fresh:
            self._base = total if self._count_from_now else 0.0
        new, self._base = total - self._base, total
        return new

    def _read(self, frame: InputFrame, clock: _Clock) -> tuple[float | None, int, int]:
        o = self.source.origin
        if isinstance(o, KeyInput):
            pulses = int(self._consume(frame.counts.get(o.key, 0)))
            latest = frame.latest.get(o.key)
            seq = latest[1] if latest else 0
            if o.mode == "pulse":
                return (1.0 if pulses else 0.0), seq, pulses
            if latest is None or isinstance(latest[0], str):
                return None, seq, pulses
            v = float(latest[0])
            return ((1.0 if v > 0 else 0.0) if o.mode == "gate" else v), seq, pulses
        if isinstance(o, RelativeInput):
            steps = self._consume(frame.rel.get(o.key, 0.0))
            if steps:
                self._pos = min(max((self._pos or 0.0) + steps * RELATIVE_STEP, 0.0), 1.0)
            latest = frame.latest.get(o.key)
            return self._pos, (latest[1] if latest else 0), self._edge(self._pos)
        if isinstance(o, LfoInput):
            cycles = clock.t_s * o.hz if o.hz is not None else clock.beat / o.beats
            v = lfo_value(o.shape, cycles + o.phase, o.seed)
        else:  # TempoInput
            unit = 1.0 if o.unit == "beat" else float(clock.beats_per_bar)
            v = (clock.beat / unit) % 1.0
        return v, clock.seq + 1, self._edge(v)  # computed sources are always the newest word

    def _edge(self, v: float | None) -> int:
        last, self._last = self._last, v
        return int(v is not None and last is not None and last <= 0.5 < v)

    def step(self, frame: InputFrame, clock: _Clock) -> tuple[float | None, int, int]:
        """(value, or None before any data; seq of its newest input; trigger events this tick)."""
        v, seq, pulses = self._read(frame, clock)
        for op, st in zip(self.source.ops, self._ops):
            v, pulses = self._apply(op, st, v, pulses, clock)
            if v is not None and not -MAX_VALUE <= v <= MAX_VALUE:  # overflowed (or NaN) after a transform
                v = self._good
                break
        self._good = v if v is not None else self._good
        self._fresh = False
        return v, seq, pulses

    def _apply(self, op: Op, st: dict, v: float | None, pulses: int, clock: _Clock) -> tuple[float | None, int]:
        a, b = op.lo, op.hi
        if op.kind == "quantize":
            unit = 1.0 if op.args[0] == "beat" else float(clock.beats_per_bar)
            index = math.floor(clock.beat / unit)
            if "index" not in st:
                st.update(index=index, held=v, pending=pulses)
                return (0.0 if self._pulse_level else v), 0
            st["pending"] += pulses
            out = 0
            if index != st["index"]:  # a boundary passed since the previous tick: apply what waited
                out, st["pending"], st["index"] = int(st["pending"] > 0), 0, index
                st["held"] = v if v is not None else st["held"]
            elif st["held"] is None:
                st["held"] = v  # the first value ever has nothing to wait for
            return (float(out) if self._pulse_level else st["held"]), out
        if v is None:
            return None, pulses
        if op.kind == "range":
            return _remap(v, a, b, *op.args), pulses
        if op.kind == "curve":
            return a + apply_curve((v - a) / (b - a), op.args[0]) * (b - a), pulses
        if op.kind == "invert":
            return a + b - v, pulses
        if op.kind == "scale":
            return v * op.args[0], pulses
        # smooth: one-pole, attack time constant while rising, release while falling
        y = st.get("y")
        if y is None or clock.dt_s <= 0:
            st["y"] = v if y is None else y
        else:
            tau = op.args[0] if v > y else op.args[1]
            st["y"] = v if tau <= 0 else y + (v - y) * (1.0 - math.exp(-clock.dt_s / tau))
        return st["y"], pulses


@dataclass(frozen=True)
class Evaluation:
    """One tick's evaluated targets."""

    values: dict[str, float]
    scene: int | None
    scene_entered_seq: int  # bus seq at which the current scene was entered (0 = never)


class MappingEvaluator:
    """Evaluates every target once per tick, keeping smoothing, held values and the current scene between ticks."""

    def __init__(self, spec: MappingSpec | None = None, takeover: Takeover | None = None) -> None:
        self.spec = spec or MappingSpec()
        self.takeover = takeover
        self._states: dict[str, _SourceState] = {}
        self._smooth: dict[str, float] = {}  # target -> smoothed value
        self._prev: dict[str, float] = {}  # target -> value before smoothing
        self._seen: dict[str, int] = {}  # target -> seq of the newest source event / direct set already handled
        self._announced: dict[str, int] = {}
        self._blocked: set[str] = set()  # targets whose knob has not caught up after a direct set
        self._triggered: dict[str, int] = {}  # trigger target -> seq of the last direct set counted
        self._scene: int | None = None
        self._scene_seq = 0
        self._scene_request_seq = 0
        self._scene_sets: dict[str, tuple[float, int]] = {}
        self._start_s: float | None = None
        self._last_s: float | None = None

    @property
    def scene(self) -> int | None:
        """Index of the active scene, or None for the sketch's own settings."""
        return self._scene

    def configure(self, spec: MappingSpec) -> None:
        """Switch to new targets (hot reload); states of unchanged sources and smoothed values carry over."""
        self.spec = spec
        if self._scene is not None and self._scene >= len(spec.scenes):
            self._scene, self._scene_sets = None, {}

    def _table(self) -> Mapping[str, Target]:
        return self.spec.targets if self._scene is None else self.spec.scenes[self._scene].targets

    def _state(self, name: str, source: Source, target: Target) -> _SourceState:
        state = self._states.get(name)
        if state is None or state.source != source:
            initial, current = None, self._prev.get(name, target.default)
            if isinstance(source.origin, RelativeInput) and current is not None:
                initial = _knob(current, source, target)  # an encoder starts where the value is
            state = self._states[name] = _SourceState(source, self._last_s is not None, initial)
        return state

    def _select_scene(self, frame: InputFrame, clock: _Clock, sets: Mapping[str, tuple[float | str, int]]) -> None:
        request = sets.get("scene")
        target = self._table().get("scene") or self.spec.targets.get("scene")
        if target is not None and target.source is not None:
            v, seq, _ = self._state("scene", target.source, target).step(frame, clock)
            if v is not None and (request is None or seq > request[1]):
                request = (v, seq)
        if request is None or request[1] <= self._scene_request_seq:
            return
        self._scene_request_seq = request[1]
        value = request[0]
        names = [s.name for s in self.spec.scenes]
        if isinstance(value, str):
            index = names.index(value) if value in names else None
        else:
            index = int(round(value)) if math.isfinite(value) else None
        if index is None or not 0 <= index < len(names) or index == self._scene:
            return
        self._scene, self._scene_seq = index, frame.seq
        self._scene_sets = {k: (v, frame.seq) for k, v in self.spec.scenes[index].sets.items()}

    def evaluate(
        self,
        frame: InputFrame,
        sets: Mapping[str, tuple[float | str, int]] | None = None,
        learned: Mapping[str, Source] | None = None,
        no_takeover: frozenset[str] = frozenset(),
    ) -> Evaluation:
        """Evaluate all targets for one tick (sets: direct sets as (value, seq); learned: target -> learned source)."""
        sets, learned = sets or {}, learned or {}
        if self._start_s is None:
            self._start_s = frame.now_s
        t_s = frame.now_s - self._start_s
        dt_s = 0.0 if self._last_s is None else max(frame.now_s - self._last_s, 0.0)
        bpb = frame.tempo.beats_per_bar if frame.tempo is not None else 4
        clock = _Clock(t_s, dt_s, beat_at(frame.tempo, frame.now_s, t_s), max(bpb, 1), frame.seq)
        if self.spec.scenes:
            self._select_scene(frame, clock, sets)
        values: dict[str, float] = {}
        for name, target in self._table().items():
            if name == "scene":
                continue
            source = learned.get(name, target.source)
            raw, src_seq, pulses = None, -1, 0
            if source is not None:
                raw, src_seq, pulses = self._state(name, source, target).step(frame, clock)
                if raw is not None and target.span and not source.explicit_range:
                    raw = _remap(raw, *source.out_range, *target.span)
            if target.trigger:
                direct = sets.get(name)
                if direct is not None and direct[1] > self._triggered.get(name, 0):
                    self._triggered[name] = direct[1]
                    pulses += 1
                if source is not None or pulses:
                    values[name] = float(pulses)
                continue
            hook = None if name in no_takeover or not _external(source) else self.takeover
            value = self._arbitrate(name, target, source, raw, src_seq, sets, hook)
            if value is None:
                continue
            if target.clamp is not None:
                value = min(max(value, target.clamp[0]), target.clamp[1])
            self._prev[name] = value
            values[name] = self._smoothed(name, value, target.smoothing_s, dt_s)
        if self._scene is not None:
            values["scene"] = float(self._scene)
        self._last_s = frame.now_s
        return Evaluation(values, self._scene, self._scene_seq)

    def _arbitrate(self, name: str, target: Target, source: Source | None, raw: float | None, src_seq: int,
                   sets: Mapping[str, tuple[float | str, int]], hook: Takeover | None) -> float | None:
        """The newest word wins: the source's latest event or a direct set (subject to soft takeover)."""
        candidates = [d for d in (sets.get(name), self._scene_sets.get(name)) if d is not None and
                      not isinstance(d[0], str)]
        direct = max(candidates, key=lambda d: d[1]) if candidates else None
        if hook is not None and source is not None:  # tell the hook what happened, oldest first
            news = []
            if direct is not None and self._announced.get(name) != direct[1]:
                self._announced[name] = direct[1]
                news.append((direct[1], "jump"))
            if raw is not None and src_seq > self._seen.get(name, -1):
                self._seen[name] = src_seq
                news.append((src_seq, "move"))
            for _, kind in sorted(news):
                if kind == "jump":
                    hook.jump(name, _knob(float(direct[0]), source, target))
                elif hook.move(name, _knob(raw, source, target)) is None:
                    self._blocked.add(name)
                else:
                    self._blocked.discard(name)
        if direct is not None and (raw is None or src_seq <= direct[1]):
            return float(direct[0])
        if raw is None:
            return target.default
        if name in self._blocked:
            return self._prev.get(name, target.default)
        return raw

    def _smoothed(self, name: str, value: float, smoothing_s: float, dt_s: float) -> float:
        y = self._smooth.get(name)
        if y is not None and smoothing_s > 0:
            value = y + (value - y) * (1.0 - math.exp(-dt_s / smoothing_s))
        self._smooth[name] = value
        return value


def _external(source: Source | None) -> bool:
    """Whether a source is a physical control (soft takeover applies) rather than a computed or pulse input."""
    if source is None:
        return False
    o = source.origin
    return isinstance(o, RelativeInput) or (isinstance(o, KeyInput) and o.mode != "pulse")


def _knob(value: float, source: Source, target: Target) -> float:
    """A target value as a position 0..1 inside the source's range (the space soft takeover works in)."""
    lo, hi = target.span if target.span and not source.explicit_range else source.out_range
    return min(max((value - lo) / (hi - lo), 0.0), 1.0)
