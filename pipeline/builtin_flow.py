"""The exact denoiser of a mixture of Gaussians whose means are given per sample: the builtin model's math.

Data x0 (flattened (C, h, w) latents, D values) given a conditioning c (prompt embedding and animation phase) is

    x0 | c ~ sum_{v, g} 1 / (V G) N(F_g mu_v(c), Sigma_v),   Sigma_v = s^2 I + S diag(lam_v) S^T,

with V variants, G views (no flip, or also a left-right flip F), an orthonormal basis S (D, R) of smooth fields that
are each even or odd under the flip (so F_g Sigma_v F_g = Sigma_v) and per-variant mode variances lam_v (R,). The
means mu_v(c) come from the caller and may move smoothly with c: every frame then moves smoothly with the prompt and
the phase. Under x_t = alpha x0 + sigma eps, with y = F_g x_t, d = y - alpha mu_v, v = alpha^2 s^2 + sigma^2 and
w = v + alpha^2 lam_v:

    C^-1 d = d / v - S ((1/v - 1/w) * S^T d),   log det C = D log v + sum_r log(w_r / v),
    E[eps | x_t, v, g] = sigma F_g C^-1 d,

and E[eps | x_t] averages these with the exact posterior weights. Squared distances are expanded as
||y||^2 - 2 alpha y.mu + alpha^2 ||mu||^2 (batched matmuls), never by broadcasting a (B, V, D) difference.
"""

from __future__ import annotations

import torch


