"""The show: one run of a sketch. `Show` loads the model, starts the engine's worker threads and the controller
inputs, ticks the sketch at the display rate, hands finished frames to the stage and the outputs, reacts to the
stage's keys (recording, screenshots, MIDI learn, tap tempo), hot-reloads the sketch file and shuts everything
down within two seconds. It wires the other rooms together and holds no drawing or diffusion code itself."""
