"""sd_turbo: Stable Diffusion Turbo on a GPU (1 step, no guidance), with the same mappings as the builtin sketches.

Needs the weights in the local Hugging Face cache (`huggingface-cli download stabilityai/sd-turbo`) or a local
folder: `livekit run sketches/sd_turbo.py --model /path/to/sd-turbo`.
"""

from livekit import Sketch, audio, lfo, midi


class SdTurbo(Sketch):
    model = "stabilityai/sd-turbo"
    size = (512, 512)
    prompts = ["a neon city at night, cinematic", "an underwater coral reef, volumetric light",
               "a field of glowing flowers, dreamy"]
    seeds = [1, 2, 3]
    sampler = "turbo"
    steps = 1
    morph = midi.cc(1)                                  # knob 1 morphs the three prompts
    noise_walk = audio.bass.range(0.0, 1.5)             # the bass drives the motion
    seed_morph = lfo.sine(beats=16)                     # a slow seed glide locked to the tempo
