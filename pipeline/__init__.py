"""The diffusion engine: models, schedules, samplers, the stream batch, guidance, blending and filters (torch only)."""

from pipeline.conditioning import Conditioning
from pipeline.loading import load_model
from pipeline.protocol import Denoiser, ModelDefaults
from pipeline.schedule import SAMPLERS, ScheduleConfig
from pipeline.stream import EngineConfig, EngineStats, StreamEngine, to_uint8

__all__ = [
    "Conditioning",
    "Denoiser",
    "EngineConfig",
    "EngineStats",
    "ModelDefaults",
    "SAMPLERS",
    "ScheduleConfig",
    "StreamEngine",
    "load_model",
    "to_uint8",
]
