"""The diffusion engine: models, schedules, samplers, the stream batch, guidance, blending and filters (torch only)."""

from pipeline.protocol import Denoiser, ModelDefaults

__all__ = ["Denoiser", "ModelDefaults"]
