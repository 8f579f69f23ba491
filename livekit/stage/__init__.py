"""The stage: the pygame window the audience sees. `Stage` owns the SDL window on the main thread (fullscreen on
display N, vsync-paced presents, fit/fill/stretch scaling), crossfades between the last two generated frames,
draws the HUD on top (never into the outputs), and turns keys into actions for the show. The only place in
livekit that imports pygame; `python -m livekit.stage.bench` measures its smoothness."""
