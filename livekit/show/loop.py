"""`livekit run`: the show. Main thread = stage window (or headless writer) + control ticks; inference and
post-processing on the engine's worker threads; controllers on their own threads.

Control flow per tick (display rate, or the sketch's fps headless):
  inputs -> ParamBus -> SketchRunner.tick -> Conditioning -> StreamWorker.submit (newest wins)
  StreamWorker -> on_frame (post thread) -> Stage.submit / frame writer
"""

from __future__ import annotations

import logging
import signal
import sys
import threading
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Callable

import numpy as np

from controllers.base import ControlEvent
from livekit.show.capture import Capture
from livekit.show.control import attach_controlnet, check_controlnet, with_control
from livekit.show.hud_feed import hud_info
from livekit.show.inputs import InputOptions, Inputs
from livekit.show.learn_cycle import LearnCycle
from livekit.show.picture_feed import PictureFeed
from livekit.show.reload import SketchWatcher
from livekit.sketch.params import ParamBus
from livekit.sketch.runner import SketchRunner
from livekit.sketch.base import SketchError, load_sketch

log = logging.getLogger(__name__)
SHUTDOWN_TIMEOUT_S = 0.8  # joins wait this long; daemon threads still inside a model call are abandoned (stop < 2 s)


@dataclass(frozen=True)
class RunOptions:
    """Everything `livekit run` was asked for."""

    sketch: Path
    model: str | None = None  # overrides the sketch's model
    size: tuple[int, int] | None = None  # overrides the sketch's size
    device: str = "auto"
    fullscreen: bool = False
    display: int = 0
    headless: bool = False
    frames: int | None = None  # stop after this many generated frames
    out: Path | None = None  # PNG folder or video file
    inputs: InputOptions = InputOptions()
    reload: bool = True  # watch the sketch file
    hud: bool = False  # start with the HUD visible (H toggles it)
    outputs: tuple = ()  # OutputSpec for each video output (NDI, Syphon, Spout) that receives the displayed frames


