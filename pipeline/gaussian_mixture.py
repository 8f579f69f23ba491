"""The exact denoiser of a mixture of low-rank Gaussians: the math under the builtin and folder models.

Data x0 (flattened (C, h, w) latents, D values) ~ sum_k pi_k N(mu_k, Sigma_k), with

    Sigma_k = s^2 I + S diag(lam_k) S^T + c_k n_k n_k^T

S (D, R) is an orthonormal basis of smooth colour/shape fields shared by all components, n_k the unit direction of
mu_k's own detail (mu_k minus its part in span(S)), so Sigma_k is diagonal in [S, n_k] and every posterior quantity
is closed form without a solve. Under x_t = alpha x0 + sigma eps the marginal of component k has variance
v = alpha^2 s^2 + sigma^2 off [S, n_k] and v + alpha^2 lam along each field; the component posterior needs
||x - alpha mu_k||^2 = ||x||^2 - 2 alpha x.mu_k + alpha^2 ||mu_k||^2, i.e. one (B, D) x (D, K) matmul.
"""

from __future__ import annotations

import math

import torch

# Orthonormal colour axes of the shared variation fields: luma, red-green, yellow-blue.
COLOUR_AXES = torch.tensor([[1, 1, 1], [1, -1, 0], [1, 1, -2]], dtype=torch.float64)
COLOUR_AXES = COLOUR_AXES / COLOUR_AXES.norm(dim=1, keepdim=True)
FLIPS: tuple[tuple[int, ...], ...] = ((), (-1,), (-2,), (-2, -1))  # none, left-right, upside down, both
# Sign of each even/odd block (even-even, even-odd, odd-even, odd-odd in (h, w)) under each flip.
FLIP_SIGNS = torch.tensor([[1, 1, 1, 1], [1, -1, 1, -1], [1, 1, -1, -1], [1, -1, -1, 1]], dtype=torch.float64)


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
        limit = min(height, width)
        raise ValueError(f"variation modes must be in range 1..{limit} for a {width}x{height} latent, got {modes}")
    spatial = torch.einsum("iy,jx->ijyx", _dct_rows(height, modes), _dct_rows(width, modes))
    spatial = spatial.reshape(modes * modes, height * width)  # (M, h*w)
    fields = torch.einsum("ac,mp->amcp", COLOUR_AXES, spatial)  # (3, M, 3, h*w)
    order = (torch.arange(modes)[:, None] + torch.arange(modes)[None, :]).reshape(-1).repeat(3)
    axis = torch.arange(3).repeat_interleave(modes * modes)
    return fields.reshape(3 * modes * modes, 3 * height * width).T.contiguous(), order.to(torch.float64), axis


def _parity_matrix(n: int) -> torch.Tensor:
    """(n, n) orthonormal: rows (e_i + e_{n-1-i}) / sqrt2 (and the middle e_i) first, then (e_i - e_{n-1-i}) / sqrt2."""
    m, r = n // 2, 1 / math.sqrt(2)
    rows = torch.zeros(n, n, dtype=torch.float64)
    for i in range(m):
        rows[i, i], rows[i, n - 1 - i] = r, r  # even under the flip
        rows[n - m + i, i], rows[n - m + i, n - 1 - i] = r, -r  # odd under the flip
    if n % 2:
        rows[m, m] = 1.0
    return rows


