"""Displays attached to the machine (index, name, size, position, refresh rate) and putting a window on one, for the
stage and `livekit devices`.

pygame 2.6 exposes only the display count and desktop sizes; names, bounds and refresh rates come from the SDL2
library pygame already loaded (through ctypes, best effort: when the library cannot be found those fields fall back
to neutral values and nothing fails).
"""

from __future__ import annotations

import ctypes
import glob
import logging
import os
import sys
import time
from collections.abc import Callable
from functools import lru_cache

import pygame
from pygame._sdl2.video import Window

log = logging.getLogger(__name__)

DEFAULT_REFRESH_HZ = 60.0  # used when SDL reports no refresh rate (dummy driver, Xvfb, some virtual displays)


class _SDLDisplayMode(ctypes.Structure):
    _fields_ = [("format", ctypes.c_uint32), ("w", ctypes.c_int), ("h", ctypes.c_int),
                ("refresh_rate", ctypes.c_int), ("driverdata", ctypes.c_void_p)]


class _SDLRect(ctypes.Structure):
    _fields_ = [("x", ctypes.c_int), ("y", ctypes.c_int), ("w", ctypes.c_int), ("h", ctypes.c_int)]


class _SDLRendererInfo(ctypes.Structure):
    _fields_ = [("name", ctypes.c_char_p), ("flags", ctypes.c_uint32), ("num_texture_formats", ctypes.c_uint32),
                ("texture_formats", ctypes.c_uint32 * 16), ("max_texture_width", ctypes.c_int),
                ("max_texture_height", ctypes.c_int)]


_SDL_RENDERER_SOFTWARE = 0x1
_GL_RENDERER = 0x1F01
_SOFTWARE_GL = ("llvmpipe", "softpipe", "swrast", "swr", "software")  # Mesa's CPU rasterisers, Windows' GDI one


def _loaded_sdl_path() -> str | None:
    """Path of the SDL2 shared library pygame uses (the same handle, so SDL's state is shared)."""
    if sys.platform.startswith("linux"):
        try:
            with open("/proc/self/maps", encoding="utf-8", errors="replace") as maps:
                for line in maps:
                    name = line.rsplit("/", 1)[-1]
                    if name.startswith(("libSDL2-2", "libSDL2.so")):  # not libSDL2_image, libSDL2_ttf, ...
                        return line.split(maxsplit=5)[-1].strip()
        except OSError as exc:
            log.debug("cannot read /proc/self/maps: %s", exc)
    root = os.path.dirname(pygame.__file__)
    patterns = [os.path.join(root, "SDL2.dll"), os.path.join(root, ".dylibs", "libSDL2*.dylib"),
                os.path.join(root, "..", "pygame.libs", "libSDL2-2*.so*")]
    for pattern in patterns:
        found = sorted(glob.glob(pattern))
        if found:
            return found[0]
    return None


@lru_cache(maxsize=1)
def _sdl() -> ctypes.CDLL | None:
    path = _loaded_sdl_path()
    if path is None:
        return None
    try:
        lib = ctypes.CDLL(path)
        lib.SDL_GetDisplayName.restype = ctypes.c_char_p
        lib.SDL_GetDisplayName.argtypes = [ctypes.c_int]
        lib.SDL_GetDesktopDisplayMode.argtypes = [ctypes.c_int, ctypes.POINTER(_SDLDisplayMode)]
        lib.SDL_GetDisplayBounds.argtypes = [ctypes.c_int, ctypes.POINTER(_SDLRect)]
        lib.SDL_GetWindowFromID.restype = ctypes.c_void_p
        lib.SDL_GetWindowFromID.argtypes = [ctypes.c_uint32]
        lib.SDL_GetRenderer.restype = ctypes.c_void_p
        lib.SDL_GetRenderer.argtypes = [ctypes.c_void_p]
        lib.SDL_RenderPresent.restype = None
        lib.SDL_RenderPresent.argtypes = [ctypes.c_void_p]
        lib.SDL_GetRendererInfo.argtypes = [ctypes.c_void_p, ctypes.POINTER(_SDLRendererInfo)]
        lib.SDL_GL_GetProcAddress.restype = ctypes.c_void_p
        lib.SDL_GL_GetProcAddress.argtypes = [ctypes.c_char_p]
        return lib
    except (OSError, AttributeError) as exc:
        log.debug("SDL2 display queries unavailable (%s): names and refresh rates fall back to defaults", exc)
        return None


def _ensure_video() -> None:
    if not pygame.display.get_init():
        pygame.display.init()


def display_refresh_hz(index: int) -> float:
    """Refresh rate of display `index` in Hz (DEFAULT_REFRESH_HZ when SDL does not say)."""
    _ensure_video()
    lib = _sdl()
    if lib is not None:
        mode = _SDLDisplayMode()
        if lib.SDL_GetDesktopDisplayMode(index, ctypes.byref(mode)) == 0 and mode.refresh_rate > 0:
            return float(mode.refresh_rate)
    return DEFAULT_REFRESH_HZ