class FlowMixture:
    """Smooth fields and flips of one latent shape; `eps`/`log_posterior` take the per-sample means each call."""

    def __init__(self, basis: torch.Tensor, basis_var: torch.Tensor, noise_std: float,
                 image_shape: tuple[int, int, int], mirror: bool = True) -> None:
        d, r = basis.shape
        if d != image_shape[0] * image_shape[1] * image_shape[2]:
            raise ValueError(f"basis has {d} rows, image_shape {image_shape} has {image_shape[0] * image_shape[1] * image_shape[2]} values")
        if basis_var.dim() != 2 or basis_var.shape[1] != r:
            raise ValueError(f"basis_var must be (V, {r}), got {tuple(basis_var.shape)}")
        if noise_std <= 0:
            raise ValueError(f"noise_std must be > 0, got {noise_std}")
        self.basis = basis.contiguous()  # (D, R) orthonormal columns
        self.basis_var = basis_var  # (V, R)
        self.noise_var = float(noise_std) ** 2
        self.image_shape = image_shape
        self.views = 2 if mirror else 1
        flipped = self.flip(basis.T).T  # (D, R)
        signs = (flipped * basis).sum(0)  # (R,) +1 even, -1 odd
        if mirror and not bool(torch.allclose(signs.abs(), torch.ones_like(signs), atol=1e-4)):
            raise ValueError("with mirror=True every smooth field must be even or odd under the left-right flip")
        self.signs = torch.stack([torch.ones_like(signs), signs.sign()])[: self.views]  # (G, R)

    @property
    def num_variants(self) -> int:
        """V."""
        return self.basis_var.shape[0]

    def flip(self, x: torch.Tensor) -> torch.Tensor:
        """(N, D) vectors mirrored left to right."""
        return x.reshape(x.shape[0], *self.image_shape).flip(-1).reshape(x.shape)

    def _views(self, x: torch.Tensor) -> torch.Tensor:
        return torch.stack([x, self.flip(x)][: self.views], dim=1)  # (B, G, D)

    def _parts(self, x: torch.Tensor, alpha: torch.Tensor, sigma: torch.Tensor,
               means: torch.Tensor) -> tuple[torch.Tensor, ...]:
        b, v_count, d = means.shape
        a, sg = alpha[:, None], sigma[:, None]  # (B, 1)
        a2 = a * a
        v = a2 * self.noise_var + sg * sg  # (B, 1)
        w = v[:, :, None] + a2[:, :, None] * self.basis_var[None]  # (B, V, R)
        gb = 1.0 / v[:, :, None] - 1.0 / w  # (B, V, R)
        y = self._views(x)  # (B, G, D)
        ym = torch.bmm(y, means.transpose(1, 2))  # (B, G, V) y . mu_v
        mean_sq = (means * means).sum(-1)  # (B, V)
        yb = y @ self.basis  # (B, G, R)
        mb = means @ self.basis  # (B, V, R)
        db = yb[:, :, None, :] - a[:, :, None, None] * mb[:, None]  # (B, G, V, R) S^T d
        quad = (-2 * a[:, :, None] * ym + (a2 * mean_sq)[:, None, :]) / v[:, :, None]  # (B, G, V) (||y||^2 / v common)
        quad = quad - (gb[:, None] * db * db).sum(-1)
        logdet = torch.log(w / v[:, :, None]).sum(-1)  # (B, V)
        joint = -0.5 * (quad + logdet[:, None, :])  # (B, G, V), uniform prior
        log_post = torch.log_softmax(joint.reshape(b, -1), dim=-1).reshape(joint.shape)
        return log_post, a, sg, v, gb, db

    def log_posterior(self, x: torch.Tensor, alpha: torch.Tensor, sigma: torch.Tensor,
                      means: torch.Tensor) -> torch.Tensor:
        """(B, G, V) log p(view g, variant v | x_t) for x (B, D) at (alpha, sigma) (B,) with means (B, V, D)."""
        return self._parts(x, alpha, sigma, means)[0]

    def eps(self, x: torch.Tensor, alpha: torch.Tensor, sigma: torch.Tensor, means: torch.Tensor,
            direction: torch.Tensor | None = None, direction_var: float | torch.Tensor = 0.0) -> torch.Tensor:
        """(B, D) exact E[eps | x_t] for x (B, D) at (alpha, sigma) (B,) with per-sample means (B, V, D).

        With one variant and no mirror, `direction` (B, D) (unit, orthogonal to the basis) adds direction_var (a
        number or (B, 1)) of variance along it: Sigma = s^2 I + S diag(lam) S^T + var n n^T (the builtin's img2img)."""
        if means.shape[1] == 1 and self.views == 1:  # one Gaussian: sigma C^-1 (x - a mu), no posterior weights
            a, sg = alpha[:, None], sigma[:, None]
            a2 = a * a
            v = a2 * self.noise_var + sg * sg  # (B, 1)
            gb = 1.0 / v - 1.0 / (v + a2 * self.basis_var)  # (B, R)
            d = x - a * means[:, 0]
            out = d / v - (gb * (d @ self.basis)) @ self.basis.T
            if direction is not None:  # direction_var: a number or (B, 1)
                gn = 1.0 / v - 1.0 / (v + a2 * direction_var)  # (B, 1)
                out = out - (gn * (d * direction).sum(-1, keepdim=True)) * direction
            return sg * out
        if direction is not None:
            raise ValueError("an extra direction needs one variant and no mirror")
        log_post, a, sg, v, gb, db = self._parts(x, alpha, sigma, means)
        gamma = log_post.exp()  # (B, G, V)
        # sum_gv gamma F_g (F_g x - a mu_v) / v = x / v - a / v sum_g F_g (sum_v gamma mu_v)
        mix = torch.bmm(gamma, means)  # (B, G, D)
        pulled = mix[:, 0] if self.views == 1 else mix[:, 0] + self.flip(mix[:, 1])
        field = ((gamma[..., None] * gb[:, None] * db) * self.signs[None, :, None, :]).sum((1, 2))  # (B, R)
        return sg * ((x - a * pulled) / v - field @ self.basis.T)

    def x0(self, x: torch.Tensor, alpha: torch.Tensor, sigma: torch.Tensor, means: torch.Tensor) -> torch.Tensor:
        """(B, D) exact posterior mean E[x0 | x_t]."""
        return (x - sigma[:, None] * self.eps(x, alpha, sigma, means)) / alpha[:, None]

    def covariance(self, variant: int) -> torch.Tensor:
        """(D, D) dense Sigma_v (for checks on small cases)."""
        eye = torch.eye(self.basis.shape[0], dtype=self.basis.dtype, device=self.basis.device)
        return self.noise_var * eye + (self.basis * self.basis_var[variant]) @ self.basis.T

    def sample(self, means: torch.Tensor, n: int, generator: torch.Generator) -> torch.Tensor:
        """(n, D) exact draws of x0 given one conditioning's means (V, D)."""
        v_count, d = means.shape
        opts = {"dtype": means.dtype, "device": means.device}
        pick = torch.randint(0, v_count * self.views, (n,), generator=generator)
        view, idx = pick // v_count, pick % v_count
        coef = torch.randn(n, self.basis.shape[1], generator=generator, **opts) * self.basis_var[idx].sqrt()
        out = means[idx] + coef @ self.basis.T + self.noise_var ** 0.5 * torch.randn(n, d, generator=generator, **opts)
        rows = view == 1
        out[rows] = self.flip(out[rows])
        return out
