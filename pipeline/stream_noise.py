"""The noise a stream's frames start from: each seed's noise sets, the seed blend and the noise walk, all cached."""

from __future__ import annotations

import torch

from pipeline.blending import blend_noise, noise_walk, walk_partner

_CACHE_SIZE = 64  # seeds kept


class StreamNoise:
    """Noise of one stream configuration (slots, latent shape, device, dtype).

    A seed gives (2, N, C, h, w) noises drawn on the CPU, so every device gives the same frames: set 0 is walked
    from, set 1 is the walk's direction. Row 0 of a set is a new frame's start noise, row i the re-noise into slot i;
    samplers that do not re-noise (`renoises` False) keep row 0 alone. Each stage is recomputed only when its inputs
    change: the seed blend rarely, the walk phase every tick.
    """

    def __init__(self, slots: int, latent_shape: tuple[int, ...], device: torch.device, dtype: torch.dtype,
                 renoises: bool) -> None:
        self.slots, self.latent_shape, self.device, self.dtype = slots, tuple(latent_shape), device, dtype
        self.renoises = renoises
        self._seeds: dict[int, torch.Tensor] = {}
        self._blend: tuple[tuple | None, tuple[torch.Tensor, ...] | None] = (None, None)  # (seeds, (a, b, partner))
        self._walked: tuple[tuple | None, torch.Tensor | None] = (None, None)  # ((seeds, phase), noise)
        self._one = torch.ones((), device=device, dtype=dtype)  # noise_walk's unit factor

    def seed(self, seed: int) -> torch.Tensor:
        """(2, N, C, h, w) noises of one seed."""
        noise = self._seeds.get(seed)
        if noise is None:
            if len(self._seeds) >= _CACHE_SIZE:
                self._seeds.pop(next(iter(self._seeds)))
            gen = torch.Generator(device="cpu").manual_seed(int(seed))
            noise = torch.randn((2, self.slots, *self.latent_shape), generator=gen, dtype=torch.float32)
            noise = noise.to(self.device, self.dtype)
            self._seeds[seed] = noise
        return noise

    def blend(self, seeds: tuple[tuple[int, float], ...]) -> tuple[torch.Tensor, ...]:
        """(a, b, partner), each (N or 1, C, h, w): the seed blend's two noise sets and the walk's second axis."""
        if self._blend[0] != seeds:
            sets = [self.seed(s) for s, _ in seeds]
            weights = [w for _, w in seeds]
            a, b = blend_noise([s[0] for s in sets], weights), blend_noise([s[1] for s in sets], weights)
            if not self.renoises:  # only the start noise is ever read
                a, b = a[:1], b[:1]
            self._blend = (seeds, (a, b, walk_partner(a, b)))
        return self._blend[1]

    def walked(self, seeds: tuple[tuple[int, float], ...], phase: float) -> torch.Tensor:
        """(N or 1, C, h, w): the seed blend walked by `phase` radians (a frozen walk knob: the same tensor)."""
        if self._walked[0] != (seeds, phase):
            a, b, partner = self.blend(seeds)
            self._walked = ((seeds, phase), noise_walk(a, b, phase, partner, one=self._one))
        return self._walked[1]

    def walk_into(self, out: torch.Tensor, seeds: tuple[tuple[int, float], ...], phase: float) -> torch.Tensor:
        """The start noise walked by `phase`, written into out (1, C, h, w), for samplers that do not re-noise (their
        sets are row 0 alone; the others keep whole sets per frame through `walked`)."""
        if self.renoises:
            raise ValueError("walk_into writes the start row alone: re-noising samplers use walked()")
        a, b, partner = self.blend(seeds)
        return noise_walk(a, b, phase, partner, out=out, one=self._one)
