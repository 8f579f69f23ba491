"""The diffusion engine: models, schedules, samplers, the stream batch, guidance, blending and filters (torch only).

Names are imported lazily, so `from pipeline.conditioning import Conditioning` (pure Python) does not load torch.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "Conditioning": "pipeline.conditioning",
    "Denoiser": "pipeline.protocol",
    "ModelDefaults": "pipeline.protocol",
    "EngineConfig": "pipeline.stream",
    "EngineStats": "pipeline.stream",
    "StreamEngine": "pipeline.stream",
    "to_uint8": "pipeline.stream",
    "SAMPLERS": "pipeline.schedule",
    "ScheduleConfig": "pipeline.schedule",
    "StreamWorker": "pipeline.worker",
    "load_model": "pipeline.loading",
    "BuiltinModel": "pipeline.builtin",
    "MixtureConfig": "pipeline.builtin",
    "MixtureDenoiser": "pipeline.builtin",
    "FolderModel": "pipeline.folder_model",
    "SDModel": "pipeline.sd",
    "ModelNotFoundError": "pipeline.sd_files",
    "ControlledModel": "pipeline.controlnet",
    "load_controlnet": "pipeline.controlnet",
    "preprocess_control": "pipeline.controlnet",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    """Import a public name on first use."""
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'pipeline' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value