def list_displays() -> list[dict]:
    """Every display as {index, name, size (w, h), position (x, y), refresh_hz}, for `livekit devices`."""
    _ensure_video()
    lib = _sdl()
    sizes = pygame.display.get_desktop_sizes()
    displays = []
    for index, size in enumerate(sizes):
        name, position = f"Display {index}", (0, 0)
        if lib is not None:
            raw = lib.SDL_GetDisplayName(index)
            if raw:
                name = raw.decode("utf-8", errors="replace")
            rect = _SDLRect()
            if lib.SDL_GetDisplayBounds(index, ctypes.byref(rect)) == 0:
                position = (rect.x, rect.y)
        displays.append({"index": index, "name": name, "size": (int(size[0]), int(size[1])),
                         "position": position, "refresh_hz": display_refresh_hz(index)})
    return displays


def check_display_index(index: int) -> None:
    """Raise a ValueError that lists the displays when `index` is not one of them."""
    count = len(pygame.display.get_desktop_sizes())
    if not 0 <= index < count:
        names = ", ".join(f"{d['index']}: {d['name']} {d['size'][0]}x{d['size'][1]}" for d in list_displays())
        raise ValueError(f"display {index} does not exist; this machine has {count} ({names}). "
                         "Pick one of these indices (`livekit devices` lists them).")


def display_origin(index: int) -> tuple[int, int] | None:
    """Top-left corner of display `index` in desktop coordinates, or None when SDL cannot say."""
    lib = _sdl()
    rect = _SDLRect()
    if lib is not None and lib.SDL_GetDisplayBounds(index, ctypes.byref(rect)) == 0:
        return rect.x, rect.y
    return None


def gil_free_present(window_id: int) -> Callable[[], None] | None:
    """SDL_RenderPresent for the window's renderer, called through ctypes so other Python threads run meanwhile.

    pygame's Renderer.present() holds the GIL for the whole call, which with vsync is most of a display period:
    the post-processing, controller and OSC threads would starve. None when SDL cannot be reached this way (or
    answers for a different SDL instance); then the caller falls back to Renderer.present().
    """
    lib = _sdl()
    if lib is None:
        return None
    window = lib.SDL_GetWindowFromID(window_id)
    renderer = lib.SDL_GetRenderer(window) if window else None
    if not renderer:
        return None
    present = lib.SDL_RenderPresent

    def call() -> None:
        present(renderer)

    return call


def renderer_description(window_id: int) -> tuple[str, str, bool] | None:
    """(SDL renderer name, GL renderer string or "", drawn by the CPU?) for the window's renderer; None if unknown.

    Call on the thread that created the renderer (its GL context is current there). A CPU renderer is SDL's
    software one, or a GL one whose driver rasterises on the CPU (Mesa llvmpipe under Xvfb or a VM without a GPU).
    """
    lib = _sdl()
    if lib is None:
        return None
    window = lib.SDL_GetWindowFromID(window_id)
    renderer = lib.SDL_GetRenderer(window) if window else None
    info = _SDLRendererInfo()
    if not renderer or lib.SDL_GetRendererInfo(renderer, ctypes.byref(info)) != 0:
        return None
    name = (info.name or b"").decode(errors="replace")
    gl = ""
    if name.startswith("opengl"):
        address = lib.SDL_GL_GetProcAddress(b"glGetString")
        if address:
            text = ctypes.CFUNCTYPE(ctypes.c_char_p, ctypes.c_uint)(address)(_GL_RENDERER)
            gl = (text or b"").decode(errors="replace")
    cpu = bool(info.flags & _SDL_RENDERER_SOFTWARE) or any(word in gl.lower() for word in _SOFTWARE_GL)
    return name, gl, cpu


def centered_on_display(index: int) -> tuple[int, int]:
    """A window position that centres the window on display `index` (SDL_WINDOWPOS_CENTERED_DISPLAY)."""
    value = 0x2FFF0000 | index
    return value, value


class Placement:
    """Puts a window fullscreen on a display and back; falls back to a borderless display-sized window where no
    window manager honours the fullscreen request (a bare X server in a kiosk setup, Xvfb)."""

    def __init__(self, window: Window, display: int, windowed_px: tuple[int, int]) -> None:
        self.window = window
        self.display = display
        self.windowed_px = windowed_px
        self.fullscreen = False
        self._check_after_s: float | None = None  # when to verify that fullscreen really covers the display
        self._borderless = False

    def set_fullscreen(self, on: bool) -> None:
        """Enter (cursor hidden) or leave (cursor shown) fullscreen on the display."""
        if on:
            # onto the display first: fullscreen happens where the window is
            self.window.position = display_origin(self.display) or centered_on_display(self.display)
            self.window.set_fullscreen(desktop=True)
            self._check_after_s = time.monotonic() + 0.3
        else:
            self._check_after_s = None
            if self._borderless:
                self.window.borderless = False
                self._borderless = False
            else:
                self.window.set_windowed()
            self.window.size = self.windowed_px
            self.window.position = centered_on_display(self.display)
        self.fullscreen = on
        pygame.mouse.set_visible(not on)

    def check(self, now_s: float) -> None:
        """Once the window system had time to act, make sure a fullscreen window covers its display."""
        if self._check_after_s is None or now_s < self._check_after_s:
            return
        self._check_after_s = None
        target = tuple(pygame.display.get_desktop_sizes()[self.display])
        if tuple(self.window.size) == target:
            return
        log.info("fullscreen request not honoured (no window manager?); covering display %d with a borderless "
                 "%dx%d window", self.display, *target)
        self.window.set_windowed()
        self.window.borderless = True
        self.window.size = target
        self.window.position = display_origin(self.display) or (0, 0)
        self._borderless = True
