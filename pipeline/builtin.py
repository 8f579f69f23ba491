"""The builtin model: the exact denoiser of a mixture of tagged procedural visuals; runs offline on any CPU."""

from __future__ import annotations

import torch

from pipeline.builtin_content import ComponentSpec, colour_strengths, component_specs, render_components
from pipeline.builtin_text import COLOUR_TAGS, LIGHT_TAGS, TagEncoder, builtin_encoder
from pipeline.gaussian_mixture import Components, MixtureConfig, MixtureDenoiser, logit_centre
from pipeline.protocol import ModelDefaults

BUILTIN_DEFAULTS = ModelDefaults(sampler="dpmpp_2m", steps=4, cfg="none", guidance=1.0, size_px=(512, 512))
TAG_LATENT_SIZE = 32  # colour words and the latent centre are measured on the components at this latent size


def tag_matrix(specs: tuple[ComponentSpec, ...], encoder: TagEncoder, images: torch.Tensor) -> torch.Tensor:
    """(K, T) tag strengths: 1 for each family/palette/mood word, measured (from images) for colour and light words."""
    tags = torch.stack([encoder.multi_hot(spec.tags).clamp(max=1.0) for spec in specs])  # (K, T)
    measured = colour_strengths(images)  # (K, 13)
    for j, word in enumerate(COLOUR_TAGS + LIGHT_TAGS):
        col = encoder.index[word]
        tags[:, col] = torch.maximum(tags[:, col], measured[:, j])
    return tags


class BuiltinModel(MixtureDenoiser):
    """The default model: 272 procedural visuals (16 pattern families x 17 palettes) as an exact diffusion model.

    Each component is a Gaussian around a rendered pattern with smooth colour/shape variation fields, so seeds pick
    and vary visuals, prompts (colours, shapes, moods) weight the components, and every sampler, CFG mode and
    blend works on it as on Stable Diffusion.
    """

    def __init__(self, device: str | torch.device = "cpu", dtype: torch.dtype = torch.float32,
                 config: MixtureConfig = MixtureConfig()) -> None:
        self.specs = component_specs()
        encoder = builtin_encoder()
        reference = render_components(self.specs, TAG_LATENT_SIZE, TAG_LATENT_SIZE)  # (K, 3, 32, 32)
        self._reference = reference  # also the components of 256x256 output
        super().__init__("builtin", self._render, tag_matrix(self.specs, encoder, reference), encoder, config,
                         BUILTIN_DEFAULTS, device, dtype, centre=logit_centre(reference, config))

    def _render(self, height: int, width: int) -> Components:
        variation = torch.tensor([spec.variation for spec in self.specs], dtype=torch.float64)  # (K, 3)
        mirrors = torch.tensor([spec.mirrors for spec in self.specs])  # (K, 4)
        same = (height, width) == tuple(self._reference.shape[-2:])
        images = self._reference if same else render_components(self.specs, height, width)
        return Components(images, variation, mirrors)


def load_builtin(device: str | torch.device = "cpu", dtype: torch.dtype = torch.float32) -> BuiltinModel:
    """The builtin model on a device and dtype (float32 on the CPU always works)."""
    return BuiltinModel(device=device, dtype=dtype)
