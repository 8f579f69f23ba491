"""The stage window: shows generated frames at the display rate with crossfades, scaling, HUD and performer keys.

The runtime owns the main thread and calls `Stage.tick()` in a loop; the post-processing thread calls `submit()`.
Frames are drawn as GPU textures through SDL's 2D renderer (pygame._sdl2.video), so scaling, crossfading and the
HUD overlay cost the CPU almost nothing per display frame; a software renderer is the fallback.
"""

from __future__ import annotations

import logging
import math
import os
import threading
import time
from collections.abc import Callable
from types import TracebackType

import numpy as np

os.environ.setdefault("PYGAME_HIDE_SUPPORT_PROMPT", "1")
import pygame  # noqa: E402  (the prompt variable must be set first)
from pygame._sdl2.video import Renderer, Texture, Window  # noqa: E402

from livekit.stage.config import StageConfig  # noqa: E402
from livekit.stage.display import (  # noqa: E402
    Placement,
    centered_on_display,
    check_display_index,
    display_refresh_hz,
    gil_free_present,
    list_displays,
    renderer_description,
)
from livekit.stage.hud import HudInfo, HudPainter, HudStatus  # noqa: E402
from livekit.stage.mix import FrameMixer, MixState, scaled_rects  # noqa: E402
from livekit.stage.pacing import DisplayPacer  # noqa: E402

__all__ = ["HudInfo", "Stage", "StageConfig", "list_displays"]

log = logging.getLogger(__name__)

_BLEND_NONE, _BLEND_ALPHA = 0, 1  # SDL_BLENDMODE_NONE, SDL_BLENDMODE_BLEND
_ESC_CONFIRM_S = 2.0  # in fullscreen, Esc quits only when pressed twice within this many seconds
_KEY_ACTIONS = {pygame.K_f: "fullscreen", pygame.K_h: "hud", pygame.K_SPACE: "freeze", pygame.K_r: "record",
                pygame.K_s: "screenshot", pygame.K_l: "learn", pygame.K_t: "tap"}
for _n in range(1, 10):
    _KEY_ACTIONS[getattr(pygame, f"K_{_n}")] = f"scene:{_n}"
    _KEY_ACTIONS[getattr(pygame, f"K_KP{_n}")] = f"scene:{_n}"
_CHORD_MODS = pygame.KMOD_CTRL | pygame.KMOD_ALT | pygame.KMOD_GUI  # shortcuts of the OS, not ours


