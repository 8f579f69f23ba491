"""Target values -> the engine's Conditioning: prompt and seed weights, live overrides, the noise-walk phase.

A tick's evaluated targets (``livekit.sketch.mappings``) become one Conditioning: ``morph`` and ``weight_<i>`` weigh the
prompts, ``seed_morph`` / ``seed_step`` the seeds, and ``noise_walk`` (radians per second) advances a phase.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass

from pipeline.conditioning import Conditioning

MAX_TICK_DT_S = 1.0  # a stalled tick advances the noise walk by at most this much time


@dataclass(frozen=True)
class ConditioningSettings:
    """The parts of a Conditioning that are settings, not mapped values: prompt list, seeds, blend mode."""

    prompts: tuple[tuple[str, float], ...] = (("", 1.0),)  # (text, weight) as declared
    negative_prompt: str = ""
    seeds: tuple[int, ...] = (0,)
    prompt_blend: str = "slerp"


def neighbour_weights(n: int, x: float) -> tuple[float, ...]:
    """Piecewise-linear weights for position x in 0..1 across n items: only the two neighbours of x*(n-1) weigh."""
    if n <= 1:
        return (1.0,) * n
    pos = min(max(x, 0.0), 1.0) * (n - 1)
    i = min(int(math.floor(pos)), n - 2)
    frac = pos - i
    weights = [0.0] * n
    weights[i], weights[i + 1] = 1.0 - frac, frac
    return tuple(weights)


def _indexed(name: str, prefix: str) -> int | None:
    tail = name[len(prefix):] if name.startswith(prefix) else ""
    return int(tail) if tail.isdigit() else None


def apply_overrides(settings: ConditioningSettings, overrides: Mapping[str, str | float]) -> ConditioningSettings:
    """Settings with live overrides (OSC): "prompt" / "seed" replace the list, "prompt_<i>" / "seed_<i>" one entry,
    "negative_prompt" the negative prompt; an index past the end of the list is ignored."""
    prompts, seeds = list(settings.prompts), list(settings.seeds)
    if isinstance(overrides.get("prompt"), str):
        prompts = [(overrides["prompt"], 1.0)]
    if isinstance(overrides.get("seed"), (int, float)):
        seeds = [int(overrides["seed"])]
    for name, value in overrides.items():
        i, j = _indexed(name, "prompt_"), _indexed(name, "seed_")
        if i is not None and i < len(prompts) and isinstance(value, str):
            prompts[i] = (value, prompts[i][1])
        elif j is not None and j < len(seeds) and isinstance(value, (int, float)):
            seeds[j] = int(value)
    negative = overrides.get("negative_prompt", settings.negative_prompt)
    negative = negative if isinstance(negative, str) else settings.negative_prompt
    return ConditioningSettings(tuple(prompts), negative, tuple(seeds), settings.prompt_blend)


def build_conditioning(
    settings: ConditioningSettings, values: Mapping[str, float], noise_phase: float = 0.0, seed_index: int = 0,
    prompt_index: int = 0, motion_phase: float = 0.0,
) -> Conditioning:
    """The engine's Conditioning from settings and one tick's target values (pure)."""
    n = len(settings.prompts)
    weights = [max(w, 0.0) for _, w in settings.prompts]
    if values.get("morph") is not None:
        base = neighbour_weights(n, values["morph"])
    elif values.get("prompt_step") is not None:  # stepping without a morph: one prompt at a time
        base = (1.0,) + (0.0,) * (n - 1)
    else:
        base = None
    if base is not None:
        p = prompt_index % n
        weights = [w * base[(i - p) % n] for i, w in enumerate(weights)]
    for i in range(n):
        factor = values.get(f"weight_{i}")
        if factor is not None:
            weights[i] *= max(factor, 0.0)
    prompts = tuple((text, w) for (text, _), w in zip(settings.prompts, weights))
    if sum(weights) <= 0:  # every prompt faded out: the unconditional prompt
        prompts = (("", 1.0),)
    seeds = settings.seeds
    k = seed_index % len(seeds)
    if values.get("seed_morph") is not None:
        rotated = neighbour_weights(len(seeds), values["seed_morph"])
    else:
        rotated = (1.0,) + (0.0,) * (len(seeds) - 1)
    seed_w = [rotated[(j - k) % len(seeds)] for j in range(len(seeds))]
    for j in range(len(seeds)):  # a seed weight set over OSC replaces that seed's weight in the blend
        weight = values.get(f"seed_weight_{j}")
        if weight is not None:
            seed_w[j] = max(weight, 0.0)
    if sum(seed_w) <= 0:  # every seed faded out: keep the current one
        seed_w = [1.0 if j == k else 0.0 for j in range(len(seeds))]
    return Conditioning(
        prompts=prompts,
        negative_prompt=settings.negative_prompt,
        seeds=tuple(zip(seeds, seed_w)),
        noise_walk=noise_phase,
        guidance=values.get("guidance", 1.0),
        delta=values.get("delta", 1.0),
        strength=min(max(values.get("strength", 0.5), 0.0), 1.0),
        control_scale=min(max(values.get("control_scale", 1.0), 0.0), 2.0),  # NaN passes, and Conditioning refuses it
        prompt_blend=settings.prompt_blend,
        motion_phase=motion_phase,
    )


class ConditioningBuilder:
    """Builds each tick's Conditioning, integrating the noise-walk speed into a phase and counting seed steps."""

    def __init__(self) -> None:
        self.noise_phase = 0.0  # radians
        self.seed_index = 0  # steps taken through the seed list
        self.prompt_index = 0  # steps taken through the prompt list
        self.motion_phase = 0.0  # cycles of the model's pattern animation, kept in [0, 1)
        self._last_s: float | None = None

    def skip(self, now_s: float) -> None:
        """A tick that produced no conditioning: time passes, the phase holds."""
        self._last_s = now_s

    def build(self, settings: ConditioningSettings, values: Mapping[str, float], now_s: float) -> Conditioning:
        """Advance phase and seed index by this tick's values and build; state changes only if building succeeds."""
        dt_s = 0.0 if self._last_s is None else min(max(now_s - self._last_s, 0.0), MAX_TICK_DT_S)
        self._last_s = now_s
        phase = self.noise_phase + values.get("noise_walk", 0.0) * dt_s
        index = self.seed_index + int(values.get("seed_step", 0.0))
        p_index = self.prompt_index + int(values.get("prompt_step", 0.0))
        motion = self.motion_phase + values.get("motion", 0.0) * dt_s
        motion = motion % 1.0 if math.isfinite(motion) else self.motion_phase
        if not math.isfinite(phase):  # a runaway speed must not end the noise walk for good
            phase = self.noise_phase
        phase %= math.tau  # the walk is a rotation: keep its angle small so every later step still moves it
        conditioning = build_conditioning(settings, values, phase, index, p_index, motion)
        self.noise_phase, self.seed_index, self.prompt_index = phase, index, p_index
        self.motion_phase = motion
        return conditioning
