"""The builtin model's visuals: procedural pattern families x palettes, each component tagged with words."""

from __future__ import annotations

import math
import random
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch

from pipeline.builtin_text import COLOUR_TAGS

Array = np.ndarray  # (H, W) float32 fields; rendering is numpy: thousands of small elementwise ops, one thread
Tensor = torch.Tensor


@dataclass(frozen=True)
class Palette:
    """Colour stops from the darkest (field 0) to the brightest (field 1), with the words it stands for."""

    name: str
    stops: tuple[tuple[float, float, float], ...]
    tags: tuple[str, ...]
    chroma: float = 1.0  # multiplier of the colour-shift variation (low for grey palettes)


PALETTES: tuple[Palette, ...] = (
    Palette("fire", ((0.02, 0, 0), (0.45, 0.02, 0), (0.9, 0.15, 0), (1, 0.55, 0), (1, 0.9, 0.35)),
            ("warm", "energetic")),
    Palette("lava", ((0.03, 0, 0.01), (0.35, 0, 0.02), (0.8, 0.05, 0.02), (1, 0.3, 0.05)), ("warm", "dark")),
    Palette("blood", ((0, 0, 0), (0.3, 0, 0.02), (0.7, 0, 0.05), (0.95, 0.1, 0.15)), ("dark",)),
    Palette("ocean", ((0, 0.02, 0.08), (0, 0.15, 0.35), (0, 0.45, 0.7), (0.3, 0.85, 0.95)),
            ("water", "calm", "deep", "cool")),
    Palette("ice", ((0.02, 0.05, 0.15), (0.2, 0.45, 0.8), (0.65, 0.85, 1), (0.95, 0.98, 1)), ("cool", "calm")),
    Palette("midnight", ((0, 0, 0.03), (0.02, 0.04, 0.25), (0.1, 0.2, 0.75), (0.45, 0.6, 1)), ("deep", "calm", "cool")),
    Palette("forest", ((0, 0.04, 0.01), (0.02, 0.25, 0.08), (0.2, 0.6, 0.15), (0.7, 0.95, 0.4)),
            ("natural", "organic", "calm")),
    Palette("acid", ((0.02, 0.05, 0), (0.3, 0.6, 0), (0.65, 1, 0), (1, 1, 0.3)), ("toxic", "psychedelic")),
    Palette("neon", ((0.03, 0, 0.08), (0.55, 0, 0.75), (1, 0.1, 0.75), (0.1, 0.95, 1)),
            ("electric", "energetic", "glow")),
    Palette("synthwave", ((0.08, 0, 0.15), (0.45, 0, 0.5), (1, 0.15, 0.55), (1, 0.65, 0.25), (1, 0.95, 0.5)),
            ("retro", "glow")),
    Palette("sunset", ((0.15, 0.02, 0.25), (0.65, 0.1, 0.4), (1, 0.4, 0.3), (1, 0.75, 0.35)), ("warm", "dreamy")),
    Palette("gold", ((0.03, 0.02, 0), (0.35, 0.22, 0.02), (0.8, 0.6, 0.1), (1, 0.92, 0.55)), ("luxurious", "warm")),
    Palette("mono", ((0, 0, 0), (0.35, 0.35, 0.35), (0.75, 0.75, 0.75), (1, 1, 1)), ("minimal",), chroma=0.15),
    # the colour words alone: a white picture with pale grey structure, a black one with dim grey structure
    Palette("white", ((0.58, 0.58, 0.6), (0.8, 0.8, 0.82), (0.94, 0.94, 0.95), (1, 1, 1)), ("minimal", "soft"),
            chroma=0.05),
    Palette("black", ((0, 0, 0), (0.02, 0.02, 0.025), (0.12, 0.12, 0.13), (0.6, 0.6, 0.62)), ("minimal",),
            chroma=0.05),
    Palette("pastel", ((0.3, 0.25, 0.42), (0.95, 0.68, 0.8), (0.68, 0.82, 1), (0.8, 1, 0.88), (1, 0.97, 0.82)),
            ("soft", "dreamy"), chroma=0.5),
    Palette("rainbow", ((0.3, 0, 0.5), (0, 0.3, 1), (0, 0.9, 0.9), (0.2, 1, 0.2), (1, 0.95, 0), (1, 0.45, 0),
                        (1, 0, 0.2)),
            ("psychedelic",)),
    Palette("twilight", ((0.02, 0, 0.06), (0.25, 0.05, 0.45), (0.55, 0.25, 0.85), (0.85, 0.7, 1)),
            ("mystic", "dreamy")),
    Palette("candy", ((0.95, 0.45, 0.7), (1, 0.75, 0.88), (0.6, 0.85, 1), (1, 1, 1)), ("sweet", "soft")),
)


