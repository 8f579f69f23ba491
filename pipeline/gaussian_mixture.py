"""The exact denoiser of a mixture of low-rank Gaussians, and the Denoiser the builtin and folder models share.

Data x0 (flattened latents, D values) ~ sum_k pi_k N(mu_k, Sigma_k), with

    Sigma_k = s^2 I + S diag(lam_k) S^T + c_k n_k n_k^T

S (D, R) is an orthonormal basis of smooth colour/shape fields shared by all components, n_k the unit direction of
mu_k's own detail (mu_k minus its part in span(S)), so Sigma_k is diagonal in [S, n_k] and every posterior quantity
is closed form without a solve. Under x_t = alpha x0 + sigma eps the marginal of component k has variance
v = alpha^2 s^2 + sigma^2 off [S, n_k] and v + alpha^2 lam along each field; the component posterior needs
||x - alpha mu_k||^2 = ||x||^2 - 2 alpha x.mu_k + alpha^2 ||mu_k||^2, i.e. one (B, D) x (D, K) matmul.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch

from pipeline.builtin_text import TagEncoder
from pipeline.noise_schedule import alpha_sigma_at, scaled_linear_alphas_cumprod
from pipeline.protocol import ModelDefaults

LATENT_CHANNELS = 3  # the latent is an RGB image in scaled logit units
LATENT_SCALE = 8  # output pixels per latent pixel, like Stable Diffusion's VAE

# Orthonormal colour axes of the shared variation fields: luma, red-green, yellow-blue.
COLOUR_AXES = torch.tensor(
    [[1 / math.sqrt(3)] * 3, [1 / math.sqrt(2), -1 / math.sqrt(2), 0.0], [1 / math.sqrt(6), 1 / math.sqrt(6), -2 / math.sqrt(6)]],
    dtype=torch.float64,
)


def _dct_rows(n: int, modes: int) -> torch.Tensor:
    """(modes, n) orthonormal DCT-II rows."""
    i = torch.arange(modes, dtype=torch.float64)[:, None]
    p = torch.arange(n, dtype=torch.float64)[None, :]
    rows = torch.cos(math.pi * i * (p + 0.5) / n) * math.sqrt(2.0 / n)
    rows[0] /= math.sqrt(2.0)
    return rows


def smooth_basis(height: int, width: int, modes: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Shared smooth fields: (3*h*w, R) orthonormal float64 basis, R = 3 * modes^2, with each field's (R,) mode
    order i + j and (R,) colour axis (0 luma, 1 red-green, 2 yellow-blue)."""
    if not 1 <= modes <= min(height, width):
        raise ValueError(f"variation modes must be in range 1..{min(height, width)} for a {width}x{height} latent, got {modes}")
    spatial = torch.einsum("iy,jx->ijyx", _dct_rows(height, modes), _dct_rows(width, modes))
    spatial = spatial.reshape(modes * modes, height * width)  # (M, h*w)
    fields = torch.einsum("ac,mp->amcp", COLOUR_AXES, spatial)  # (3, M, 3, h*w)
    order = (torch.arange(modes)[:, None] + torch.arange(modes)[None, :]).reshape(-1).repeat(3)
    axis = torch.arange(3).repeat_interleave(modes * modes)
    return fields.reshape(3 * modes * modes, 3 * height * width).T.contiguous(), order.to(torch.float64), axis


FLIPS: tuple[tuple[int, ...], ...] = ((), (-1,), (-2,), (-2, -1))  # identity, left-right, upside down, both


