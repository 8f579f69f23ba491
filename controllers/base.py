"""What every controller produces: named, timestamped control events, and tempo states.

Source keys (one naming scheme for the whole toolkit; mappings in livekit match on these strings):
- MIDI: ``midi/cc/<ch>/<num>`` (0..1), ``midi/cc14/<ch>/<msb>`` (0..1), ``midi/rel/<ch>/<num>`` (signed step
  count, only for CCs configured as relative encoders), ``midi/note/<ch>/<note>`` (velocity 0..1, 0 = off),
  ``midi/bend/<ch>`` (-1..1), ``midi/program/<ch>`` (0..127). Channels are 0..15 as mido counts them.
- OSC: ``osc<address>``, e.g. ``osc/livekit/speed`` (float or str value).
- Audio: ``audio/<feature>``, e.g. ``audio/level``, ``audio/bass``, ``audio/onset``, ``audio/beat``, ``audio/bpm``.
- Clock and modulators: ``clock/<name>``, ``lfo/<name>``; keyboard: ``key/<name>``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable


@dataclass(frozen=True)
class ControlEvent:
    """One value from one source, stamped on arrival with time.monotonic()."""

    source: str  # key as above
    value: float | str  # normalised float (or a string, e.g. an OSC prompt)
    time_s: float  # time.monotonic() when it arrived


ControlSink = Callable[[ControlEvent], None]  # called from the controller's own thread; must not block


@dataclass(frozen=True)
class TempoState:
    """A tempo source's view of the music at time_s."""

    bpm: float  # beats per minute
    beat: float  # continuous beat count since the source started (beat phase = beat % 1)
    time_s: float  # time.monotonic() this state refers to
    running: bool = True  # False after a MIDI stop or when the source lost track
    beats_per_bar: int = 4  # for bar phase
