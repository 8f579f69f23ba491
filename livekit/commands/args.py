"""Argument helpers the subcommands share: sizes, the engine options, model keyword arguments."""

from __future__ import annotations

import argparse
import socket
from pathlib import Path

from livekit.sketch.settings import MAX_SIDE


def parse_size(text: str) -> tuple[int, int]:
    """'512x288' -> (512, 288); sizes must be positive multiples of 8."""
    try:
        w, h = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"size must look like 512x512, got {text!r}") from None
    if w <= 0 or h <= 0 or w % 8 or h % 8:
        raise argparse.ArgumentTypeError(f"size must be positive multiples of 8, got {w}x{h}")
    if max(w, h) > MAX_SIDE:
        raise argparse.ArgumentTypeError(f"size {w}x{h} is too large: at most {MAX_SIDE} pixels per side")
    return w, h


def positive_int(text: str) -> int:
    """A count that must be 1 or more (--frames)."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a whole number, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be 1 or more, got {value}")
    return value


def port_number(text: str) -> int:
    """A UDP/TCP port 0..65535 (0: off or any)."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a port number 0..65535, got {text!r}") from None
    if not 0 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"must be a port number 0..65535, got {value}")
    return value


def host_port(text: str) -> str:
    """'HOST:PORT' with a port 1..65535 (--osc-out); the host is resolved later, before the model loads."""
    host, _, port = text.rpartition(":")
    if not host or not port.isdigit() or not 1 <= int(port) <= 65535:
        raise argparse.ArgumentTypeError(f"must look like 127.0.0.1:9001, got {text!r}")
    return text


def check_host(address: str, flag: str) -> None:
    """Raise ValueError, one line, when the host of HOST:PORT does not resolve."""
    host, _, port = address.rpartition(":")
    try:
        socket.getaddrinfo(host, int(port), type=socket.SOCK_DGRAM)
    except (OSError, UnicodeError) as exc:
        raise ValueError(f"{flag} {address}: cannot resolve host {host!r} ({exc})") from None


AUDIO_FILE_SUFFIXES = (".wav", ".flac", ".ogg", ".aif", ".aiff", ".mp3")


def check_audio_in(value: str | None) -> None:
    """Raise FileNotFoundError when --audio-in reads as a file path and no such file exists."""
    if value is None or value.isdigit():
        return
    looks_like_path = value.lower().endswith(AUDIO_FILE_SUFFIXES) or "/" in value or "\\" in value
    if looks_like_path and not Path(value).expanduser().is_file():
        raise FileNotFoundError(f"--audio-in {value}: no such audio file")


def engine_args(p: argparse.ArgumentParser) -> None:
    """The model and engine options render and bench share."""
    p.add_argument("--model", default="builtin", help="builtin (default), folder:PATH, "
                   "random-sd:tiny|small|sd-turbo|sd15|sdxl-turbo, or a Stable Diffusion folder / cached hub id")
    p.add_argument("--size", type=parse_size, default=None, help="WxH, multiples of 8 (default: the model's)")
    p.add_argument("--sampler", choices=["turbo", "lcm", "ddim", "dpmpp_2m"], default=None)
    p.add_argument("--steps", type=int, default=None, help="denoising steps = frames in flight")
    p.add_argument("--cfg", choices=["none", "full", "self", "onetime"], default=None)
    p.add_argument("--device", default="auto", help="auto (cuda, then mps, then cpu), cpu, cuda, cuda:1, mps")
    p.add_argument("--dtype", choices=["auto", "float32", "bfloat16", "float16"], default="auto",
                   help="model dtype (auto: float16 on a GPU, float32 on the CPU; bfloat16 on CPUs with bf16 units)")
    p.add_argument("--vae", default=None, help="a tiny autoencoder (TAESD) folder or cached id for fast decode")
    p.add_argument("--lora", default=None, help="a LoRA file or folder (an LCM-LoRA switches to lcm, 4 steps)")


def model_kwargs(args: argparse.Namespace) -> dict:
    """vae=, lora= for models that take them, and dtype= when one was asked for."""
    pairs = (("vae", getattr(args, "vae", None)), ("lora", getattr(args, "lora", None)))
    out = {k: v for k, v in pairs if v}
    if getattr(args, "dtype", "auto") not in (None, "auto"):
        out["dtype"] = args.dtype
    return out