def _frac(x: Array) -> Array:
    """Fractional part (x >= 0 here)."""
    return np.mod(x, 1.0)


def _sstep(e0: float, e1: float, x: Array) -> Array:
    """Smoothstep from e0 to e1 (e1 < e0 gives a falling step)."""
    t = np.clip((x - e0) / (e1 - e0), 0, 1)
    return t * t * (3 - 2 * t)


def _gauss(q: Array) -> Array:
    """exp(-q), held above float32's denormal range (denormals make CPU math ~50x slower)."""
    return np.exp(-np.minimum(q, 60.0))


def _glow(d: Array, width: float) -> Array:
    """A soft line profile: 1 at distance 0, a Gaussian falloff."""
    return _gauss((d / width) ** 2)


def _polar(x: Array, y: Array, rng: random.Random, spread: float = 0.3) -> tuple[Array, Array]:
    cx, cy = rng.uniform(-spread, spread), rng.uniform(-spread, spread)
    return np.hypot(x - cx, y - cy), np.arctan2(y - cy, x - cx)


def _gradient(x: Array, y: Array, rng: random.Random, phase: float = 0.0) -> Array:
    kind, ang, ph = rng.randrange(3), rng.uniform(0, 2 * math.pi), rng.uniform(0, 2 * math.pi)
    u, v = x * math.cos(ang) + y * math.sin(ang), -x * math.sin(ang) + y * math.cos(ang)
    tau = 2 * math.pi * phase
    if kind == 0:  # linear with a gentle bend, rolling
        return np.clip(0.5 + 0.38 * u + 0.1 * np.sin(2.2 * v + ph + tau), 0, 1)
    if kind == 1:  # radial glow
        r, _ = _polar(x, y, rng, 0.5)
        return _gauss((r / (rng.uniform(0.6, 1.1) * (1 + 0.15 * math.sin(tau)))) ** 2)  # breathing
    return np.clip(0.5 + 0.45 * np.sin(1.3 * u + ph + tau + 0.9 * np.sin(1.7 * v + 2 * ph - tau)), 0, 1)  # aurora


def _rings(x: Array, y: Array, rng: random.Random, phase: float = 0.0) -> Array:
    r, _ = _polar(x, y, rng)
    freq, duty, ph = rng.uniform(1.8, 4.5), rng.uniform(0.3, 0.55), rng.random()
    c = np.cos(2 * math.pi * (freq * r - ph - phase))  # rings expand as the phase grows
    thr = math.cos(math.pi * duty)
    return _sstep(thr - 0.25, thr + 0.25, c) * (0.45 + 0.55 * _gauss((r / 1.3) ** 2))


def _stripes(x: Array, y: Array, rng: random.Random, phase: float = 0.0) -> Array:
    ang, freq, warp = rng.uniform(0, math.pi), rng.uniform(1.5, 3.5), rng.uniform(0, 0.3)
    u, v = x * math.cos(ang) + y * math.sin(ang), -x * math.sin(ang) + y * math.cos(ang)
    u = u + warp * np.sin(rng.uniform(1.5, 3.5) * v + rng.uniform(0, 6.3))
    band = _sstep(-0.3, 0.3, np.sin(2 * math.pi * (freq * u - phase)))  # stripes scroll
    return band * (0.65 + 0.35 * (0.5 + 0.5 * np.tanh(v)))


