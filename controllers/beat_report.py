"""Beat tracker report on synthesized styles: time to lock, final BPM, phase error, confidence (python -m ...)."""

from __future__ import annotations

import argparse
import math
from dataclasses import dataclass

import numpy as np

from controllers.beat_styles import SAMPLE_RATE, Style, all_styles
from controllers.features import AudioAnalyzer, AnalyzerConfig


@dataclass(frozen=True)
class StyleResult:
    """How the tracker did on one style."""

    name: str
    expected_bpm: float | None
    lock_s: float | None  # first time after which the BPM stays within 1 of the expected tempo (None: never)
    final_bpm: float | None
    phase_error_ms: float | None  # median distance from reported beats to the true beats over the last 8 s
    confidence: float  # the tracker's beat confidence at the end


def run_style(style: Style, seconds: float = 24.0, seed: int = 0) -> StyleResult:
    """Analyse one synthesized track hop by hop and measure the tracker against the truth."""
    signal, truth = style.render(seconds, seed)
    analyzer = AudioAnalyzer(AnalyzerConfig(), SAMPLE_RATE)
    hop = analyzer.config.hop
    bpms: list[tuple[float, float | None]] = []
    beats: list[float] = []
    for end in range(hop, len(signal) + 1, hop):
        t = end / SAMPLE_RATE
        for event in analyzer.process(signal[end - hop : end], t):
            if event.source == "audio/beat":
                beats.append(event.time_s)
        bpms.append((t, analyzer.tracker.bpm))
    final = bpms[-1][1]
    lock_s = None
    if style.bpm is not None:
        good = [b is not None and abs(b - style.bpm) <= 1.0 for _, b in bpms]
        for i in range(len(good) - 1, -1, -1):
            if not good[i]:
                lock_s = bpms[i + 1][0] if i + 1 < len(bpms) else None
                break
        else:
            lock_s = bpms[0][0]
    phase = None
    late = [b for b in beats if b > seconds - 8.0]
    if late and len(truth):
        phase = float(np.median([np.min(np.abs(truth - b)) for b in late])) * 1000.0
    return StyleResult(style.name, style.bpm, lock_s, final, phase, analyzer.tracker.confidence)


def _fmt(value: float | None, spec: str) -> str:
    return "-" if value is None or (isinstance(value, float) and math.isnan(value)) else format(value, spec)


def main() -> None:
    """Print the table."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seconds", type=float, default=24.0, help="length of each synthesized track")
    args = parser.parse_args()
    print("| style | expected BPM | time to lock (s) | final BPM | phase error (ms) | confidence |")
    print("|---|---|---|---|---|---|")
    for style in all_styles():
        r = run_style(style, args.seconds)
        print(f"| {r.name} | {_fmt(r.expected_bpm, 'g')} | {_fmt(r.lock_s, '.1f')} | {_fmt(r.final_bpm, '.2f')} "
              f"| {_fmt(r.phase_error_ms, '.1f')} | {r.confidence:.2f} |")


if __name__ == "__main__":
    main()
