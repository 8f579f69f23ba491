"""SDXL through load_model and the StreamEngine: matches diffusers' SDXL pipeline, streams exactly, fails clearly."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch

from pipeline.conditioning import Conditioning
from pipeline.loading import load_model
from pipeline.sdxl import TOKENS, SDXLModel
from pipeline.stream import EngineConfig, StreamEngine


@pytest.fixture(scope="module")
def tiny_sdxl(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny random-weight SDXL pipeline folder."""
    from pipeline.random_sdxl import build_random_sdxl

    return build_random_sdxl(tmp_path_factory.mktemp("tiny_sdxl") / "pipe")


@pytest.fixture(scope="module")
def model(tiny_sdxl: Path) -> SDXLModel:
    return load_model(tiny_sdxl, device="cpu", progress=False)


@pytest.fixture(scope="module")
def pipe(tiny_sdxl: Path):
    from diffusers import StableDiffusionXLPipeline

    return StableDiffusionXLPipeline.from_pretrained(tiny_sdxl, local_files_only=True)


def test_load_model_gives_an_sdxl_model_whose_embedding_packs_tokens_and_pooled(model: SDXLModel, pipe) -> None:
    assert isinstance(model, SDXLModel)
    emb = model.encode_prompt("a red square")
    tokens, _, pooled, _ = pipe.encode_prompt("a red square", device="cpu", do_classifier_free_guidance=False)
    assert emb.shape == (TOKENS + 1, 48)
    torch.testing.assert_close(emb[:TOKENS], tokens[0])
    torch.testing.assert_close(emb[TOKENS, : model.pooled_dim], pooled[0])
    assert float(emb[TOKENS, model.pooled_dim:].abs().max()) == 0.0
    assert float(model.encode_prompt("").abs().max()) == 0.0, "force_zeros_for_empty_prompt"


def test_sequential_ddim_frame_matches_diffusers_sdxl_pipeline(model: SDXLModel, pipe) -> None:
    width, height = 64, 48
    noise = torch.randn((1, *model.latent_shape((width, height))), generator=torch.Generator().manual_seed(3))
    cond = model.encode_prompt("a red square")[None]
    a = model.alphas_cumprod
    x, timesteps = noise, [501, 1]  # diffusers' DDIM grid for 2 steps (leading, steps_offset 1)
    for i, t in enumerate(timesteps):  # deterministic DDIM written from the paper, on the protocol surface
        eps = model(x, torch.full((1,), float(t)), cond)
        a_t, a_prev = float(a[t]), float(a[timesteps[i + 1]]) if i + 1 < len(timesteps) else float(a[0])
        x0 = (x - (1 - a_t) ** 0.5 * eps) / a_t**0.5
        x = a_prev**0.5 * x0 + (1 - a_prev) ** 0.5 * eps
    ours = model.decode(x)
    theirs = pipe("a red square", num_inference_steps=2, guidance_scale=1.0, height=height, width=width,
                  latents=noise.clone(), output_type="pt").images
    assert ours.shape == (1, 3, height, width) and float(ours.std()) > 1e-3
    assert float((ours - theirs).abs().max()) <= 1e-4


@pytest.mark.parametrize("sampler, steps", [("lcm", 3), ("dpmpp_2m", 3)])
def test_sdxl_stream_equals_sequential_and_blending_moves_the_pooled_embedding(model: SDXLModel, sampler: str,
                                                                               steps: int) -> None:
    engine = StreamEngine(model, EngineConfig(size_px=(64, 64), sampler=sampler, steps=steps, cfg="none",
                                              skip_static=False))
    cond = Conditioning(prompts=(("a red square", 0.6), ("blue rings", 0.4)), seeds=((5, 1.0),))
    frames = [engine.step(cond) for _ in range(steps + 1)]
    torch.testing.assert_close(frames[-1], engine.render(cond), atol=1e-5, rtol=0)
    blend = engine.prompt_embedding(cond)[TOKENS]
    a, b = model.encode_prompt("a red square")[TOKENS], model.encode_prompt("blue rings")[TOKENS]
    assert float((blend - a).abs().max()) > 1e-4 and float((blend - b).abs().max()) > 1e-4


def test_refiner_and_inpainting_sdxl_fail_with_a_clear_error(tiny_sdxl: Path, tmp_path: Path) -> None:
    refiner = tmp_path / "refiner"
    shutil.copytree(tiny_sdxl, refiner)
    index = json.loads((refiner / "model_index.json").read_text())
    (refiner / "model_index.json").write_text(json.dumps({**index, "requires_aesthetics_score": True}))
    with pytest.raises(ValueError, match="refiner"):
        load_model(refiner, device="cpu")
    inpaint = tmp_path / "inpaint"
    shutil.copytree(tiny_sdxl, inpaint)
    config = json.loads((inpaint / "unet" / "config.json").read_text())
    (inpaint / "unet" / "config.json").write_text(json.dumps({**config, "in_channels": 9}))
    with pytest.raises(ValueError, match="inpainting"):
        load_model(inpaint, device="cpu")