class LowRankMixture:
    """A mixture of low-rank Gaussians (see the module docstring) with its exact denoiser at every noise level.

    With mirrors, component k also appears flipped, F_g mu_k with covariance F_g Sigma_k F_g^T, for each flip g it
    allows (the flips share pi_k equally). Flips are orthogonal, so N(x; a F mu, F C F^T) = N(F x; a mu, C): the
    plain mixture is evaluated on the flipped views of x (more rows in the same matmuls) and the answers flipped back.
    """

    def __init__(self, means: torch.Tensor, basis: torch.Tensor, basis_var: torch.Tensor, detail_std: torch.Tensor,
                 noise_std: float, image_shape: tuple[int, int, int] | None = None,
                 mirrors: torch.Tensor | None = None) -> None:
        k, d = means.shape
        if basis.shape[0] != d or basis_var.shape != (k, basis.shape[1]) or detail_std.shape != (k,):
            raise ValueError(
                f"shapes do not fit: means {tuple(means.shape)} (K, D), basis {tuple(basis.shape)} (D, R), "
                f"basis_var {tuple(basis_var.shape)} (K, R), detail_std {tuple(detail_std.shape)} (K,)"
            )
        if noise_std <= 0:
            raise ValueError(f"noise_std must be > 0, got {noise_std}")
        self.means = means.contiguous()  # (K, D)
        self.basis = basis.contiguous()  # (D, R), orthonormal columns
        self.basis_t = basis.T.contiguous()  # (R, D)
        self.basis_var = basis_var  # (K, R) lam_k
        self.noise_var = float(noise_std) ** 2  # s^2
        self.means_b = means @ basis  # (K, R) S^T mu_k
        self.mean_sq = (means * means).sum(dim=1)  # (K,) ||mu_k||^2
        detail = means - self.means_b @ self.basis_t  # (K, D) mu_k outside span(S)
        self.detail_norm = detail.norm(dim=1).clamp_min(1e-6)  # (K,) nu_k
        self.detail_var = (detail_std * self.detail_norm) ** 2  # (K,) c_k
        self.image_shape = image_shape
        if mirrors is None:
            self.views: tuple[tuple[int, ...], ...] = ((),)
            self.view_log_prior = torch.zeros(1, k, dtype=means.dtype, device=means.device)  # (G, K)
        else:
            if image_shape is None or math.prod(image_shape) != d:
                raise ValueError(f"mirrors need image_shape (C, h, w) with C*h*w = {d}, got {image_shape}")
            if mirrors.shape != (k, len(FLIPS)) or not bool(mirrors[:, 0].all()):
                raise ValueError(f"mirrors must be ({k}, {len(FLIPS)}) bool with column 0 (no flip) all True")
            self.views = FLIPS
            allowed = mirrors.to(means.device, means.dtype)
            self.view_log_prior = torch.log(allowed / allowed.sum(1, keepdim=True)).T.contiguous()  # (G, K)

    @property
    def num_components(self) -> int:
        """K (each may also appear in up to 3 mirrored views)."""
        return self.means.shape[0]

    def _view(self, x: torch.Tensor) -> torch.Tensor:
        """(B, D) -> (G*B, D): x under every flip, view-major."""
        if len(self.views) == 1:
            return x
        img = x.reshape(x.shape[0], *self.image_shape)
        return torch.cat([img.flip(dims) if dims else img for dims in self.views]).reshape(-1, x.shape[1])

    def _unview_sum(self, y: torch.Tensor, b: int) -> torch.Tensor:
        """(G*B, D) -> (B, D): each view's rows flipped back, summed over views."""
        if len(self.views) == 1:
            return y
        img = y.reshape(len(self.views), b, *self.image_shape)
        out = img[0].clone()
        for g, dims in enumerate(self.views[1:], start=1):
            out += img[g].flip(dims)
        return out.reshape(b, -1)

    def _parts(self, x: torch.Tensor, alpha: torch.Tensor, sigma: torch.Tensor,
               log_prior: torch.Tensor) -> tuple[torch.Tensor, ...]:
        b, (n_views, k) = x.shape[0], self.view_log_prior.shape
        a, sg = alpha[:, None], sigma[:, None]  # (B, 1)
        a2 = a * a
        v = a2 * self.noise_var + sg * sg  # (B, 1) variance off the component's fields
        wb = v[:, :, None] + a2[:, :, None] * self.basis_var[None]  # (B, K, R) variance along each field
        gb = a2[:, :, None] * self.basis_var[None] / (wb * v[:, :, None])  # (B, K, R) 1/v - 1/w
        gbm = gb * self.means_b[None]  # (B, K, R)
        wd = v + a2 * self.detail_var[None]  # (B, K)
        gd = a2 * self.detail_var[None] / (wd * v)  # (B, K)
        logdet = torch.log(wb / v[:, :, None]).sum(-1) + torch.log(wd / v)  # (B, K) log det up to a common term
        xv = self._view(x)  # (G*B, D) every view of every sample, view-major
        xb = (xv @ self.basis).reshape(n_views, b, -1)  # (G, B, R) S^T x
        xm = (xv @ self.means.T).reshape(n_views, b, k)  # (G, B, K) x . mu_k
        xbm = (xb.reshape(n_views * b, -1) @ self.means_b.T).reshape(n_views, b, k)  # (G, B, K) (S^T x) . (S^T mu_k)
        pd = (xm - xbm) / self.detail_norm - a * self.detail_norm  # (G, B, K) n_k^T (x - a mu_k)
        # sum_r gb (xb - a S^T mu_k)^2, expanded into batched matmuls over the samples
        xbt = xb.transpose(0, 1)  # (B, G, R)
        quad_b = (torch.bmm(xbt * xbt, gb.transpose(1, 2)) - 2 * a[:, :, None] * torch.bmm(xbt, gbm.transpose(1, 2))
                  + (a2 * (gbm * self.means_b[None]).sum(-1))[:, None, :])  # (B, G, K)
        # -2 log N(x; a mu_k, a^2 Sigma_k + sigma^2 I) up to terms equal for every k (||x||^2 / v, log v)
        quad = (a2 * self.mean_sq[None] - 2 * a * xm) / v - quad_b.transpose(0, 1) - pd * pd * gd  # (G, B, K)
        joint = (-0.5 * (quad + logdet)).transpose(0, 1) + log_prior[:, None, :] + self.view_log_prior[None]
        log_post = torch.log_softmax(joint.reshape(b, n_views * k), dim=-1)  # (B, G*K)
        return log_post, a, sg, v, xbt, pd, gb, gbm, gd

    def log_posterior(self, x: torch.Tensor, alpha: torch.Tensor, sigma: torch.Tensor,
                      log_prior: torch.Tensor) -> torch.Tensor:
        """(B, G*K) log p(view g, component k | x_t), index g*K + k, for x (B, D) at (alpha, sigma) (B,) under
        log prior weights (B, K); G = 1 without mirrors."""
        return self._parts(x, alpha, sigma, log_prior)[0]

    def eps(self, x: torch.Tensor, alpha: torch.Tensor, sigma: torch.Tensor, log_prior: torch.Tensor) -> torch.Tensor:
        """(B, D) exact E[eps | x_t] for x (B, D) at (alpha, sigma) (B,) under log prior weights (B, K)."""
        b = x.shape[0]
        n_views, k = self.view_log_prior.shape
        log_post, a, sg, v, xbt, pd, gb, gbm, gd = self._parts(x, alpha, sigma, log_prior)
        gamma = log_post.exp().reshape(b, n_views, k)  # (B, G, K)
        gamma_g = gamma.transpose(0, 1)  # (G, B, K)
        # eps_k = sigma/v d_k - sigma S (gb * S^T d_k) - sigma gd (n_k^T d_k) n_k with d_k = x - a mu_k and
        # n_k = (mu_k - S S^T mu_k) / nu_k, summed with weights gamma: two matmuls against the means. The sigma/v x
        # terms of all views add up to sigma/v x (their weights sum to 1 and the flips undo each other).
        h = -sg * gamma_g * gd * pd / self.detail_norm  # (G, B, K)
        coef = h - (a * sg / v) * gamma_g  # (G, B, K)
        spread = xbt * torch.bmm(gamma, gb) - a[:, :, None] * torch.bmm(gamma, gbm)  # (B, G, R)
        h = h.reshape(n_views * b, k)  # (N, K), N = G*B
        field = -(sg[:, :, None] * spread).transpose(0, 1).reshape(n_views * b, -1) - h @ self.means_b  # (N, R)
        y = coef.reshape(n_views * b, k) @ self.means + field @ self.basis_t  # (N, D)
        return (sg / v) * x + self._unview_sum(y, b)  # (B, D)

    def x0(self, x: torch.Tensor, alpha: torch.Tensor, sigma: torch.Tensor, log_prior: torch.Tensor) -> torch.Tensor:
        """(B, D) exact posterior mean E[x0 | x_t]."""
        return (x - sigma[:, None] * self.eps(x, alpha, sigma, log_prior)) / alpha[:, None]

    def detail_direction(self, k: int) -> torch.Tensor:
        """(D,) unit direction n_k of component k's own detail."""
        return (self.means[k] - self.basis @ self.means_b[k]) / self.detail_norm[k]

    def covariance(self, k: int) -> torch.Tensor:
        """(D, D) dense Sigma_k of the unflipped component (for checks on small cases)."""
        n = self.detail_direction(k)
        eye = torch.eye(self.means.shape[1], dtype=self.means.dtype, device=self.means.device)
        return self.noise_var * eye + (self.basis * self.basis_var[k]) @ self.basis_t + self.detail_var[k] * torch.outer(n, n)

    def flip(self, x: torch.Tensor, view: int) -> torch.Tensor:
        """(B, D) vectors under flip number `view` (an index into self.views)."""
        dims = self.views[view]
        if not dims:
            return x
        return x.reshape(x.shape[0], *self.image_shape).flip(dims).reshape(x.shape)

    def sample(self, n: int, generator: torch.Generator, log_prior: torch.Tensor | None = None) -> torch.Tensor:
        """(n, D) exact draws of x0 (prior weights softmax(log_prior) (K,), uniform by default)."""
        n_views, k = self.view_log_prior.shape
        d = self.means.shape[1]
        opts = {"dtype": self.means.dtype, "device": self.means.device}
        logits = torch.zeros(k, **opts) if log_prior is None else log_prior
        joint = torch.softmax((logits[None] + self.view_log_prior).reshape(-1), 0)  # (G*K,)
        pick = torch.multinomial(joint, n, replacement=True, generator=generator)
        views, idx = pick // k, pick % k
        dirs = (self.means - self.means_b @ self.basis_t) / self.detail_norm[:, None]  # (K, D)
        out = self.means[idx] + math.sqrt(self.noise_var) * torch.randn(n, d, generator=generator, **opts)
        out += (torch.randn(n, self.basis.shape[1], generator=generator, **opts) * self.basis_var[idx].sqrt()) @ self.basis_t
        out += (torch.randn(n, generator=generator, **opts) * self.detail_var[idx].sqrt())[:, None] * dirs[idx]
        for g in range(1, n_views):
            rows = views == g
            out[rows] = self.flip(out[rows], g)
        return out


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
    """(n * factor, n) float64 cubic-convolution (a = -0.75, as torch bicubic) interpolation, half-pixel centres, edges clamped."""
    out = torch.arange(n * factor, dtype=torch.float64)
    src = (out + 0.5) / factor - 0.5
    base = torch.floor(src)
    frac = src - base
    mat = torch.zeros(n * factor, n, dtype=torch.float64)
    for offset in (-1, 0, 1, 2):
        d = (frac - offset).abs()
        w = torch.where(d <= 1, (1.25 * d - 2.25) * d * d + 1, torch.where(d < 2, ((-0.75 * d + 3.75) * d - 6) * d + 3, 0.0))
        idx = (base + offset).clamp(0, n - 1).long()
        mat.index_put_((torch.arange(n * factor), idx), w, accumulate=True)
    return mat