def _blobs(x: Array, y: Array, rng: random.Random, phase: float = 0.0) -> Array:
    field = np.zeros_like(x)
    for _ in range(rng.randint(3, 7)):
        cx, cy, rad = rng.uniform(-0.9, 0.9), rng.uniform(-0.8, 0.8), rng.uniform(0.18, 0.42)
        turn, orbit = 2 * math.pi * (phase * rng.choice((-1, 1)) + rng.random()), rng.uniform(0.1, 0.3)
        cx, cy = cx + orbit * math.cos(turn), cy + orbit * math.sin(turn)  # blobs drift on small loops
        field = field + rad**2 / ((x - cx) ** 2 + (y - cy) ** 2 + 1e-3)
    inside = _sstep(0.9, 1.1, field)
    return 0.3 * np.clip(field, 0, 1) ** 2 + inside * (0.45 + 0.25 * np.clip(field / 4, 0, 1))


def _plasma(x: Array, y: Array, rng: random.Random, phase: float = 0.0) -> Array:
    r, _ = _polar(x, y, rng, 0.8)
    tau = 2 * math.pi * phase  # plasma swirls: each wave runs at its own whole number of turns per cycle
    u = (np.sin(rng.uniform(1.5, 4) * x + rng.uniform(0, 6.3) + tau)
         + np.sin(rng.uniform(1.5, 4) * y + rng.uniform(0, 6.3) - tau)
         + np.sin(rng.uniform(1.5, 4) * (x + y) + rng.uniform(0, 6.3) + 2 * tau) + np.sin(rng.uniform(2, 5) * r - tau))
    return 0.5 + 0.5 * np.sin(math.pi * rng.uniform(0.45, 0.9) * u)


def _grid(x: Array, y: Array, rng: random.Random, phase: float = 0.0) -> Array:
    if rng.random() < 0.5:  # flat glowing grid
        ang, k = rng.uniform(0, math.pi / 2), rng.uniform(2, 4)
        u, v = x * math.cos(ang) + y * math.sin(ang), -x * math.sin(ang) + y * math.cos(ang)
        du = np.abs(_frac(u * k + 100.5 - phase) - 0.5) / k  # the grid slides one cell per cycle
        dv = np.abs(_frac(v * k + 100.5) - 0.5) / k
        return 0.1 + 0.85 * _glow(np.minimum(du, dv), 0.05) * (0.6 + 0.4 * _gauss(x * x + y * y))
    h0, k = rng.uniform(-0.25, 0.05), rng.uniform(1.5, 2.5)  # synthwave floor, sky and sun
    below = np.maximum(h0 - y, 0.02)
    depth = 0.6 / below
    dx = np.abs(_frac(x * depth * k + 100.5) - 0.5) / (depth * k)
    dz = np.abs(_frac(depth * k + rng.random() - phase) - 0.5) * below * below / (0.6 * k)  # the floor rolls in
    floor = 0.05 + 0.9 * _glow(np.minimum(dx, dz), 0.025) * _sstep(0.0, 0.12, h0 - y)
    sun_r, sun_y = rng.uniform(0.35, 0.55), h0 + rng.uniform(0.25, 0.45)
    sun = _sstep(sun_r + 0.02, sun_r - 0.02, np.hypot(x, y - sun_y))
    cuts = np.where(y < sun_y, _sstep(-0.3, 0.3, np.sin(28 * (y - sun_y) * (1 + 2 * (sun_y - y)))), np.ones_like(y))
    sun_shade = 0.7 + 0.3 * _sstep(sun_y - sun_r, sun_y + sun_r, y)
    sky = 0.15 + 0.25 * _sstep(h0 + 1.5, h0, y) + 0.6 * sun * cuts * sun_shade
    return np.where(y < h0, floor, sky)


def _star_layer(x: Array, y: Array, gen: np.random.Generator, cell: float, size: float, chance: float) -> Array:
    """At most one star per cell of a grid over [-4, 4]^2, jittered inside the cell's middle half."""
    n = int(8 / cell) + 1
    jitter = gen.random((2, n, n), dtype=np.float32) * 0.5 + 0.25  # star position inside its cell
    bright = gen.random((n, n), dtype=np.float32) * (gen.random((n, n)) < chance)
    i = np.clip(np.floor((y + 4) / cell).astype(np.int64), 0, n - 1)
    j = np.clip(np.floor((x + 4) / cell).astype(np.int64), 0, n - 1)
    sx, sy = (j + jitter[0, i, j]) * cell - 4, (i + jitter[1, i, j]) * cell - 4
    d2 = (x - sx) ** 2 + (y - sy) ** 2
    return bright[i, j] * (_gauss(d2 / size**2) + 0.3 * _gauss(d2 / (3 * size) ** 2))


