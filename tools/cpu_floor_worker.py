"""One side of `tools/cpu_floor_compare.py`: loads a model once, then times stream frames on request.

    python tools/cpu_floor_worker.py --side livekit|streamdiffusion --model DIR [--size 256] [--dtype float32]
        [--threads 2] [--t-index 0,12,25,37]

The livekit side runs in livekit's environment; the streamdiffusion side in a separate one holding
streamdiffusion 0.1.1 (diffusers 0.24), used as a black box through its public `StreamDiffusion` class. After
loading and warming up, the worker prints one JSON line ({"ready": ...}), then answers each line "FRAMES" on stdin
with one JSON line of per-frame milliseconds, and exits on "quit" or end of input. While it waits it uses no CPU,
so the two sides never run at the same time.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from typing import Callable

import torch

LCM_STEPS = 4  # livekit's "--sampler lcm --steps 4": timesteps 999, 759, 499, 259 of the 50-step LCM grid
WARMUP_FRAMES = 5


def livekit_frame(model_dir: str, size: int, dtype: torch.dtype) -> tuple[Callable[[], object], dict]:
    """A function that makes one livekit stream frame (txt2img, lcm 4 steps, cfg none), and facts about it."""
    from pipeline import Conditioning, EngineConfig, StreamEngine, load_model

    model = load_model(model_dir, device="cpu", dtype=dtype, progress=False)
    engine = StreamEngine(model, EngineConfig(size_px=(size, size), sampler="lcm", steps=LCM_STEPS, cfg="none",
                                              skip_static=False))
    tick = [0]

    def frame() -> object:  # the noise walks every frame, as it does live (a new start noise per frame)
        tick[0] += 1
        return engine.step(Conditioning(prompts=(("neon rings", 1.0),), seeds=((0, 1.0),), noise_walk=0.01 * tick[0]))

    timesteps = [int(t) for t in engine.table.timesteps.tolist()]
    return frame, {"timesteps": timesteps, "batch_size": engine.batch_size}


def _load_text_encoder_weights(text_encoder: torch.nn.Module, model_dir: str) -> None:
    """transformers 5 saves CLIPTextModel without the "text_model." key prefix 4.36 expects: load the same weights."""
    from pathlib import Path

    from safetensors.torch import load_file

    state = load_file(str(Path(model_dir) / "text_encoder" / "model.safetensors"))
    state = {k if k.startswith("text_model.") else f"text_model.{k}": v for k, v in state.items()}
    missing, unexpected = text_encoder.load_state_dict(state, strict=False)
    if unexpected or any("position_ids" not in k for k in missing):
        raise RuntimeError(f"text encoder weights do not match: missing {missing}, unexpected {unexpected}")


def streamdiffusion_frame(model_dir: str, size: int, dtype: torch.dtype,
                          t_index: list[int]) -> tuple[Callable[[], object], dict]:
    """A function that makes one streamdiffusion 0.1.1 txt2img frame (stream batch, cfg none), and facts about it."""
    from diffusers import StableDiffusionPipeline
    from streamdiffusion import StreamDiffusion

    pipe = StableDiffusionPipeline.from_pretrained(model_dir, torch_dtype=dtype, local_files_only=True,
                                                   safety_checker=None, requires_safety_checker=False)
    _load_text_encoder_weights(pipe.text_encoder, model_dir)
    pipe = pipe.to(device="cpu", dtype=dtype)
    stream = StreamDiffusion(pipe, t_index_list=t_index, torch_dtype=dtype, width=size, height=size,
                             use_denoising_batch=True, frame_buffer_size=1, cfg_type="none")
    stream.prepare(prompt="neon rings", num_inference_steps=50, guidance_scale=1.0)
    timesteps = [int(t) for t in stream.sub_timesteps_tensor.tolist()]
    return stream.txt2img, {"timesteps": timesteps, "batch_size": int(stream.batch_size)}


def main() -> int:
    """Load, warm up, then answer timing requests on stdin."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--side", choices=("livekit", "streamdiffusion"), required=True)
    p.add_argument("--model", required=True, help="a diffusers StableDiffusionPipeline folder")
    p.add_argument("--size", type=int, default=256)
    p.add_argument("--dtype", choices=("float32", "bfloat16"), default="float32")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--t-index", default="0,12,25,37", help="streamdiffusion's t_index_list into the 50-step grid")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    dtype = {"float32": torch.float32, "bfloat16": torch.bfloat16}[args.dtype]
    if args.side == "livekit":
        frame, facts = livekit_frame(args.model, args.size, dtype)
    else:
        frame, facts = streamdiffusion_frame(args.model, args.size, dtype, [int(i) for i in args.t_index.split(",")])
    with torch.inference_mode():
        for _ in range(WARMUP_FRAMES):
            frame()
    versions = {"torch": torch.__version__}
    if args.side == "streamdiffusion":
        import diffusers

        versions["diffusers"] = diffusers.__version__
    print(json.dumps({"ready": args.side, "threads": torch.get_num_threads(), **facts, **versions}), flush=True)
    for line in sys.stdin:
        line = line.strip()
        if line == "quit":
            break
        ms = []
        with torch.inference_mode():
            for _ in range(int(line)):
                t0 = time.perf_counter()
                frame()
                ms.append((time.perf_counter() - t0) * 1000.0)
        print(json.dumps({"frame_ms": ms}), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
