"""Sources: where a mapped value comes from (MIDI, OSC, audio, LFO, tempo, keyboard) and how it is shaped.

A Source is an immutable description; `livekit.sketch.mappings` evaluates it once per tick. Chain methods return new
sources, so ``audio.bass.range(0.0, 2.0).smooth(0.05, 0.4)`` reads left to right. Every transform knows the value
range it receives (a CC is 0..1, pitch bend -1..1, a program number 0..127): ``range(lo, hi)`` maps that range onto
lo..hi, ``curve`` and ``invert`` work inside it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Union

from controllers.midi import RELATIVE_ENCODINGS
from livekit.sketch.curves import apply_curve, lfo_value  # noqa: F401 (re-exported: sources name the shapes)
from livekit.sketch.suggest import did_you_mean

CURVES = ("linear", "exp", "log", "smoothstep")
QUANTA = ("beat", "bar")
NOTE_MODES = ("gate", "velocity", "trigger")
LFO_SHAPES = ("sine", "triangle", "saw", "square", "random", "smooth_random")
# audio source name -> (controller key, how its events read). "level": the latest value; "pulse": 1.0 on a tick that
# brought a new event, else 0.0 (onsets and beats are moments, not levels). Keys as controllers.features emits them.
AUDIO_FEATURES: dict[str, tuple[str, str]] = {
    "level": ("audio/level", "level"),
    "bass": ("audio/bass_auto", "level"),  # 0..1 with automatic gain
    "low_mid": ("audio/low_mid_auto", "level"),  # 0..1 with automatic gain
    "mid": ("audio/mid_auto", "level"),  # 0..1 with automatic gain
    "high": ("audio/high_auto", "level"),  # 0..1 with automatic gain
    "centroid": ("audio/centroid", "level"),
    "flux": ("audio/flux", "level"),
    "onset": ("audio/onset", "pulse"),
    "beat": ("audio/beat", "pulse"),  # fires only while the beat tracker is confident
    "beat_confidence": ("audio/beat_confidence", "level"),  # 0 for silence and beatless music, 1 locked
}
RELATIVE_STEP = 1.0 / 127.0  # one encoder detent moves a relative CC by this much of its 0..1 range


@dataclass(frozen=True)
class KeyInput:
    """Reads the latest event of one controller key."""

    key: str  # e.g. "midi/cc/0/1", "audio/bass", "osc/fader1"
    mode: str = "level"  # level: the value; gate: 1.0 while the value is > 0; pulse: 1.0 on a tick with new events
    lo: float = 0.0  # natural range of the value
    hi: float = 1.0


@dataclass(frozen=True)
class RelativeInput:
    """Accumulates a relative encoder's signed steps (``midi/rel/<ch>/<num>`` events) into a 0..1 position."""

    channel: int
    num: int
    encoding: str  # how the MIDI decoder reads the raw CC (see SketchSpec.midi_decoder_config)

    @property
    def key(self) -> str:
        """The key of the decoded steps."""
        return f"midi/rel/{self.channel}/{self.num}"


@dataclass(frozen=True)
class LfoInput:
    """A 0..1 waveform of the time (hz cycles per second) or of the tempo (one cycle per `beats` beats)."""

    shape: str
    hz: float | None = None
    beats: float | None = None
    phase: float = 0.0  # in cycles
    seed: int = 0  # for random shapes


@dataclass(frozen=True)
class TempoInput:
    """The beat or bar phase (0..1) of the tempo state."""

    unit: str  # beat | bar
    via: str = ""  # controller prefix the tempo comes from ("midi" for MIDI clock), "" for whichever tempo runs


Origin = Union[KeyInput, RelativeInput, LfoInput, TempoInput]


@dataclass(frozen=True)
class Op:
    """One transform in a source chain; lo..hi is the value range it receives."""

    kind: str  # range | curve | invert | scale | smooth | quantize
    args: tuple[Any, ...] = ()
    lo: float = 0.0
    hi: float = 1.0


