"""The README's examples run: its sketch loads and its render/bench commands work as written (at a smaller size)."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest

from livekit import load_sketch
from livekit.cli import main

ROOT = Path(__file__).resolve().parents[2]
README = (ROOT / "README.md").read_text(encoding="utf-8")


def test_the_readme_sketch_loads(tmp_path: Path) -> None:
    block = re.search(r"```python\n(.*?)```", README, re.S).group(1)
    path = tmp_path / "show.py"
    path.write_text(block, encoding="utf-8")
    spec = load_sketch(path).spec()
    assert spec.required_sources() >= {"midi", "audio"}


@pytest.mark.parametrize("line", [ln for ln in README.splitlines() if ln.startswith(("livekit render", "livekit bench"))])
def test_the_readme_commands_run(line: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(ROOT)
    args = shlex.split(line)[1:]
    args = ["64x64" if a in ("512x512", "256x256") else a for a in args]
    if "--out" in args:
        i = args.index("--out") + 1
        args[i] = str(tmp_path / args[i])
    if args[0] == "bench":
        args += ["--frames", "3"]
    assert main(args) == 0


def test_the_readme_commands_are_the_ci_commands() -> None:
    ci = (ROOT / ".ci" / "run").read_text(encoding="utf-8")
    test_command = re.search(r"## Test\n\n```bash\n(.*?)\n```", README, re.S).group(1)
    assert test_command in ci.splitlines()
    assert "livekit run sketches/hello.py" in README


def test_the_readme_controlnet_sketch_loads(tmp_path: Path) -> None:
    block = next(b for b in re.findall(r"```python\n(.*?)```", README, re.S) if "controlnet =" in b)
    path = tmp_path / "follow.py"
    path.write_text(block, encoding="utf-8")
    spec = load_sketch(path).spec()  # validated, nothing opened: the camera starts with the show
    assert spec.engine.controlnet == "lllyasviel/sd-controlnet-canny" and spec.engine.control.kind == "camera"
    assert spec.mapping.targets["control_scale"].source is not None
