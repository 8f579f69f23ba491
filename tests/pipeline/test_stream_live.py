"""The stream under live changes: img2img strength 0..1, strength changes, a moving noise walk, checkpoint settings."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from pipeline.conditioning import Conditioning
from pipeline.guidance import sampler_defaults
from pipeline.protocol import ModelDefaults
from pipeline.schedule import SAMPLERS, ScheduleConfig, SchedulerSettings, table_for
from pipeline.stream import EngineConfig, StreamEngine
from tests.pipeline.gaussian import GaussianModel

SIZE = (64, 48)
AC = GaussianModel().alphas_cumprod


def _image(seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 255, (SIZE[1], SIZE[0], 3), dtype=np.uint8)


@pytest.mark.parametrize("sampler", SAMPLERS)
@pytest.mark.parametrize("spacing", ["trailing", "leading", "linspace", "logsnr", "karras"])
def test_every_strength_gives_distinct_timesteps_and_finite_coefficients(sampler: str, spacing: str) -> None:
    for strength in np.concatenate([[0.0, 1e-4, 1e-3, 2e-3, 3e-3, 0.01, 0.05, 0.08], np.linspace(0, 1, 41)]):
        table = table_for(ScheduleConfig(sampler, 4, spacing, strength=float(strength)), AC)
        ts = table.timesteps[table.active]
        assert bool((ts[:-1] > ts[1:]).all()), (strength, table.timesteps.tolist())  # no duplicate timesteps
        assert all(bool(torch.isfinite(v).all()) for v in (table.a, table.b, table.c, table.d, table.alpha))
        assert float(table.d.abs().max()) < 10.0, (strength, table.d.tolist())
        assert table.slots == 4


@pytest.mark.parametrize("sampler", SAMPLERS)
def test_strength_zero_returns_the_input_and_low_strength_stays_close(sampler: str) -> None:
    model = GaussianModel()
    img = _image(1)
    eng = StreamEngine(model, EngineConfig(size_px=SIZE, sampler=sampler, steps=4, mode="img2img"))
    expected = model.decode(model.encode_image(eng.prepare_image(img)))[0].clamp(0, 1)
    out = eng.step(Conditioning(image=img, strength=0.0))
    assert float((out - expected).abs().max()) <= 1e-5
    for strength in (1e-3, 2e-3, 0.02, 0.05):
        out = StreamEngine(model, EngineConfig(size_px=SIZE, sampler=sampler, steps=4, mode="img2img")).step(
            Conditioning(image=img, strength=strength))
        assert bool(torch.isfinite(out).all()) and float((out - expected).abs().mean()) < 0.1, strength


def test_strength_is_part_of_the_skip_key_and_changes_show_no_mixed_frames() -> None:
    """A still input with strength moving computes every frame, and each frame is one of a single strength."""
    img = _image(2)

    def engine() -> StreamEngine:
        return StreamEngine(GaussianModel(), EngineConfig(size_px=SIZE, sampler="dpmpp_2m", steps=4, mode="img2img",
                                                          similarity_threshold=0.9, max_skip_frames=10))

    eng = engine()
    for _ in range(6):
        eng.step(Conditioning(image=img, strength=0.3, seeds=((1, 1.0),)))
    skipped = eng.stats.skipped
    strengths = [0.3 + 0.05 * k for k in range(1, 10)]
    outs = [eng.step(Conditioning(image=img, strength=s, seeds=((1, 1.0),))) for s in strengths]
    assert eng.stats.skipped == skipped  # the knob moved: nothing frozen
    ref = engine()
    for k, out in enumerate(outs):  # output k entered N steps earlier, with that tick's strength
        entered = 0.3 if k < eng.slots else strengths[k - eng.slots]
        expected = ref.render(Conditioning(image=img, strength=entered, seeds=((1, 1.0),)))
        assert float((out - expected).abs().max()) <= 1e-5, (k, float((out - expected).abs().max()))


@pytest.mark.parametrize("sampler, kw", [("turbo", {"steps": 3}), ("lcm", {"steps": 4}),
                                          ("lcm", {"t_index_list": (0, 16, 32, 45)}), ("ddim", {"steps": 4}),
                                          ("dpmpp_2m", {"steps": 4})])
def test_every_sampler_stream_equals_sequential_while_the_noise_walk_moves(sampler: str, kw: dict) -> None:
    eng = StreamEngine(GaussianModel(), EngineConfig(size_px=SIZE, sampler=sampler, cfg="none", **kw))
    ref = StreamEngine(GaussianModel(), EngineConfig(size_px=SIZE, sampler=sampler, cfg="none", **kw))
    conds = [Conditioning(prompts=(("red", 1.0),), seeds=((5, 1.0),), noise_walk=0.15 * k) for k in range(12)]
    for k, cond in enumerate(conds):
        frame = eng.step(cond)
        expected = ref.render(conds[max(0, k - eng.slots)])
        assert float((frame - expected).abs().max()) <= 1e-5, (k, float((frame - expected).abs().max()))


def test_lcm_and_turbo_bring_their_own_default_guidance() -> None:
    full = ModelDefaults(sampler="dpmpp_2m", steps=10, cfg="self", guidance=1.4)
    assert sampler_defaults(full, "lcm").cfg == "none" and sampler_defaults(full, "lcm").guidance == 1.0
    assert sampler_defaults(full, "turbo").cfg == "none"
    assert sampler_defaults(full, "ddim").cfg == "self" and sampler_defaults(full, "ddim").guidance == 1.4
    model = GaussianModel()
    model.defaults = full
    eng = StreamEngine(model, EngineConfig(size_px=SIZE, sampler="lcm"))
    assert eng.config.cfg == "none" and eng.defaults.guidance == 1.0
    assert StreamEngine(model, EngineConfig(size_px=SIZE, sampler="lcm", cfg="self")).config.cfg == "self"
    assert StreamEngine(model, EngineConfig(size_px=SIZE)).config.cfg == "self"


def test_checkpoint_scheduler_settings_are_read_and_honoured() -> None:
    from diffusers import DDIMScheduler, LCMScheduler

    cfg = {"timestep_spacing": "leading", "steps_offset": 1, "set_alpha_to_one": False,
           "original_inference_steps": 100, "timestep_scaling": 5.0, "thresholding": True}
    st = SchedulerSettings.from_config(cfg)
    assert (st.timestep_spacing, st.steps_offset, st.set_alpha_to_one) == ("leading", 1, False)
    assert (st.original_inference_steps, st.timestep_scaling, st.thresholding) == (100, 5.0, True)
    ddim = DDIMScheduler(beta_schedule="scaled_linear", beta_start=0.00085, beta_end=0.012, steps_offset=1)
    ddim.set_timesteps(4)
    table = table_for(ScheduleConfig("ddim", 4, "model", settings=st), AC)
    assert table.timesteps.long().tolist() == [int(t) for t in ddim.timesteps]  # 751, 501, 251, 1
    assert float(table.alpha_next[-1]) == pytest.approx(float(AC[0]) ** 0.5)  # set_alpha_to_one False
    lcm = LCMScheduler(beta_schedule="scaled_linear", beta_start=0.00085, beta_end=0.012,
                       original_inference_steps=100, timestep_scaling=5.0)
    lcm.set_timesteps(4)
    table = table_for(ScheduleConfig("lcm", 4, settings=st), AC)
    assert table.timesteps.long().tolist() == [int(t) for t in lcm.timesteps]
    c_skip, c_out = lcm.get_scalings_for_boundary_condition_discrete(table.timesteps[1])
    assert float(table.c_skip[1]) == pytest.approx(float(c_skip)) and float(table.c_out[1]) == pytest.approx(float(c_out))
    assert table.threshold == (0.995, 1.0)


def _largest_change(eng: StreamEngine, conds: list[Conditioning]) -> float:
    frames = [eng.step(c) for c in conds]
    for f in frames:
        assert bool(torch.isfinite(f).all()) and float(f.mean()) > 0.02, "a black or non-finite frame"
    return max(float((b - a).abs().mean()) for a, b in zip(frames, frames[1:]))


@pytest.fixture(scope="module")
def sweep_models(tiny_sd_model):
    from pipeline import load_model

    return {"builtin": load_model("builtin", device="cpu", dtype=torch.float32),
            "tiny_sd": load_model(str(tiny_sd_model), device="cpu", dtype=torch.float32)}


@pytest.mark.parametrize("name", ["builtin", pytest.param("tiny_sd", marks=pytest.mark.xfail(
    strict=True, reason="random UNet: its noise walk moves frames by 0.007, while any denoising at all (strength "
    "0 -> 0.01) moves them by 0.15; frames stay finite and non-black (asserted before the comparison)"))])
def test_strength_sweep_moves_no_more_than_a_noise_walk(sweep_models, name: str) -> None:
    """Strength 0 -> 1 -> 0 over 200 ticks: finite, non-black frames, no jump larger than a noise walk at
    0.05 rad/tick makes at the sweep's top strength (builtin: the sweep's largest step is 0.02, where the prompt's
    pattern starts to show near strength 0.04; the walk's is 0.11)."""
    model = sweep_models[name]
    size = (64, 64)
    img = np.random.default_rng(3).integers(40, 215, (size[1], size[0], 3), dtype=np.uint8)
    config = EngineConfig(size_px=size, sampler="dpmpp_2m", steps=4, cfg="none", mode="img2img")
    ramp = np.concatenate([np.linspace(0, 1, 100), np.linspace(1, 0, 100)])
    sweep = _largest_change(StreamEngine(model, config), [Conditioning(image=img, strength=float(s)) for s in ramp])
    walk = _largest_change(StreamEngine(model, config),
                           [Conditioning(image=img, strength=1.0, noise_walk=0.05 * k) for k in range(40)])
    assert sweep <= walk, (sweep, walk)


