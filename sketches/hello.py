"""hello: the builtin model, a slow LFO morphing three prompts, the keyboard stepping seeds. No hardware needed.

    livekit run sketches/hello.py        (Esc quits, H shows the HUD, Space freezes, 1-9 scenes)
"""

from livekit import Sketch, key, lfo


class Hello(Sketch):
    prompts = ["neon magenta rings", "deep blue ocean waves", "golden plasma fire"]
    seeds = [7, 42, 1234]
    size = (512, 512)
    morph = lfo.triangle(hz=0.05)            # drift through the three prompts every 20 s
    motion = 0.1                             # the patterns move: one loop every 10 s
    noise_walk = lfo.sine(hz=0.1).range(0.0, 0.1)   # and the noise drifts slowly
    seed_step = key("n")                     # press N for the next seed
