"""The builtin model: an exact diffusion model whose pictures flow with the prompt, the seed and an animation phase.

Given a prompt embedding e (a tag vector) and a motion phase (cycles), the data distribution is a FlowMixture
(pipeline.builtin_flow) of VARIANTS layouts, each also mirrored left to right. Variant v's mean is

    mu_v(e, phase) = (LUT_v(e) applied to field_v(e, phase) - centre) / gain,

field_v = sum_f softmax_f(sharp * e.A_f + bias_vf) field_{f,v}(phase): the pattern families the words name (each
variant prefers its own family when no family word is given), blended in field space; LUT_v = the palettes the words
name, blended in logit colour space. Both are smooth in e, and field_{f,v}(phase) interpolates keyframes that loop
over one cycle, so a prompt morph, a seed or noise morph and the motion phase all move every frame continuously, and
the denoiser stays exact: it is the closed-form posterior of that distribution.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch

from pipeline.builtin import BUILTIN_DEFAULTS, LATENT_SCALE, _cubic_upsample_matrix, check_size
from pipeline.builtin_content import FAMILIES, PALETTES, apply_palette, colour_strengths, render_field
from pipeline.builtin_flow import FlowMixture
from pipeline.builtin_text import COLOUR_TAGS, LIGHT_TAGS, MOOD_TAGS, SHAPE_TAGS, TagEncoder, builtin_encoder
from pipeline.gaussian_mixture import smooth_basis
from pipeline.noise_schedule import alpha_sigma_at, scaled_linear_alphas_cumprod
from pipeline.protocol import ModelDefaults

LATENT_CHANNELS = 4  # R, G, B in scaled logit units, then a layout code channel that decode ignores
LUT_SIZE = 256  # entries of each palette's logit-colour lookup table (linear interpolation between entries)
# Families a variant shows when no family word is given (the "" prompt, or colours only).
DEFAULT_FAMILIES = ("rings", "plasma", "waves", "tunnel", "spiral", "kaleidoscope", "flower", "stars", "rays",
                    "blobs")
DEFAULT_PALETTES = ("neon", "ocean", "fire", "twilight", "acid", "synthwave", "ice", "gold", "rainbow", "candy")


@dataclass(frozen=True)
class FlowConfig:
    """The builtin data distribution; std values are in logit units."""

    variants: int = 10  # layouts per conditioning (each also mirrored): what seeds choose between
    keyframes: int = 12  # rendered phases per motion cycle (linear interpolation between them)
    latent_gain: float = 16.0  # logit units per latent unit at a 64x64 latent, growing as sqrt(h * w)
    tone_floor: float = 0.01  # colours are clamped to [floor, 1 - floor] before the logit
    noise_std: float = 0.05  # isotropic std of the data around every mean (no visible grain)
    variation_modes: int = 4  # smooth variation fields: the lowest modes x modes DCT modes on each colour axis
    variation_std: float = 0.5  # per-pixel std of the lowest smooth mode (colour and shape wobble)
    variation_decay: float = 1.0  # the std of DCT mode (i, j) falls as (1 + i + j) ** -decay
    code_std: float = 12.0  # per-pixel std of each layout's code (channel 3): seeds, not prompts, pick the layout
    family_sharpness: float = 10.0  # family logit per unit of tag match
    family_bias: float = 6.0  # logit of a variant's own family, fading out as the prompt names a family
    palette_sharpness: float = 10.0  # palette logit per unit of tag match
    palette_bias: float = 5.0  # logit of a variant's own palette, fading out as the prompt names a palette
    bias_fade: float = 0.4  # tag match at which the variant's own family / palette preference is gone


def _tag_vector(encoder: TagEncoder, weights: dict[str, float]) -> torch.Tensor:
    vec = torch.zeros(encoder.dim, dtype=torch.float64)
    for tag, w in weights.items():
        vec[encoder.index[tag]] = max(float(vec[encoder.index[tag]]), w)
    return vec


def family_tags(encoder: TagEncoder) -> torch.Tensor:
    """(F, T) how strongly each family answers each word: its name 1, its shape words 0.8, its moods 0.4."""
    rows = []
    for name, (_, tags, _) in FAMILIES.items():
        rows.append(_tag_vector(encoder, {t: 1.0 if t == name else 0.8 if t in SHAPE_TAGS else 0.4 for t in tags}))
    return torch.stack(rows)


def palette_ramps(size: int = LUT_SIZE) -> torch.Tensor:
    """(P, 3, 1, size) each palette on a dark-to-bright ramp."""
    ramp = np.linspace(0, 1, size, dtype=np.float32)[None]
    return torch.from_numpy(np.stack([apply_palette(ramp, p) for p in PALETTES]))


def palette_tags(encoder: TagEncoder) -> torch.Tensor:
    """(P, T): its name 1, its moods 0.4, colour and light words as measured on its ramp (up to 0.8)."""
    measured = colour_strengths(palette_ramps())  # (P, 13)
    rows = []
    for i, pal in enumerate(PALETTES):
        weights = {t: 0.8 if t in SHAPE_TAGS else 0.4 for t in pal.tags if t in MOOD_TAGS or t in SHAPE_TAGS}
        weights[pal.name] = 1.0
        if pal.name == "mono":  # the one palette that is truly white on black
            weights.update(white=1.0, black=1.0)
        for j, word in enumerate(COLOUR_TAGS + LIGHT_TAGS):
            if float(measured[i, j]) > 0:
                scale = 0.4 if word in LIGHT_TAGS else 0.8  # a named palette outweighs how dark it happens to be
                weights[word] = max(weights.get(word, 0.0), scale * float(measured[i, j]))
        rows.append(_tag_vector(encoder, weights))
    return torch.stack(rows)


class BuiltinModel:
    """The default model: 16 pattern families x 17 palettes, blended by the prompt, moving with `motion_phase`.

    A Denoiser (pipeline.protocol). Set `motion_phase` (cycles; 1.0 = one full loop of every pattern's motion)
    before a call to animate: rings expand, waves roll, tunnels zoom, rays and spirals turn, stars drift.
    """

    prediction_type = "epsilon"

    def __init__(self, device: str | torch.device = "cpu", dtype: torch.dtype = torch.float32,
                 config: FlowConfig = FlowConfig()) -> None:
        if not dtype.is_floating_point:
            raise ValueError(f"dtype must be a floating point type, got {dtype}")
        if config.variants < 1 or config.keyframes < 2:
            raise ValueError("config needs variants >= 1 and keyframes >= 2")
        self.name = "builtin"
        self.config = config
        self.defaults: ModelDefaults = BUILTIN_DEFAULTS
        self.device = torch.device(device)
        self.dtype = dtype
        self.alphas_cumprod = scaled_linear_alphas_cumprod()
        self.encoder = builtin_encoder()
        self.motion_phase = 0.0  # cycles; read on every call
        self.families = tuple(FAMILIES)
        self.palettes = PALETTES
        opts = {"device": self.device, "dtype": dtype}
        f = config.tone_floor
        luts = torch.logit(palette_ramps()[:, :, 0].to(torch.float64).clamp(f, 1 - f))  # (P, 3, LUT)
        centre = luts.mean(dim=(0, 2))  # (3,) the colour a zero latent decodes to
        self._centre = centre.reshape(1, 3, 1, 1).to(**opts)
        self._luts = (luts - centre[None, :, None]).to(**opts)  # (P, 3, LUT) logit colours around the centre
        self._family_tags = family_tags(self.encoder).to(**opts)  # (F, T)
        self._palette_tags = palette_tags(self.encoder).to(**opts)  # (P, T)
        v = config.variants
        fam_bias = torch.zeros(v, len(self.families), dtype=torch.float64)
        pal_bias = torch.zeros(v, len(self.palettes), dtype=torch.float64)
        pal_names = [p.name for p in self.palettes]
        for i in range(v):
            fam_bias[i, self.families.index(DEFAULT_FAMILIES[i % len(DEFAULT_FAMILIES)])] = config.family_bias
            pal_bias[i, pal_names.index(DEFAULT_PALETTES[(3 * i) % len(DEFAULT_PALETTES)])] = config.palette_bias
        self._family_bias, self._palette_bias = fam_bias.to(**opts), pal_bias.to(**opts)
        self._fields: dict[tuple, torch.Tensor] = {}
        self._flows: dict[tuple[int, int], FlowMixture] = {}
        self._upsamplers: dict[tuple[int, int], tuple[torch.Tensor, torch.Tensor]] = {}
        self._means_cache: tuple[tuple, torch.Tensor] | None = None

    @property
    def num_components(self) -> int:
        """Layouts per conditioning, each also mirrored (seeds pick among them)."""
        return 2 * self.config.variants

    def latent_shape(self, size_px: tuple[int, int]) -> tuple[int, int, int]:
        """(4, height/8, width/8) for size_px = (width, height)."""
        width, height = check_size(size_px)
        return (LATENT_CHANNELS, height // LATENT_SCALE, width // LATENT_SCALE)

    def encode_prompt(self, text: str) -> torch.Tensor:
        """(1, T) unit tag vector of the prompt; zeros for "" (each layout then shows its own family)."""
        return self.encoder.encode(text)[None].to(self.device, self.dtype)

    def gain(self, height: int, width: int) -> float:
        """Logit units per latent unit at a latent size (keeps the prompt's pull the same at every size)."""
        return self.config.latent_gain * math.sqrt(height * width) / 64.0

    # ---- the data distribution ----------------------------------------------------------------------------
    def fields(self, height: int, width: int) -> torch.Tensor:
        """(F, V, keyframes, h, w) pattern fields in [0, 1] at a latent size, area-averaged from 2-4x supersampling."""
        key = (height, width)
        if key not in self._fields:
            c = self.config
            ss = 4 if max(height, width) <= 32 else 2
            out = np.empty((len(self.families), c.variants, c.keyframes, height, width), dtype=np.float32)
            for i, fam in enumerate(self.families):
                for v in range(c.variants):
                    for k in range(c.keyframes):
                        big = render_field(fam, 1000 * i + v, height * ss, width * ss, k / c.keyframes)
                        out[i, v, k] = big.reshape(height, ss, width, ss).mean(axis=(1, 3))
            if len(self._fields) >= 4:
                self._fields.pop(next(iter(self._fields)))
            self._fields[key] = torch.from_numpy(out).to(self.device, self.dtype)
        return self._fields[key]

    def flow(self, height: int, width: int) -> FlowMixture:
        """The smooth-variation part of the distribution at a latent size (built on first use)."""
        key = (height, width)
        if key not in self._flows:
            c = self.config
            basis, order, axis = smooth_basis(height, width, min(c.variation_modes, height, width))
            basis = torch.cat([basis.reshape(3, height * width, -1), torch.zeros(1, height * width, basis.shape[1],
                               dtype=basis.dtype)]).reshape(LATENT_CHANNELS * height * width, -1)  # code: no fields
            unit = 1.0 / self.gain(height, width)
            mode_var = (c.variation_std * unit) ** 2 * height * width * (1.0 + order) ** (-2.0 * c.variation_decay)
            chroma = torch.tensor([1.0, 0.6, 0.6], dtype=torch.float64)[axis]  # colour wobble less than shape
            var = (mode_var * chroma**2)[None].expand(c.variants, -1)
            opts = {"device": self.device, "dtype": self.dtype}
            self._flows[key] = FlowMixture(basis.to(**opts), var.to(**opts), c.noise_std * unit,
                                           (LATENT_CHANNELS, height, width))
        return self._flows[key]

    def style_weights(self, emb: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Family (B, V, F) and palette (B, V, P) weights of each layout under embeddings emb (B, T)."""
        c = self.config
        fam_match, pal_match = emb @ self._family_tags.T, emb @ self._palette_tags.T  # (B, F), (B, P)
        keep_f = (1 - fam_match.max(-1).values / c.bias_fade).clamp(0, 1)[:, None, None]  # (B, 1, 1)
        keep_p = (1 - pal_match.max(-1).values / c.bias_fade).clamp(0, 1)[:, None, None]
        fam = c.family_sharpness * fam_match[:, None] + keep_f * self._family_bias[None]  # (B, V, F)
        pal = c.palette_sharpness * pal_match[:, None] + keep_p * self._palette_bias[None]  # (B, V, P)
        return torch.softmax(fam, dim=-1), torch.softmax(pal, dim=-1)

    def means(self, emb: torch.Tensor, height: int, width: int, phase: float) -> torch.Tensor:
        """(B, V, D) the layouts' means (latent units) under embeddings emb (B, T) at a motion phase (cycles)."""
        fields = self.fields(height, width)  # (F, V, K, h, w)
        n_key = self.config.keyframes
        pos = (float(phase) % 1.0) * n_key
        k0 = int(pos) % n_key
        frac = pos - int(pos)
        key_field = fields[:, :, k0] * (1 - frac) + fields[:, :, (k0 + 1) % n_key] * frac  # (F, V, h, w)
        fam, pal = self.style_weights(emb)
        field = torch.einsum("bvf,fvhw->bvhw", fam, key_field)  # (B, V, h, w) in [0, 1]
        lut = torch.einsum("bvp,pcl->bvcl", pal, self._luts)  # (B, V, 3, LUT)
        pos = field.clamp(0, 1) * (LUT_SIZE - 1)
        lo = pos.floor().clamp(max=LUT_SIZE - 2)
        w = (pos - lo)[:, :, None]  # (B, V, 1, h, w)
        b, v = field.shape[:2]
        idx = lo.long().reshape(b, v, 1, -1).expand(-1, -1, 3, -1)  # (B, V, 3, h*w)
        lo_c = torch.gather(lut, 3, idx).reshape(b, v, 3, height, width)
        hi_c = torch.gather(lut, 3, idx + 1).reshape(b, v, 3, height, width)
        colour = lo_c + w * (hi_c - lo_c)  # (B, V, 3, h, w) logit colour around the centre
        code = self.codes(height, width)[None].expand(b, -1, -1, -1, -1)  # (B, V, 1, h, w)
        return torch.cat([colour / self.gain(height, width), code], dim=2).reshape(b, v, -1)

    def codes(self, height: int, width: int) -> torch.Tensor:
        """(V, 1, h, w) each layout's fixed code: it dominates which layout x_T selects, whatever the prompt."""
        key = ("code", height, width)
        if key not in self._fields:
            gen = torch.Generator().manual_seed(12345)
            code = torch.randn(self.config.variants, 1, height, width, generator=gen) * self.config.code_std
            self._fields[key] = code.to(self.device, self.dtype)
        return self._fields[key]

    def _batch_means(self, cond: torch.Tensor, height: int, width: int) -> torch.Tensor:
        if cond.dim() != 3 or cond.shape[-1] != self.encoder.dim:
            raise ValueError(f"cond must be (B, L, {self.encoder.dim}) prompt embeddings, got {tuple(cond.shape)}")
        emb = cond.to(self.device, self.dtype).mean(dim=1)  # (B, T)
        phase = float(self.motion_phase)
        if not math.isfinite(phase):
            phase = 0.0
        same = bool((emb == emb[:1]).all())
        rows = emb[:1] if same else emb
        key = (height, width, phase, rows.shape[0], rows.cpu().numpy().tobytes())
        if self._means_cache is None or self._means_cache[0] != key:
            self._means_cache = (key, self.means(rows, height, width, phase))
        means = self._means_cache[1]
        return means.expand(emb.shape[0], -1, -1) if same else means

    def __call__(self, x: torch.Tensor, t: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
        """Exact epsilon prediction (B, 3, h, w) for latents x (B, 3, h, w) at timesteps t (B,) with cond (B, L, T)."""
        if x.dim() != 4 or x.shape[1] != LATENT_CHANNELS:
            raise ValueError(f"x must be (B, {LATENT_CHANNELS}, h, w) latents, got {tuple(x.shape)}")
        b, _, h, w = x.shape
        alpha, sigma = alpha_sigma_at(self.alphas_cumprod, t.reshape(-1))
        alpha, sigma = (s.to(self.device, self.dtype).expand(b) for s in (alpha, sigma))
        means = self._batch_means(cond, h, w).expand(b, -1, -1)
        eps = self.flow(h, w).eps(x.to(self.device, self.dtype).reshape(b, -1), alpha, sigma, means)
        return eps.reshape(b, LATENT_CHANNELS, h, w)

    # ---- pixels ---------------------------------------------------------------------------------------------
    def decode(self, latents: torch.Tensor) -> torch.Tensor:
        """Latents (B, 3, h, w) -> images (B, 3, 8h, 8w) in [0, 1]: cubic upsampling, then the tone curve."""
        if latents.dim() != 4 or latents.shape[1] != LATENT_CHANNELS:
            raise ValueError(f"latents must be (B, {LATENT_CHANNELS}, h, w), got {tuple(latents.shape)}")
        h, w = latents.shape[-2:]
        if (h, w) not in self._upsamplers:
            with torch.inference_mode(False):
                up_h, up_w = (_cubic_upsample_matrix(n, LATENT_SCALE).to(self.device, self.dtype) for n in (h, w))
            self._upsamplers[(h, w)] = (up_h, up_w)
        up_h, up_w = self._upsamplers[(h, w)]
        img = up_h @ (latents[:, :3].to(self.device, self.dtype) @ up_w.T)  # (B, 3, H, W); the code is not shown
        return img.mul_(self.gain(h, w)).add_(self._centre).sigmoid_()

    def tone_encode(self, images: torch.Tensor) -> torch.Tensor:
        """Colours (B, 3, h, w) in [0, 1] -> latents (B, 4, h, w): logit colour units and a zero code."""
        f = self.config.tone_floor
        centre = self._centre.to(images.device, images.dtype)
        rgb = (torch.logit(images.clamp(f, 1 - f)) - centre) / self.gain(*images.shape[-2:])
        return torch.cat([rgb, torch.zeros_like(rgb[:, :1])], dim=1)  # a neutral layout code

    def encode_image(self, images: torch.Tensor) -> torch.Tensor:
        """Images (B, 3, H, W) in [0, 1] (H, W multiples of 8) -> latents (B, 3, H/8, W/8)."""
        if images.dim() != 4 or images.shape[1] != 3:
            raise ValueError(f"images must be (B, 3, H, W) in [0, 1], got {tuple(images.shape)}")
        check_size((images.shape[-1], images.shape[-2]))
        small = torch.nn.functional.avg_pool2d(images.to(self.device, self.dtype), LATENT_SCALE)
        return self.tone_encode(small)


def load_builtin(device: str | torch.device = "cpu", dtype: torch.dtype = torch.float32) -> BuiltinModel:
    """The builtin model on a device and dtype (float32 on the CPU always works)."""
    return BuiltinModel(device=device, dtype=dtype)
