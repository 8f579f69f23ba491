"""ControlNet on a live picture: matches diffusers' ControlNet pipeline, streams exactly, scale 0 is no ControlNet."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch

from pipeline.conditioning import Conditioning
from pipeline.controlnet import ControlledModel, canny, load_controlnet, preprocess_control
from pipeline.sd import load_sd
from pipeline.stream import EngineConfig, StreamEngine

W, H = 64, 48


def _picture() -> np.ndarray:
    """A bright disc on a dark ground, (H, W, 3) uint8."""
    yy, xx = np.mgrid[:H, :W]
    disc = ((yy - H / 2) ** 2 + (xx - W / 2) ** 2 < 15**2).astype(np.uint8) * 200 + 30
    return np.repeat(disc[:, :, None], 3, axis=2)


def test_canny_finds_the_outline_of_a_disc_and_nothing_inside() -> None:
    edges = canny(torch.from_numpy(_picture()).permute(2, 0, 1).float() / 255.0)[0]
    r = torch.hypot(*torch.meshgrid(torch.arange(H) - H / 2, torch.arange(W) - W / 2, indexing="ij"))
    assert set(torch.unique(edges).tolist()) == {0.0, 1.0}
    assert float(edges[(r - 15).abs() < 2].mean()) > 0.3, "the rim is an edge"
    assert float(edges[(r < 11) | (r > 19)].sum()) == 0.0, "flat areas hold no edges"


def _ddim(model, noise: torch.Tensor) -> torch.Tensor:
    cond, a, x, ts = model.encode_prompt("a red square")[None], model.alphas_cumprod, noise, [501, 1]
    for i, t in enumerate(ts):
        eps = model(x, torch.full((1,), float(t)), cond)
        a_t, a_prev = float(a[t]), float(a[ts[i + 1]]) if i + 1 < len(ts) else float(a[0])
        x = a_prev**0.5 * (x - (1 - a_t) ** 0.5 * eps) / a_t**0.5 + (1 - a_prev) ** 0.5 * eps
    return model.decode(x)


def test_controlled_frame_matches_diffusers_controlnet_pipeline(tiny_sd_model: Path, tiny_controlnet: Path) -> None:
    from diffusers import ControlNetModel, StableDiffusionControlNetPipeline, StableDiffusionPipeline

    base = load_sd(tiny_sd_model, device="cpu", progress=False)
    model = load_controlnet(base, tiny_controlnet)
    control = preprocess_control(_picture(), (W, H), "canny")
    model.set_control(control, 0.7)
    noise = torch.randn((1, *model.latent_shape((W, H))), generator=torch.Generator().manual_seed(3))
    ours = _ddim(model, noise)
    sd = StableDiffusionPipeline.from_pretrained(tiny_sd_model, local_files_only=True)
    pipe = StableDiffusionControlNetPipeline(
        vae=sd.vae, text_encoder=sd.text_encoder, tokenizer=sd.tokenizer, unet=sd.unet, scheduler=sd.scheduler,
        controlnet=ControlNetModel.from_pretrained(tiny_controlnet), safety_checker=None, feature_extractor=None,
        requires_safety_checker=False,
    )
    theirs = pipe("a red square", image=control, num_inference_steps=2, guidance_scale=1.0, height=H, width=W,
                  controlnet_conditioning_scale=0.7, latents=noise.clone(), output_type="pt").images
    assert float((ours - theirs).abs().max()) <= 1e-4
    plain = _ddim(base, noise)
    assert float((ours - plain).abs().max()) > 1e-3, "the control image must change the picture"
    model.set_control(scale=0.0)
    assert torch.equal(_ddim(model, noise), plain), "scale 0 is exactly the model without ControlNet"


def test_controlled_stream_equals_sequential(tiny_sd_model: Path, tiny_controlnet: Path) -> None:
    model = load_controlnet(load_sd(tiny_sd_model, device="cpu", progress=False), tiny_controlnet)
    model.set_control(preprocess_control(_picture(), (W, H), "none"), 1.0)
    engine = StreamEngine(model, EngineConfig(size_px=(W, H), sampler="lcm", steps=3, cfg="none", skip_static=False))
    cond = Conditioning(prompts=(("a red square", 1.0),), seeds=((2, 1.0),))
    frames = [engine.step(cond) for _ in range(4)]
    torch.testing.assert_close(frames[-1], engine.render(cond), atol=1e-5, rtol=0)


def test_bad_control_inputs_fail_clearly(tiny_sd_model: Path, tiny_controlnet: Path) -> None:
    model = load_controlnet(load_sd(tiny_sd_model, device="cpu", progress=False), tiny_controlnet)
    with pytest.raises(ValueError, match="control_scale"):
        model.set_control(scale=float("nan"))
    with pytest.raises(ValueError, match="control mode"):
        preprocess_control(_picture(), (W, H), "depth")
    with pytest.raises(ValueError, match="uint8"):
        preprocess_control(np.zeros((4, 4)), (W, H))
    assert isinstance(model, ControlledModel) and model.prediction_type == "epsilon"


def test_the_engine_hands_the_conditionings_control_picture_to_every_step(tiny_sd_model: Path,
                                                                         tiny_controlnet: Path) -> None:
    base = load_sd(tiny_sd_model, device="cpu", progress=False)
    config = EngineConfig(size_px=(W, H), sampler="lcm", steps=2, cfg="none")  # static skip on, as in a show
    plain = StreamEngine(base, config)
    engine = StreamEngine(load_controlnet(base, tiny_controlnet), config)
    cond = Conditioning(prompts=(("a red square", 1.0),), seeds=((2, 1.0),), control_mode="none")
    disc, flat = _picture(), np.full((H, W, 3), 90, np.uint8)
    off = [engine.step(replace(cond, control_image=disc, control_scale=0.0)) for _ in range(4)]
    assert all(torch.equal(a, plain.step(cond)) for a in off), "scale 0 in the conditioning is no ControlNet"
    on = [engine.step(replace(cond, control_image=disc)) for _ in range(6)]
    torch.testing.assert_close(on[-1], engine.render(replace(cond, control_image=disc)), atol=1e-5, rtol=0)
    assert float((on[-1] - off[-1]).abs().max()) > 1e-2
    skipped = engine.stats.skipped
    assert skipped > 0, "the same picture again (the same object): a static scene is skipped"
    new = [engine.step(replace(cond, control_image=flat)) for _ in range(3)]
    assert engine.stats.skipped == skipped, "a new control picture is never skipped as static"
    assert float((new[-1] - on[-1]).abs().max()) > 1e-3
    canny_ = [engine.step(replace(cond, control_image=flat, control_mode="canny")) for _ in range(3)]
    assert float((canny_[-1] - new[-1]).abs().max()) > 1e-3, "a new mode re-processes the same picture"


def test_the_worker_prepares_the_control_picture_once_on_the_pre_processing_thread(
        tiny_sd_model: Path, tiny_controlnet: Path) -> None:
    import threading

    from pipeline.worker import StreamWorker

    model = load_controlnet(load_sd(tiny_sd_model, device="cpu", progress=False), tiny_controlnet)
    engine = StreamEngine(model, EngineConfig(size_px=(W, H), sampler="lcm", steps=2, cfg="none"))
    frames: list[np.ndarray] = []
    got = threading.Event()

    def on_frame(frame: np.ndarray, info) -> None:
        frames.append(frame)
        if len(frames) >= 12:
            got.set()

    worker = StreamWorker(engine, on_frame)
    worker.start()
    picture = _picture()  # one still picture, handed over every tick as a show does
    try:
        for _ in range(400):
            worker.submit(Conditioning(prompts=(("a red square", 1.0),), control_image=picture))
            if got.wait(0.01):
                break
    finally:
        assert worker.stop(2.0)
    assert got.is_set() and worker.stats.errors == 0
    handed = worker._current[0].control_image
    assert isinstance(handed, torch.Tensor) and handed.shape == (1, 3, H, W), "prepared before inference"
    assert torch.equal(model.control_image, preprocess_control(picture, (W, H), "canny"))
    assert engine.stats.skipped > 0, "prepared once: the engine sees the same picture and skips static frames"
    assert np.array_equal(frames[-1], frames[-2])
