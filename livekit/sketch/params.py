"""Declared parameters and the parameter bus: the thread-safe store controllers write and the tick reads.

Controller threads call `ParamBus.push` (O(1), one short lock); the tick calls `ParamBus.snapshot` once, which copies
the raw inputs under the lock and evaluates every mapping outside it. Keys that carry direct sets are routed on
arrival (the OSC router's addresses, see controllers.osc): ``osc/livekit/<name>`` sets a target or Param in its own
units; ``osc/livekit/prompt[/<i>]`` and ``osc/livekit/seed[/<i>]`` replace prompts and seeds live;
``osc/livekit/prompt/<i>/weight`` sets ``weight_<i>``; ``osc/livekit/scene``, keys ``key/1`` .. ``key/9`` (scenes
0..8) and a MIDI program change select a scene.
"""

from __future__ import annotations

import logging
import math
import threading
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import TYPE_CHECKING

from controllers.base import ControlEvent, TempoState
from livekit.sketch.mappings import MAX_VALUE, InputFrame, MappingEvaluator, MappingSpec, Takeover
from livekit.sketch.sources import RelativeInput, Source, source_from_key
from livekit.sketch.suggest import did_you_mean

if TYPE_CHECKING:
    from controllers.learn import MidiLearn, MidiMapping

log = logging.getLogger(__name__)

# Trigger counting: on these keys every event with a value > 0 is one trigger (an onset of any strength, a soft
# note-on); on all others a trigger is a rise through 0.5 (a CC pedal, an OSC toggle, a square LFO).
_IMPULSE_PREFIXES = ("audio/onset", "audio/beat", "midi/note/", "key/")


def _index(name: str, prefix: str) -> int | None:
    tail = name[len(prefix):] if name.startswith(prefix) else ""
    return int(tail) if tail.isdigit() else None


def is_override(name: str) -> bool:
    """Whether a direct-set name is a live override of the settings (prompt, prompt_<i>, seed, ...)."""
    return name in ("prompt", "negative_prompt", "seed") or any(
        _index(name, p) is not None for p in ("prompt_", "seed_"))


@dataclass(frozen=True)
class Param:
    """A parameter a sketch declares: default, optional range and smoothing, and optionally the source driving it."""

    default: float = 0.0
    range: tuple[float, float] | None = None  # (lo, hi): values are clamped to it and a bare knob spans it
    smoothing_s: float = 0.0  # one-pole time constant: 63% of a jump after this many seconds
    source: Source | None = None  # e.g. midi.cc(2); also reachable by OSC /livekit/<name> and MIDI learn
    doc: str = ""  # shown in the HUD

    def __post_init__(self) -> None:
        if isinstance(self.default, bool) or not isinstance(self.default, (int, float)) or not math.isfinite(
            self.default
        ):
            raise ValueError(f"Param default must be a finite number, got {self.default!r}")
        if self.range is not None:
            try:
                lo, hi = (float(x) for x in self.range)
            except (TypeError, ValueError):
                raise ValueError(f"Param range must be (lo, hi), got {self.range!r}") from None
            if not lo < hi:
                raise ValueError(f"Param range must have lo < hi, got {self.range!r}")
            if not lo <= self.default <= hi:
                raise ValueError(f"Param default {self.default} lies outside its range ({lo}, {hi})")
            object.__setattr__(self, "range", (lo, hi))
        if not isinstance(self.smoothing_s, (int, float)) or not self.smoothing_s >= 0:
            raise ValueError(f"Param smoothing_s must be >= 0 seconds, got {self.smoothing_s!r}")
        if self.source is not None and not isinstance(self.source, Source):
            raise ValueError(f"Param source must be a source such as midi.cc(1), got {self.source!r}")
        object.__setattr__(self, "default", float(self.default))


