"""MIDI learn: the next control that moves binds to a target name; learned mappings live in a JSON file by the sketch.

File format (``<sketch>.midi.json`` next to ``<sketch>.py``)::

    {"format": "livekit-midi-mappings", "version": 1,
     "mappings": [{"target": "speed", "source": "midi/cc/0/74"},
                  {"target": "zoom", "source": "midi/cc14/0/1", "soft_takeover": false},
                  {"target": "hue", "source": "midi/rel/0/16", "encoding": "twos_complement"}]}
"""

from __future__ import annotations

import json
import os
import tempfile
import threading
from dataclasses import dataclass
from pathlib import Path
from collections.abc import Iterable, Mapping
from typing import Any

from controllers.base import ControlEvent
from controllers.midi import RELATIVE_ENCODINGS, MidiDecoderConfig, parse_midi_source

MAPPINGS_FORMAT = "livekit-midi-mappings"
MAPPINGS_VERSION = 1
MAPPINGS_SUFFIX = ".midi.json"


@dataclass(frozen=True)
class MidiMapping:
    """One learned binding: a MIDI source key drives a target (a parameter name)."""

    target: str  # what the control drives, e.g. a declared parameter name
    source: str  # MIDI source key, e.g. "midi/cc/0/74" (see controllers.base)
    encoding: str | None = None  # relative encoders only: signed_bit | binary_offset | twos_complement
    soft_takeover: bool = True  # the knob takes over only once it reaches the current value

    def __post_init__(self) -> None:
        if not isinstance(self.target, str) or not self.target.strip():
            raise ValueError(f"mapping target must be a non-empty name, got {self.target!r}")
        kind = parse_midi_source(self.source).kind
        if kind == "rel" and self.encoding not in RELATIVE_ENCODINGS:
            raise ValueError(f"{self.source}: a relative encoder needs an encoding, one of {RELATIVE_ENCODINGS}, "
                             f"got {self.encoding!r}")
        if kind != "rel" and self.encoding is not None:
            raise ValueError(f"{self.source}: encoding applies only to midi/rel/ sources, got {self.encoding!r}")

    def to_json(self) -> dict[str, Any]:
        """The mapping as a JSON object (defaults left out)."""
        out: dict[str, Any] = {"target": self.target, "source": self.source}
        if self.encoding is not None:
            out["encoding"] = self.encoding
        if not self.soft_takeover:
            out["soft_takeover"] = False
        return out


def mappings_path(sketch_path: str | os.PathLike[str]) -> Path:
    """Where a sketch's learned mappings live: ``tunnel.py`` -> ``tunnel.midi.json`` in the same folder."""
    path = Path(sketch_path)
    return path.with_name(path.stem + MAPPINGS_SUFFIX)


_ENTRY_KEYS = ("target", "source", "encoding", "soft_takeover")


def _read_doc(path: Path) -> dict[str, Any]:
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise ValueError(f"{path}: not valid JSON ({exc})") from exc
    if not isinstance(doc, dict) or doc.get("format") != MAPPINGS_FORMAT:
        raise ValueError(f"{path}: not a livekit MIDI mapping file (expected \"format\": \"{MAPPINGS_FORMAT}\")")
    if doc.get("version") != MAPPINGS_VERSION:
        raise ValueError(f"{path}: mapping file version {doc.get('version')!r} is not supported "
                         f"(this livekit reads version {MAPPINGS_VERSION})")
    if not isinstance(doc.get("mappings", []), list):
        raise ValueError(f"{path}: \"mappings\" must be a list")
    return doc


