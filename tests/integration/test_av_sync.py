"""Picture and sound stay together over a whole recording: a click track flashes the picture, and the click-to-flash
offset at the end of the file equals the one at the start within one frame (headless and windowed recordings)."""

from __future__ import annotations

from pathlib import Path

import pytest

from livekit.av_sync import analyse, record


@pytest.mark.parametrize("window", [False, True], ids=["headless", "window"])
def test_clicks_and_flashes_keep_their_offset_to_the_end_of_the_file(tmp_path: Path, window: bool) -> None:
    report = analyse(record(tmp_path, seconds=10.0, window=window))
    assert report.matched >= 10, report
    assert 0.0 <= report.offset_start_s < 0.45, report  # each flash follows its click (the show's reaction time)
    assert abs(report.drift_s) <= report.frame_s + 0.002, report
