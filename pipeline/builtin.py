"""The builtin model: the exact denoiser of a mixture of tagged procedural visuals; runs offline on any CPU.

`MixtureDenoiser` turns a `LowRankMixture` of tagged images into a Denoiser (latents, tone curve, prompts -> prior);
the builtin model and the folder model (pipeline.folder_model) are both one.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch

from pipeline.builtin_text import TagEncoder
from pipeline.gaussian_mixture import LowRankMixture, smooth_basis
from pipeline.noise_schedule import alpha_sigma_at, scaled_linear_alphas_cumprod
from pipeline.protocol import ModelDefaults

LATENT_CHANNELS = 3  # the latent is an RGB image in scaled logit units
LATENT_SCALE = 8  # output pixels per latent pixel, like Stable Diffusion's VAE


@dataclass(frozen=True)
class MixtureConfig:
    """The data distribution and tone curve of a mixture model (builtin or folder); std values are in logit units."""

    latent_gain: float = 16.0  # logit units per latent unit at a 64x64 latent, growing as sqrt(h * w) (see gain())
    tone_floor: float = 0.01  # colours are clamped to [floor, 1 - floor] before the logit (logit range +-4.6)
    noise_std: float = 0.05  # isotropic std of the data around every component (no visible grain)
    variation_modes: int = 4  # shared smooth fields: the lowest modes x modes DCT modes on each colour axis
    variation_std: float = 0.4  # per-pixel std of the lowest smooth mode (colour and shape wobble)
    variation_decay: float = 1.0  # the std of DCT mode (i, j) falls as (1 + i + j) ** -decay
    detail_std: float = 0.25  # relative std of each component's own detail amplitude (its contrast)
    prompt_sharpness: float = 12.0  # log prior weight per unit of tag match (higher: prompts select harder)


@dataclass(frozen=True)
class Components:
    """A model's components rendered for one latent size."""

    images: torch.Tensor  # (K, 3, h, w) in [0, 1] at latent resolution: the component means after tone mapping
    variation: torch.Tensor  # (K, 3) multipliers of the smooth variation std on the (luma, red-green, yellow-blue) axes
    mirrors: torch.Tensor | None = None  # (K, 4) bool: which flips (none, left-right, upside down, both) each allows


def logit_centre(images: torch.Tensor, config: MixtureConfig = MixtureConfig()) -> torch.Tensor:
    """(3,) mean logit per channel of images (K, 3, h, w): the colour a zero latent decodes to."""
    f = config.tone_floor
    return torch.logit(images.to(torch.float64).clamp(f, 1 - f)).mean(dim=(0, 2, 3))


def check_size(size_px: tuple[int, int]) -> tuple[int, int]:
    """(width, height) as ints, or a ValueError unless both are positive multiples of 8."""
    try:
        width, height = (int(v) for v in size_px)
    except (TypeError, ValueError):
        raise ValueError(f"size must be (width, height) in pixels, got {size_px!r}") from None
    if width <= 0 or height <= 0 or width % LATENT_SCALE or height % LATENT_SCALE:
        raise ValueError(f"size must be a positive multiple of {LATENT_SCALE}, got {width}x{height}")
    return width, height


def _cubic_upsample_matrix(n: int, factor: int) -> torch.Tensor:
    """(n * factor, n) float64 cubic convolution (a = -0.75, as torch's bicubic), half-pixel centres, clamped edges."""
    out = torch.arange(n * factor, dtype=torch.float64)
    src = (out + 0.5) / factor - 0.5
    base = torch.floor(src)
    frac = src - base
    mat = torch.zeros(n * factor, n, dtype=torch.float64)
    for offset in (-1, 0, 1, 2):
        d = (frac - offset).abs()
        far = torch.where(d < 2, ((-0.75 * d + 3.75) * d - 6) * d + 3, 0.0)
        w = torch.where(d <= 1, (1.25 * d - 2.25) * d * d + 1, far)
        idx = (base + offset).clamp(0, n - 1).long()
        mat.index_put_((torch.arange(n * factor), idx), w, accumulate=True)
    return mat


