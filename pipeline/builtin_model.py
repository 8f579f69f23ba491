"""The builtin model: an exact diffusion model whose pictures flow with the prompt, the seed and an animation phase.

The conditioning is a prompt embedding e (a tag vector), a motion phase (cycles) and a position u on a loop of
2 x VARIANTS layouts (every variant, then every variant mirrored; the engine sets u from the seed blend and the noise
walk: `seed_layout`). Given them the data is ONE Gaussian (pipeline.builtin_flow, smooth colour and shape wobble
around a mean), so the exact denoiser is linear in x_t and a noise morph can only flow. Variant v's picture is

    LUT_v(e) applied to field_v(e, phase),   field_v = sum_f softmax_f(sharp * e.A_f + bias_vf) field_{f,v}(phase),

the pattern families the words name (each variant prefers its own family when no family word is given) blended in
field space, coloured by the palettes the words name blended in logit colour space; the mean at u blends the fields
and LUTs of the two nearest layouts. Every part is continuous in e, the phase (keyframes that loop over one cycle) and
u, so prompt morphs, seed morphs, the noise walk and the motion all move every frame continuously.

Why not let x_T pick the layout (a mixture over layouts, as the first version did): the exact posterior of a
mixture of separated components selects one at low noise, so a seed slerp or noise walk held one picture and then
cut to another (86% of a 200-frame seed sweep's change in one frame, measured).
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

LATENT_CHANNELS = 3  # R, G, B in scaled logit units
LUT_SIZE = 256  # entries of each palette's logit-colour lookup table (linear interpolation between entries)
# Families a variant shows when no family word is given (the "" prompt, or colours only).
DEFAULT_FAMILIES = ("rings", "plasma", "waves", "tunnel", "spiral", "kaleidoscope", "flower", "stars", "rays",
                    "blobs")
DEFAULT_PALETTES = ("neon", "ocean", "fire", "twilight", "acid", "synthwave", "ice", "gold", "rainbow", "candy")
SEED_STRIDE = 7  # seed s starts at layout (7 s) mod layouts: consecutive seeds land far apart on the loop


@dataclass(frozen=True)
class FlowConfig:
    """The builtin data distribution; std values are in logit units."""

    variants: int = 10  # layouts (each also mirrored) on the loop that seeds and the noise walk travel
    keyframes: int = 12  # rendered phases per motion cycle (linear interpolation between them)
    latent_gain: float = 16.0  # logit units per latent unit at a 64x64 latent, growing as sqrt(h * w)
    tone_floor: float = 0.01  # colours are clamped to [floor, 1 - floor] before the logit
    noise_std: float = 0.05  # isotropic std of the data around every mean (no visible grain)
    variation_modes: int = 4  # smooth variation fields: the lowest modes x modes DCT modes on each colour axis
    variation_std: float = 0.5  # per-pixel std of the lowest smooth mode (colour and shape wobble)
    variation_decay: float = 1.0  # the std of DCT mode (i, j) falls as (1 + i + j) ** -decay
    family_sharpness: float = 10.0  # family logit per unit of tag match
    family_bias: float = 6.0  # logit of a variant's own family, fading out as the prompt names a family
    palette_sharpness: float = 10.0  # palette logit per unit of tag match
    palette_bias: float = 5.0  # logit of a variant's own palette, fading out as the prompt names a palette
    bias_fade: float = 0.4  # tag match at which the variant's own family / palette preference is gone
    input_var: float = 1.0  # img2img / feedback: variance (latent units^2) along the input picture's own direction
    input_spread: float = 0.5  # ... but at most (spread x the input's distance from the mean)^2: a near-mean input
    # (a feedback frame that already is the prompt's picture) adds no variance along its leftover noise


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
    """(P, T): its name 1, its moods 0.4, colour and light words as measured on its ramp (up to 0.8; a colour
    word that names a palette of its own, such as white or gold, up to 0.6; light and dark up to 0.4)."""
    measured = colour_strengths(palette_ramps())  # (P, 13)
    named = {p.name for p in PALETTES}
    rows = []
    for i, pal in enumerate(PALETTES):
        weights = {t: 0.8 if t in SHAPE_TAGS else 0.4 for t in pal.tags if t in MOOD_TAGS or t in SHAPE_TAGS}
        weights[pal.name] = 1.0
        if pal.name == "mono":  # white on black: "black and white" finds it, "white" or "black" alone their own
            weights.update(white=0.7, black=0.7)
        for j, word in enumerate(COLOUR_TAGS + LIGHT_TAGS):
            if float(measured[i, j]) > 0:
                # a named palette outweighs how dark another happens to be, and how light (a pastel is not white)
                scale = 0.4 if word in LIGHT_TAGS else 0.6 if word in named else 0.8
                weights[word] = max(weights.get(word, 0.0), scale * float(measured[i, j]))
        rows.append(_tag_vector(encoder, weights))
    return torch.stack(rows)


class BuiltinModel:
    """The default model: 16 pattern families x 19 palettes, blended by the prompt, moving with `motion_phase`.

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
        self.layout: tuple[tuple[float, float], ...] = ((0.0, 1.0),)  # (loop position, weight): seed_layout
        self.reference: torch.Tensor | None = None  # (1, 3, h, w) latent of the img2img input / feedback picture
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
        self._styles_cache: tuple[tuple, tuple[torch.Tensor, torch.Tensor]] | None = None

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
            unit = 1.0 / self.gain(height, width)
            mode_var = (c.variation_std * unit) ** 2 * height * width * (1.0 + order) ** (-2.0 * c.variation_decay)
            chroma = torch.tensor([1.0, 0.6, 0.6], dtype=torch.float64)[axis]  # colour wobble less than shape
            var = (mode_var * chroma**2)[None]  # (1, R): one Gaussian per conditioning
            opts = {"device": self.device, "dtype": self.dtype}
            self._flows[key] = FlowMixture(basis.to(**opts), var.to(**opts), c.noise_std * unit,
                                           (LATENT_CHANNELS, height, width), mirror=False)
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

    def styles(self, emb: torch.Tensor, height: int, width: int, phase: float) -> tuple[torch.Tensor, torch.Tensor]:
        """Each variant's pattern field (B, V, h, w) in [0, 1] and logit-colour LUT (B, V, 3, LUT) under emb (B, T)."""
        fields = self.fields(height, width)  # (F, V, K, h, w)
        n_key = self.config.keyframes
        pos = (float(phase) % 1.0) * n_key
        k0 = int(pos) % n_key
        frac = pos - int(pos)
        key_field = fields[:, :, k0] * (1 - frac) + fields[:, :, (k0 + 1) % n_key] * frac  # (F, V, h, w)
        fam, pal = self.style_weights(emb)
        field = torch.einsum("bvf,fvhw->bvhw", fam, key_field)  # (B, V, h, w) in [0, 1]
        return field, torch.einsum("bvp,pcl->bvcl", pal, self._luts)  # (B, V, 3, LUT)

    def _colour(self, field: torch.Tensor, lut: torch.Tensor) -> torch.Tensor:
        """(B, N, 3*h*w) latent means: fields (B, N, h, w) through their LUTs (B, N, 3, LUT), linear between entries."""
        b, n, height, width = field.shape
        pos = field.clamp(0, 1) * (LUT_SIZE - 1)
        lo = pos.floor().clamp(max=LUT_SIZE - 2)
        w = (pos - lo)[:, :, None]  # (B, N, 1, h, w)
        idx = lo.long().reshape(b, n, 1, -1).expand(-1, -1, 3, -1)  # (B, N, 3, h*w)
        lo_c = torch.gather(lut, 3, idx).reshape(b, n, 3, height, width)
        hi_c = torch.gather(lut, 3, idx + 1).reshape(b, n, 3, height, width)
        colour = lo_c + w * (hi_c - lo_c)  # (B, N, 3, h, w) logit colour around the centre
        return (colour / self.gain(height, width)).reshape(b, n, -1)

    def means(self, emb: torch.Tensor, height: int, width: int, phase: float) -> torch.Tensor:
        """(B, V, D) every variant's mean (latent units, unmirrored) under embeddings emb (B, T) at a motion phase."""
        return self._colour(*self.styles(emb, height, width, phase))

    def layout_mean(self, emb: torch.Tensor, height: int, width: int, phase: float,
                    layout: tuple[tuple[float, float], ...]) -> torch.Tensor:
        """(B, D) the mean of a layout blend ((position on the loop, weight) pairs): fields and palettes blended."""
        field, lut = self._styles_cached(emb, height, width, phase)
        n, v = self.num_layouts, self.config.variants
        pairs = [(p % n, w) for p, w in layout if math.isfinite(p) and math.isfinite(w) and w > 0] or [(0.0, 1.0)]
        total = sum(w for _, w in pairs)
        weights: dict[int, float] = {}  # layout index -> weight: each position shares its weight with the next
        for pos, w in pairs:
            i0, frac = int(pos) % n, pos - int(pos)
            weights[i0] = weights.get(i0, 0.0) + w * (1 - frac) / total
            if frac > 0:
                weights[(i0 + 1) % n] = weights.get((i0 + 1) % n, 0.0) + w * frac / total
        mixed_f = mixed_l = None
        for i, w in weights.items():  # layout i: variant i, or variant i - V mirrored left to right
            f, lt = (field[:, i], lut[:, i]) if i < v else (field[:, i - v].flip(-1), lut[:, i - v])
            mixed_f = f * w if mixed_f is None else mixed_f + f * w
            mixed_l = lt * w if mixed_l is None else mixed_l + lt * w
        return self._colour(mixed_f[:, None], mixed_l[:, None])[:, 0]

    @property
    def num_layouts(self) -> int:
        """Positions on the layout loop: every variant, then every variant mirrored left to right."""
        return 2 * self.config.variants

    def seed_layout(self, seeds: tuple[tuple[int, float], ...], noise_walk: float) -> tuple[tuple[float, float], ...]:
        """The layout blend of a seed blend and noise walk: each seed's own layout, weighted as the seeds are, all
        travelling once round the loop per 2 pi of walk (the walk's noise and pictures are both periodic in 2 pi)."""
        n = 2 * self.config.variants  # num_layouts (no property call: this runs every stream step)
        walk = float(noise_walk) * n / (2 * math.pi) if math.isfinite(noise_walk) else 0.0
        layout = []
        for s, w in seeds:
            layout.append((float((int(s) * SEED_STRIDE) % n) + walk, float(w)))
        return tuple(layout)

    def _styles_cached(self, emb: torch.Tensor, height: int, width: int,
                       phase: float) -> tuple[torch.Tensor, torch.Tensor]:
        """styles(), kept while the embeddings, size and phase stay the same (the walk moves only the layout)."""
        key = (height, width, phase, emb.shape[0], emb.cpu().numpy().tobytes())
        if self._styles_cache is None or self._styles_cache[0] != key:
            self._styles_cache = (key, self.styles(emb, height, width, phase))
        return self._styles_cache[1]

    def _batch_means(self, cond: torch.Tensor, height: int, width: int) -> torch.Tensor:
        if cond.dim() != 3 or cond.shape[-1] != self.encoder.dim:
            raise ValueError(f"cond must be (B, L, {self.encoder.dim}) prompt embeddings, got {tuple(cond.shape)}")
        emb = cond.to(self.device, self.dtype).mean(dim=1)  # (B, T)
        phase = float(self.motion_phase) if math.isfinite(float(self.motion_phase)) else 0.0
        same = bool((emb == emb[:1]).all())  # the stream batch: one conditioning in every row
        mean = self.layout_mean(emb[:1] if same else emb, height, width, phase, self.layout)  # (B or 1, D)
        return mean.expand(emb.shape[0], -1)[:, None]  # (B, 1, D): one Gaussian per conditioning

    def __call__(self, x: torch.Tensor, t: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
        """Exact epsilon prediction (B, 3, h, w) for latents x (B, 3, h, w) at timesteps t (B,) with cond (B, L, T)."""
        if x.dim() != 4 or x.shape[1] != LATENT_CHANNELS:
            raise ValueError(f"x must be (B, {LATENT_CHANNELS}, h, w) latents, got {tuple(x.shape)}")
        b, _, h, w = x.shape
        alpha, sigma = alpha_sigma_at(self.alphas_cumprod, t.reshape(-1))
        alpha, sigma = (s.to(self.device, self.dtype).expand(b) for s in (alpha, sigma))
        means = self._batch_means(cond, h, w).expand(b, -1, -1)
        flow = self.flow(h, w)
        found = self.input_direction(means[:, 0], flow)
        direction, variance = found if found is not None else (None, 0.0)
        eps = flow.eps(x.to(self.device, self.dtype).reshape(b, -1), alpha, sigma, means, direction, variance)
        return eps.reshape(b, LATENT_CHANNELS, h, w)

    def input_direction(self, mean: torch.Tensor,
                        flow: FlowMixture) -> tuple[torch.Tensor, torch.Tensor] | None:
        """(B, D) unit direction from the mean to the input picture, off the smooth fields, and the variance (B, 1)
        along it: min(input_var, (input_spread * distance)^2); None without an input.

        With an input the data given (prompt, input) also varies along it (variance input_var), so img2img keeps
        a share input_var / (input_var + sigma^2 / alpha^2) of the input there: all of it at strength 0, a fade to
        the prompt's picture as strength grows, instead of the prompt's pattern appearing at once."""
        ref = self.reference
        if ref is None or ref.shape[-3:] != (LATENT_CHANNELS, *flow.image_shape[1:]):
            return None
        diff = ref.reshape(1, -1).to(self.device, self.dtype) - mean  # (B, D)
        diff = diff - (diff @ flow.basis) @ flow.basis.T  # what the smooth fields already cover is left to them
        norm = diff.norm(dim=-1, keepdim=True)
        if not bool((norm > 1e-6).all()):
            return None
        variance = (self.config.input_spread * norm).square().clamp(max=self.config.input_var)
        return diff / norm, variance

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
        img = up_h @ (latents.to(self.device, self.dtype) @ up_w.T)  # (B, 3, H, W)
        return img.mul_(self.gain(h, w)).add_(self._centre).sigmoid_()

    def tone_encode(self, images: torch.Tensor) -> torch.Tensor:
        """Colours (B, 3, h, w) in [0, 1] -> latents (B, 3, h, w) in scaled logit colour units."""
        f = self.config.tone_floor
        centre = self._centre.to(images.device, images.dtype)
        return (torch.logit(images.clamp(f, 1 - f)) - centre) / self.gain(*images.shape[-2:])

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
