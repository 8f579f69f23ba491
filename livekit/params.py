"""Declared parameters and the parameter bus: the thread-safe store controllers write and the tick reads.

Controller threads call `ParamBus.push` (O(1), one short lock); the tick calls `ParamBus.snapshot` once, which copies
the raw inputs under the lock and evaluates every mapping outside it. Some keys are routed on arrival:
``osc/livekit/<name> value`` sets a target or Param directly (strings set ``prompt``, ``prompt_<i>``,
``negative_prompt`` or a scene by name; ``osc/livekit/learn <target>`` arms MIDI learn), keys ``key/1`` .. ``key/9``
select scenes 0..8, and a MIDI program change selects the scene of that number.
"""

from __future__ import annotations

import json
import logging
import math
import threading
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType

from controllers.base import ControlEvent, TempoState
from livekit.mappings import InputFrame, MappingEvaluator, MappingSpec, TakeoverHook
from livekit.sources import Source, decode_relative, source_from_key
from livekit.suggest import did_you_mean

log = logging.getLogger(__name__)

TEXT_NAMES = ("prompt", "negative_prompt")  # direct sets that take a string (plus prompt_<i>)
_IMPULSE_PREFIXES = ("audio/onset", "audio/beat", "midi/note/", "key/", "osc/")  # every event > 0.5 is a trigger
_LEARNABLE_PREFIXES = ("midi/cc/", "midi/cc14/", "midi/rel/", "midi/note/", "midi/bend/")
LEARN_FILE_VERSION = 1


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
class Snapshot(Mapping[str, float]):
    """One tick's values of every active target, read like a dict; plus the scene and live prompt texts."""

    values: Mapping[str, float]
    now_s: float
    tempo: TempoState | None = None
    scene: int | None = None
    texts: Mapping[str, str] = field(default_factory=dict)  # live prompt texts (see livekit.mappings.apply_texts)

    def __getitem__(self, name: str) -> float:
        return self.values[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self.values)

    def __len__(self) -> int:
        return len(self.values)


@dataclass(frozen=True)
class Rejected:
    """Direct sets from controllers that named nothing the sketch knows (for the HUD)."""

    count: int = 0
    last: str | None = None