@dataclass(frozen=True)
class Snapshot:
    """One tick's values of every active target (read like a dict), plus the scene and live overrides."""

    values: Mapping[str, float]
    now_s: float
    tempo: TempoState | None = None
    scene: int | None = None
    overrides: Mapping[str, str | float] = field(default_factory=dict)  # see livekit.sketch.conditioning.apply_overrides

    def __getitem__(self, name: str) -> float:
        return self.values[name]

    def __contains__(self, name: object) -> bool:
        return name in self.values

    def __iter__(self) -> Iterator[str]:
        return iter(self.values)

    def __len__(self) -> int:
        return len(self.values)

    def get(self, name: str, default: float | None = None) -> float | None:
        """The value of an active target, or default."""
        return self.values.get(name, default)


MAX_KEYS = 4096  # controller keys kept per table: beyond it the least recently moved unmapped key is forgotten
MAX_OVERRIDES = 64  # live prompt_N / seed_N overrides kept


@dataclass(frozen=True)
class Rejected:
    """Direct sets from controllers that named nothing the sketch knows (for the HUD)."""

    count: int = 0
    last: str | None = None
    forgotten: int = 0  # controller keys dropped to keep the tables bounded (a flood of unique OSC addresses)


class ParamBus:
    """Thread-safe latest-value store of control events, direct sets and learned bindings; evaluates mappings."""

    def __init__(self, spec: MappingSpec | None = None, takeover: Takeover | None = None) -> None:
        self._lock = threading.Lock()  # push, set, learn: held for a few dictionary operations
        self._eval_lock = threading.Lock()  # the evaluator's state: snapshot and configure, never push
        self._seq = 0
        self._latest: dict[str, tuple[float | str, int]] = {}
        self._counts: dict[str, int] = {}
        self._rel: dict[str, float] = {}
        self._sets: dict[str, tuple[float | str, int]] = {}
        self._names: frozenset[str] = frozenset()
        self._mapped_keys: frozenset[str] = frozenset()  # keys the sketch's own mappings read
        self._protected: frozenset[str] = frozenset()  # keys the sketch or a learned binding reads: never forgotten
        self._relative: dict[tuple[int, int], str] = {}  # (channel, cc) -> encoding, for learning encoders
        self._learn: MidiLearn | None = None  # created on first use (imports the MIDI stack)
        self._learned: dict[str, Source] = {}
        self._no_takeover: frozenset[str] = frozenset()
        self._rejected = Rejected()
        self._evaluator = MappingEvaluator(takeover=takeover)
        self.configure(spec or MappingSpec())

    def configure(self, spec: MappingSpec) -> None:
        """Install a sketch's targets (on load and hot reload); learned bindings and smoothing carry over."""
        targets = spec.all_targets()
        relative = {(o.channel, o.num): o.encoding for o in (t.source.origin for t in targets if t.source)
                    if isinstance(o, RelativeInput)}
        with self._eval_lock, self._lock:
            self._names = frozenset(t.name for t in targets)
            self._mapped_keys = frozenset(k for t in targets if t.source for k in t.source.keys)
            self._protect()
            self._relative = relative
            if self._learn is not None:
                self._replace_learn(self._learn.mappings())
            self._evaluator.configure(spec)

    @property
    def takeover(self) -> Takeover | None:
        """Soft takeover (e.g. controllers.takeover.TakeoverBank()); None: a moved knob jumps at once."""
        return self._evaluator.takeover

    @takeover.setter
    def takeover(self, hook: Takeover | None) -> None:
        self._evaluator.takeover = hook

    @property
    def names(self) -> frozenset[str]:
        """Targets and Params of the configured sketch."""
        return self._names

    @property
    def rejected(self) -> Rejected:
        """Direct sets from controllers that named nothing the sketch knows."""
        return self._rejected

    # --- input (controller threads) ---

    def push(self, event: ControlEvent) -> None:
        """Store a control event; the latest value per key wins (O(1), safe from any thread, never raises on data)."""
        key, value = event.source, event.value
        with self._lock:
            self._seq += 1
            previous = self._latest.pop(key, None)  # re-inserted last: the dict's order is least recently moved first
            self._latest[key] = (value, self._seq)
            if previous is None and len(self._latest) > MAX_KEYS:
                self._forget_one()
            if not isinstance(value, str):
                try:
                    value = float(value)
                except (TypeError, ValueError):
                    value = math.nan
                if not -MAX_VALUE <= value <= MAX_VALUE:  # NaN, inf or absurdly large: dropped at the bus
                    if previous is None:
                        del self._latest[key]
                    else:
                        self._latest[key] = previous
                    self._reject(f"{key} {event.value!r}")
                    return
                if key.startswith(_IMPULSE_PREFIXES):
                    triggered = value > 0
                else:
                    triggered = value > 0.5 and (previous is None or not _above_half(previous[0]))
                if triggered:
                    self._counts[key] = self._counts.get(key, 0) + 1
                if key.startswith("midi/rel/"):
                    self._rel[key] = self._rel.get(key, 0.0) + value
            self._route(key, value)
            learn = self._learn
        if learn is not None and key.startswith("midi/") and learn.feed(event) is not None:
            with self._lock:
                self._replace_learn(learn.mappings())

    def _reject(self, what: str) -> None:
        r = self._rejected
        self._rejected = Rejected(r.count + 1, what, r.forgotten)

    def _protect(self) -> None:
        """Recompute the keys never forgotten (lock held): what the sketch's mappings and the learned bindings read."""
        self._protected = self._mapped_keys | {k for src in self._learned.values() for k in src.keys}

    def _forget_one(self) -> None:
        """Drop the least recently moved key no mapping reads (lock held): memory stays bounded under any flood."""
        victim = next((k for k in self._latest if k not in self._protected), None)
        if victim is None:
            return
        del self._latest[victim]
        self._counts.pop(victim, None)
        self._rel.pop(victim, None)
        r = self._rejected
        self._rejected = Rejected(r.count, r.last, r.forgotten + 1)

    def _route(self, key: str, value: float | str) -> None:
        """Direct sets carried by controller keys (lock held)."""
        if key.startswith("osc/livekit/"):
            parts = key[len("osc/livekit/"):].split("/")
            name = "/".join(parts)
            if parts[0] in ("prompt", "seed") and len(parts) == 2:
                name = f"{parts[0]}_{parts[1]}"
            elif parts[0] == "prompt" and len(parts) == 3 and parts[2] == "weight":
                name = f"weight_{parts[1]}"
            elif parts[0] == "seed" and len(parts) == 3 and parts[2] == "weight":
                name = f"seed_weight_{parts[1]}"
            if self._accepts(name, value) and self._room_for(name):
                self._sets[name] = (value, self._seq)
            else:
                self._reject(f"/livekit/{'/'.join(parts)} {value!r}")
        elif key.startswith("key/") and len(key) == 5 and key[4] in "123456789" and _above_half(value):
            self._sets["scene"] = (float(int(key[4]) - 1), self._seq)
        elif key.startswith("midi/program/") and not isinstance(value, str):
            self._sets["scene"] = (value, self._seq)

    def _room_for(self, name: str) -> bool:
        """Live overrides (prompt_N, seed_N, weight_N) are capped so a flood of indices cannot grow memory."""
        if name in self._sets or not is_override(name):
            return True
        return sum(1 for n in self._sets if is_override(n)) < MAX_OVERRIDES

    def _accepts(self, name: str, value: float | str) -> bool:
        if name == "scene":
            return True
        if isinstance(value, str):
            return name in ("prompt", "negative_prompt") or _index(name, "prompt_") is not None
        if not -MAX_VALUE <= value <= MAX_VALUE:
            return False
        if name == "seed" or _index(name, "seed_") is not None:
            return value >= 0 and float(value).is_integer()
        return name in self._names

    def set(self, name: str, value: float | str) -> None:
        """Set a target or Param (in its own units), a scene (index or name), or a live prompt or seed override."""
        with self._lock:
            if not isinstance(value, (int, float, str)) or isinstance(value, bool) or not self._accepts(name, value):
                if name in self._names or is_override(name):
                    raise ValueError(f"cannot set {name!r} to {value!r}: "
                                     f"{'prompts take a string' if 'prompt' in name else 'give a finite number'}")
                known = sorted(self._names | {"scene", "prompt", "negative_prompt", "seed"})
                raise ValueError(f"unknown parameter {name!r}{did_you_mean(name, known)}")
            self._seq += 1
            self._sets[name] = (value if isinstance(value, str) else float(value), self._seq)

    # --- MIDI learn (controllers.learn keeps the bindings and the file format) ---

    def _replace_learn(self, mappings: list[MidiMapping]) -> None:
        """Rebuild learned sources from mappings (lock held)."""
        from controllers.learn import MidiLearn

        armed = self._learn.armed if self._learn is not None else None
        self._learn = MidiLearn(mappings, relative=self._relative)
        if armed is not None:
            self._learn.arm(armed)
        self._learned = {m.target: source_from_key(m.source, m.encoding) for m in mappings}
        self._protect()
        self._no_takeover = frozenset(m.target for m in mappings if not m.soft_takeover)

    def learn(self, target: str) -> None:
        """Arm MIDI learn: the next MIDI control that moves (CC, note-on, bend, encoder) drives `target`."""
        with self._lock:
            if target not in self._names or target == "scene":
                raise ValueError(f"cannot learn unknown target {target!r}{did_you_mean(target, self._names)}")
            if self._learn is None:
                self._replace_learn([])
            self._learn.arm(target)

    def cancel_learn(self) -> None:
        """Disarm MIDI learn."""
        if self._learn is not None:
            self._learn.cancel()

    @property
    def learning(self) -> str | None:
        """The target waiting for a MIDI control, or None."""
        return self._learn.armed if self._learn is not None else None

    @property
    def learned(self) -> dict[str, str]:
        """Learned bindings: target -> MIDI key (they override the sketch's own mapping of that target)."""
        with self._lock:
            return {m.target: m.source for m in (self._learn.mappings() if self._learn else [])}

    def learned_mappings(self) -> list:
        """Learned bindings as controllers.learn.MidiMapping entries (source key, encoding, takeover)."""
        with self._lock:
            return list(self._learn.mappings()) if self._learn is not None else []

    def unlearn(self, target: str) -> None:
        """Drop a learned binding; the sketch's own mapping applies again."""
        with self._lock:
            if self._learn is not None:
                self._replace_learn([m for m in self._learn.mappings() if m.target != target])

    def save_learned(self, path: str | Path) -> None:
        """Write learned bindings (controllers.learn format; conventionally `<sketch>.midi.json`, see mappings_path)."""
        from controllers.learn import save_mappings

        with self._lock:
            mappings = self._learn.mappings() if self._learn is not None else []
        save_mappings(path, mappings)

    def load_learned(self, path: str | Path) -> int:
        """Read bindings saved by save_learned; returns how many apply (unknown targets are skipped, logged)."""
        from controllers.learn import load_mappings

        mappings = load_mappings(path)
        with self._lock:
            kept = [m for m in mappings if m.target in self._names]
            for m in mappings:
                if m.target not in self._names:
                    log.warning("%s: skipping %s -> %r: the sketch has no such target%s", path, m.source, m.target,
                                did_you_mean(m.target, self._names))
            self._replace_learn(kept)
        return len(kept)

    # --- the tick ---

    def latest(self, key: str) -> float | str | None:
        """The newest value of one controller key, or None."""
        with self._lock:
            entry = self._latest.get(key)
        return None if entry is None else entry[0]

    def snapshot(self, now_s: float, tempo: TempoState | None = None) -> Snapshot:
        """Evaluate every target for one tick at now_s (smoothing uses the differences of successive now_s)."""
        with self._eval_lock:
            with self._lock:
                frame = InputFrame(now_s, tempo, self._seq, dict(self._latest), dict(self._counts), dict(self._rel))
                sets, learned, no_takeover = dict(self._sets), self._learned, self._no_takeover
            ev = self._evaluator.evaluate(frame, sets, learned, no_takeover)
        overrides = {name: value for name, (value, seq) in sets.items()
                     if is_override(name) and seq > ev.scene_entered_seq}
        return Snapshot(MappingProxyType(ev.values), now_s, tempo, ev.scene, MappingProxyType(overrides))


def _above_half(value: float | str) -> bool:
    return not isinstance(value, str) and value > 0.5
