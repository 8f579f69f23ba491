"""`livekit render` and `livekit bench` through the CLI, with the builtin model: colours mean what prompts say."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from livekit.cli import main


def _png(path: Path) -> np.ndarray:
    import av

    with av.open(str(path)) as container:
        return next(container.decode(video=0)).to_ndarray(format="rgb24").astype(np.float64)


def _render(tmp_path: Path, name: str, *args: str) -> np.ndarray:
    out = tmp_path / f"{name}.png"
    assert main(["render", "--model", "builtin", "--size", "128x128", "--out", str(out), *args]) == 0
    return _png(out)


def test_red_blue_and_their_blend(tmp_path: Path) -> None:
    red = _render(tmp_path, "red", "--prompt", "red").reshape(-1, 3).mean(axis=0)
    blue = _render(tmp_path, "blue", "--prompt", "blue").reshape(-1, 3).mean(axis=0)
    mix = _render(tmp_path, "mix", "--prompt", "red", "--prompt", "blue", "--mix", "0.5").reshape(-1, 3).mean(axis=0)
    assert red[0] > red[1] + 30 and red[0] > red[2] + 30, red
    assert blue[2] > blue[0] + 30 and blue[2] > blue[1] + 10, blue
    red_minus_blue = lambda m: m[0] - m[2]  # noqa: E731
    assert red_minus_blue(blue) < red_minus_blue(mix) < red_minus_blue(red), (red, mix, blue)


def test_seeds_differ_and_repeat(tmp_path: Path) -> None:
    a = _render(tmp_path, "a", "--prompt", "neon rings", "--seed", "1")
    b = _render(tmp_path, "b", "--prompt", "neon rings", "--seed", "2")
    again = _render(tmp_path, "again", "--prompt", "neon rings", "--seed", "1")
    assert np.array_equal(a, again)
    assert np.abs(a - b).mean() > 10


def test_contact_sheet_holds_prompts_times_seeds(tmp_path: Path) -> None:
    prompts = tmp_path / "prompts.txt"
    prompts.write_text("# a comment\nred rings\nblue waves\n", encoding="utf-8")
    sheet = _render(tmp_path, "sheet", "--grid", str(prompts), "--seeds", "3")
    gap = 4
    assert sheet.shape == (2 * 128 + 3 * gap, 3 * 128 + 4 * gap, 3)


def test_bad_input_is_one_clear_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["render", "--prompt", "red", "--prompt", "blue", "--prompt", "x", "--mix", "0.5",
                 "--out", str(tmp_path / "x.png")]) == 2
    assert "--mix needs exactly two --prompt values" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["render", "--size", "100x100", "--out", str(tmp_path / "x.png")])
    assert "multiples of 8" in capsys.readouterr().err


def test_bench_prints_the_documented_json(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["bench", "--model", "builtin", "--size", "64x64", "--steps", "2", "--frames", "5", "--json"]) == 0
    result = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    for key in ("model", "size", "sampler", "steps", "cfg", "device", "fps", "frame_ms_median", "floor_ms_median",
                "overhead", "sequential_ms_median", "speedup_vs_sequential"):
        assert key in result, key
    assert result["size"] == "64x64" and result["steps"] == 2 and result["fps"] > 0
    assert result["overhead"] == pytest.approx(result["frame_ms_median"] / result["floor_ms_median"], rel=1e-3)


def test_bench_runs_the_tiny_sd_in_bfloat16_when_asked(capsys: pytest.CaptureFixture[str]) -> None:
    args = ["bench", "--model", "random-sd:tiny", "--size", "64x64", "--sampler", "lcm", "--steps", "2", "--cfg",
            "none", "--frames", "3", "--json", "--dtype", "bfloat16"]
    assert main(args) == 0
    result = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert result["dtype"] == "bfloat16" and result["fps"] > 0


def test_an_unknown_dtype_is_refused_by_the_pipeline() -> None:
    from pipeline.devices import parse_dtype

    with pytest.raises(ValueError, match="unknown dtype 'half-ish'"):
        parse_dtype("half-ish")
    assert parse_dtype("auto") is None
