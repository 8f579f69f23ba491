"""feedback: every frame re-imagines the previous one, so the picture flows; a slow LFO sets how far it drifts.

    livekit run sketches/feedback.py
"""

from livekit import Sketch, lfo


class Feedback(Sketch):
    mode = "feedback"                               # img2img on the last frame: a video-feedback loop
    prompts = ["psychedelic rainbow mandala", "cosmic purple flower"]
    morph = lfo.sine(hz=0.03)                       # drift between the two prompts
    strength = lfo.triangle(hz=0.1).range(0.35, 0.7)  # how much of each frame is re-imagined
    noise_walk = 0.3                                # constant motion
