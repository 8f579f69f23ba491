"""Each shared fixture proves its real component works."""

from __future__ import annotations

import threading
import time

import numpy as np


def test_midi_cc_arrives_through_jack_virtual_port(jack) -> None:
    import mido

    from controllers.midi_ports import open_input

    backend = mido.Backend("mido.backends.rtmidi/UNIX_JACK")
    received: list[mido.Message] = []
    got = threading.Event()

    def on_message(msg: mido.Message) -> None:
        received.append(msg)
        got.set()

    with open_input(backend, "fixture-in", on_message, virtual=True):
        with backend.open_output("fixture-out", virtual=True) as outport:
            jack.connect("RtMidiOut Client:fixture-out", "RtMidiIn Client:fixture-in")
            for _ in range(50):  # like a knob that keeps sending, until the fresh connection carries it
                outport.send(mido.Message("control_change", channel=2, control=74, value=101))
                if got.wait(0.1):
                    break
            assert got.is_set(), f"no MIDI arrived; ports: {jack.ports()}"
    assert received[0].type == "control_change"
    assert (received[0].channel, received[0].control, received[0].value) == (2, 74, 101)


def test_sine_from_second_jack_client_reaches_sounddevice_input(jack) -> None:
    import jack as jackclient
    import sounddevice as sd

    sd._terminate()  # PortAudio scans JACK at initialisation: rescan now that the server runs
    sd._initialize()
    devices = [d for d in sd.query_devices() if d["max_input_channels"] > 0 and "jack" in sd.query_hostapis(d["hostapi"])["name"].lower()]
    assert devices, f"sounddevice sees no JACK input device: {sd.query_devices()}"

    amplitude, freq = 0.5, 440.0
    player = jackclient.Client("sine-player", servername=jack.name, no_start_server=True)
    out_port = player.outports.register("out")
    phase = [0]

    @player.set_process_callback
    def process(frames: int) -> None:
        n = np.arange(phase[0], phase[0] + frames)
        out_port.get_array()[:] = amplitude * np.sin(2 * np.pi * freq * n / player.samplerate)
        phase[0] += frames

    blocks: list[np.ndarray] = []

    def callback(indata, frames, t, status) -> None:
        blocks.append(indata[:, 0].copy())

    with player:
        stream = sd.InputStream(device=devices[0]["index"], channels=1, samplerate=jack.sample_rate, callback=callback)
        with stream:
            ours = [p for p in jack.ports() if p.startswith("PortAudio") or ("python" in p.lower() and "in" in p)]
            inputs = [p.name for p in player.get_ports(is_audio=True, is_input=True) if not p.name.startswith("system:")]
            assert inputs, f"no sounddevice input port on the JACK graph: {jack.ports()} ({ours})"
            for name in inputs:
                player.connect(out_port, name)
            time.sleep(1.0)
    signal = np.concatenate(blocks)[-jack.sample_rate // 2 :]
    rms = float(np.sqrt(np.mean(signal**2)))
    assert abs(rms - amplitude / np.sqrt(2)) / (amplitude / np.sqrt(2)) < 0.05, rms


def test_tiny_sd_pipeline_loads_offline_and_renders(tiny_sd_model) -> None:
    import torch
    from diffusers import StableDiffusionPipeline

    pipe = StableDiffusionPipeline.from_pretrained(tiny_sd_model, local_files_only=True)
    images = pipe("a red square", num_inference_steps=2, height=64, width=96, output_type="np",
                  generator=torch.Generator().manual_seed(0)).images
    assert images.shape == (1, 64, 96, 3)
    assert np.isfinite(images).all()
