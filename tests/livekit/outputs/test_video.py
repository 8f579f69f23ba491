"""Video outputs on the wrong platform: one clear line, exit 2, nothing left open."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from livekit.cli import main


@pytest.mark.skipif(sys.platform in ("darwin", "win32"), reason="checks the message where the output cannot work")
@pytest.mark.parametrize("kind, platform", [("syphon", "macOS"), ("spout", "Windows")])
def test_asking_for_a_platform_output_elsewhere_says_so_in_one_line(kind: str, platform: str, tmp_path: Path,
                                                                    capsys: pytest.CaptureFixture[str]) -> None:
    sketch = tmp_path / "s.py"
    sketch.write_text("from livekit import Sketch\n\nclass S(Sketch):\n    prompts = ['red']\n    size = (64, 64)\n",
                      encoding="utf-8")
    assert main(["run", str(sketch), "--headless", "--osc-port", "0", "--frames", "3", f"--{kind}-out", "x"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [f"livekit run: {kind} output 'x': {kind.capitalize()} output works on {platform} only "
                   f"(this is {sys.platform}); use NDI out instead"]
