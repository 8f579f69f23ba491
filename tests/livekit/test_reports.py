"""The report scripts: a short soak under a real UDP fuzzer and flood; the OSC latency benchmark."""

from __future__ import annotations

from pathlib import Path

from livekit.soak import Row, soak, summarize

ROOT = Path(__file__).resolve().parents[2]


def test_a_short_soak_under_attack_reports_flat_threads_and_counts_what_it_dropped() -> None:
    rows: list[Row] = []
    soak(ROOT / "sketches" / "hello.py", minutes=0.1, every_s=2.0, size=(64, 64), rate=300.0, emit=rows.append)
    assert len(rows) >= 2
    assert all(r.fps > 0 for r in rows) and rows[-1].frames > rows[0].frames  # frames keep coming
    assert rows[-1].sent > 0 and rows[-1].dropped_inputs > 0  # the fuzzer's garbage was counted, not fatal
    summary = summarize(rows, warmup_min=0.0)
    assert summary["threads"][0] == summary["threads"][1]
    assert {"rss_growth_pct", "fps_drift_pct", "fds"} <= set(summary)


def test_the_latency_report_sees_an_osc_prompt_switch_within_the_stream_depth() -> None:
    from livekit.latency import measure

    r = measure(steps=2, trials=2)
    assert r.trials >= 1
    assert 1 <= r.first_frame <= r.most_frame <= 2 + 3  # N steps in flight, plus the tick and post-processing
