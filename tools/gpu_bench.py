"""GPU bench: one JSON line per configuration of full-size random-weight models (see tools/gpu_bench.sh).

python3 tools/gpu_bench.py [--preset sd-turbo,sdxl-turbo|sd15|tiny] [--budget-s 420] [--frames 30] [--size 512x512]

Configurations: turbo 1 step and lcm 4 steps; the model's VAE vs TAESD; eager vs torch.compile; each line holds the
stream (fps, frame_ms_median, overhead against one UNet call + one decode) and sequential sampling. float16 on CUDA,
float32 on the CPU. `--preset tiny` runs the same matrix on the tiny test model in seconds (proof it works end to end).
Configurations that no longer fit the time budget print {"skipped": ...} instead of running.
"""

from __future__ import annotations

import argparse
import gc
import itertools
import json
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout, no install needed

import torch  # noqa: E402

from pipeline.bench import run_bench  # noqa: E402
from pipeline.stream import EngineConfig  # noqa: E402

SAMPLERS = (("turbo", 1), ("lcm", 4))  # (sampler, steps)


def build(preset: str, device: torch.device, vae: str | None, compile: bool) -> Any:
    """The preset as a Denoiser: full-size presets in memory; 'tiny' is the test model with a random TAESD."""
    from pipeline.loading import load_model
    from pipeline.random_full import _random_taesd
    from pipeline.sd import SDModel

    if preset != "tiny":
        return load_model(f"random-sd:{preset}", device=device, vae=vae, compile=compile)
    if vae is None and not compile:
        return load_model("random-sd:tiny", device=device, progress=False)
    model = load_model("random-sd:tiny", device=device, progress=False, cpu_layers=False)  # rebuilt below: the
    # SDModel around its UNet swaps in the CPU layers itself (not when compiled: inductor packs its own)
    tiny_vae = torch.nn.Module.to(_random_taesd(device), device, model.dtype) if vae == "taesd" else model.vae
    return SDModel(name=model.name, unet=model.unet, text_encoder=model.text_encoder, tokenizer=model.tokenizer,
                   vae=tiny_vae, alphas_cumprod=model.alphas_cumprod, prediction_type=model.prediction_type,
                   defaults=model.defaults, device=model.device, dtype=model.dtype,
                   channels_last=model.channels_last, compile=compile)


def main(argv: list[str] | None = None) -> int:
    """Run the configuration matrix within the time budget; one JSON line each on stdout."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--preset", default="sd-turbo,sdxl-turbo", help="comma list of sd-turbo | sdxl-turbo | sd15 | tiny")
    ap.add_argument("--size", default=None, help="WxH (default 512x512; 64x64 for tiny)")
    ap.add_argument("--frames", type=int, default=30)
    ap.add_argument("--budget-s", type=float, default=420.0, help="stop starting configurations after this")
    ap.add_argument("--no-compile", action="store_true", help="skip the torch.compile configurations")
    args = ap.parse_args(argv)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    start = time.monotonic()
    compiles = (False,) if args.no_compile else (False, True)
    print(json.dumps({"gpu": torch.cuda.get_device_name() if device.type == "cuda" else None,
                      "torch": torch.__version__, "preset": args.preset}), flush=True)
    # eager configurations of every preset first: compiling is what the budget cuts when time runs short
    for compile, preset, vae in itertools.product(compiles, args.preset.split(","), (None, "taesd")):
        w, h = (int(v) for v in (args.size or ("64x64" if preset == "tiny" else "512x512")).split("x"))
        label = {"preset": preset, "vae": vae or "full", "compile": compile}
        if time.monotonic() - start > args.budget_s:
            print(json.dumps({**label, "skipped": "time budget"}), flush=True)
            continue
        try:
            t0 = time.monotonic()
            model = build(preset, device, vae, compile)
            build_s = time.monotonic() - t0
            for sampler, steps in SAMPLERS:
                if time.monotonic() - start > args.budget_s:
                    print(json.dumps({**label, "sampler": sampler, "skipped": "time budget"}), flush=True)
                    continue
                if device.type == "cuda":
                    torch.cuda.reset_peak_memory_stats()
                t1 = time.monotonic()
                result = run_bench(model, EngineConfig(size_px=(w, h), sampler=sampler, steps=steps, cfg="none"),
                                   frames=args.frames)
                mem = torch.cuda.max_memory_allocated() / 2**30 if device.type == "cuda" else None
                print(json.dumps({**label, **result, "build_s": round(build_s, 1),
                                  "bench_s": round(time.monotonic() - t1, 1),
                                  "gpu_mem_gib": None if mem is None else round(mem, 2)}), flush=True)
            del model
        except Exception as err:  # one failing configuration must not hide the others
            print(json.dumps({**label, "error": f"{type(err).__name__}: {err}"[:500]}), flush=True)
        gc.collect()
        if device.type == "cuda":
            torch.cuda.empty_cache()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