class MixtureDenoiser:
    """A Denoiser (pipeline.protocol) whose data is a LowRankMixture of tagged images: builtin and folder models.

    Latents are RGB images in logit units, centred and scaled down by latent_gain, at 1/8 of the output size; decode
    upsamples them (cubic) and applies sigmoid(gain * z + centre), which keeps edges crisp. A prompt embedding e (a
    tag vector) sets the prior log pi_k = sharpness * e.tags_k (log-softmaxed): "" (e = 0) is the uniform prior, any
    blend of embeddings blends the preferences, and CFG extrapolates between two exact posteriors as it does for SD.
    """

    prediction_type = "epsilon"

    def __init__(self, name: str, render: Callable[[int, int], Components], tags: torch.Tensor, encoder: TagEncoder,
                 config: MixtureConfig = MixtureConfig(), defaults: ModelDefaults = ModelDefaults(),
                 device: str | torch.device = "cpu", dtype: torch.dtype = torch.float32,
                 centre: torch.Tensor | None = None) -> None:
        if tags.dim() != 2 or tags.shape[1] != encoder.dim:
            raise ValueError(f"tags must be (K, {encoder.dim}) for this encoder, got {tuple(tags.shape)}")
        if not dtype.is_floating_point:
            raise ValueError(f"dtype must be a floating point type, got {dtype}")
        self.name = name
        self.config = config
        self.defaults = defaults
        self.device = torch.device(device)
        self.dtype = dtype
        self.alphas_cumprod = scaled_linear_alphas_cumprod()  # (1000,) float64 CPU, SD's schedule
        self.encoder = encoder
        self._render = render
        self._tags = tags.to(self.device, dtype)  # (K, T)
        centre = torch.zeros(3) if centre is None else centre.reshape(3)
        self._centre = centre.to(torch.float64).reshape(1, 3, 1, 1)  # mean logit per channel: the latent's zero
        self._centre_model = self._centre.to(self.device, dtype)
        self._mixtures: dict[tuple[int, int], LowRankMixture] = {}
        self._upsamplers: dict[tuple[int, int], tuple[torch.Tensor, torch.Tensor]] = {}

    @property
    def num_components(self) -> int:
        """K."""
        return self._tags.shape[0]

    def latent_shape(self, size_px: tuple[int, int]) -> tuple[int, int, int]:
        """(3, height/8, width/8) for size_px = (width, height)."""
        width, height = check_size(size_px)
        return (LATENT_CHANNELS, height // LATENT_SCALE, width // LATENT_SCALE)

    def encode_prompt(self, text: str) -> torch.Tensor:
        """(1, T) unit tag vector of the prompt; zeros for "" (the unconditional prior)."""
        return self.encoder.encode(text)[None].to(self.device, self.dtype)

    def log_prior(self, cond: torch.Tensor) -> torch.Tensor:
        """(B, K) log prior weights of the components under embeddings cond (B, L, T)."""
        if cond.dim() != 3 or cond.shape[-1] != self.encoder.dim:
            raise ValueError(f"cond must be (B, L, {self.encoder.dim}) prompt embeddings, got {tuple(cond.shape)}")
        e = cond.to(self.device, self.dtype).mean(dim=1)  # (B, T)
        return torch.log_softmax(self.config.prompt_sharpness * (e @ self._tags.T), dim=-1)  # (B, K)

    def mixture(self, height: int, width: int) -> LowRankMixture:
        """The data distribution at a latent size (h, w), built on first use and cached."""
        key = (height, width)
        if key not in self._mixtures:
            with torch.inference_mode(False), torch.no_grad():
                if len(self._mixtures) >= 4:  # a few sizes at most; the oldest goes first
                    self._mixtures.pop(next(iter(self._mixtures)))
                self._mixtures[key] = self._build(height, width)
        return self._mixtures[key]

    def _build(self, height: int, width: int) -> LowRankMixture:
        c = self.config
        comps = self._render(height, width)
        if comps.images.shape != (self.num_components, 3, height, width):
            expected = (self.num_components, 3, height, width)
            raise ValueError(f"render gave images of shape {tuple(comps.images.shape)}, expected {expected}")
        means = self.tone_encode(comps.images.to(torch.float64)).reshape(self.num_components, -1)  # (K, D)
        basis, order, axis = smooth_basis(height, width, min(c.variation_modes, height, width))
        unit = 1.0 / self.gain(height, width)  # latent units per logit unit
        mode_var = (c.variation_std * unit) ** 2 * height * width * (1.0 + order) ** (-2.0 * c.variation_decay)  # (R,)
        basis_var = comps.variation.to(torch.float64)[:, axis] ** 2 * mode_var[None]  # (K, R)
        detail = torch.full((self.num_components,), c.detail_std, dtype=torch.float64)
        opts = {"device": self.device, "dtype": self.dtype}
        return LowRankMixture(means.to(**opts), basis.to(**opts), basis_var.to(**opts), detail.to(**opts),
                              c.noise_std * unit, (LATENT_CHANNELS, height, width), comps.mirrors)

    def __call__(self, x: torch.Tensor, t: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
        """Exact epsilon prediction (B, 3, h, w) for latents x (B, 3, h, w) at timesteps t (B,) with cond (B, L, T)."""
        if x.dim() != 4 or x.shape[1] != LATENT_CHANNELS:
            raise ValueError(f"x must be (B, {LATENT_CHANNELS}, h, w) latents, got {tuple(x.shape)}")
        b, _, h, w = x.shape
        alpha, sigma = alpha_sigma_at(self.alphas_cumprod, t.reshape(-1))  # (B,) float64
        alpha, sigma = (v.to(self.device, self.dtype).expand(b) for v in (alpha, sigma))
        log_prior = self.log_prior(cond).expand(b, -1)  # (B, K)
        eps = self.mixture(h, w).eps(x.to(self.dtype).reshape(b, -1), alpha, sigma, log_prior)  # (B, D)
        return eps.reshape(b, LATENT_CHANNELS, h, w)

    def gain(self, height: int, width: int) -> float:
        """Logit units per latent unit at a latent size.

        SD's schedule ends at a non-zero SNR (alpha_T = 0.068), so the start noise stands in for
        x_T = alpha_T x0 + sigma_T eps, and at the first step the components compete by
        alpha_T x.mu_k - alpha_T^2 ||mu_k||^2 / 2 (random, and leaning to dim images) on top of the prompt's prior.
        Small latents keep those terms near a nat so the prompt steers; a gain growing as sqrt(h * w) keeps them, and
        the sharpness of the last steps, the same at every size.
        """
        return self.config.latent_gain * math.sqrt(height * width) / 64.0

    def tone_encode(self, images: torch.Tensor) -> torch.Tensor:
        """Colours (B, 3, h, w) in [0, 1] -> latent units: (logit(clamp(c)) - centre) / gain."""
        f = self.config.tone_floor
        centre = self._centre.to(images.device, images.dtype)
        return (torch.logit(images.clamp(f, 1 - f)) - centre) / self.gain(*images.shape[-2:])

    def decode(self, latents: torch.Tensor) -> torch.Tensor:
        """Latents (B, 3, h, w) -> images (B, 3, 8h, 8w) in [0, 1]: cubic upsampling, then the tone curve."""
        if latents.dim() != 4 or latents.shape[1] != LATENT_CHANNELS:
            raise ValueError(f"latents must be (B, {LATENT_CHANNELS}, h, w), got {tuple(latents.shape)}")
        h, w = latents.shape[-2:]
        if (h, w) not in self._upsamplers:
            with torch.inference_mode(False):  # cached tensors must also serve calls outside inference mode
                up_h, up_w = (_cubic_upsample_matrix(n, LATENT_SCALE).to(self.device, self.dtype) for n in (h, w))
            self._upsamplers[(h, w)] = (up_h, up_w)
        up_h, up_w = self._upsamplers[(h, w)]  # (H, h), (W, w)
        z = latents.to(self.device, self.dtype)
        img = up_h @ (z @ up_w.T)  # (B, 3, H, W)
        return img.mul_(self.gain(h, w)).add_(self._centre_model).sigmoid_()

    def encode_image(self, images: torch.Tensor) -> torch.Tensor:
        """Images (B, 3, H, W) in [0, 1] (H, W multiples of 8) -> latents (B, 3, H/8, W/8)."""
        if images.dim() != 4 or images.shape[1] != 3:
            raise ValueError(f"images must be (B, 3, H, W) in [0, 1], got {tuple(images.shape)}")
        check_size((images.shape[-1], images.shape[-2]))
        small = torch.nn.functional.avg_pool2d(images.to(self.device, self.dtype), LATENT_SCALE)
        return self.tone_encode(small)


BUILTIN_DEFAULTS = ModelDefaults(sampler="dpmpp_2m", steps=4, cfg="none", guidance=1.0, size_px=(512, 512))


def __getattr__(name: str) -> object:
    """BuiltinModel and load_builtin live in pipeline.builtin_model (which builds on the helpers above)."""
    if name in ("BuiltinModel", "load_builtin"):
        from pipeline import builtin_model

        return getattr(builtin_model, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = ["BUILTIN_DEFAULTS", "BuiltinModel", "MixtureConfig", "MixtureDenoiser", "load_builtin"]
