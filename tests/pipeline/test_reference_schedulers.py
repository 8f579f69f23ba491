"""Our sequential samplers against diffusers' schedulers on the tiny SD pipeline, with identical noise."""

from __future__ import annotations

import pytest
import torch

from pipeline import Conditioning, EngineConfig, StreamEngine, load_model


@pytest.fixture(scope="module")
def sd(tiny_sd_model):
    return load_model(str(tiny_sd_model), device="cpu", dtype=torch.float32)


def _reference(sd, scheduler, timesteps: list[int] | None, steps: int, noise: torch.Tensor, emb: torch.Tensor,
               step_noises: list[torch.Tensor] | None = None) -> torch.Tensor:
    if timesteps is None:
        scheduler.set_timesteps(steps)
    else:
        scheduler.set_timesteps(timesteps=timesteps)
    x = noise.clone() * scheduler.init_noise_sigma
    with torch.inference_mode():
        for k, t in enumerate(scheduler.timesteps):
            out = sd(scheduler.scale_model_input(x, t), t.float().view(1), emb[None])
            kwargs = {}
            if step_noises is not None:  # LCMScheduler draws its re-noise from a generator: feed ours instead
                kwargs["generator"] = None
                torch.manual_seed(0)
            x = scheduler.step(out, t, x, **kwargs).prev_sample if step_noises is None else _lcm_step(
                scheduler, out, t, x, step_noises[k])
    return x


def _lcm_step(scheduler, out, t, x, noise):
    """LCMScheduler.step with its re-noise replaced by our slot noise (diffusers draws it from randn)."""
    import diffusers.schedulers.scheduling_lcm as lcm_mod

    original = lcm_mod.randn_tensor
    lcm_mod.randn_tensor = lambda *a, **k: noise.clone()
    try:
        return scheduler.step(out, t, x).prev_sample
    finally:
        lcm_mod.randn_tensor = original


def _ours(sd, config: EngineConfig, cond: Conditioning) -> torch.Tensor:
    """Our final latent for the frame, sampled sequentially (StreamEngine.render without the decode)."""
    engine = StreamEngine(sd, config)
    decoded = {}
    original = sd.decode
    sd.decode = lambda lat: decoded.setdefault("latent", lat.clone()) * 0 + 0.5
    try:
        engine.render(cond)
    finally:
        sd.decode = original
    return decoded["latent"], engine


# DDIMScheduler moves to t - 1000 // steps rather than to its next listed timestep, which differ when steps does
# not divide 1000 (6 steps: it lands on 833 and then evaluates 832); so the comparison uses divisors of 1000.
@pytest.mark.parametrize("steps", [2, 4, 5, 8])
def test_ddim_matches_diffusers_ddim(sd, tiny_sd_model, steps: int) -> None:
    from diffusers import DDIMScheduler

    sd_path = tiny_sd_model
    cond = Conditioning(prompts=(("a red cat", 1.0),), seeds=((3, 1.0),))
    ours, engine = _ours(sd, EngineConfig(size_px=(64, 64), sampler="ddim", steps=steps, cfg="none"), cond)
    # the checkpoint's own config (the tiny fixture ships set_alpha_to_one=False), with livekit's trailing spacing
    sched = DDIMScheduler.from_pretrained(str(sd_path), subfolder="scheduler", timestep_spacing="trailing")
    assert sched.config.set_alpha_to_one is False
    noise = engine._noise(cond)[:1]
    ref = _reference(sd, sched, None, steps, noise, engine.prompt_embedding(cond))
    assert [int(t) for t in sched.timesteps] == engine.table.timesteps.long().tolist()
    assert float((ours - ref).abs().max()) <= 1e-4


@pytest.mark.parametrize("steps", [2, 4, 8])
def test_dpmpp_2m_matches_diffusers_dpm_solver_multistep(sd, steps: int) -> None:
    from diffusers import DPMSolverMultistepScheduler

    cond = Conditioning(prompts=(("a blue dog", 1.0),), seeds=((4, 1.0),))
    ours, engine = _ours(sd, EngineConfig(size_px=(64, 64), sampler="dpmpp_2m", steps=steps, cfg="none"), cond)
    sched = DPMSolverMultistepScheduler(beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear",
                                        algorithm_type="dpmsolver++", solver_order=2, solver_type="midpoint",
                                        timestep_spacing="trailing", final_sigmas_type="zero")
    noise = engine._noise(cond)[:1]
    ref = _reference(sd, sched, None, steps, noise, engine.prompt_embedding(cond))
    assert [int(t) for t in sched.timesteps] == engine.table.timesteps.long().tolist()
    assert float((ours - ref).abs().max()) <= 1e-4


@pytest.mark.parametrize("kw", [{"steps": 4}, {"t_index_list": (0, 16, 32, 45)}])
def test_lcm_matches_diffusers_lcm_with_the_same_noise(sd, kw: dict) -> None:
    from diffusers import LCMScheduler

    cond = Conditioning(prompts=(("green waves", 1.0),), seeds=((5, 1.0),))
    ours, engine = _ours(sd, EngineConfig(size_px=(64, 64), sampler="lcm", cfg="none", **kw), cond)
    sched = LCMScheduler(beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear")
    noises = engine._noise(cond)  # (N, C, h, w): [0] start, [i] re-noise into slot i
    steps = engine.slots
    timesteps = engine.table.timesteps.long().tolist()
    if "steps" in kw:
        sched.set_timesteps(steps)
        assert [int(t) for t in sched.timesteps] == timesteps
    ref = _reference(sd, sched, timesteps, steps, noises[:1], engine.prompt_embedding(cond),
                     step_noises=[noises[i + 1 : i + 2] if i + 1 < steps else noises[:1] for i in range(steps)])
    assert float((ours - ref).abs().max()) <= 1e-4


@pytest.mark.parametrize("spacing", ["karras", "logsnr"])
def test_karras_and_logsnr_pass_rounded_timesteps_like_diffusers(sd, spacing: str) -> None:
    """diffusers rounds Karras / Lu-lambda timesteps for the UNet and keeps the continuous sigmas for the solver."""
    from diffusers import DPMSolverMultistepScheduler

    cond = Conditioning(prompts=(("a blue dog", 1.0),), seeds=((4, 1.0),))
    ours, engine = _ours(sd, EngineConfig(size_px=(64, 64), sampler="dpmpp_2m", steps=6, spacing=spacing, cfg="none"),
                         cond)
    assert torch.equal(engine.table.timesteps, engine.table.timesteps.round())
    sched = DPMSolverMultistepScheduler(beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear",
                                        algorithm_type="dpmsolver++", solver_order=2, solver_type="midpoint",
                                        final_sigmas_type="zero", use_karras_sigmas=spacing == "karras",
                                        use_lu_lambdas=spacing == "logsnr")
    noise = engine._noise(cond)[:1]
    ref = _reference(sd, sched, None, 6, noise, engine.prompt_embedding(cond))
    assert [int(t) for t in sched.timesteps] == engine.table.timesteps.long().tolist()
    assert float((ours - ref).abs().max()) <= 1e-3 * float(ref.abs().max())
