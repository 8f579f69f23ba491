"""Where a Stable Diffusion checkpoint's files are: a local path or the local Hugging Face cache, never the network.

Also the checks on a diffusers pipeline folder's layout, a LoRA's weight file, and the JSON configs (no torch here).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

_LORA_FILES = ("pytorch_lora_weights.safetensors", "pytorch_lora_weights.bin", "adapter_model.safetensors")


class ModelNotFoundError(ValueError):
    """A model, VAE or LoRA that is neither a local path nor already in the local Hugging Face cache."""


def _looks_like_path(text: str) -> bool:
    """Whether `text` is meant as a filesystem path rather than a hub id like 'owner/name'."""
    return text.startswith(("/", ".", "~")) or "\\" in text or text.count("/") > 1 or Path(text).suffix in (
        ".safetensors", ".bin", ".ckpt", ".pt", ".pth",
    )


def resolve_local(id_or_path: str | Path, what: str) -> Path:
    """The local folder or file for a path or a cached hub id; never touches the network."""
    path = Path(id_or_path).expanduser()
    if path.exists():
        return path
    text = str(id_or_path)
    if isinstance(id_or_path, Path) or _looks_like_path(text):
        raise ModelNotFoundError(
            f"{what} {text!r} does not exist: pass an existing local path, or a Hugging Face id such as "
            f"'stabilityai/sd-turbo' that is already downloaded"
        )
    from huggingface_hub import constants, snapshot_download
    from huggingface_hub.errors import HFValidationError, LocalEntryNotFoundError

    try:
        return Path(snapshot_download(text, local_files_only=True))
    except HFValidationError:
        raise ModelNotFoundError(
            f"{what} {text!r} is neither an existing local path nor a valid Hugging Face id ('owner/name')"
        ) from None
    except LocalEntryNotFoundError:  # not in the cache, and we never download
        raise ModelNotFoundError(
            f"{what} {text!r} is not a local path and is not in the local Hugging Face cache "
            f"({constants.HF_HUB_CACHE}); livekit never downloads while loading.\n"
            f"To fix it, on a machine with internet run:\n"
            f"    huggingface-cli download {text}\n"
            f"(with the same HF_HOME, or copy that cache folder here), or pass the path of a local folder instead."
        ) from None


def read_json(path: Path) -> dict[str, Any]:
    """A JSON config as a dict, or {} when the file is missing."""
    return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else {}


def weights_variant(folder: Path) -> str | None:
    """'fp16' when a component folder holds only fp16-variant weights (e.g. a partial download), else None."""
    names = [p.name for p in folder.iterdir() if p.suffix in (".safetensors", ".bin")]
    if names and all(".fp16." in n for n in names):
        return "fp16"
    return None


def check_pipeline_folder(folder: Path, name: str, need_vae: bool) -> None:
    """Raise a teaching error unless `folder` is a diffusers SD 1.x/2.x pipeline."""
    if folder.is_file():
        raise ValueError(
            f"{name!r} is a single file; livekit loads diffusers folders (model_index.json, unet/, vae/, ...). "
            f"Convert it once on a connected machine with diffusers' "
            f"StableDiffusionPipeline.from_single_file(...).save_pretrained(folder) and pass that folder"
        )
    class_name = str(read_json(folder / "model_index.json").get("_class_name", ""))
    if "XL" in class_name or (folder / "text_encoder_2").is_dir():
        raise ValueError(
            f"{name!r} is an SDXL pipeline ({class_name or 'has text_encoder_2/'}); livekit's SD loader runs "
            f"Stable Diffusion 1.x/2.x (SD 1.5, SD 2.1, sd-turbo): pass one of those"
        )
    parts = ["unet", "text_encoder", "tokenizer", "scheduler"] + (["vae"] if need_vae else [])
    missing = [p for p in parts if not (folder / p).is_dir()]
    if missing:
        raise ModelNotFoundError(
            f"{name!r} ({folder}) has no {', '.join(p + '/' for p in missing)}: it is not a complete diffusers "
            f"Stable Diffusion pipeline. Download the whole repository (huggingface-cli download <id>) or pass a "
            f"folder holding model_index.json, unet/, text_encoder/, tokenizer/, scheduler/ and vae/"
        )


def lora_weight_file(source: Path, name: str) -> Path:
    """The weights file of a LoRA given as a file or a folder."""
    if source.is_file():
        return source
    for candidate in _LORA_FILES:
        if (source / candidate).is_file():
            return source / candidate
    files = sorted(p for p in source.iterdir() if p.suffix in (".safetensors", ".bin"))
    if len(files) == 1:
        return files[0]
    raise ValueError(
        f"LoRA {name!r} ({source}) holds {len(files)} weight files {[f.name for f in files]}: "
        f"pass the path of the one file to use"
    )