def _stars(x: Array, y: Array, rng: random.Random, phase: float = 0.0) -> Array:
    gen = np.random.default_rng(rng.randrange(2**31))
    haze = 0.5 + 0.5 * np.sin(rng.uniform(1, 2.5) * x + 1.7 * np.sin(rng.uniform(1, 2) * y + rng.uniform(0, 6)))
    field = 0.14 * haze**2
    tau, turn = 2 * math.pi * phase, rng.uniform(0, 2 * math.pi)
    for depth, (cell, size, chance) in enumerate(((0.16, 0.018, 0.5), (0.35, 0.028, 0.5), (0.7, 0.045, 0.4))):
        drift = 0.06 * (depth + 1)  # nearer layers drift further (parallax), on a loop that closes each cycle
        sx, sy = x + drift * math.cos(tau + turn), y + drift * math.sin(tau + turn)
        field = field + _star_layer(sx, sy, gen, cell, size * rng.uniform(0.8, 1.3), chance)
    return np.clip(field, 0, 1)


def _waves(x: Array, y: Array, rng: random.Random, phase: float = 0.0) -> Array:
    n, amp, freq, ph = rng.randint(3, 7), rng.uniform(0.08, 0.25), rng.uniform(1.5, 4), rng.uniform(0, 6.3)
    filled = rng.random() < 0.4
    out = np.zeros_like(x)
    for i in range(n):
        wave = -0.9 + 1.8 * (i + 0.5) / n + amp * np.sin(freq * x + ph + 1.3 * i - 2 * math.pi * phase)  # rolling
        if filled:  # stacked hills, brighter towards the top
            out = np.maximum(out, _sstep(-0.02, 0.02, y - wave) * (i + 1) / n)
        else:  # glowing lines
            out = np.maximum(out, _glow(y - wave, 0.035) * (0.55 + 0.45 * (i + 1) / n))
    return out


def _tunnel(x: Array, y: Array, rng: random.Random, phase: float = 0.0) -> Array:
    r, th = _polar(x, y, rng, 0.2)
    depth, n = rng.uniform(0.35, 0.8) / (r + 0.03) + rng.random() + phase, rng.choice((4, 6, 8, 10, 12))  # zoom
    if rng.random() < 0.5:
        pattern = _sstep(-0.25, 0.25, np.sin(2 * math.pi * depth) * np.sin(n * th))
    else:
        pattern = _sstep(0.2, 0.7, np.cos(2 * math.pi * depth))
    return pattern * _sstep(0.06, 0.7, r) * 0.9 + 0.05


def _spiral(x: Array, y: Array, rng: random.Random, phase: float = 0.0) -> Array:
    r, th = _polar(x, y, rng, 0.2)
    arms, twist = rng.randint(1, 6), rng.uniform(2, 6) * rng.choice((-1, 1))
    c = np.cos(arms * th - twist * np.log(r + 0.02) - 2 * math.pi * phase)  # the spiral turns
    return _sstep(-0.2, 0.3, c) * _sstep(0.0, 0.25, r) * 0.85 + 0.8 * _gauss((r / 0.12) ** 2)


def _rays(x: Array, y: Array, rng: random.Random, phase: float = 0.0) -> Array:
    r, th = _polar(x, y, rng, 0.25)
    n, twist, core = rng.randint(6, 18), rng.uniform(-1.5, 1.5), rng.uniform(0.1, 0.3)
    turning = np.cos(n * th + twist * r - 2 * math.pi * phase)  # the rays turn with the phase
    beams = _sstep(0.0, 0.5, turning) * _gauss(r / rng.uniform(0.8, 2.0))  # and fade outwards
    return np.clip(np.maximum(0.85 * beams, _sstep(core + 0.02, core - 0.02, r)), 0, 1)