class ParamBus:
    """Thread-safe latest-value store of control events, direct sets and learned bindings; evaluates mappings."""

    def __init__(self, spec: MappingSpec | None = None, takeover: TakeoverHook | None = None) -> None:
        self._lock = threading.Lock()
        self._seq = 0
        self._latest: dict[str, tuple[float | str, int]] = {}
        self._counts: dict[str, int] = {}
        self._rel: dict[str, float] = {}
        self._relative: dict[str, str] = {}  # raw CC key -> relative encoding
        self._sets: dict[str, tuple[float | str, int]] = {}
        self._learning: str | None = None
        self._learned: dict[str, str] = {}  # target -> controller key
        self._learned_sources: dict[str, Source] = {}
        self._names: frozenset[str] = frozenset()
        self._rejected = Rejected()
        self._eval_lock = threading.Lock()  # the evaluator's state: snapshot and configure, never push
        self._evaluator = MappingEvaluator(takeover=takeover)
        self.configure(spec or MappingSpec())

    # --- configuration (the runner's thread) ---

    def configure(self, spec: MappingSpec) -> None:
        """Install a sketch's targets (on load and hot reload); learned bindings and smoothing carry over."""
        relative = {}
        for target in spec.all_targets():
            origin = target.source.origin if target.source is not None else None
            if origin is not None and getattr(origin, "encoding", None):
                relative[origin.cc_key] = origin.encoding
        names = {t.name for t in spec.all_targets()}
        with self._eval_lock, self._lock:
            self._relative = relative
            self._names = frozenset(names)
            self._evaluator.configure(spec)

    @property
    def takeover(self) -> TakeoverHook | None:
        """Soft-takeover hook: takeover(target, source value, current value) -> accept; None = jump at once."""
        return self._evaluator.takeover

    @takeover.setter
    def takeover(self, hook: TakeoverHook | None) -> None:
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
            previous = self._latest.get(key)
            self._latest[key] = (value, self._seq)
            if isinstance(value, str):
                self._route(key, value)
                return
            try:
                v = float(value)
            except (TypeError, ValueError):
                self._rejected = Rejected(self._rejected.count + 1, f"{key} {value!r}")
                return
            if v > 0.5 and (previous is None or key.startswith(_IMPULSE_PREFIXES) or not _above_half(previous[0])):
                self._counts[key] = self._counts.get(key, 0) + 1
            encoding = self._relative.get(key)
            if encoding is not None:
                self._rel[key] = self._rel.get(key, 0.0) + decode_relative(v, encoding)
            elif key.startswith("midi/rel/"):
                self._rel[key] = self._rel.get(key, 0.0) + v
            if self._learning is not None and key.startswith(_LEARNABLE_PREFIXES) and (v > 0 or "/note/" not in key):
                self._bind(self._learning, key)
                self._learning = None
            self._route(key, v)

    def _route(self, key: str, value: float | str) -> None:
        """Direct sets carried by controller keys (lock held)."""
        if key.startswith("osc/livekit/"):
            name = key[len("osc/livekit/") :]
            if name == "learn" and isinstance(value, str) and value in self._names:
                self._learning = value
            elif self._accepts(name, value):
                self._sets[name] = (value, self._seq)
            else:
                self._rejected = Rejected(self._rejected.count + 1, f"/livekit/{name} {value!r}")
        elif key.startswith("key/") and len(key) == 5 and key[4] in "123456789" and _above_half(value):
            self._sets["scene"] = (float(int(key[4]) - 1), self._seq)
        elif key.startswith("midi/program/") and not isinstance(value, str):
            self._sets["scene"] = (float(value), self._seq)

    def _accepts(self, name: str, value: float | str) -> bool:
        if name == "scene":
            return True
        if isinstance(value, str):
            return name in TEXT_NAMES or (name.startswith("prompt_") and name[7:].isdigit())
        return name in self._names and math.isfinite(value)

    def set(self, name: str, value: float | str) -> None:
        """Set a target or Param directly (in its own units), a scene (index or name) or a prompt text."""
        with self._lock:
            if not self._accepts(name, value):
                known = sorted(self._names | {"scene", *TEXT_NAMES})
                if name in self._names or name in TEXT_NAMES:
                    raise ValueError(f"cannot set {name!r} to {value!r}: it takes a "
                                     f"{'string' if name in TEXT_NAMES else 'finite number'}")
                raise ValueError(f"unknown parameter {name!r}{did_you_mean(name, known)}")
            self._seq += 1
            self._sets[name] = (value if isinstance(value, str) else float(value), self._seq)

    # --- MIDI learn ---

    def learn(self, target: str) -> None:
        """Arm MIDI learn: the next MIDI CC, note, bend or encoder event binds its key to `target`."""
        with self._lock:
            if target not in self._names or target == "scene":
                raise ValueError(f"cannot learn unknown target {target!r}{did_you_mean(target, self._names)}")
            self._learning = target

    def cancel_learn(self) -> None:
        """Disarm MIDI learn."""
        with self._lock:
            self._learning = None

    @property
    def learning(self) -> str | None:
        """The target waiting for a MIDI event, or None."""
        return self._learning

    @property
    def learned(self) -> dict[str, str]:
        """Learned bindings: target -> controller key."""
        with self._lock:
            return dict(self._learned)

    def unlearn(self, target: str) -> None:
        """Drop a learned binding (the sketch's own mapping applies again)."""
        with self._lock:
            self._learned.pop(target, None)
            self._learned_sources.pop(target, None)

    def _bind(self, target: str, key: str) -> None:
        self._learned_sources[target] = source_from_key(key)
        self._learned[target] = key
        log.info("MIDI learn: %s -> %s", key, target)

    def save_learned(self, path: str | Path) -> None:
        """Write the learned bindings as JSON (conventionally `<sketch>.midi.json` next to the sketch)."""
        data = {"version": LEARN_FILE_VERSION, "bindings": self.learned}
        Path(path).write_text(json.dumps(data, indent=2, sort_keys=True) + "\n", encoding="utf-8")

    def load_learned(self, path: str | Path) -> int:
        """Read bindings saved by save_learned; returns how many apply (unknown targets are skipped with a warning)."""
        try:
            data = json.loads(Path(path).read_text(encoding="utf-8"))
            bindings = data["bindings"]
            if data.get("version") != LEARN_FILE_VERSION or not isinstance(bindings, dict):
                raise ValueError(f"expected version {LEARN_FILE_VERSION} with a 'bindings' object")
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise ValueError(f"cannot read learned MIDI bindings from {path}: {exc}") from exc
        loaded = 0
        with self._lock:
            for target, key in bindings.items():
                if target not in self._names:
                    log.warning("%s: skipping binding of %r: the sketch has no target %r", path, key, target)
                    continue
                self._bind(target, key)
                loaded += 1
        return loaded

    # --- the tick ---

    def latest(self, key: str) -> float | str | None:
        """The newest value of one controller key, or None."""
        with self._lock:
            entry = self._latest.get(key)
        return None if entry is None else entry[0]

    def snapshot(self, now_s: float, tempo: TempoState | None = None) -> Snapshot:
        """Evaluate every target for one tick at now_s (call from one thread; smoothing uses now_s differences)."""
        with self._eval_lock:
            with self._lock:
                frame = InputFrame(now_s, tempo, self._seq, dict(self._latest), dict(self._counts), dict(self._rel))
                sets = dict(self._sets)
                learned = dict(self._learned_sources)
            ev = self._evaluator.evaluate(frame, sets, learned)
        texts = {
            name: value
            for name, (value, seq) in sets.items()
            if isinstance(value, str) and name != "scene" and seq > ev.scene_entered_seq
        }
        return Snapshot(MappingProxyType(ev.values), now_s, tempo, ev.scene, MappingProxyType(texts))


def _above_half(value: float | str) -> bool:
    return not isinstance(value, str) and value > 0.5
