"""audio_reactive: the bass drives the noise walk, onsets jump the seed, the beat steps through the prompts.

    livekit run sketches/audio_reactive.py --audio-in "USB Audio"     (a device name fragment or index)
    livekit run sketches/audio_reactive.py --audio-in track.wav       (rehearse with a file)
"""

from livekit import Sketch, audio


class AudioReactive(Sketch):
    prompts = ["crimson lava blobs", "cyan electric grid", "violet starfield", "golden plasma"]
    seeds = [1, 2, 3, 4, 5]
    motion = audio.bass.range(0.05, 0.6).smooth(0.02, 0.3)      # the bass pushes the patterns, fast attack
    noise_walk = audio.level.range(0.0, 0.3)                     # louder: the noise drifts faster
    seed_step = audio.onset                                      # every onset jumps to the next seed
    prompt_step = audio.beat                                     # every beat steps to the next prompt