def _checker(x: Array, y: Array, rng: random.Random, phase: float = 0.0) -> Array:
    ang, k, warp = rng.uniform(0, math.pi / 2), rng.uniform(3, 6), rng.uniform(0, 0.5)
    r2 = x * x + y * y
    u, v = x * math.cos(ang) + y * math.sin(ang), -x * math.sin(ang) + y * math.cos(ang)
    u, v = u * (1 + warp * r2), v * (1 + warp * r2)  # a gentle fisheye
    cells = _sstep(-0.25, 0.25, np.sin(k * u - 2 * math.pi * phase) * np.sin(k * v))  # the board slides
    return 0.08 + 0.8 * cells + 0.12 * (0.5 + 0.5 * np.tanh(y))


def _flower(x: Array, y: Array, rng: random.Random, phase: float = 0.0) -> Array:
    r, th = _polar(x, y, rng, 0.1)
    n, layers, amp = rng.randint(3, 12), rng.randint(2, 4), rng.uniform(0.15, 0.35)
    th = th - 2 * math.pi * phase / n  # the flower turns by one petal per cycle
    out = np.zeros_like(x)
    for i in range(layers):  # outer layer first, each inner layer painted over it
        rad = 0.95 * (layers - i) / layers
        edge = rad * (1 + amp * np.cos(n * th + i * math.pi / n))
        out = np.where(r < edge, np.full_like(x, 0.35 + 0.65 * (i + 1) / layers), out)
    glow = _sstep(0.05, -0.05, r - 0.95 * (1 + amp * np.cos(n * th)))
    return np.maximum(out * (0.75 + 0.25 * np.cos(n * th * 2) ** 2), 0.15 * glow)


def _cells(x: Array, y: Array, rng: random.Random, phase: float = 0.0) -> Array:
    pts = [(rng.uniform(-1.8, 1.8), rng.uniform(-1.2, 1.2), rng.random()) for _ in range(rng.randint(10, 24))]
    tau = 2 * math.pi * phase  # the cell centres wander on small loops
    pts = [(px + 0.12 * math.cos(tau + 7 * v), py + 0.12 * math.sin(tau + 7 * v), v) for px, py, v in pts]
    d = np.stack([np.hypot(x - px, y - py) for px, py, _ in pts])  # (P, H, W)
    two = np.partition(d, 1, axis=0)[:2]  # nearest and second-nearest distances
    shade = np.array([v for _, _, v in pts], dtype=x.dtype)[d.argmin(axis=0)]
    edge = _glow(two[1] - two[0], 0.04)
    return np.maximum(0.15 + 0.45 * shade * (1 - np.clip(two[0] / 0.9, 0, 1)), edge * 0.95)


def _dots(x: Array, y: Array, rng: random.Random, phase: float = 0.0) -> Array:
    ang, k = rng.uniform(0, math.pi / 2), rng.uniform(3, 6)
    u, v = x * math.cos(ang) + y * math.sin(ang), -x * math.sin(ang) + y * math.cos(ang)
    du, dv = _frac(u * k / 2 + 100.5 - phase) - 0.5, _frac(v * k / 2 + 100.5) - 0.5  # the dots slide
    d = np.hypot(du, dv)
    wave = np.sin(rng.uniform(1, 2.5) * x + rng.uniform(0, 6.3)) * np.cos(rng.uniform(1, 2) * y)
    rad = 0.1 + 0.32 * (0.5 + 0.5 * wave)
    return 0.08 + 0.85 * _sstep(0.03, -0.03, d - rad)


def _kaleidoscope(x: Array, y: Array, rng: random.Random, phase: float = 0.0) -> Array:
    r, th = _polar(x, y, rng, 0.05)
    n = rng.choice((6, 8, 10, 12))
    sector = 2 * math.pi / n
    folded = np.abs((th % sector) - sector / 2)  # every sector shows the same mirrored wedge
    u, v = r * np.cos(folded), r * np.sin(folded)
    f1, f2, f3, ph = rng.uniform(4, 8), rng.uniform(6, 12), rng.uniform(3, 6), rng.uniform(0, 6.3)
    ph = ph + 2 * math.pi * phase  # the inner pattern flows
    field = np.sin(f1 * u + ph) + np.cos(f2 * v - ph) + 0.7 * np.sin(f3 * (u + 2 * v) - ph)
    pattern = 0.55 * _sstep(-0.5, 1.5, field) + 0.6 * _glow(np.abs(field), 0.35)
    return np.clip(pattern, 0, 1) * (0.35 + 0.65 * _sstep(1.5, 0.3, r))


