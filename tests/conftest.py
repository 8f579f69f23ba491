"""Shared fixtures: a real JACK server, tiny random-weight SD pipelines and a ControlNet on disk, SDL and hub
settings."""

from __future__ import annotations

import os
import shutil
import subprocess
import time
import uuid
from pathlib import Path

import pytest

# Set before anything imports pygame, sounddevice (PortAudio reads JACK_DEFAULT_SERVER when it initialises)
# or huggingface_hub, so every test sees the same environment.
# JACK breaks on long server names (jack_lsp aborts past ~16 characters): keep it short and unique.
JACK_SERVER_NAME = f"lk{uuid.uuid4().hex[:8]}"
os.environ["JACK_DEFAULT_SERVER"] = JACK_SERVER_NAME
os.environ["JACK_NO_START_SERVER"] = "1"
os.environ.setdefault("SDL_VIDEODRIVER", "dummy")
os.environ.setdefault("SDL_AUDIODRIVER", "dummy")
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["TRANSFORMERS_OFFLINE"] = "1"
os.environ["PYGAME_HIDE_SUPPORT_PROMPT"] = "1"


class JackServer:
    """A running `jackd -d dummy` under a unique server name."""

    def __init__(self, name: str, sample_rate: int, period: int, process: subprocess.Popen) -> None:
        self.name = name
        self.sample_rate = sample_rate
        self.period = period
        self.process = process

    def ports(self) -> list[str]:
        """Names of all ports on the server (jack_lsp)."""
        out = subprocess.run(["jack_lsp", "-s", self.name], capture_output=True, text=True, timeout=5)
        return [line.strip() for line in out.stdout.splitlines() if line.strip()]

    def connect(self, source: str, destination: str) -> None:
        """Connect two ports (jack_connect)."""
        subprocess.run(["jack_connect", "-s", self.name, source, destination], check=True, timeout=5)


def _wait_until_answers(name: str, process: subprocess.Popen, log: Path, timeout_s: float = 15.0) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"jackd exited with code {process.returncode}:\n{log.read_text(errors='replace')}")
        probe = subprocess.run(["jack_lsp", "-s", name], capture_output=True, text=True, timeout=5)
        if probe.returncode == 0 and "system:" in probe.stdout:
            return
        time.sleep(0.1)
    raise RuntimeError(f"jackd server {name!r} did not answer within {timeout_s} s")


def _release_portaudio() -> None:
    """Close PortAudio's JACK client before the server goes, or PortAudio aborts the interpreter at exit."""
    import sys

    sd = sys.modules.get("sounddevice")
    if sd is not None:
        sd._terminate()


@pytest.fixture(scope="session")
def jack(tmp_path_factory: pytest.TempPathFactory) -> JackServer:
    """A real JACK server (dummy backend, no realtime) for MIDI and audio tests; always stopped afterwards."""
    missing = [tool for tool in ("jackd", "jack_lsp", "jack_connect") if shutil.which(tool) is None]
    if missing:
        pytest.fail(
            f"{', '.join(missing)} not found: install Debian's jackd2 (apt-get install jackd2); .ci/run does this",
            pytrace=False,
        )
    rate, period = 48000, 256
    # jackd writes a line per late cycle on a busy machine: into a file, never a pipe nobody drains (a full pipe
    # would stop jackd, and every JACK client with it)
    log = tmp_path_factory.mktemp("jack") / "jackd.log"
    with open(log, "w") as out:
        process = subprocess.Popen(
            ["jackd", "--no-realtime", "-n", JACK_SERVER_NAME, "-d", "dummy", "-r", str(rate), "-p", str(period)],
            stdout=out, stderr=subprocess.STDOUT, env={**os.environ, "JACK_NO_AUDIO_RESERVATION": "1"},
        )
    try:
        _wait_until_answers(JACK_SERVER_NAME, process, log)
        yield JackServer(JACK_SERVER_NAME, rate, period, process)
    finally:
        _release_portaudio()
        process.terminate()
        try:
            process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=5)


@pytest.fixture(scope="session")
def tiny_sd_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Path of a random-weight Stable Diffusion pipeline saved with save_pretrained (built once per session)."""
    from pipeline.random_sd import build_random_sd

    return build_random_sd(tmp_path_factory.mktemp("tiny_sd") / "pipe")


@pytest.fixture(scope="session")
def tiny_sd_v_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Like tiny_sd_model, but a v-prediction checkpoint."""
    from pipeline.random_sd import RandomSDSpec, build_random_sd

    return build_random_sd(tmp_path_factory.mktemp("tiny_sd_v") / "pipe", RandomSDSpec(prediction_type="v_prediction"))


@pytest.fixture(scope="session")
def tiny_controlnet(tiny_sd_model: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A random ControlNetModel made from the tiny UNet: its zero convolutions randomised (else it does nothing), and
    its picture embedding too (else, at random init, the picture barely matters next to the UNet copy)."""
    import torch
    from diffusers import ControlNetModel, UNet2DConditionModel

    unet = UNet2DConditionModel.from_pretrained(tiny_sd_model / "unet", local_files_only=True)
    torch.manual_seed(1)
    net = ControlNetModel.from_unet(unet, conditioning_embedding_out_channels=(8, 8, 16, 16))
    with torch.no_grad():
        for name, p in net.named_parameters():
            if name.startswith(("controlnet_down_blocks", "controlnet_mid_block", "controlnet_cond_embedding")):
                p.normal_(0.0, 0.3)
    folder = tmp_path_factory.mktemp("controlnet") / "net"
    net.save_pretrained(folder)
    return folder
