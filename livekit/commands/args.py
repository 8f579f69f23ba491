"""Argument helpers the subcommands share: sizes, the engine options, model keyword arguments."""

from __future__ import annotations

import argparse


def parse_size(text: str) -> tuple[int, int]:
    """'512x288' -> (512, 288); sizes must be positive multiples of 8."""
    try:
        w, h = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"size must look like 512x512, got {text!r}") from None
    if w <= 0 or h <= 0 or w % 8 or h % 8:
        raise argparse.ArgumentTypeError(f"size must be positive multiples of 8, got {w}x{h}")
    return w, h


def engine_args(p: argparse.ArgumentParser) -> None:
    """The model and engine options render and bench share."""
    p.add_argument("--model", default="builtin", help="builtin (default), folder:PATH, random-sd:tiny|small, "
                   "or a Stable Diffusion folder / cached hub id")
    p.add_argument("--size", type=parse_size, default=None, help="WxH, multiples of 8 (default: the model's)")
    p.add_argument("--sampler", choices=["turbo", "lcm", "ddim", "dpmpp_2m"], default=None)
    p.add_argument("--steps", type=int, default=None, help="denoising steps = frames in flight")
    p.add_argument("--cfg", choices=["none", "full", "self", "onetime"], default=None)
    p.add_argument("--device", default="auto", help="auto (cuda, then mps, then cpu), cpu, cuda, cuda:1, mps")
    p.add_argument("--vae", default=None, help="a tiny autoencoder (TAESD) folder or cached id for fast decode")
    p.add_argument("--lora", default=None, help="a LoRA file or folder (an LCM-LoRA switches to lcm, 4 steps)")


def model_kwargs(args: argparse.Namespace) -> dict:
    """vae= and lora= for models that take them."""
    return {k: v for k, v in (("vae", getattr(args, "vae", None)), ("lora", getattr(args, "lora", None))) if v}