class MixtureDenoiser:
    """A Denoiser (pipeline.protocol) whose data is a LowRankMixture of tagged images: builtin and folder models.

    Latents are RGB images in logit units, centred and scaled down by latent_gain, at 1/8 of the output size; decode
    upsamples them (cubic) and applies sigmoid(gain * z + centre), which keeps edges crisp. A prompt embedding e (a tag vector) sets the prior log pi_k = sharpness * e.tags_k
    (log-softmaxed): "" (e = 0) is the uniform prior, and any blend of embeddings blends the preferences.
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
        self._centre_px = self._centre.to(self.device, dtype)
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
            raise ValueError(f"render gave {tuple(comps.images.shape)}, expected ({self.num_components}, 3, {height}, {width})")
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
            self._upsamplers[(h, w)] = tuple(  # type: ignore[assignment]
                _cubic_upsample_matrix(n, LATENT_SCALE).to(self.device, self.dtype) for n in (h, w)
            )
        up_h, up_w = self._upsamplers[(h, w)]  # (H, h), (W, w)
        z = latents.to(self.device, self.dtype)
        img = up_h @ (z @ up_w.T)  # (B, 3, H, W)
        return img.mul_(self.gain(h, w)).add_(self._centre_px).sigmoid_()

    def encode_image(self, images: torch.Tensor) -> torch.Tensor:
        """Images (B, 3, H, W) in [0, 1] (H, W multiples of 8) -> latents (B, 3, H/8, W/8)."""
        if images.dim() != 4 or images.shape[1] != 3:
            raise ValueError(f"images must be (B, 3, H, W) in [0, 1], got {tuple(images.shape)}")
        check_size((images.shape[-1], images.shape[-2]))
        small = torch.nn.functional.avg_pool2d(images.to(self.device, self.dtype), LATENT_SCALE)
        return self.tone_encode(small)
