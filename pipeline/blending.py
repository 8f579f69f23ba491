"""Blending of prompt embeddings and seed noises, and the noise walk.

Prompt slerp: for two prompts, each token vector's direction is slerped and its norm lerped. For more than two
non-zero weights, there is no unique spherical interpolation: the direction is the normalised weighted sum of
unit vectors (the weighted spherical mean's first-order approximation) and the norm the weighted mean norm.
A morph across a prompt list only ever has two neighbours non-zero, so it moves along exact slerp arcs.
"""

from __future__ import annotations

import math

import torch

_EPS = 1e-8


def slerp(a: torch.Tensor, b: torch.Tensor, t: float, dim: int | None = None) -> torch.Tensor:
    """Spherical interpolation of directions, linear interpolation of norms, along `dim` (None = whole tensor)."""
    dims = tuple(range(a.ndim)) if dim is None else (dim,)
    na = torch.linalg.vector_norm(a, dim=dims, keepdim=True)
    nb = torch.linalg.vector_norm(b, dim=dims, keepdim=True)
    ua, ub = a / na.clamp_min(_EPS), b / nb.clamp_min(_EPS)
    cos = (ua * ub).sum(dim=dims, keepdim=True).clamp(-1.0, 1.0)
    omega = torch.acos(cos)
    so = torch.sin(omega)
    near = so.abs() < 1e-4  # nearly parallel directions: lerp is exact enough
    wa = torch.where(near, torch.full_like(so, 1 - t), torch.sin((1 - t) * omega) / so.clamp_min(1e-12))
    wb = torch.where(near, torch.full_like(so, t), torch.sin(t * omega) / so.clamp_min(1e-12))
    direction = wa * ua + wb * ub
    out = direction * ((1 - t) * na + t * nb)
    degenerate = (na < _EPS) | (nb < _EPS)  # a zero vector has no direction: fall back to lerp
    return torch.where(degenerate, (1 - t) * a + t * b, out)


def blend_embeddings(embeddings: list[torch.Tensor], weights: list[float], mode: str = "slerp") -> torch.Tensor:
    """Weighted blend of (L, D) prompt embeddings by lerp or slerp (per token vector)."""
    pairs = [(e, w) for e, w in zip(embeddings, weights) if w > 0]
    if not pairs:
        raise ValueError("at least one prompt weight must be > 0")
    total = sum(w for _, w in pairs)
    if len(pairs) == 1:
        return pairs[0][0]
    if mode == "lerp":
        return sum(e * (w / total) for e, w in pairs)
    if mode != "slerp":
        raise ValueError(f"blend mode must be lerp or slerp, got {mode!r}")
    if len(pairs) == 2:
        (a, wa), (b, wb) = pairs
        return slerp(a, b, wb / total, dim=-1)
    norms = [e.norm(dim=-1, keepdim=True) for e, _ in pairs]
    direction = sum(e / n.clamp_min(_EPS) * w for (e, w), n in zip(pairs, norms))
    radius = sum(n * w for (_, w), n in zip(pairs, norms)) / total
    return direction / direction.norm(dim=-1, keepdim=True).clamp_min(_EPS) * radius


def blend_noise(noises: list[torch.Tensor], weights: list[float]) -> torch.Tensor:
    """Weighted blend of Gaussian noises that keeps the noise norm: slerp for two, a renormalised sum otherwise."""
    pairs = [(n, w) for n, w in zip(noises, weights) if w > 0]
    if not pairs:
        raise ValueError("at least one seed weight must be > 0")
    if len(pairs) == 1:
        return pairs[0][0]
    total = sum(w for _, w in pairs)
    if len(pairs) == 2:
        (a, _), (b, wb) = pairs
        return slerp(a, b, wb / total)
    mixed = sum(n * w for n, w in pairs)
    radius = sum(n.norm() * w for n, w in pairs) / total
    return mixed * (radius / mixed.norm().clamp_min(_EPS))


def walk_partner(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """b made orthogonal to a with a's norm: the second axis of the noise walk's great circle."""
    a_norm2 = (a * a).sum()
    ortho = b - (a * b).sum() / a_norm2.clamp_min(_EPS) * a
    return ortho * (a_norm2.sqrt() / torch.linalg.vector_norm(ortho).clamp_min(_EPS))


def noise_walk(a: torch.Tensor, b: torch.Tensor, phase: float, partner: torch.Tensor | None = None,
               out: torch.Tensor | None = None, one: torch.Tensor | None = None) -> torch.Tensor:
    """Rotate noise a by `phase` radians along the great circle towards b (b made orthogonal to a, same norm).

    Phase 0 is a itself, the norm is |a| at every phase, and the walk is periodic in 2 pi. `partner` is
    walk_partner(a, b) when the caller keeps it (it depends on a and b only, not on the phase). `out`, if given,
    receives the walked noise (the stream writes it straight into its next batch); `one` is a 0-dim ones tensor of
    a's dtype and device, kept by callers on the hot path (both terms are `addcmul`, see `pipeline.samplers`).
    """
    if phase == 0.0:
        return a if out is None else out.copy_(a)
    ortho = walk_partner(a, b) if partner is None else partner
    one = a.new_ones(()) if one is None else one
    out = torch.addcmul(a, a, one, value=-2.0 * math.sin(phase / 2) ** 2, out=out)  # a + (cos - 1) a
    return torch.addcmul(out, ortho, one, value=math.sin(phase), out=out)
