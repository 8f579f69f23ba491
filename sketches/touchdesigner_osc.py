"""touchdesigner_osc: TouchDesigner drives the picture over OSC; livekit listens on port 9000.

In TouchDesigner: an OSC Out CHOP to 127.0.0.1:9000 with channels named `morph`, `speed` and `kick` sends
/morph, /speed and /kick (one float each), which this sketch maps. /livekit/prompt "any text" replaces the prompt,
/livekit/guidance 1.8 sets guidance, /livekit/scene 2 switches scene. See docs/controls.md.

    livekit run sketches/touchdesigner_osc.py --osc-port 9000
"""

from livekit import Param, Sketch, osc


class TouchDesignerOsc(Sketch):
    prompts = ["neon pink tunnel", "emerald plasma waves", "white stars on black"]
    seeds = [3, 5, 8]
    morph = osc("/morph")                               # TouchDesigner channel "morph" (0..1)
    noise_walk = osc("/speed").range(0.0, 2.0)          # channel "speed" drives the noise walk
    seed_step = osc("/kick")                            # channel "kick" > 0.5 steps the seed
    glow = Param(0.5, range=(0.0, 1.0))                 # also settable as /livekit/glow
    scenes = [{"prompts": ["golden rings"]}, {"prompts": ["blue waves", "red waves"]}]
