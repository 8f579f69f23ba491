"""The stream batch: exactness against sequential sampling, guidance batch sizes, live updates, skips."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from pipeline.conditioning import Conditioning
from pipeline.stream import EngineConfig, StreamEngine, to_uint8
from tests.pipeline.gaussian import GaussianModel

SIZE = (64, 48)


def _engine(sampler: str, steps: int = 4, cfg: str = "none", **kw) -> StreamEngine:
    return StreamEngine(GaussianModel(), EngineConfig(size_px=SIZE, sampler=sampler, steps=steps, cfg=cfg, **kw))


@pytest.mark.parametrize("sampler", ["ddim", "dpmpp_2m"])
@pytest.mark.parametrize("cfg", ["none", "full", "self", "onetime"])
def test_every_stream_frame_equals_sequential_sampling(sampler: str, cfg: str) -> None:
    """Deterministic samplers: each output equals the sequential run from the noise its frame entered with."""
    eng = _engine(sampler, 4, cfg)
    ref = _engine(sampler, 4, cfg)
    conds = [Conditioning(prompts=(("red", 1.0),), negative_prompt="blur", seeds=((3, 1.0),), noise_walk=0.1 * k,
                          guidance=1.7, delta=0.8) for k in range(10)]
    for k, cond in enumerate(conds):
        frame = eng.step(cond)
        entered = conds[max(0, k - eng.slots)]  # the first N outputs are the pre-filled frames
        expected = ref.render(entered)
        assert float((frame - expected).abs().max()) <= 1e-5, (k, float((frame - expected).abs().max()))


@pytest.mark.parametrize("sampler, kw", [("turbo", {"steps": 3}), ("lcm", {"steps": 4}),
                                          ("lcm", {"t_index_list": (0, 16, 32, 45)})])
def test_renoising_samplers_stream_equals_sequential(sampler: str, kw: dict) -> None:
    eng = StreamEngine(GaussianModel(),
                       EngineConfig(size_px=SIZE, sampler=sampler, cfg="none", skip_static=False, **kw))
    cond = Conditioning(prompts=(("red", 1.0),), seeds=((5, 1.0),))
    expected = eng.render(cond)
    for _ in range(2 * eng.slots):
        assert float((eng.step(cond) - expected).abs().max()) <= 1e-5


@pytest.mark.parametrize("cfg, batch", [("none", 4), ("full", 8), ("self", 4), ("onetime", 5)])
def test_one_model_call_per_step_with_the_documented_batch(cfg: str, batch: int) -> None:
    eng = _engine("lcm", 4, cfg)
    cond = Conditioning(prompts=(("red", 1.0),), guidance=1.5, noise_walk=0.0)
    eng.step(cond)  # includes the pre-fill
    calls_before = eng.stats.model_calls
    for k in range(5):
        eng.step(Conditioning(prompts=(("red", 1.0),), guidance=1.5, noise_walk=0.01 * (k + 1)))
    assert eng.stats.model_calls - calls_before == 5
    assert list(eng.stats.batch_sizes)[-5:] == [batch] * 5
    assert eng.batch_size == batch


def test_prefill_means_the_first_frame_is_finished() -> None:
    eng = _engine("dpmpp_2m", 4)
    cond = Conditioning(prompts=(("blue", 1.0),), seeds=((1, 1.0),))
    first = eng.step(cond)
    assert eng.stats.prefill_calls == 3 and eng.stats.model_calls == 4
    assert torch.equal(first, _engine("dpmpp_2m", 4).render(cond))
    assert eng.latency_frames == 4


def test_conditioning_changes_do_not_refill_and_take_full_effect_after_latency_frames() -> None:
    eng = _engine("dpmpp_2m", 4)
    red = Conditioning(prompts=(("red", 1.0),), seeds=((1, 1.0),))
    blue = Conditioning(prompts=(("blue", 1.0),), seeds=((2, 1.0),), guidance=2.0)
    for _ in range(6):
        eng.step(red)
    prefill = eng.stats.prefill_calls
    outs = [eng.step(blue) for _ in range(eng.latency_frames + 1)]
    assert eng.stats.prefill_calls == prefill  # no reset
    target = _engine("dpmpp_2m", 4).render(blue)
    assert not torch.allclose(outs[0], target, atol=1e-3)  # partial effect at first
    assert float((outs[eng.latency_frames] - target).abs().max()) <= 1e-5


def test_reconfigure_rebuilds_and_refills_without_garbage() -> None:
    eng = _engine("dpmpp_2m", 4)
    cond = Conditioning(prompts=(("red", 1.0),), seeds=((9, 1.0),))
    eng.step(cond)
    eng.configure(EngineConfig(size_px=(32, 32), sampler="ddim", steps=6))
    frame = eng.step(cond)
    expected = StreamEngine(GaussianModel(), EngineConfig(size_px=(32, 32), sampler="ddim", steps=6)).render(cond)
    assert frame.shape == (3, 32, 32) and float((frame - expected).abs().max()) <= 1e-5


def test_same_seed_same_frame_and_seed_blend_keeps_noise_norm() -> None:
    cond = Conditioning(prompts=(("red", 1.0),), seeds=((11, 0.3), (12, 0.7)), noise_walk=0.4)
    a, b = _engine("lcm").step(cond), _engine("lcm").step(cond)
    assert torch.equal(a, b)
    eng = _engine("lcm")
    n1 = eng._noise(Conditioning(seeds=((11, 1.0),)))
    n2 = eng._noise(Conditioning(seeds=((12, 1.0),)))
    n3 = eng._noise(Conditioning(seeds=((13, 1.0),)))
    mix = eng._noise(Conditioning(seeds=((11, 0.5), (12, 0.5))))
    assert float(mix.norm()) == pytest.approx(float((n1.norm() + n2.norm()) / 2), rel=1e-6)
    mix = eng._noise(Conditioning(seeds=((11, 0.2), (12, 0.5), (13, 0.3))))
    assert float(mix.norm()) == pytest.approx(float(0.2 * n1.norm() + 0.5 * n2.norm() + 0.3 * n3.norm()), rel=1e-6)
    assert torch.allclose(eng._noise(Conditioning(seeds=((11, 1.0), (12, 0.0)))), n1)
    walked = eng._noise(Conditioning(seeds=((11, 1.0),), noise_walk=1.0))
    assert float(walked.norm()) == pytest.approx(float(n1.norm()), rel=1e-9)
    assert not torch.allclose(walked, n1)


def test_static_txt2img_is_skipped_and_counted() -> None:
    eng = _engine("lcm", 4)
    cond = Conditioning(prompts=(("red", 1.0),))
    frames = [eng.step(cond) for _ in range(12)]
    assert eng.stats.skipped == 12 - 1  # after the pre-fill every frame in flight is the same frame
    assert all(torch.equal(f, frames[0]) for f in frames)
    moved = Conditioning(prompts=(("red", 1.0),), noise_walk=0.5)
    frames = [eng.step(moved) for _ in range(eng.slots + 4)]
    assert eng.stats.computed == 1 + eng.slots + 1  # N+1 computed steps flush the stream, then skips again
    assert torch.equal(frames[-1], _engine("lcm", 4).render(moved))


def test_img2img_similarity_filter_skips_repeated_input_only() -> None:
    eng = StreamEngine(GaussianModel(), EngineConfig(size_px=SIZE, sampler="lcm", steps=2, mode="img2img",
                                                     similarity_threshold=0.95, max_skip_frames=3))
    rng = np.random.default_rng(0)
    still = rng.integers(0, 255, (SIZE[1], SIZE[0], 3), dtype=np.uint8)
    for _ in range(12):
        eng.step(Conditioning(image=still, strength=0.6))
    assert eng.stats.skipped >= 6  # identical input: skipped up to max_skip_frames in a row
    skipped = eng.stats.skipped
    for _ in range(6):
        eng.step(Conditioning(image=rng.integers(0, 255, (SIZE[1], SIZE[0], 3), dtype=np.uint8), strength=0.6))
    assert eng.stats.skipped == skipped


def test_img2img_strength_keeps_the_input_and_feedback_runs() -> None:
    model = GaussianModel()
    eng = StreamEngine(model, EngineConfig(size_px=SIZE, sampler="ddim", steps=2, mode="img2img"))
    img = np.zeros((SIZE[1], SIZE[0], 3), dtype=np.uint8)
    img[..., 0] = 230
    low = to_uint8(eng.step(Conditioning(image=img, strength=0.05)))
    assert low[..., 0].mean() > 150  # a light touch keeps the red input
    fb = StreamEngine(model, EngineConfig(size_px=SIZE, sampler="ddim", steps=2, mode="feedback"))
    outs = [fb.step(Conditioning(image=img, strength=0.3, noise_walk=0.1 * k)) for k in range(4)]
    assert all(o.shape == (3, SIZE[1], SIZE[0]) for o in outs)


def test_to_uint8_layout() -> None:
    img = torch.zeros(3, 4, 5)
    img[1] = 1.0
    out = to_uint8(img)
    assert out.shape == (4, 5, 3) and out.dtype == np.uint8 and out[0, 0].tolist() == [0, 255, 0]


def test_bad_engine_config_fails_at_the_edge() -> None:
    with pytest.raises(ValueError, match="multiples of 8"):
        _engine("lcm", size_px=(50, 50)) if False else StreamEngine(GaussianModel(), EngineConfig(size_px=(50, 50)))
    with pytest.raises(ValueError, match="cfg must be one of"):
        _engine("lcm", 4, "double")


@pytest.mark.parametrize("cfg", ["full", "onetime"])
def test_negative_prompt_pushes_away_in_txt2img(cfg: str) -> None:
    """With the Gaussian model the embedding shifts the data mean: a negative prompt moves frames the other way."""
    model = GaussianModel()
    shift = float(model.encode_prompt("warm").mean())

    def mean_for(negative: str) -> float:
        eng = StreamEngine(model, EngineConfig(size_px=SIZE, sampler="ddim", steps=4, cfg=cfg))
        cond = Conditioning(prompts=(("", 1.0),), negative_prompt=negative, seeds=((1, 1.0),), guidance=3.0)
        return float(torch.logit(eng.step(cond)[:, 0].clamp(1e-6, 1 - 1e-6)).mean())

    plain, away = mean_for(""), mean_for("warm")
    assert (away - plain) * shift < 0 and abs(away - plain) > 0.1 * abs(shift)


def test_a_still_input_image_does_not_freeze_moving_knobs() -> None:
    eng = StreamEngine(GaussianModel(), EngineConfig(size_px=SIZE, sampler="lcm", steps=2, mode="img2img",
                                                     similarity_threshold=0.9, max_skip_frames=10))
    still = np.full((SIZE[1], SIZE[0], 3), 128, dtype=np.uint8)
    for k in range(8):  # same picture, but the noise walk moves every frame
        eng.step(Conditioning(image=still, strength=0.6, noise_walk=0.1 * k))
    assert eng.stats.skipped == 0
    for _ in range(8):  # same picture, knobs still: the similarity filter may skip
        eng.step(Conditioning(image=still, strength=0.6, noise_walk=0.7))
    assert eng.stats.skipped > 0


@pytest.mark.parametrize("sampler", ["ddim", "dpmpp_2m"])
def test_plain_step_gives_the_frames_of_the_general_step(sampler: str) -> None:
    """The default configuration's lean step (`_advance_plain`) and the general one give identical frames while the
    walk moves, stops, and the seed blend and prompt mix change."""
    from pipeline.builtin import load_builtin

    plain, general = (StreamEngine(load_builtin(), EngineConfig(size_px=(64, 64), sampler=sampler, steps=4))
                      for _ in "pg")
    assert plain._plain and general._plain
    general._plain = False
    for k in range(14):
        cond = Conditioning(prompts=(("neon rings", 1.0), ("ocean waves", 0.1 * k)), seeds=((3, 1.0), (4, k / 13)),
                            noise_walk=0.0 if k in (5, 6, 7) else 0.13 * k, motion_phase=0.05 * k)
        assert torch.equal(plain.step(cond), general.step(cond)), k
    assert plain.stats.computed == general.stats.computed == 14


@pytest.mark.parametrize("sampler", ["ddim", "dpmpp_2m"])
def test_thresholded_stream_equals_the_x0_form_solver(sampler: str) -> None:
    """Dynamic thresholding acts on x0 while the stream carries alpha x0: a stream frame equals DPM-Solver++ written
    out in x0 (x_next = a x + b (x0 + d (x0 - x0_prev)), x0 thresholded), from the noise the frame entered with."""
    from pipeline.samplers import dynamic_threshold
    from pipeline.schedule import SchedulerSettings

    model = GaussianModel(mu=1.5, s=0.8)  # a data scale that the 0.9-quantile threshold clips
    model.scheduler_settings = SchedulerSettings(thresholding=True, dynamic_thresholding_ratio=0.9)
    eng = StreamEngine(model, EngineConfig(size_px=SIZE, sampler=sampler, steps=4, cfg="none", skip_static=False))
    assert eng.table.threshold is not None and not eng._plain
    cond = Conditioning(prompts=(("red", 1.0),), seeds=((2, 1.0),))
    frame = eng.step(cond)  # the first output: the pre-filled frame that entered with cond's noise
    tab, emb = eng.table, eng.prompt_embedding(cond)
    x, x0_prev = eng._noise(cond)[:1], None
    for i in range(tab.slots):
        eps = model(x, tab.timesteps[i:i + 1], emb[None])
        x0 = dynamic_threshold((x - tab.sigma[i] * eps) / tab.alpha[i], *tab.threshold)
        d = tab.d[i] if x0_prev is not None and sampler == "dpmpp_2m" else 0.0
        x = tab.a[i] * x + tab.b[i] * (x0 + d * (x0 - (x0 if x0_prev is None else x0_prev)))
        x0_prev = x0
    expected = model.decode(x)[0].clamp(0, 1)
    assert float((frame - expected).abs().max()) <= 1e-6
    assert float((frame - eng.render(cond)).abs().max()) <= 1e-6