# family -> (field function, tags, smooth-variation multiplier)
FAMILIES: dict[str, tuple[Callable[..., Array], tuple[str, ...], float]] = {
    "gradient": (_gradient, ("gradient", "calm", "minimal", "soft"), 1.2),
    "rings": (_rings, ("rings", "geometric", "hypnotic"), 1.0),
    "stripes": (_stripes, ("stripes", "lines", "geometric"), 1.0),
    "blobs": (_blobs, ("blobs", "organic", "glow"), 1.2),
    "plasma": (_plasma, ("plasma", "psychedelic", "organic"), 1.2),
    "grid": (_grid, ("grid", "lines", "retro", "geometric", "horizon"), 0.8),
    "stars": (_stars, ("stars", "space", "cosmic", "glow"), 0.7),
    "waves": (_waves, ("waves", "water", "lines", "calm"), 1.0),
    "tunnel": (_tunnel, ("tunnel", "hypnotic", "deep"), 1.0),
    "spiral": (_spiral, ("spiral", "hypnotic", "psychedelic"), 1.0),
    "rays": (_rays, ("rays", "energetic", "glow"), 1.0),
    "checker": (_checker, ("checker", "geometric", "retro"), 1.0),
    "flower": (_flower, ("flower", "mandala", "organic"), 1.0),
    "cells": (_cells, ("cells", "organic", "lines"), 1.0),
    "dots": (_dots, ("dots", "geometric", "retro"), 1.0),
    "kaleidoscope": (_kaleidoscope, ("kaleidoscope", "mandala", "psychedelic", "geometric"), 1.0),
}


@dataclass(frozen=True)
class ComponentSpec:
    """One builtin component: a pattern family drawn with its own seed, coloured by a palette."""

    family: str
    palette: Palette
    seed: int

    @property
    def tags(self) -> tuple[str, ...]:
        """Family, palette and mood words (colour words are measured from the pixels, see colour_strengths)."""
        return FAMILIES[self.family][1] + (self.palette.name,) + self.palette.tags

    @property
    def mirrors(self) -> tuple[bool, bool, bool, bool]:
        """Which flips (none, left-right, upside down, both) still look right: horizons and hills keep the sky up."""
        upright = self.family in ("grid", "waves")
        return (True, True, not upright, not upright)

    @property
    def variation(self) -> tuple[float, float, float]:
        """Smooth-variation std multipliers on the (luma, red-green, yellow-blue) axes."""
        base = FAMILIES[self.family][2]
        return (base, base * self.palette.chroma, base * self.palette.chroma)


def component_specs(variants: int = 2) -> tuple[ComponentSpec, ...]:
    """Every builtin component: each family in each palette, `variants` times with its own seed (16 x 17 x 2 = 544)."""
    return tuple(
        ComponentSpec(family, palette, seed=1000 * f + 100 * v + p)
        for f, family in enumerate(FAMILIES) for v in range(variants) for p, palette in enumerate(PALETTES)
    )


def apply_palette(field: Array, palette: Palette) -> Array:
    """(H, W) field in [0, 1] -> (3, H, W) colours, piecewise-linear between the palette's stops."""
    stops = np.array(palette.stops, dtype=np.float32)  # (n, 3)
    pos = np.clip(field, 0, 1) * (len(stops) - 1)
    lo = np.minimum(np.floor(pos).astype(np.int64), len(stops) - 2)
    w = (pos - lo)[..., None]
    return (stops[lo] * (1 - w) + stops[lo + 1] * w).transpose(2, 0, 1)