def test_sequential_sampler_and_stream_share_one_re_noise_convention() -> None:
    """samplers.sample(noises=the frame's noise set) gives the frame StreamEngine.render gives (lcm re-noises)."""
    from pipeline import samplers

    model = GaussianModel()
    eng = StreamEngine(model, EngineConfig(size_px=SIZE, sampler="lcm", steps=4, cfg="none"))
    cond = Conditioning(prompts=(("red", 1.0),), seeds=((7, 1.0),), noise_walk=0.3)
    noises, emb, table = eng._noise(cond), eng.prompt_embedding(cond), eng.table

    def model_x0(x: torch.Tensor, i: int) -> torch.Tensor:
        t = table.timesteps[i : i + 1].float()
        out = model(x, t, emb[None])
        return samplers.to_x0(out, x, table.alpha[i : i + 1], table.sigma[i : i + 1], model.prediction_type)

    latent = samplers.sample(model_x0, noises[:1], table, noises[:, None])
    assert float((model.decode(latent)[0].clamp(0, 1) - eng.render(cond)).abs().max()) <= 1e-5
    assert samplers.renoise_of(noises, 0) is not None and torch.equal(samplers.renoise_of(noises, 0), noises[1])
    assert samplers.renoise_of(noises, eng.slots - 1) is None
