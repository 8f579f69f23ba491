"""livekit against streamdiffusion 0.1.1 on the CPU: frames/s of the same random SD model, measured back to back.

    python tools/cpu_floor_compare.py [--sd-python /tmp/sdvenv/bin/python] [--repeats 12] [--frames 6]
        [--threads 2] [--size 256] [--dtype float32|bfloat16] [--livekit-before DIR]

Builds livekit's `random-sd:small` architecture (pipeline.random_sd.SMALL_SD) into a temporary folder, so both
sides load the same weights, and starts one worker per side (tools/cpu_floor_worker.py): livekit in this
environment, streamdiffusion in the Python given by --sd-python (a separate venv, see tools/README.md:
streamdiffusion 0.1.1 pins diffusers 0.24, which needs transformers 4.36 and huggingface_hub < 0.26), and with
--livekit-before another livekit checkout (e.g. `git archive HEAD | tar -x -C DIR`) as a third side. All run
txt2img at SIZExSIZE, LCM 4 steps (streamdiffusion's t_index_list 0,12,25,37 = livekit's timesteps 999, 759, 499,
259), cfg none, stream batch 4, the same thread count, no post-processing. The workers take turns, each timing
--frames frames while the others wait (the order rotates and reverses every round), so machine load falls on all
of them. Prints one JSON line per side (fps per round from its median frame time, and their median) and one per
livekit side with the ratio to streamdiffusion: the median of the per-round ratios.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

WORKER = Path(__file__).with_name("cpu_floor_worker.py")


class Worker:
    """One side's worker process: started once, asked for a number of timed frames at a time."""

    def __init__(self, name: str, side: str, python: str, model: Path, args: argparse.Namespace,
                 pythonpath: str | None = None) -> None:
        cmd = [python, str(WORKER), "--side", side, "--model", str(model), "--size", str(args.size),
               "--dtype", args.dtype, "--threads", str(args.threads)]
        env = dict(os.environ)
        if pythonpath:  # another livekit checkout (--livekit-before) comes first on the path
            env["PYTHONPATH"] = os.pathsep.join(filter(None, [pythonpath, env.get("PYTHONPATH")]))
        self.name = name
        self.log = tempfile.TemporaryFile(mode="w+")  # the libraries' warnings; shown if the worker fails
        self.proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self.log, text=True,
                                     bufsize=1, env=env)
        self.facts = self._read()

    def _read(self) -> dict:
        """The next JSON line the worker prints (its warnings go to stderr)."""
        line = self.proc.stdout.readline()
        if not line:
            code = self.proc.wait()
            self.log.seek(0)
            tail = "".join(self.log.readlines()[-15:])
            raise RuntimeError(f"the {self.name} worker exited (code {code}):\n{tail}")
        return json.loads(line)

    def fps(self, frames: int) -> float:
        """Frames per second of `frames` timed frames, from their median frame time (robust to a stray stall)."""
        self.proc.stdin.write(f"{frames}\n")
        ms = self._read()["frame_ms"]
        return 1000.0 / statistics.median(ms)

    def close(self) -> None:
        """Ask the worker to quit and wait for it."""
        if self.proc.poll() is None:
            self.proc.stdin.write("quit\n")
            self.proc.stdin.flush()
            self.proc.wait(timeout=30)


def main() -> int:
    """Build the model, run the rounds, print the JSON lines."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--sd-python", default="/tmp/sdvenv/bin/python", help="Python of the streamdiffusion venv")
    p.add_argument("--livekit-before", default=None, metavar="DIR",
                   help="also time another livekit checkout (e.g. an unpacked `git archive`), as livekit-before")
    p.add_argument("--repeats", type=int, default=12, help="rounds; each times every side once")
    p.add_argument("--frames", type=int, default=6, help="timed frames per side per round")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--size", type=int, default=256)
    p.add_argument("--dtype", choices=("float32", "bfloat16"), default="float32")
    args = p.parse_args()

    from pipeline.random_sd import SMALL_SD, build_random_sd, write_clip_tokenizer

    with tempfile.TemporaryDirectory(prefix="livekit-floor-") as tmp:
        model = build_random_sd(Path(tmp) / "random-sd-small", SMALL_SD)
        write_clip_tokenizer(model / "tokenizer")  # the slow-tokenizer files transformers 4.36 reads (same vocab)
        workers = [Worker("livekit", "livekit", sys.executable, model, args)]
        workers.append(Worker("streamdiffusion", "streamdiffusion", args.sd_python, model, args))
        if args.livekit_before:
            workers.append(Worker("livekit-before", "livekit", sys.executable, model, args, args.livekit_before))
        fps: dict[str, list[float]] = {w.name: [] for w in workers}
        try:
            for r in range(args.repeats):  # every side takes every position in turn: A B C, C B A, B C A, ...
                k = (r // 2) % len(workers)
                order = workers[k:] + workers[:k]
                for w in order if r % 2 == 0 else order[::-1]:
                    fps[w.name].append(w.fps(args.frames))
        finally:
            for w in workers:
                w.close()
    for w in workers:
        print(json.dumps({"side": w.name, "fps_median": round(statistics.median(fps[w.name]), 3),
                          "fps": [round(f, 3) for f in fps[w.name]], "size": f"{args.size}x{args.size}",
                          "dtype": args.dtype, **w.facts}))
    ref = fps["streamdiffusion"]
    for name in [w.name for w in workers if w.name != "streamdiffusion"]:
        ratios = [a / b for a, b in zip(fps[name], ref)]  # per round: both sides saw nearly the same load
        print(json.dumps({"ratio": f"{name}/streamdiffusion", "median": round(statistics.median(ratios), 3),
                          "ratios": [round(x, 3) for x in ratios], "repeats": args.repeats, "frames": args.frames}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