def coordinates(height: int, width: int) -> tuple[Array, Array]:
    """(H, W) float32 x and y with the short side spanning [-1, 1], y pointing up, pixel centres."""
    scale = min(height, width) / 2
    xs = (np.arange(width, dtype=np.float32) + 0.5 - width / 2) / scale
    ys = -(np.arange(height, dtype=np.float32) + 0.5 - height / 2) / scale
    return np.broadcast_to(xs[None, :], (height, width)), np.broadcast_to(ys[:, None], (height, width))


def render_field(family: str, seed: int, height: int, width: int, phase: float = 0.0) -> Array:
    """(H, W) float32 field in [0, 1] of one family drawn with a seed at an animation phase (cycles; period 1)."""
    x, y = coordinates(height, width)
    return np.clip(FAMILIES[family][0](x, y, random.Random(seed), phase), 0, 1).astype(np.float32)


def render_component(spec: ComponentSpec, height: int, width: int) -> Array:
    """(3, H, W) float32 colours in [0, 1] of one component at full detail (the same picture at every size)."""
    field = render_field(spec.family, spec.seed, height, width)
    return apply_palette(field.astype(np.float32), spec.palette)


def render_components(specs: tuple[ComponentSpec, ...], height: int, width: int) -> Tensor:
    """(K, 3, h, w) components at latent size (h, w): rendered supersampled, then area-averaged (band-limited)."""
    ss = 4 if max(height, width) <= 32 else 2
    out = np.empty((len(specs), 3, height, width), dtype=np.float32)
    for i, spec in enumerate(specs):
        out[i] = render_component(spec, height * ss, width * ss).reshape(3, height, ss, width, ss).mean(axis=(2, 4))
    return torch.from_numpy(out)


def colour_strengths(images: Tensor) -> Tensor:
    """(K, len(COLOUR_TAGS) + 2) how strongly each image shows each colour word, then "dark" and "bright", in [0, 1]."""
    r, g, b = images[:, 0], images[:, 1], images[:, 2]  # (K, h, w)
    mx, mn = images.max(dim=1).values, images.min(dim=1).values
    sat = (mx - mn) / mx.clamp_min(1e-6)
    delta = (mx - mn).clamp_min(1e-6)
    hue = torch.where(mx == g, (b - r) / delta + 2, (r - g) / delta + 4)
    hue = torch.where(mx == r, ((g - b) / delta) % 6, hue) * 60  # degrees
    vivid = (sat > 0.35) & (mx > 0.25)
    bins = {  # hue ranges in degrees; gold is a dark or muted yellow-orange
        "red": (hue >= 345) | (hue < 15), "orange": (hue >= 15) & (hue < 42), "yellow": (hue >= 42) & (hue < 70),
        "green": (hue >= 70) & (hue < 160), "cyan": (hue >= 160) & (hue < 200), "blue": (hue >= 200) & (hue < 255),
        "purple": (hue >= 255) & (hue < 290), "pink": (hue >= 290) & (hue < 345),
    }
    frac: dict[str, Tensor] = {name: (vivid & m).float().mean(dim=(1, 2)) for name, m in bins.items()}
    frac["gold"] = (vivid & (hue >= 30) & (hue < 60) & (sat < 0.9) & (mx < 0.95)).float().mean(dim=(1, 2))
    frac["white"] = ((sat < 0.2) & (mx > 0.8)).float().mean(dim=(1, 2))
    frac["black"] = (mx < 0.12).float().mean(dim=(1, 2))
    # A hue's strength is its share of the image's colour, so "red" prefers wholly red images to rainbows and a
    # red/blue blend finds red images, blue images and images holding both, not every colourful one.
    chroma = torch.stack([frac[name] for name in bins]).sum(0).clamp_min(0.4)  # (K,)
    strength = torch.stack([(frac[name] / (0.4 if name in ("white", "black") else chroma)).clamp(0, 1)
                            for name in COLOUR_TAGS], dim=1)
    strength = torch.where(strength < 0.2, torch.zeros_like(strength), strength)  # no tags for specks of colour
    luma = (0.2126 * r + 0.7152 * g + 0.0722 * b).mean(dim=(1, 2))
    dark, bright = ((0.35 - luma) / 0.2).clamp(0, 1), ((luma - 0.45) / 0.2).clamp(0, 1)
    light = torch.stack([dark, bright], dim=1)
    return torch.cat([strength, light], dim=1)
