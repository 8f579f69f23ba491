"""`load_model`: one entry point for every model family (builtin, a folder of images, diffusers SD, random SD)."""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

import torch

from pipeline.protocol import Denoiser

_IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".webp", ".bmp"}
RANDOM_SD_PRESETS = ("tiny", "small", "sd-turbo", "sd15", "sdxl-turbo")  # random-weight SD for tests and bench
_FULL_SIZE = ("sd-turbo", "sd15", "sdxl-turbo")  # the real architectures, built in memory (pipeline.random_full)
_BUILTIN_MODELS: dict[tuple, Denoiser] = {}  # the builtin model takes seconds to draw its components: keep it


def _is_image_folder(path: Path) -> bool:
    """A directory of images (not a diffusers pipeline folder)."""
    if not path.is_dir() or (path / "model_index.json").exists() or (path / "unet").exists():
        return False
    return any(p.suffix.lower() in _IMAGE_SUFFIXES for p in path.iterdir())


def _random_sd(preset: str, **kwargs: Any) -> Denoiser:
    """Build (once per process) and load a random-weight SD pipeline: 'random-sd:tiny', 'small', 'sd-turbo', ..."""
    from pipeline.random_sd import SMALL_SD, RandomSDSpec, build_random_sd
    from pipeline.sd import load_sd

    if preset not in RANDOM_SD_PRESETS:
        raise ValueError(f"random-sd preset must be one of {RANDOM_SD_PRESETS}, got {preset!r}")
    if preset in _FULL_SIZE:  # full size: random weights straight into memory (gigabytes: never saved)
        from pipeline.random_full import load_random_full

        return load_random_full(preset, **kwargs)
    folder = Path(tempfile.gettempdir()) / f"livekit-random-sd-{preset}"
    if not (folder / "model_index.json").exists():
        build_random_sd(folder, SMALL_SD if preset == "small" else RandomSDSpec())
    model = load_sd(folder, **kwargs)
    model.name = f"random-sd:{preset}"
    return model


def load_model(
    name: str | Path = "builtin", device: str | torch.device = "auto", dtype: torch.dtype | str | None = None,
    **kwargs: Any
) -> Denoiser:
    """Load a model by name: "builtin", "folder:PATH" or an image folder, "random-sd:PRESET" (tiny, small,
    sd-turbo, sd15, sdxl-turbo), or a diffusers
    Stable Diffusion 1.x/2.x or SDXL folder / cached hub id (extra keyword arguments such as vae=, lora=, compile= go to it)."""
    from pipeline.devices import default_dtype, parse_dtype, resolve_device

    dtype = parse_dtype(dtype)  # "bfloat16" from a command line works as well as torch.bfloat16
    text = str(name).strip() or "builtin"
    if text == "builtin" or text.startswith("folder:") or _is_image_folder(Path(text)):
        dev = resolve_device(device)
        dt = dtype or torch.float32  # the closed-form models are exact in float32 on every device
        if text == "builtin":
            from pipeline.builtin import load_builtin

            key = (str(dev), dt, tuple(sorted(kwargs.items())))
            if key not in _BUILTIN_MODELS:  # read-only once built: one per process serves every engine
                _BUILTIN_MODELS[key] = load_builtin(device=dev, dtype=dt, **kwargs)
            return _BUILTIN_MODELS[key]
        from pipeline.folder_model import load_folder

        return load_folder(text.removeprefix("folder:"), device=dev, dtype=dt, **kwargs)
    if text.startswith("random-sd:"):
        return _random_sd(text.split(":", 1)[1], device=device, dtype=dtype, **kwargs)
    from pipeline.sd import load_sd
    from pipeline.sd_files import resolve_local
    from pipeline.sdxl import is_sdxl_folder, load_sdxl

    dev = resolve_device(device)
    folder = resolve_local(text, "model")
    loader = load_sdxl if folder.is_dir() and is_sdxl_folder(folder) else load_sd
    return loader(text, device=dev, dtype=dtype or default_dtype(dev), **kwargs)