class Stage:
    """The output window; open() and tick() on the main thread, submit()/set_hud()/notify() from any thread."""

    def __init__(self, config: StageConfig | None = None) -> None:
        self.config = config or StageConfig()
        self._mixer = FrameMixer(self.config.crossfade_max_s)
        self._lock = threading.Lock()
        self._hud_info = HudInfo()
        self._toast: tuple[str, float] | None = None  # (text, visible until monotonic s)
        self._window: Window | None = None
        self._renderer: Renderer | None = None
        self._present: Callable[[], None] = lambda: None
        self._painter: HudPainter | None = None
        self._textures: dict[str, tuple[Texture, np.ndarray]] = {}  # slot -> (texture, the array it shows)
        self._hud_texture: Texture | None = None
        self._toast_texture: tuple[tuple[str, int, int], Texture] | None = None
        self._hud_drawn_s = -math.inf
        self._hud_window_px: tuple[int, int] = (0, 0)
        self._shown: MixState | None = None
        self._shown_frame: tuple[tuple[int, float], np.ndarray | None] | None = None
        self._pacer = DisplayPacer(self.config.display_hz or 60.0, vsync_requested=False)
        self._placement: Placement | None = None
        self._hud_visible = self.config.show_hud
        self._last_esc_s = -math.inf
        self._cpu_mix = False  # crossfades blended on the CPU, one upload (set in open() for CPU renderers)
        self._errors = 0
        self._last_logged: tuple[str, float] = ("", -math.inf)
        self.last_frame_time_s: float | None = None  # time_s of the newest submitted frame

    # ---- lifecycle -------------------------------------------------------------------------------------------
    def open(self) -> None:
        """Create the window and renderer on the configured display (no-op when already open)."""
        if self._window is not None:
            return
        os.environ.setdefault("SDL_VIDEO_MINIMIZE_ON_FOCUS_LOSS", "0")  # a click on another screen keeps the show
        os.environ.setdefault("SDL_RENDER_SCALE_QUALITY", "linear")  # smooth filtering when textures scale
        pygame.display.init()
        check_display_index(self.config.display)
        hz = self.config.display_hz or display_refresh_hz(self.config.display)
        self._pacer = DisplayPacer(hz, vsync_requested=self.config.vsync)
        self._window = Window(self.config.title, size=self.config.size_px, resizable=True,
                              position=centered_on_display(self.config.display))
        try:
            self._renderer = Renderer(self._window, vsync=self.config.vsync)
        except pygame.error as exc:
            log.warning("accelerated renderer unavailable (%s); using SDL's software renderer", exc)
            self._renderer = Renderer(self._window, accelerated=0, vsync=self.config.vsync)
        self._present = gil_free_present(self._window.id) or self._renderer.present
        described = renderer_description(self._window.id)
        self._cpu_mix = self.config.cpu_mix if self.config.cpu_mix is not None else bool(described and described[2])
        log.info("renderer %s (%s): crossfades blended on the %s", *(described[:2] if described else ("?", "?")),
                 "CPU" if self._cpu_mix else "GPU")
        self._painter = HudPainter()
        self._placement = Placement(self._window, self.config.display, self.config.size_px)
        if self.config.fullscreen:
            self._apply_fullscreen(True)

    def close(self) -> None:
        """Destroy the window and release the display (idempotent)."""
        if self._window is None:
            return
        self._textures.clear()
        self._hud_texture = self._toast_texture = None
        self._renderer = None
        self._placement = None
        self._window.destroy()
        self._window = None
        pygame.mouse.set_visible(True)
        pygame.display.quit()

    def __enter__(self) -> Stage:
        self.open()
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()

    # ---- any thread ------------------------------------------------------------------------------------------
    def submit(self, frame: np.ndarray, time_s: float) -> None:
        """Offer a generated (H,W,3) uint8 frame (time_s: the runtime's timestamp for it); newest wins, never waits."""
        self._mixer.submit(frame, time.monotonic())
        self.last_frame_time_s = time_s

    def set_hud(self, info: HudInfo) -> None:
        """Replace what the HUD shows (drawn at the next HUD refresh)."""
        with self._lock:
            self._hud_info = info

    def notify(self, text: str, duration_s: float = 2.0) -> None:
        """Show a short message box near the bottom of the window, even with the HUD hidden."""
        with self._lock:
            self._toast = (text, time.monotonic() + duration_s)

    # ---- main thread -----------------------------------------------------------------------------------------
    @property
    def is_open(self) -> bool:
        """True between open() and close()."""
        return self._window is not None

    @property
    def fullscreen(self) -> bool:
        """True while the window is fullscreen."""
        return self._placement is not None and self._placement.fullscreen

    @property
    def hud_visible(self) -> bool:
        """True while the HUD is drawn."""
        return self._hud_visible

    @property
    def frozen(self) -> bool:
        """True while Space holds the shown frame."""
        return self._mixer.frozen

    @property
    def pacing(self) -> str:
        """How display frames are paced: "vsync", "clock", or "probe" while vsync is being measured."""
        return self._pacer.mode

    @property
    def display_hz(self) -> float:
        """The display rate the stage paces to without vsync."""
        return 1.0 / self._pacer.period_s

    @property
    def cpu_mix(self) -> bool:
        """Whether crossfades are blended on the CPU (one texture upload) rather than as two blended quads."""
        return self._cpu_mix

    @property
    def errors(self) -> int:
        """Draw errors survived since open() (each was logged, rate-limited)."""
        return self._errors

    def tick(self) -> list[str]:
        """Handle input, draw one display frame, wait for its present slot, present; return the key actions."""
        if self._window is None or self._renderer is None:
            raise RuntimeError("Stage.tick() needs an open window: call Stage.open() (or use `with Stage(...)`) first")
        actions = self._handle_events()
        present_s = self._pacer.slot(time.monotonic())
        drawn = False
        try:
            self._shown = self._mixer.advance(present_s)
            self._draw(self._shown, present_s)
            drawn = True
        except Exception as exc:  # nothing is fatal on stage: the last presented frame stays up
            self._report(exc)
        self._pacer.wait_until(present_s)
        if drawn:
            self._present()
        self._pacer.presented(time.monotonic())
        return actions

    def displayed_frame(self) -> np.ndarray | None:
        """The picture now on screen without HUD, at the generated size ((H,W,3) uint8, read-only), or None."""
        state = self._shown
        if state is None:
            return None
        key = (state.version, state.weight)
        if self._shown_frame is None or self._shown_frame[0] != key:
            frame = state.frame()
            if frame is not None:
                frame.flags.writeable = False
            self._shown_frame = (key, frame)
        return self._shown_frame[1]

    def window_snapshot(self) -> np.ndarray:
        """What the window shows including the HUD, as (H,W,3) uint8 at window size (slow: a GPU read-back)."""
        if self._renderer is None:
            raise RuntimeError("Stage.window_snapshot() needs an open window")
        self._draw(self._shown or MixState(None, None, 1.0, 0, False), time.monotonic())
        surface = self._renderer.to_surface()
        return np.ascontiguousarray(pygame.surfarray.pixels3d(surface).swapaxes(0, 1))

    @property
    def displayed_fps(self) -> float:
        """Display frames presented during the last second."""
        return self._pacer.presents_per_s()

    @property
    def generated_fps(self) -> float:
        """Smoothed rate of submitted frames."""
        return self._mixer.generated_fps

    def display_intervals_s(self) -> np.ndarray:
        """Seconds between the last (up to 600) presents, oldest first."""
        return self._pacer.intervals_s()

    # ---- internals -------------------------------------------------------------------------------------------
    def _handle_events(self) -> list[str]:
        if self._placement is not None:
            self._placement.check(time.monotonic())
        actions: list[str] = []
        for event in pygame.event.get():
            action = None
            if event.type in (pygame.QUIT, pygame.WINDOWCLOSE):
                action = "quit"
            elif event.type in (pygame.RENDER_DEVICE_RESET, pygame.RENDER_TARGETS_RESET):
                self._textures.clear()  # the GPU lost them; they are re-uploaded from the frames on the next draw
                self._hud_texture = self._toast_texture = None
            elif event.type == pygame.KEYDOWN and not getattr(event, "mod", 0) & _CHORD_MODS:
                action = self._key_action(event.key)
            elif event.type == pygame.KEYUP and event.key not in _KEY_ACTIONS and event.key != pygame.K_ESCAPE:
                action = f"keyup:{pygame.key.name(event.key)}"  # released: a gate source drops to 0
            if action is not None and action not in actions:
                actions.append(action)
        return actions

    def _key_action(self, key: int) -> str | None:
        now = time.monotonic()
        if key == pygame.K_ESCAPE:
            if not self.fullscreen or now - self._last_esc_s <= _ESC_CONFIRM_S:
                return "quit"
            self._last_esc_s = now
            self.notify("Press Esc again to quit", _ESC_CONFIRM_S)
            return None
        action = _KEY_ACTIONS.get(key)
        if action is None:  # any other key is for the sketch: key("n") sources
            name = pygame.key.name(key)
            return f"key:{name}" if name else None
        if action == "fullscreen":
            self._apply_fullscreen(not self.fullscreen)
        elif action == "hud":
            self._hud_visible = not self._hud_visible
        elif action == "freeze":
            if self._mixer.frozen:
                self._mixer.unfreeze(now)
            else:
                self._mixer.freeze(now)
        return action

    def _apply_fullscreen(self, on: bool) -> None:
        assert self._placement is not None
        try:
            self._placement.set_fullscreen(on)
        except pygame.error as exc:
            self._report(exc)

    def _texture(self, slot: str, frame: np.ndarray) -> Texture:
        """A texture showing `frame`, re-uploading only when the array or its size changed."""
        assert self._renderer is not None
        held = self._textures.get(slot)
        if held is not None and held[1] is frame:
            return held[0]
        h, w = frame.shape[:2]
        texture = held[0] if held is not None and (held[0].width, held[0].height) == (w, h) else None
        if texture is None:
            texture = Texture(self._renderer, (w, h), streaming=True)
        texture.update(pygame.image.frombuffer(np.ascontiguousarray(frame), (w, h), "RGB"))
        self._textures[slot] = (texture, frame)
        return texture

    def _draw(self, state: MixState, now_s: float) -> None:
        renderer = self._renderer
        assert renderer is not None
        renderer.draw_color = (0, 0, 0, 255)
        renderer.clear()
        view = renderer.get_viewport()
        if state.current is not None:
            self._draw_picture(state, (view.width, view.height))
        if self._hud_visible:
            self._draw_hud(now_s, (view.width, view.height))
        with self._lock:
            toast = self._toast
        if toast is not None and toast[1] > now_s and self._painter is not None:
            key = (toast[0], view.width, view.height)
            if self._toast_texture is None or self._toast_texture[0] != key:
                surface = self._painter.toast(toast[0], (view.width, view.height))
                self._toast_texture = (key, Texture.from_surface(renderer, surface))
            box = self._toast_texture[1]
            box.draw(dstrect=((view.width - box.width) // 2, view.height - box.height - view.height // 12))

    def _draw_picture(self, state: MixState, window_px: tuple[int, int]) -> None:
        """The picture, scaled into the window: a crossfade is two blended quads on a GPU, one CPU-blended upload on
        a software renderer (where every scaled quad costs CPU time at the window's size)."""
        h, w = state.current.shape[:2]
        src, dst = scaled_rects((w, h), window_px, self.config.scaling)
        fading = state.previous is not None and state.weight < 1.0
        if fading and self._cpu_mix:  # the blend NDI and recording send anyway, computed once per present
            top = self._texture("mixed", self.displayed_frame() if state is self._shown else state.frame())
            fading = False
        else:
            if fading:
                self._reuse_target_as_start(state.previous)
                under = self._texture("previous", state.previous)
                under.blend_mode, under.alpha = _BLEND_NONE, 255
                under.draw(srcrect=src, dstrect=dst)
            top = self._texture("current", state.current)
        top.blend_mode = _BLEND_ALPHA if fading else _BLEND_NONE
        top.alpha = round(255 * state.weight) if fading else 255
        top.draw(srcrect=src, dstrect=dst)

    def _reuse_target_as_start(self, start: np.ndarray) -> None:
        """When the last fade's target starts this fade, its texture becomes the "previous" one: no upload."""
        held = self._textures.get("current")
        if held is not None and held[1] is start:
            spare = self._textures.get("previous")
            self._textures["previous"] = held
            if spare is not None:
                self._textures["current"] = spare
            else:
                del self._textures["current"]

    def _draw_hud(self, now_s: float, window_px: tuple[int, int]) -> None:
        assert self._renderer is not None and self._painter is not None
        if window_px[0] < 240 or window_px[1] < 160:
            return  # a window this small has no room for the panel
        if (self._hud_texture is None or now_s - self._hud_drawn_s >= 1.0 / self.config.hud_hz
                or window_px != self._hud_window_px):
            with self._lock:
                info = self._hud_info
            current = self._shown.current if self._shown is not None else None
            status = HudStatus(generated_fps=self._mixer.generated_fps, displayed_fps=self.displayed_fps,
                               display_hz=self.display_hz, frozen=self._mixer.frozen,
                               stalled_s=self._mixer.stalled_s(now_s) if self._mixer.submitted else 0.0,
                               frame_px=(current.shape[1], current.shape[0]) if current is not None else None,
                               now_s=now_s)
            panel = self._painter.render(info, status, window_px)
            if self._hud_texture is not None and self._hud_texture.get_rect().size == panel.get_size():
                self._hud_texture.update(panel)
            else:
                self._hud_texture = Texture.from_surface(self._renderer, panel)
                self._hud_texture.blend_mode = _BLEND_ALPHA
            self._hud_drawn_s, self._hud_window_px = now_s, window_px
        margin = max(8, window_px[1] // 48)
        self._hud_texture.draw(dstrect=(margin, margin))

    def _report(self, exc: Exception) -> None:
        """Count a live-loop error and log it, at most once per second for the same message."""
        self._errors += 1
        message = f"{type(exc).__name__}: {exc}"
        now = time.monotonic()
        if message != self._last_logged[0] or now - self._last_logged[1] > 1.0:
            log.error("stage draw failed (%d so far): %s", self._errors, message, exc_info=self._errors == 1)
            self._last_logged = (message, now)
