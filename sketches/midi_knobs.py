"""midi_knobs: knob 1 morphs three prompts, knob 2 sets guidance, pads 36-39 pick seeds, L learns more knobs.

    livekit run sketches/midi_knobs.py --midi-in "nanoKONTROL"     (or --midi-in virtual, then connect to 'livekit')
"""

from livekit import Param, Sketch, midi


class MidiKnobs(Sketch):
    prompts = ["crimson lava blobs", "cyan electric grid", "violet starfield"]
    seeds = [11, 22, 33, 44]
    cfg = "self"                                        # residual CFG: guidance costs no extra model call
    morph = midi.cc(1)                                  # knob 1: prompt 1 -> 2 -> 3
    guidance = midi.cc(2).range(1.0, 2.5)               # knob 2: how hard the prompt pulls
    seed_morph = midi.cc(3).smooth(0.3)                 # knob 3: glide between the four seeds
    seed_step = midi.note(36, mode="trigger")           # pad 1: next seed
    noise_walk = midi.cc(4, relative="twos_complement").range(0.0, 2.0)  # endless encoder: motion speed
    flow = Param(0.5, range=(0.0, 1.0))                 # free for MIDI learn: press L, move a knob
