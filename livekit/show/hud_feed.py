"""What the HUD shows, gathered from the show's parts: rates, model, parameter bars, audio, tempo, lights."""

from __future__ import annotations

import math
from typing import Any


def param_bars(values: dict[str, Any] | None, spec: Any, limit: int = 12) -> dict[str, float]:
    """The latest tick's values as 0..1 positions within each target's range, for the HUD's bars."""
    targets = spec.mapping.targets
    bars = {}
    for name, value in (values or {}).items():
        target = targets.get(name)
        if not isinstance(value, (int, float)) or target is None or target.trigger or name == "scene":
            continue
        if target.source is None and name not in spec.params:  # a constant setting: nothing moves it
            continue
        lo, hi = target.span or target.clamp or (0.0, 1.0)
        if not (math.isfinite(lo) and math.isfinite(hi)) or hi <= lo:
            lo, hi = 0.0, 1.0
        v = float(value)
        bars[name] = min(1.0, max(0.0, (v - lo) / (hi - lo))) if math.isfinite(v) else 0.0
    return dict(list(bars.items())[:limit])


def hud_info(show: Any) -> Any:
    """A HudInfo for the show as it is now."""
    from livekit.stage.hud import HudInfo

    inputs = show.inputs
    audio = inputs.audio.latest() if inputs and inputs.audio is not None else {}
    tempo = inputs.tempo() if inputs else None
    worker = show.worker
    stats = worker.stats
    cfg = worker.engine.config
    runner = show.runner
    return HudInfo(
        generated_fps=stats.generated_fps or None, latency_ms=stats.latency_ms or None,
        model=getattr(worker.engine.model, "name", ""), sampler=cfg.sampler, steps=worker.engine.slots,
        params=param_bars(show.last_values, runner.spec), bands={k: float(audio.get(f"{k}_auto", audio.get(k, 0.0)))
                                                               for k in ("bass", "low_mid", "mid", "high") if audio},
        beat=bool(tempo and tempo.running and (tempo.beat % 1.0) < 0.15),
        beat_phase=(tempo.beat % 1.0) if tempo else None, bpm=tempo.bpm if tempo else None,
        midi_last_s=inputs.midi_last_s if inputs else None,
        osc_last_s=inputs.osc_last_s if inputs else None,
        recording=show.capture is not None and show.capture.recording,
        learning=bool(getattr(show.bus, "learning", None)),
        last_error=show.last_error or (runner.errors.last if runner.errors.count else None),
        notes=hud_notes(show),
    )


def hud_notes(show: Any) -> tuple[str, ...]:
    """Status lines: which clock leads and how much to trust it, Link peers, input the show dropped."""
    inputs = show.inputs
    notes = []
    if inputs is not None and inputs.clock is not None:
        active = getattr(inputs.clock, "active", None) or "free-running 120"
        notes.append(f"tempo: {active} · confidence {inputs.tempo_confidence():.2f}")
    if inputs is not None and inputs.link is not None:
        peers = inputs.link.num_peers()
        notes.append(f"Link: {peers} peer{'s' if peers != 1 else ''}")
    bus = getattr(show, "bus", None)
    rejected = bus.rejected if bus is not None else None
    if rejected is not None and (rejected.count or rejected.forgotten):
        notes.append(f"input dropped: {rejected.count} bad values · {rejected.forgotten} unmapped keys forgotten")
    return tuple(notes)