class Show:
    """One run of a sketch: owns the model, the worker, the inputs and the window; `run()` blocks until the end."""

    def __init__(self, options: RunOptions, status: Callable[[str], None] = print,
                 frame_hook: Callable[[np.ndarray, Any], None] | None = None) -> None:
        self.options = options
        self.status = status
        self.frame_hook = frame_hook  # called with every finished frame (post-processing thread), e.g. by tests
        self.stop_event = threading.Event()
        self.exit_code = 0  # 130 after Ctrl-C (SIGINT), the shell convention
        self.pictures = PictureFeed(options.sketch, status)  # the still or live picture img2img/feedback start from
        self.control_pictures = PictureFeed(options.sketch, status, "control")  # the ControlNet's own picture
        self.frames_out = 0
        self.last_error: str | None = None
        self._writer: Any = None
        self.video_outputs: Any = None  # VideoOutputs: every displayed frame, never the HUD
        self._stage: Any = None
        self.capture: Capture | None = None  # recording toggles and screenshots (with a window)
        self.worker: Any = None
        self.inputs: Inputs | None = None
        self._watcher: SketchWatcher | None = None
        self._learn: LearnCycle | None = None
        self.last_values: Any = None
        self.last_conditioning: Any = None  # the Conditioning of the latest tick
        self._echo_learned = 0

    # ---- setup ---------------------------------------------------------------------------------------------------
    def _engine_config(self, spec: Any) -> Any:
        from pipeline import EngineConfig

        e = spec.engine
        return EngineConfig(size_px=self.options.size or tuple(e.size), sampler=e.sampler, steps=e.steps, cfg=e.cfg,
                            mode=e.mode)

    def _load_engine(self, spec: Any) -> Any:
        from pipeline import StreamEngine, load_model

        name, controlnet = self.options.model or spec.engine.model, spec.engine.controlnet
        check_controlnet(name, controlnet)  # before a model load that would be wasted
        self.status(f"livekit: loading model {name} ({self.options.device}) ...")
        t0 = time.monotonic()
        model = attach_controlnet(load_model(name, device=self.options.device), controlnet)
        engine = StreamEngine(model, self._engine_config(spec))
        engine.warm_up()  # first-use work now, not while the sketch's clock runs (the first frame would lag it)
        c = engine.config
        self.status(f"livekit: model {name} ready in {time.monotonic() - t0:.1f} s: {c.sampler}, {engine.slots} steps, "
                    f"cfg {c.cfg}, {c.size_px[0]}x{c.size_px[1]} on {model.device}")
        return engine

    def _open_headless_writer(self, spec: Any, engine: Any) -> None:
        """--out without a window: every generated frame, none dropped. With audio running, a video file also
        carries the audio and places frames on their timestamps (a repeated frame fills a slow one), so picture
        and sound stay in sync; without audio, frames follow each other at the sketch's fps (an offline render)."""
        from livekit.outputs.recording import VIDEO_SUFFIXES, open_frame_writer
        from livekit.show.capture import audio_rate

        audio = self.inputs.audio
        rate = audio_rate(audio) if self.options.out.suffix.lower() in VIDEO_SUFFIXES else None
        self._writer = open_frame_writer(self.options.out, spec.engine.fps, engine.config.size_px,
                                         audio_sample_rate=rate, drop_when_behind=False)
        if rate is not None:
            audio.tap = self._writer.add_audio

    def _load_engine_in_background(self, spec: Any) -> None:
        """Load a reloaded sketch's model on its own thread; the old model plays until the new one is ready, and
        stays if the new one cannot load (one line, on the HUD too)."""
        def load() -> None:
            try:
                engine = self._load_engine(spec)
            except Exception as exc:  # a missing or broken model must not stop the show
                first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
                if not first.startswith(("cannot load", "controlnet")):  # the ControlNet's own errors name it
                    first = f"cannot load model {spec.engine.model!r}: {first}"
                self.last_error = f"{first}; keeping the current model"
                self.status(f"livekit: {self.last_error}")
                self._notify(self.last_error, 5.0)
                return
            if not self.stop_event.is_set():
                self.worker.reconfigure(lambda: engine)

        threading.Thread(target=load, name="livekit-model-load", daemon=True).start()

    def _on_frame(self, frame: np.ndarray, info: Any) -> None:
        """Post-processing thread: hand the frame to the stage and/or the writer."""
        if self.stop_event.is_set():
            return
        if self.frame_hook is not None:
            self.frame_hook(frame, info)
        if self._stage is not None:
            self._stage.submit(frame, info.done_time_s)
        elif self.video_outputs:  # headless: every generated frame is what the audience sees
            self.video_outputs.send(frame)
        if self._writer is not None:
            if self.options.frames is not None and self.frames_out >= self.options.frames:
                return
            timed = getattr(self._writer, "has_audio", False)  # with audio, frames sit on their timestamps
            self._writer.write(frame, info.done_time_s if timed else None)
        self.frames_out += 1
        if self.options.frames is not None and self.frames_out >= self.options.frames:
            self.stop_event.set()

    def _on_error(self, message: str) -> None:
        self.last_error = message

    # ---- run -----------------------------------------------------------------------------------------------------
    def run(self) -> int:
        """Load, start every thread, loop until Esc / Ctrl-C / SIGTERM / --frames, shut down cleanly."""
        from pipeline import StreamWorker

        opts = self.options
        sketch_cls = load_sketch(opts.sketch)  # a broken sketch fails here, before anything opens
        self._watcher = SketchWatcher(opts.sketch)
        spec = sketch_cls.spec()
        self.bus = ParamBus()
        self.runner = SketchRunner(sketch_cls, self.bus)  # configures the bus with the sketch's mappings
        self._applied_spec = spec  # the spec the inputs, echo and engine follow now
        self._learn = LearnCycle(self.bus, self._notify)
        self._learned_path = self._learned_file()
        if self._learned_path.exists():
            self.status(f"livekit: {self.bus.load_learned(self._learned_path)} learned MIDI mappings loaded")
        previous = self._install_signals()
        switch = sys.getswitchinterval()
        sys.setswitchinterval(0.001)  # the main loop sleeps to pace frames: get the GIL back within 1 ms, not 5
        try:  # from here on, whatever fails, everything opened so far is closed again (a camera included)
            self.pictures.load(spec.engine.image)
            self.control_pictures.load(spec.engine.control)
            engine = self.engine = self._load_engine(spec)
            outputs = tuple(dict.fromkeys((*opts.outputs, *spec.outputs)))  # the command line's and the sketch's
            if outputs:
                from livekit.outputs.video import VideoOutputs

                self.video_outputs = VideoOutputs(outputs, fps=spec.engine.fps if opts.headless else 60.0)
                self.status(f"livekit: video out: {', '.join(f'{o.kind} {o.name!r}' for o in outputs)}")
            self.inputs = Inputs(self.bus.push, opts.inputs, set(spec.required_sources()),
                                 osc_params=spec.osc_params(), midi_decoder=self._midi_decoder(spec),
                                 status=self.status)
            self.inputs.start()
            if opts.headless and opts.out is not None:
                self._open_headless_writer(spec, engine)
            self._update_echo(spec)
            self.worker = StreamWorker(engine, self._on_frame, max_fps=spec.engine.fps, on_error=self._on_error)
            self.worker.start()
            if opts.headless:
                self._loop_headless(spec.engine.fps)
            else:
                self._loop_window(engine)
        finally:
            self._shutdown()
            self._restore_signals(previous)
            sys.setswitchinterval(switch)
        self.status(f"livekit: stopped after {self.frames_out} frames")
        return self.exit_code

    def _tick(self, now: float) -> None:
        """One control tick: clock events, sketch mappings, conditioning to the worker, hot reload."""
        self.inputs.poll(now)
        tempo = self.inputs.tempo(now)
        result = self.runner.tick(now, tempo)
        if result.rolled_back:
            self._rolled_back(result.rolled_back)
        self.last_values = result.values
        cond = result.conditioning
        image = self.pictures.frame()
        if image is not None:
            cond = replace(cond, image=image)
        cond = with_control(cond, self._applied_spec.engine, image, self.control_pictures.frame())
        self.last_conditioning = cond
        self.worker.submit(cond, now)
        self.inputs.send_state(result.values, self.worker.stats.generated_fps or None, tempo)
        if self._watcher.due(now):
            if self.options.reload and self._watcher.changed():
                self._reload()
            if self.inputs.midi_out is not None and len(self.bus.learned) != self._echo_learned:
                self._update_echo(self.runner.spec)  # a knob was learned: echo it too

    def _loop_headless(self, fps: float) -> None:
        period = 1.0 / max(fps, 1.0)
        while not self.stop_event.is_set():
            self._tick(time.monotonic())
            self.stop_event.wait(period)

    def _loop_window(self, engine: Any) -> None:
        from livekit.stage.window import Stage, StageConfig

        w, h = engine.config.size_px
        scale = max(1, 720 // max(h, 1))
        self._stage = Stage(StageConfig(size_px=(w * scale, h * scale), fullscreen=self.options.fullscreen,
                                        display=self.options.display, show_hud=self.options.hud,
                                        title=f"livekit — {self.options.sketch.name}"))
        self._stage.open()
        self.capture = Capture(self._stage.displayed_frame, self._notify)
        if self.options.out is not None:  # with a window, --out records what the audience sees
            self.capture.toggle_recording(self.inputs.audio, self.options.out)
        next_hud = 0.0
        while not self.stop_event.is_set():
            for action in self._stage.tick():
                self._action(action)
            now = time.monotonic()
            self._tick(now)
            self.capture.tick(now)
            if self.video_outputs:
                shown = self._stage.displayed_frame()
                if shown is not None:  # the same array until the picture changes: sent once per new picture
                    self.video_outputs.send(shown, key=id(shown))
            if now >= next_hud:
                next_hud = now + 0.1
                self._stage.set_hud(hud_info(self))

    def _notify(self, text: str, seconds: float | None = None) -> None:
        """A short message on the stage (nothing without a window)."""
        if self._stage is not None:
            if seconds is None:
                self._stage.notify(text)
            else:
                self._stage.notify(text, seconds)

    def _action(self, action: str) -> None:
        """A key the stage reported."""
        if action == "quit":
            self.stop_event.set()
        elif action == "record" and self.capture is not None:
            self.capture.toggle_recording(self.inputs.audio if self.inputs is not None else None)
        elif action == "screenshot" and self.capture is not None:
            self.capture.screenshot()
        elif action.startswith("scene:"):
            self.bus.set("scene", int(action.split(":")[1]) - 1)
        elif action == "learn":
            self._learn.next()
        elif action == "tap":
            bpm = self.inputs.tap_tempo()
            if bpm is not None and self._stage is not None:
                self._stage.notify(f"tap tempo {bpm:.1f} BPM")
        elif action.startswith(("key:", "keyup:")):
            kind, name = action.split(":", 1)
            self.bus.push(ControlEvent(f"key/{name}", 1.0 if kind == "key" else 0.0, time.monotonic()))

    def _learned_file(self) -> Path:
        from controllers.learn import mappings_path

        return Path(mappings_path(self.options.sketch))

    # ---- hot reload ----------------------------------------------------------------------------------------------
    def _reload(self) -> None:
        """The sketch file changed: load it and apply it live, or keep the old sketch and say why."""
        try:
            new_cls = load_sketch(self.options.sketch)
        except SketchError as exc:  # keep the old sketch running and show why
            self.last_error = f"reload failed: {exc}"
            self.status(f"livekit: {self.last_error}")
            self._notify(str(exc), 5.0)
            return
        old_spec = self.runner.spec
        model_changed = self.runner.reload(new_cls)
        self.last_error = None
        self._apply_spec(self.runner.spec, old_spec, model_changed)  # the new spec, or the old one if rolled back
        self.status(f"livekit: reloaded {self.options.sketch.name}")
        self._notify(f"reloaded {self.options.sketch.name}")

    def _rolled_back(self, message: str) -> None:
        """The reloaded sketch failed on its first ticks: the runner brought back the last good one; follow it."""
        failed = self._applied_spec
        self.last_error = message
        self.status(f"livekit: {message}")
        self._notify(message, 5.0)
        self._apply_spec(self.runner.spec, failed, self.runner.spec.model_key != failed.model_key)

    def _apply_spec(self, spec: Any, old_spec: Any, model_changed: bool) -> None:
        """Bring image, OSC params, MIDI echo, engine and pacing in line with a newly installed sketch spec."""
        self._applied_spec = spec
        for feed, picture in ((self.pictures, spec.engine.image), (self.control_pictures, spec.engine.control)):
            try:
                feed.load(picture)
            except ValueError as exc:
                self.last_error = str(exc)
                self.status(f"livekit: {exc}")
        self.inputs.set_osc_params(spec.osc_params())
        self._update_echo(spec)
        if model_changed and (not self.options.model or spec.engine.controlnet != old_spec.engine.controlnet):
            self._load_engine_in_background(spec)
        elif self._engine_config(spec) != self._engine_config(old_spec):
            self.worker.reconfigure(self._engine_config(spec))
        self.worker.max_fps = spec.engine.fps
        self._learn.refresh()

    def _midi_decoder(self, spec: Any) -> Any:
        """What the MIDI decoder must pair and decode: the sketch's 14-bit CCs and encoders plus the learned ones."""
        from controllers.learn import decoder_config_for, merge_decoder_configs

        return merge_decoder_configs(spec.midi_decoder_config(), decoder_config_for(self.bus.learned_mappings()))

    def _update_echo(self, spec: Any) -> None:
        from livekit.show.echo import echo_routes

        learned = self.bus.learned
        self._echo_learned = len(learned)
        self.inputs.echo = echo_routes(spec, learned)

    # ---- shutdown ------------------------------------------------------------------------------------------------
    def _install_signals(self) -> dict:
        if threading.current_thread() is not threading.main_thread():
            return {}
        previous = {}
        for sig in (signal.SIGINT, signal.SIGTERM):
            previous[sig] = signal.signal(sig, self._on_signal)
        return previous

    def _on_signal(self, signum: int, _frame: Any) -> None:
        # Ctrl-C exits 130 as shells expect; SIGTERM is the polite stop of a service manager and exits 0
        if signum == signal.SIGINT:
            self.exit_code = 130
        self.stop_event.set()

    @staticmethod
    def _restore_signals(previous: dict) -> None:
        for sig, handler in previous.items():
            signal.signal(sig, handler)

    def _shutdown(self) -> None:
        """Join every thread and close every port, stream and file."""
        self.stop_event.set()
        if self.worker is not None and not self.worker.stop(SHUTDOWN_TIMEOUT_S):
            log.warning("the inference thread did not stop within %.1f s", SHUTDOWN_TIMEOUT_S)
        if self.inputs is not None:
            if self.inputs.audio is not None:
                self.inputs.audio.tap = None
            self.inputs.close()
        if self.capture is not None:
            self.capture.stop()
        self.pictures.close()
        self.control_pictures.close()
        if self._writer is not None:
            self._writer.close()
            self._writer = None
        if self.video_outputs is not None:
            self.video_outputs.close()
        if self._stage is not None:
            self._stage.close()
        try:
            if self.bus.learned:
                self.bus.save_learned(self._learned_path)
        except (OSError, AttributeError) as exc:
            log.warning("could not save learned MIDI mappings: %s", exc)