def _write_atomic(path: Path, doc: dict[str, Any]) -> None:
    """JSON to a temporary file in the same folder, then os.replace: a crash never leaves half a file."""
    fd, tmp = tempfile.mkstemp(prefix=path.name, suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            json.dump(doc, f, indent=2)
            f.write("\n")
        os.replace(tmp, path)
    except BaseException:
        os.unlink(tmp)
        raise


def save_mappings(path: str | os.PathLike[str], mappings: Iterable[MidiMapping]) -> bool:
    """Write mappings only if they differ from the file's; atomically, keeping keys livekit does not know.

    Unknown top-level keys stay, and so do unknown keys of an entry whose target and source are unchanged.
    Returns True when the file was written.
    """
    path = Path(path)
    wanted = sorted(mappings, key=lambda m: (m.target, m.source))
    doc: dict[str, Any] = {"format": MAPPINGS_FORMAT, "version": MAPPINGS_VERSION}
    old_entries: list[Any] = []
    if path.exists():
        try:
            doc = _read_doc(path)
            old_entries = doc.get("mappings", [])
            if sorted(_parse_entries(path, old_entries), key=lambda m: (m.target, m.source)) == wanted:
                return False
        except ValueError:  # an unreadable file is replaced (load_mappings already told the user why)
            doc, old_entries = {"format": MAPPINGS_FORMAT, "version": MAPPINGS_VERSION}, []
    extras = {(e.get("target"), e.get("source")): {k: v for k, v in e.items() if k not in _ENTRY_KEYS}
              for e in old_entries if isinstance(e, dict)}
    doc = dict(doc)
    doc["mappings"] = [{**m.to_json(), **extras.get((m.target, m.source), {})} for m in wanted]
    _write_atomic(path, doc)
    return True


def _parse_entries(path: Path, entries: list[Any]) -> list[MidiMapping]:
    out = []
    for i, entry in enumerate(entries):
        if not isinstance(entry, dict) or not all(isinstance(entry.get(k), str) for k in ("target", "source")):
            raise ValueError(f"{path}: mapping {i} must be an object with target, source and optionally encoding "
                             f"and soft_takeover, got {entry!r}")
        try:
            out.append(MidiMapping(entry.get("target"), entry["source"], entry.get("encoding"),
                                   bool(entry.get("soft_takeover", True))))
        except ValueError as exc:
            raise ValueError(f"{path}: mapping {i}: {exc}") from exc
    return out


def load_mappings(path: str | os.PathLike[str], missing_ok: bool = False) -> list[MidiMapping]:
    """Read mappings saved by `save_mappings` (or written by hand); ValueError names the file and the bad entry.

    Keys livekit does not know (a comment, a label) are allowed and kept by `save_mappings`.
    """
    path = Path(path)
    if missing_ok and not path.exists():
        return []
    doc = _read_doc(path)
    return _parse_entries(path, doc.get("mappings", []))


def merge_decoder_configs(*configs: MidiDecoderConfig) -> MidiDecoderConfig:
    """One decoder config holding every 14-bit pair and relative encoder of the given ones (later ones win)."""
    cc14: set[tuple[int, int]] = set()
    relative: dict[tuple[int, int], str] = {}
    for config in configs:
        cc14 |= config.cc14
        relative.update(config.relative)
    for channel, msb in list(cc14):  # a later relative encoder on a pair's CC breaks the pair
        if (channel, msb) in relative or (channel, msb + 32) in relative:
            cc14.discard((channel, msb))
    return MidiDecoderConfig(cc14=frozenset(cc14), relative=relative)


def decoder_config_for(mappings: Iterable[MidiMapping]) -> MidiDecoderConfig:
    """The decoding the mappings need: their 14-bit pairs and relative encoders."""
    cc14: set[tuple[int, int]] = set()
    relative: dict[tuple[int, int], str] = {}
    for mapping in mappings:
        src = parse_midi_source(mapping.source)
        if src.kind == "cc14":
            cc14.add((src.channel, src.number))
        elif src.kind == "rel" and mapping.encoding is not None:
            relative[(src.channel, src.number)] = mapping.encoding
    return MidiDecoderConfig(cc14=frozenset(cc14), relative=relative)


class MidiLearn:
    """Learned mappings plus the armed state: `arm(target)`, then the next moving control `feed` sees binds to it."""

    def __init__(self, mappings: Iterable[MidiMapping] = (),
                 relative: Mapping[tuple[int, int], str] | None = None) -> None:
        self._lock = threading.Lock()
        self._by_target: dict[str, MidiMapping] = {m.target: m for m in mappings}
        self._relative = dict(relative or {})  # encodings for rel sources (the decoder's config)
        self._armed: str | None = None
        self._last: dict[str, float] = {}  # last value per MIDI source, to tell a move from a repeat

    @property
    def armed(self) -> str | None:
        """The target waiting for a control, or None."""
        return self._armed

    def arm(self, target: str) -> None:
        """The next control that moves binds to `target`."""
        if not target.strip():
            raise ValueError("learn target must be a non-empty name")
        with self._lock:
            self._armed = target

    def cancel(self) -> None:
        """Stop waiting for a control."""
        with self._lock:
            self._armed = None

    def feed(self, event: ControlEvent) -> MidiMapping | None:
        """See one event (call it from the MIDI sink); returns the new mapping when this event completed a learn."""
        source = event.source
        if not source.startswith("midi/") or isinstance(event.value, str):
            return None
        value = float(event.value)
        with self._lock:
            previous = self._last.get(source)
            self._last[source] = value
            if self._armed is None or not _moved(source, value, previous):
                return None
            src = parse_midi_source(source)
            encoding = self._relative.get((src.channel, src.number)) if src.kind == "rel" else None
            if src.kind == "rel" and encoding is None:
                return None  # a rel event with no known encoding cannot be saved; the decoder config is missing it
            mapping = MidiMapping(self._armed, source, encoding)
            # one control drives one target: the source leaves any other target it had
            self._by_target = {t: m for t, m in self._by_target.items() if m.source != source}
            self._by_target[mapping.target] = mapping
            self._armed = None
            return mapping

    def mappings(self) -> list[MidiMapping]:
        """All mappings, sorted by target."""
        with self._lock:
            return sorted(self._by_target.values(), key=lambda m: m.target)

    def mapping_for(self, target: str) -> MidiMapping | None:
        """The mapping that drives `target`, or None."""
        return self._by_target.get(target)

    def remove(self, target: str) -> bool:
        """Forget the mapping of `target`; True if there was one."""
        with self._lock:
            return self._by_target.pop(target, None) is not None


def _moved(source: str, value: float, previous: float | None) -> bool:
    """Whether an event is a deliberate move: a note-on, a program change, an encoder step or a changed value."""
    kind = source.split("/", 2)[1]
    if kind == "note":
        return value > 0
    if kind == "program":
        return True
    if kind == "rel":
        return value != 0
    return previous is None or value != previous
