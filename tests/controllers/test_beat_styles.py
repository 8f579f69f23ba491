"""Beat tracking on synthesized styles: the right metrical level, held once found; confidence low without a beat."""

from __future__ import annotations

import numpy as np
import pytest

from controllers.beat_report import run_style
from controllers.beat_styles import PADS, SAMPLE_RATE, SILENCE, Style, all_styles, breakbeat, four_on_the_floor, \
    halftime, ramp, swing
from controllers.features import AnalyzerConfig, AudioAnalyzer

BEATS = [four_on_the_floor(97.0), four_on_the_floor(124.0), breakbeat(174.0), breakbeat(165.0), halftime(140.0),
         swing(92.0)]


def track(style: Style, seconds: float, seed: int = 0) -> tuple[list[tuple[float, float | None, float]], list]:
    """(time, bpm, confidence) after every hop, and every event."""
    signal, _ = style.render(seconds, seed)
    analyzer = AudioAnalyzer(AnalyzerConfig(), SAMPLE_RATE)
    hop, rows, events = analyzer.config.hop, [], []
    for end in range(hop, len(signal) + 1, hop):
        events += analyzer.process(signal[end - hop : end], end / SAMPLE_RATE)
        rows.append((end / SAMPLE_RATE, analyzer.tracker.bpm, analyzer.beat_confidence))
    return rows, events


@pytest.mark.parametrize("style", BEATS, ids=lambda s: s.name)
@pytest.mark.parametrize("seed", [0, 1])
def test_tempo_is_found_at_the_right_level_and_held(style: Style, seed: int) -> None:
    rows, events = track(style, 20.0, seed)
    after = [(t, bpm, c) for t, bpm, c in rows if t >= 5.0]
    assert all(bpm is not None and abs(bpm - style.bpm) <= 1.0 for _, bpm, _ in after), \
        (style.name, min(b for _, b, _ in after), max(b for _, b, _ in after))  # no octave fall (174 -> 87)
    assert min(c for _, _, c in after) >= 0.5
    beats = [e for e in events if e.source == "audio/beat" and e.time_s >= 5.0]
    assert len(beats) == pytest.approx(15.0 * style.bpm / 60.0, abs=2)


def test_tempo_ramp_is_followed_to_128() -> None:
    rows, _ = track(ramp(120.0, 128.0), 22.0)
    assert all(abs(bpm - 128.0) <= 1.0 for t, bpm, _ in rows if t >= 16.0)
    assert all(abs(bpm - 120.0) <= 1.0 for t, bpm, _ in rows if 3.0 <= t <= 6.0)


@pytest.mark.parametrize("style", [PADS, SILENCE], ids=lambda s: s.name)
def test_no_beat_means_low_confidence_and_no_beat_triggers(style: Style) -> None:
    rows, events = track(style, 16.0)
    assert max(c for t, _, c in rows if t >= 4.0) < 0.2
    assert not [e for e in events if e.source == "audio/beat"]
    confidence = [e.value for e in events if e.source == "audio/beat_confidence"]
    assert confidence and max(confidence[len(confidence) // 4 :]) < 0.2


def test_confidence_falls_when_the_beat_stops_and_the_clock_lets_go() -> None:
    drums, _ = four_on_the_floor(124.0).render(10.0, 0)
    pads, _ = PADS.render(10.0, 0)
    signal = np.concatenate([drums, pads])
    analyzer = AudioAnalyzer(AnalyzerConfig(), SAMPLE_RATE)
    hop, seen = analyzer.config.hop, []
    for end in range(hop, len(signal) + 1, hop):
        analyzer.process(signal[end - hop : end], end / SAMPLE_RATE)
        if end % (hop * 40) == 0:
            seen.append((end / SAMPLE_RATE, analyzer.beat_confident, analyzer.tempo()))
    assert all(ok and state.running for t, ok, state in seen if 4.0 <= t <= 10.0)
    assert all(not ok and not state.running for t, ok, state in seen if t >= 19.0)


def test_report_gives_a_row_per_style() -> None:
    result = run_style(breakbeat(174.0), seconds=12.0)
    assert result.final_bpm == pytest.approx(174.0, abs=1.0) and result.lock_s is not None and result.lock_s < 4.0
    assert result.phase_error_ms is not None and result.phase_error_ms < 20.0
    assert len(all_styles()) >= 9


def test_a_locked_174_holds_through_a_stretch_that_plays_like_87() -> None:
    from controllers.beat_styles import _pattern

    full, _ = breakbeat(174.0).render(10.0, 0)
    sparse, _ = _pattern(lambda t: 174.0, 10.0, 1, {"kick": (0,), "snare": (2,)})  # kick and snare only: 87 feel
    signal = np.concatenate([full, sparse])
    analyzer = AudioAnalyzer(AnalyzerConfig(), SAMPLE_RATE)
    hop, bpms = analyzer.config.hop, []
    for end in range(hop, len(signal) + 1, hop):
        analyzer.process(signal[end - hop : end], end / SAMPLE_RATE)
        if end / SAMPLE_RATE >= 4.0:
            bpms.append(analyzer.tracker.bpm)
    assert min(bpms) >= 173.0 and max(bpms) <= 175.0