class MirrorCoordinates:
    """Orthonormal even/odd coordinates of (C, h, w) images, block-major: every flip is a sign per block."""

    def __init__(self, shape: tuple[int, int, int], dtype: torch.dtype, device: torch.device) -> None:
        c, h, w = shape
        self.shape = shape
        self.th = _parity_matrix(h).to(device, dtype)  # (h, h)
        self.tw = _parity_matrix(w).to(device, dtype)  # (w, w)
        self.he, self.we = (h + 1) // 2, (w + 1) // 2  # sizes of the even parts
        sizes = [c * bh * bw for bh in (self.he, h - self.he) for bw in (self.we, w - self.we)]
        ends = torch.tensor(sizes).cumsum(0).tolist()
        self.blocks = [slice(e - n, e) for n, e in zip(sizes, ends)]  # column ranges of the 4 blocks

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(N, D) image vectors -> (N, D) even/odd coordinates."""
        img = self.th @ x.reshape(-1, *self.shape) @ self.tw.T  # (N, C, h, w)
        he, we = self.he, self.we
        parts = (img[..., :he, :we], img[..., :he, we:], img[..., he:, :we], img[..., he:, we:])
        return torch.cat([p.reshape(x.shape[0], p[0].numel()) for p in parts], dim=1)

    def inverse(self, y: torch.Tensor) -> torch.Tensor:
        """(N, D) even/odd coordinates -> (N, D) image vectors."""
        c, h, w = self.shape
        he, we = self.he, self.we
        shapes = [(he, we), (he, w - we), (h - he, we), (h - he, w - we)]
        p = [y[:, sl].reshape(y.shape[0], c, bh, bw) for sl, (bh, bw) in zip(self.blocks, shapes)]
        img = torch.cat([torch.cat([p[0], p[1]], -1), torch.cat([p[2], p[3]], -1)], -2)  # (N, C, h, w)
        return (self.th.T @ img @ self.tw).reshape(y.shape[0], -1)


class LowRankMixture:
    """A mixture of low-rank Gaussians (see the module docstring) with its exact denoiser at every noise level.

    With mirrors, component k also appears flipped, F_g mu_k with covariance F_g Sigma_k F_g^T, for each flip g it
    allows (the flips share pi_k equally). The model works in even/odd coordinates, where a flip only changes the sign
    of whole blocks, so x.(F_g mu_k) for all four flips costs the one matmul x.mu_k (split by block), not four.
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
        opts = {"dtype": means.dtype, "device": means.device}
        self.means = means.contiguous()  # (K, D)
        self.basis = basis.contiguous()  # (D, R), orthonormal columns
        self.basis_var = basis_var  # (K, R) lam_k
        self.noise_var = float(noise_std) ** 2  # s^2
        self.means_b = means @ basis  # (K, R) S^T mu_k
        self.mean_sq = (means * means).sum(dim=1)  # (K,) ||mu_k||^2
        self.detail_norm = (means - self.means_b @ basis.T).norm(dim=1).clamp_min(1e-6)  # (K,) nu_k
        self.detail_var = (detail_std * self.detail_norm) ** 2  # (K,) c_k
        self.image_shape = image_shape
        if mirrors is None:
            self.views: tuple[tuple[int, ...], ...] = ((),)
            self.view_log_prior = torch.zeros(1, k, **opts)  # (G, K)
            self.coords: MirrorCoordinates | None = None
            self._blocks, self._signs = [slice(0, d)], torch.ones(1, 1, **opts)  # (G, blocks)
            means_c, self._basis_c = self.means, self.basis
            self._basis_signs = torch.ones(1, basis.shape[1], **opts)  # (G, R)
        else:
            if image_shape is None or math.prod(image_shape) != d:
                raise ValueError(f"mirrors need image_shape (C, h, w) with C*h*w = {d}, got {image_shape}")
            if mirrors.shape != (k, len(FLIPS)) or not bool(mirrors[:, 0].all()):
                raise ValueError(f"mirrors must be ({k}, {len(FLIPS)}) bool with column 0 (no flip) all True")
            self.views = FLIPS
            allowed = mirrors.to(**opts)
            self.view_log_prior = torch.log(allowed / allowed.sum(1, keepdim=True)).T.contiguous()  # (G, K)
            self.coords = MirrorCoordinates(image_shape, means.dtype, means.device)
            self._blocks, self._signs = self.coords.blocks, FLIP_SIGNS.to(**opts)
            means_c = self.coords.forward(self.means)  # (K, D) means in even/odd coordinates
            self._basis_c = self.coords.forward(self.basis.T).T.contiguous()  # (D, R)
            block_of = torch.stack([self._basis_c[sl].abs().sum(0) for sl in self._blocks]).argmax(0)  # (R,)
            self._basis_signs = self._signs[:, block_of]  # (G, R): smooth fields are even or odd, never mixed
        self._means_blocks = [means_c[:, sl].contiguous() for sl in self._blocks]  # (K, D_p) per block

    @property
    def num_components(self) -> int:
        """K (each may also appear in up to 3 mirrored views)."""
        return self.means.shape[0]

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
        xc = x if self.coords is None else self.coords.forward(x)  # (B, D)
        per_block = torch.stack([xc[:, sl] @ m.T for sl, m in zip(self._blocks, self._means_blocks)])  # (P, B, K)
        xm = torch.einsum("gp,pbk->gbk", self._signs[:n_views], per_block)  # (G, B, K) (F_g x) . mu_k
        xb = (xc @ self._basis_c)[None] * self._basis_signs[:n_views, None, :]  # (G, B, R) S^T F_g x
        xbm = (xb.reshape(n_views * b, -1) @ self.means_b.T).reshape(n_views, b, k)  # (G, B, K)
        pd = (xm - xbm) / self.detail_norm - a * self.detail_norm  # (G, B, K) n_k^T (F_g x - a mu_k)
        # sum_r gb (xb - a S^T mu_k)^2, expanded into batched matmuls over the samples
        xbt = xb.transpose(0, 1)  # (B, G, R)
        quad_b = (torch.bmm(xbt * xbt, gb.transpose(1, 2)) - 2 * a[:, :, None] * torch.bmm(xbt, gbm.transpose(1, 2))
                  + (a2 * (gbm * self.means_b[None]).sum(-1))[:, None, :])  # (B, G, K)
        # -2 log N(F_g x; a mu_k, a^2 Sigma_k + sigma^2 I) up to terms equal for every (g, k): ||x||^2 / v, log v
        quad = (a2 * self.mean_sq[None] - 2 * a * xm) / v - quad_b.transpose(0, 1) - pd * pd * gd  # (G, B, K)
        joint = (-0.5 * (quad + logdet)).transpose(0, 1) + log_prior[:, None, :] + self.view_log_prior[None]
        log_post = torch.log_softmax(joint.reshape(b, n_views * k), dim=-1)  # (B, G*K)
        return log_post, a, sg, v, xc, xbt, pd, gb, gbm, gd

    def log_posterior(self, x: torch.Tensor, alpha: torch.Tensor, sigma: torch.Tensor,
                      log_prior: torch.Tensor) -> torch.Tensor:
        """(B, G*K) log p(view g, component k | x_t), index g*K + k, for x (B, D) at (alpha, sigma) (B,) under
        log prior weights (B, K); G = 1 without mirrors."""
        return self._parts(x, alpha, sigma, log_prior)[0]

    def eps(self, x: torch.Tensor, alpha: torch.Tensor, sigma: torch.Tensor, log_prior: torch.Tensor) -> torch.Tensor:
        """(B, D) exact E[eps | x_t] for x (B, D) at (alpha, sigma) (B,) under log prior weights (B, K)."""
        b = x.shape[0]
        n_views, k = self.view_log_prior.shape
        log_post, a, sg, v, xc, xbt, pd, gb, gbm, gd = self._parts(x, alpha, sigma, log_prior)
        gamma = log_post.exp().reshape(b, n_views, k)  # (B, G, K)
        gamma_g = gamma.transpose(0, 1)  # (G, B, K)
        # eps_gk = F_g [sigma/v d - sigma S (gb * S^T d) - sigma gd (n_k^T d) n_k] with d = F_g x - a mu_k and
        # n_k = (mu_k - S S^T mu_k) / nu_k, summed with weights gamma: two matmuls against the means. The sigma/v x
        # terms add up to sigma/v x (their weights sum to 1 and the flips undo each other).
        h = -sg * gamma_g * gd * pd / self.detail_norm  # (G, B, K)
        coef = h - (a * sg / v) * gamma_g  # (G, B, K)
        spread = xbt * torch.bmm(gamma, gb) - a[:, :, None] * torch.bmm(gamma, gbm)  # (B, G, R)
        field = -(sg[:, :, None] * spread).transpose(0, 1) - h @ self.means_b  # (G, B, R)
        coef_blocks = torch.einsum("gp,gbk->pbk", self._signs[:n_views], coef)  # (blocks, B, K) F_g undone per block
        y = torch.cat([c @ m for c, m in zip(coef_blocks, self._means_blocks)], dim=1)  # (B, D)
        y = y + (field * self._basis_signs[:n_views, None, :]).sum(0) @ self._basis_c.T  # (B, D)
        y = y if self.coords is None else self.coords.inverse(y)
        return (sg / v) * x + y  # (B, D)

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
        fields = (self.basis * self.basis_var[k]) @ self.basis.T
        return self.noise_var * eye + fields + self.detail_var[k] * torch.outer(n, n)

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
        dirs = (self.means - self.means_b @ self.basis.T) / self.detail_norm[:, None]  # (K, D)
        out = self.means[idx] + math.sqrt(self.noise_var) * torch.randn(n, d, generator=generator, **opts)
        coef = torch.randn(n, self.basis.shape[1], generator=generator, **opts) * self.basis_var[idx].sqrt()
        out += coef @ self.basis.T
        out += (torch.randn(n, generator=generator, **opts) * self.detail_var[idx].sqrt())[:, None] * dirs[idx]
        for g in range(1, n_views):
            rows = views == g
            out[rows] = self.flip(out[rows], g)
        return out