def _finite(name: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise ValueError(f"{name} must be a finite number, got {value!r}")
    return float(value)


@dataclass(frozen=True)
class Source:
    """An immutable, chainable description of a control value: an input plus transforms."""

    origin: Origin
    ops: tuple[Op, ...] = ()
    label: str = field(default="", compare=False)

    def __repr__(self) -> str:
        return self.label or f"Source({self.origin!r})"

    @property
    def out_range(self) -> tuple[float, float]:
        """The (lo, hi) range of the values this source produces."""
        lo, hi = (self.origin.lo, self.origin.hi) if isinstance(self.origin, KeyInput) else (0.0, 1.0)
        for op in self.ops:
            if op.kind == "range":
                lo, hi = op.args
            elif op.kind == "scale":
                lo, hi = lo * op.args[0], hi * op.args[0]
        return lo, hi

    @property
    def explicit_range(self) -> bool:
        """True when the chain sets its range itself (then a target does not stretch it onto its own range)."""
        return any(op.kind in ("range", "scale") for op in self.ops)

    @property
    def keys(self) -> frozenset[str]:
        """The controller keys this source reads."""
        o = self.origin
        if isinstance(o, (KeyInput, RelativeInput)):
            return frozenset({o.key})
        return frozenset()

    @property
    def needs(self) -> frozenset[str]:
        """Controller prefixes this source needs running: "midi", "audio", "osc", "key", "tempo"."""
        o = self.origin
        out: set[str] = set()
        if isinstance(o, KeyInput):
            out.add(o.key.split("/", 1)[0])
        elif isinstance(o, RelativeInput):
            out.add("midi")
        elif isinstance(o, LfoInput) and o.beats is not None:
            out.add("tempo")
        elif isinstance(o, TempoInput):
            out.update({"tempo", o.via} - {""})
        if any(op.kind == "quantize" for op in self.ops):
            out.add("tempo")
        return frozenset(out)

    def _chain(self, kind: str, args: tuple[Any, ...], text: str) -> Source:
        lo, hi = self.out_range
        return Source(self.origin, self.ops + (Op(kind, args, lo, hi),), f"{self!r}.{text}")

    def range(self, lo: float, hi: float) -> Source:
        """Map this source's range onto lo..hi (hi < lo flips the direction)."""
        lo, hi = _finite("range lo", lo), _finite("range hi", hi)
        if lo == hi:
            raise ValueError(f"range needs lo != hi, got ({lo}, {hi}); use a constant for a fixed value")
        return self._chain("range", (lo, hi), f"range({lo}, {hi})")

    def curve(self, shape: str | float) -> Source:
        """Bend the response inside the range: "linear", "exp", "log", "smoothstep", or an exponent (2.0 = square)."""
        if isinstance(shape, str):
            if shape not in CURVES:
                raise ValueError(f"unknown curve {shape!r}{did_you_mean(shape, CURVES)}; choose one of {CURVES} "
                                 "or a positive exponent")
            return self._chain("curve", (shape,), f"curve({shape!r})")
        exponent = _finite("curve exponent", shape)
        if exponent <= 0:
            raise ValueError(f"curve exponent must be > 0, got {shape!r}")
        return self._chain("curve", (exponent,), f"curve({exponent})")

    def invert(self) -> Source:
        """Flip the value inside its range (lo <-> hi)."""
        return self._chain("invert", (), "invert()")

    def scale(self, k: float) -> Source:
        """Multiply the value (and its range) by k."""
        return self._chain("scale", (_finite("scale", k),), f"scale({k})")

    def smooth(self, attack_s: float, release_s: float | None = None) -> Source:
        """One-pole smoothing: time constant attack_s while rising, release_s (default attack_s) while falling."""
        attack = _finite("attack_s", attack_s)
        release = attack if release_s is None else _finite("release_s", release_s)
        if attack < 0 or release < 0:
            raise ValueError(f"attack_s and release_s must be >= 0, got ({attack_s}, {release_s})")
        return self._chain("smooth", (attack, release), f"smooth({attack}, {release})")

    def quantize(self, to: str = "beat") -> Source:
        """Hold changes until the next beat or bar boundary of the tempo (passes through while no tempo runs)."""
        if to not in QUANTA:
            raise ValueError(f"quantize to {to!r}{did_you_mean(to, QUANTA)}; choose one of {QUANTA}")
        return self._chain("quantize", (to,), f"quantize({to!r})")


def _check_int(name: str, value: Any, lo: int, hi: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not lo <= value <= hi:
        raise ValueError(f"{name} must be in range {lo}..{hi}, got {value!r}")
    return value


def _ch(channel: int) -> str:
    return f", channel={channel}" if channel else ""


class _Namespace:
    """Base of the source namespaces: a misspelled attribute fails with a suggestion."""

    _prefix = ""

    def _names(self) -> list[str]:
        return [n for n in dir(type(self)) if not n.startswith("_")]

    def __getattr__(self, name: str) -> Any:
        if name.startswith("__"):
            raise AttributeError(name)
        raise AttributeError(f"{self._prefix} has no source {name!r}{did_you_mean(name, self._names())}; "
                             f"available: {', '.join(self._names())}")


class MidiSources(_Namespace):
    """MIDI sources: ``midi.cc(1)``, ``midi.note(36, mode="trigger")``, ``midi.bend()``, ``midi.clock_phase``."""

    _prefix = "midi"

    def cc(self, num: int, channel: int = 0, relative: str | None = None) -> Source:
        """A control change 0..1; relative= makes it an endless encoder ("signed_bit", "binary_offset", ...)."""
        _check_int("CC number", num, 0, 127)
        _check_int("channel", channel, 0, 15)
        if relative is None:
            return Source(KeyInput(f"midi/cc/{channel}/{num}"), label=f"midi.cc({num}{_ch(channel)})")
        if relative not in RELATIVE_ENCODINGS:
            raise ValueError(f"unknown relative encoding {relative!r}{did_you_mean(relative, RELATIVE_ENCODINGS)}; "
                             f"choose one of {RELATIVE_ENCODINGS}")
        return Source(RelativeInput(channel, num, relative),
                      label=f"midi.cc({num}{_ch(channel)}, relative={relative!r})")

    def cc14(self, msb: int, channel: int = 0) -> Source:
        """A 14-bit control change (MSB number 0..31 with its LSB at msb + 32), 0..1."""
        _check_int("14-bit CC MSB number", msb, 0, 31)
        _check_int("channel", channel, 0, 15)
        return Source(KeyInput(f"midi/cc14/{channel}/{msb}"), label=f"midi.cc14({msb}{_ch(channel)})")

    def note(self, note: int, channel: int = 0, mode: str = "gate") -> Source:
        """A note: "gate" 1 while held, "velocity" 0..1 while held, "trigger" 1.0 on the tick a note starts."""
        _check_int("note", note, 0, 127)
        _check_int("channel", channel, 0, 15)
        if mode not in NOTE_MODES:
            raise ValueError(f"unknown note mode {mode!r}{did_you_mean(mode, NOTE_MODES)}; choose one of {NOTE_MODES}")
        kind = {"gate": "gate", "velocity": "level", "trigger": "pulse"}[mode]
        return Source(KeyInput(f"midi/note/{channel}/{note}", kind),
                      label=f"midi.note({note}{_ch(channel)}, mode={mode!r})")

    def bend(self, channel: int = 0) -> Source:
        """Pitch bend, -1..1 (0 at rest)."""
        _check_int("channel", channel, 0, 15)
        return Source(KeyInput(f"midi/bend/{channel}", "level", -1.0, 1.0), label=f"midi.bend({_ch(channel)[2:]})")

    def program(self, channel: int = 0) -> Source:
        """The last program change number, 0..127."""
        _check_int("channel", channel, 0, 15)
        return Source(KeyInput(f"midi/program/{channel}", "level", 0.0, 127.0),
                      label=f"midi.program({_ch(channel)[2:]})")

    @property
    def clock_phase(self) -> Source:
        """Beat phase 0..1 of the tempo (MIDI clock when it runs)."""
        return Source(TempoInput("beat", via="midi"), label="midi.clock_phase")


class AudioSources(_Namespace):
    """Audio features of the live input: ``audio.level``, ``audio.bass``, ``audio.onset``, ``audio.beat`` ..."""

    _prefix = "audio"

    def _names(self) -> list[str]:
        return list(AUDIO_FEATURES)

    def __dir__(self) -> list[str]:
        return self._names()

    def __getattr__(self, name: str) -> Any:
        if name in AUDIO_FEATURES:
            event_key, mode = AUDIO_FEATURES[name]
            return Source(KeyInput(event_key, mode), label=f"audio.{name}")
        return super().__getattr__(name)


class LfoSources(_Namespace):
    """Low-frequency oscillators, 0..1, free-running (hz=) or locked to the tempo (beats= per cycle)."""

    _prefix = "lfo"

    @staticmethod
    def _make(shape: str, hz: float | None, beats: float | None, phase: float, seed: int) -> Source:
        if (hz is None) == (beats is None):
            raise ValueError(f"lfo.{shape} needs exactly one of hz= (cycles per second) or beats= (beats per cycle)")
        rate = _finite("hz" if hz is not None else "beats", hz if hz is not None else beats)
        if rate <= 0:
            raise ValueError(f"lfo.{shape}: {'hz' if hz is not None else 'beats'} must be > 0, got {rate}")
        timing = f"hz={hz}" if hz is not None else f"beats={beats}"
        return Source(LfoInput(shape, hz, beats, _finite("phase", phase), seed),
                      label=f"lfo.{shape}({timing}, phase={phase})")

    def sine(self, hz: float | None = None, beats: float | None = None, phase: float = 0.0) -> Source:
        """A sine from 0 up to 1 and back per cycle."""
        return self._make("sine", hz, beats, phase, 0)

    def triangle(self, hz: float | None = None, beats: float | None = None, phase: float = 0.0) -> Source:
        """A triangle from 0 up to 1 and back per cycle."""
        return self._make("triangle", hz, beats, phase, 0)

    def saw(self, hz: float | None = None, beats: float | None = None, phase: float = 0.0) -> Source:
        """A ramp from 0 to 1 per cycle."""
        return self._make("saw", hz, beats, phase, 0)

    def square(self, hz: float | None = None, beats: float | None = None, phase: float = 0.0) -> Source:
        """1 for the first half of each cycle, 0 for the second."""
        return self._make("square", hz, beats, phase, 0)

    def random(self, hz: float | None = None, beats: float | None = None, phase: float = 0.0,
               seed: int = 0) -> Source:
        """A new random value each cycle, held (sample and hold); the same seed gives the same sequence."""
        return self._make("random", hz, beats, phase, seed)

    def smooth_random(self, hz: float | None = None, beats: float | None = None, phase: float = 0.0,
                      seed: int = 0) -> Source:
        """A random value each cycle, eased from one to the next."""
        return self._make("smooth_random", hz, beats, phase, seed)


class TempoSources(_Namespace):
    """Phases of the tempo (MIDI clock, tap or audio beat tracking): ``tempo.beat_phase``, ``tempo.bar_phase``."""

    _prefix = "tempo"

    @property
    def beat_phase(self) -> Source:
        """0..1 across each beat."""
        return Source(TempoInput("beat"), label="tempo.beat_phase")

    @property
    def bar_phase(self) -> Source:
        """0..1 across each bar."""
        return Source(TempoInput("bar"), label="tempo.bar_phase")


def osc(address: str) -> Source:
    """The latest number sent to an OSC address, e.g. ``osc("/fader1")`` (assumed 0..1; use .range to rescale)."""
    if not isinstance(address, str) or not address.startswith("/"):
        raise ValueError(f"OSC address must be a string starting with '/', got {address!r}")
    return Source(KeyInput(f"osc{address}"), label=f"osc({address!r})")


def key(name: str) -> Source:
    """A keyboard key of the stage window: 1.0 while held (as a trigger, each press)."""
    if not isinstance(name, str) or not name:
        raise ValueError(f"key name must be a non-empty string such as 'space' or 'a', got {name!r}")
    return Source(KeyInput(f"key/{name}", "gate"), label=f"key({name!r})")


midi = MidiSources()
audio = AudioSources()
lfo = LfoSources()
tempo = TempoSources()


def source_from_key(event_key: str, encoding: str | None = None) -> Source:
    """The plain source that reads one controller key (how MIDI learn turns a key into a mapping)."""
    parts = event_key.split("/")
    try:
        if parts[0] == "midi" and len(parts) == 4 and parts[1] in ("cc", "cc14", "note", "rel"):
            channel, num = int(parts[2]), int(parts[3])
            if parts[1] == "rel":
                return midi.cc(num, channel, relative=encoding or "twos_complement")
            return {"cc": midi.cc, "cc14": midi.cc14, "note": midi.note}[parts[1]](num, channel)
        if parts[0] == "midi" and len(parts) == 3 and parts[1] in ("bend", "program"):
            return {"bend": midi.bend, "program": midi.program}[parts[1]](int(parts[2]))
    except ValueError as exc:
        raise ValueError(f"cannot read a source from key {event_key!r}: {exc}") from exc
    names = {k: name for name, (k, _) in AUDIO_FEATURES.items()}
    if event_key in names:
        return getattr(audio, names[event_key])
    if event_key.startswith("osc/"):
        return osc(event_key[3:])
    if parts[0] == "key" and len(parts) == 2:
        return key(parts[1])
    raise ValueError(f"cannot read a source from key {event_key!r}; expected midi/cc/<ch>/<num>, midi/cc14/<ch>/<msb>, "
                     "midi/note/<ch>/<note>, midi/rel/<ch>/<num>, midi/bend/<ch>, midi/program/<ch>, audio/<feature>, "
                     "osc/<address> or key/<name>")
