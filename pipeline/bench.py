"""Benchmark of the stream against its floor (one model call at the stream batch + one decode) and sequential."""

from __future__ import annotations

import statistics
import time
from dataclasses import replace
from typing import Any, Callable

import torch

from pipeline.conditioning import Conditioning
from pipeline.protocol import Denoiser
from pipeline.stream import EngineConfig, StreamEngine


class _Timer:
    """Wall-clock milliseconds of a callable; CUDA events on CUDA, perf_counter elsewhere."""

    def __init__(self, device: torch.device) -> None:
        self.cuda = device.type == "cuda"

    def __call__(self, fn: Callable[[], Any]) -> float:
        if self.cuda:
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record()
            fn()
            end.record()
            torch.cuda.synchronize()
            return float(start.elapsed_time(end))
        t0 = time.perf_counter()
        fn()
        return (time.perf_counter() - t0) * 1000.0


def run_bench(model: Denoiser, config: EngineConfig, prompt: str = "neon rings", frames: int = 30,
              warmup: int = 3, sequential_frames: int = 5) -> dict[str, Any]:
    """Median frame time of the stream, of its floor and of sequential sampling, all measured in this one run."""
    warmup, sequential_frames = min(warmup, frames), min(sequential_frames, frames)  # full-size models on a CPU
    engine = StreamEngine(model, replace(config, skip_static=False))
    timer = _Timer(model.device)
    tick = [0]

    def cond() -> Conditioning:  # the noise walks every frame, as it does live
        tick[0] += 1
        return Conditioning(prompts=((prompt, 1.0),), negative_prompt="", seeds=((0, 1.0),),
                            noise_walk=0.01 * tick[0], guidance=1.5 if engine.config.cfg != "none" else 1.0)

    for _ in range(warmup):
        engine.step(cond())
    c = engine.config
    emb = engine.prompt_embedding(cond())
    b = engine.batch_size
    x = torch.randn((b, *engine.latent_shape), generator=torch.Generator().manual_seed(1)).to(model.device, model.dtype)
    t_slots = engine.table.timesteps.float()  # (N,) the timesteps one stream step feeds the model
    t = torch.cat([t_slots, t_slots])[:b]
    embs = emb.expand(b, *emb.shape).contiguous()

    @torch.inference_mode()
    def floor() -> None:
        model(x, t, embs)
        model.decode(x[:1])

    frame_ms, floor_ms = [], []
    for _ in range(frames):  # interleaved so both see the same machine load
        now = cond()  # the conditioning is the sketch's work (built before the engine sees it live), not the engine's
        frame_ms.append(timer(lambda: engine.step(now)))
        floor_ms.append(timer(floor))
    seq_ms = [timer(lambda: engine.render(cond())) for _ in range(sequential_frames)]
    frame, fl, seq = statistics.median(frame_ms), statistics.median(floor_ms), statistics.median(seq_ms)
    w, h = c.size_px
    frame, fl, seq = round(frame, 4), round(fl, 4), round(seq, 4)  # ratios agree with the printed medians
    return {
        "model": getattr(model, "name", type(model).__name__),
        "size": f"{w}x{h}",
        "sampler": c.sampler,
        "steps": engine.slots,
        "cfg": c.cfg,
        "batch_size": b,
        "device": str(model.device),
        "dtype": str(model.dtype).replace("torch.", ""),
        "threads": torch.get_num_threads(),
        "frames": frames,
        "fps": round(1000.0 / frame, 2),
        "frame_ms_median": frame,
        "floor_ms_median": fl,
        "overhead": round(frame / fl, 4),
        "sequential_ms_median": seq,
        "speedup_vs_sequential": round(seq / frame, 3),
    }
