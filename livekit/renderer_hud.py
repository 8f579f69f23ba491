"""The performer's HUD: a semi-transparent panel with rates, latency, model, parameter bars, audio meters, activity
lights and the last error, drawn into a pygame Surface that the Stage uploads as a texture."""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass, field

import pygame

# palette (RGB): calm on a dark panel, colour only where it means something
_PANEL = (12, 14, 20, 185)
_TEXT = (235, 238, 245)
_DIM = (150, 156, 170)
_FAINT = (95, 100, 115)
_ACCENT = (90, 200, 255)
_TRACK = (255, 255, 255, 38)
_GOOD = (110, 230, 140)
_WARN = (255, 190, 80)
_BAD = (255, 95, 95)
_KEYS_HELP = "H hud  F full  Space freeze  R rec  S shot  1-9 scene  L learn  Esc quit"


@dataclass(frozen=True)
class HudInfo:
    """What the runtime reports for the HUD; the Stage fills in what it can measure itself."""

    generated_fps: float | None = None  # frames/s leaving the engine; None: measured from Stage.submit()
    displayed_fps: float | None = None  # display refresh actually achieved; None: measured by the Stage
    latency_ms: float | None = None  # control change -> frame on screen
    model: str = ""  # model name, e.g. "builtin" or a checkpoint id
    sampler: str = ""  # sampler name, e.g. "dpmpp_2m"
    steps: int | None = None  # denoising steps per frame
    scene: str | None = None  # name or number of the active scene
    params: Mapping[str, float] = field(default_factory=dict)  # name -> value in 0..1, drawn as bars
    bands: Mapping[str, float] = field(default_factory=dict)  # audio band name -> level in 0..1
    beat: bool = False  # True while a detected beat should flash
    beat_phase: float | None = None  # 0..1 position inside the current beat (0 = on the beat)
    bpm: float | None = None  # tempo, from MIDI clock, tap or audio
    midi_last_s: float | None = None  # time.monotonic() of the last MIDI message
    osc_last_s: float | None = None  # time.monotonic() of the last OSC message
    recording: bool = False  # a recording is running
    learning: bool = False  # MIDI learn is waiting for a control
    last_error: str | None = None  # latest live-loop error, shown until cleared


@dataclass(frozen=True)
class HudStatus:
    """What the Stage itself knows and shows next to HudInfo."""

    generated_fps: float  # measured from submit()
    displayed_fps: float  # measured from presents
    display_hz: float  # the rate the stage paces to
    frozen: bool  # Space froze the picture
    stalled_s: float  # seconds since the last generated frame
    frame_px: tuple[int, int] | None  # size of the generated frames
    now_s: float  # time.monotonic() of this HUD render (activity lights fade against it)


class HudPainter:
    """Draws HudInfo into a transparent Surface sized for the window; keeps its fonts and rendered text cached."""

    def __init__(self) -> None:
        if not pygame.font.get_init():
            pygame.font.init()
        self._fonts: dict[int, pygame.font.Font] = {}
        self._text_cache: OrderedDict[tuple, pygame.Surface] = OrderedDict()
        self._scale = 1.0

    def _font(self, px: int) -> pygame.font.Font:
        px = max(8, px)
        if px not in self._fonts:
            self._fonts[px] = pygame.font.Font(None, px)  # pygame's bundled default font
        return self._fonts[px]

    def _text(self, text: str, size: float, color: tuple[int, ...]) -> pygame.Surface:
        key = (text, round(size * self._scale), color)
        surface = self._text_cache.get(key)
        if surface is None:
            surface = self._font(key[1]).render(text, True, color)
            self._text_cache[key] = surface
            if len(self._text_cache) > 512:
                self._text_cache.popitem(last=False)
        else:
            self._text_cache.move_to_end(key)
        return surface

    def _fit(self, text: str, size: float, width: int) -> str:
        font = self._font(round(size * self._scale))
        if font.size(text)[0] <= width:
            return text
        while text and font.size(text + "…")[0] > width:
            text = text[:-1]
        return text + "…"

    def _wrap(self, text: str, size: float, width: int, lines: int) -> list[str]:
        font = self._font(round(size * self._scale))
        out: list[str] = []
        words = text.split()
        while words and len(out) < lines:
            line = words.pop(0)
            while words and font.size(f"{line} {words[0]}")[0] <= width:
                line = f"{line} {words.pop(0)}"
            out.append(line)
        if words:
            out[-1] = f"{out[-1]} {' '.join(words)}"
        return [self._fit(line, size, width) for line in out]

    def render(self, info: HudInfo, status: HudStatus, window_px: tuple[int, int]) -> pygame.Surface:
        """The HUD panel for a window of window_px (w, h), as a per-pixel-alpha Surface to draw at the top left."""
        s = self._scale = min(2.5, max(0.75, window_px[1] / 720))
        pad, row = round(14 * s), round(24 * s)
        width = round(min(max(0.3 * window_px[0], 330 * s), 470 * s))
        inner = width - 2 * pad
        params = list(info.params.items())[:14]
        height = pad * 2 + row * 3 + round(10 * s)
        height += row * len(params) + (round(10 * s) if params else 0)
        height += round(78 * s) + row + (row * 2 if info.last_error else 0) + round(20 * s)
        panel = pygame.Surface((width, height), pygame.SRCALPHA)
        pygame.draw.rect(panel, _PANEL, panel.get_rect(), border_radius=round(10 * s))
        y = pad
        y = self._header(panel, info, status, pad, y, inner)
        y = self._rates(panel, info, status, pad, y, row)
        label = " · ".join(p for p in (info.model, info.sampler,
                                       f"{info.steps} steps" if info.steps else "",
                                       f"scene {info.scene}" if info.scene else "") if p)
        size = f"{status.frame_px[0]}x{status.frame_px[1]}" if status.frame_px else "no frame yet"
        panel.blit(self._text(self._fit(f"{label}  {size}" if label else size, 17, inner), 17, _DIM), (pad, y))
        y += row + round(4 * s)
        pygame.draw.line(panel, (255, 255, 255, 40), (pad, y), (pad + inner, y), max(1, round(s)))
        y += round(6 * s)
        for name, value in params:
            y = self._param_bar(panel, name, value, pad, y, inner, row)
        if params:
            y += round(4 * s)
            pygame.draw.line(panel, (255, 255, 255, 40), (pad, y), (pad + inner, y), max(1, round(s)))
            y += round(6 * s)
        y = self._audio(panel, info, pad, y, inner)
        y = self._activity(panel, info, status, pad, y, row)
        if info.last_error:
            for i, line in enumerate(self._wrap(info.last_error, 16, inner, lines=2)):
                panel.blit(self._text(line, 16, _BAD), (pad, y + i * round(row * 0.8)))
            y += row * 2
        panel.blit(self._text(self._fit(_KEYS_HELP, 14, inner), 14, _FAINT), (pad, height - pad - round(12 * s)))
        return panel

    def toast(self, text: str, window_px: tuple[int, int]) -> pygame.Surface:
        """A short message box ("Press Esc again to quit") sized for the window, to draw centred near the bottom."""
        self._scale = min(2.5, max(0.75, window_px[1] / 720))
        label = self._text(text, 24, _TEXT)
        pad = round(12 * self._scale)
        box = pygame.Surface((label.get_width() + 2 * pad, label.get_height() + 2 * pad), pygame.SRCALPHA)
        pygame.draw.rect(box, _PANEL, box.get_rect(), border_radius=round(8 * self._scale))
        box.blit(label, (pad, pad))
        return box

    def _header(self, panel: pygame.Surface, info: HudInfo, status: HudStatus, x: int, y: int, width: int) -> int:
        s = self._scale
        panel.blit(self._text("LIVEKIT", 22, _ACCENT), (x, y))
        badges: list[tuple[str, tuple[int, ...]]] = []
        if info.recording:
            badges.append(("● REC", _BAD))
        if status.frozen:
            badges.append(("FROZEN", _ACCENT))
        if info.learning:
            badges.append(("LEARN", _WARN))
        if status.stalled_s > 1.0:
            badges.append((f"STALLED {status.stalled_s:.1f} s", _WARN))
        right = x + width
        for text, color in reversed(badges):
            surface = self._text(text, 17, color)
            right -= surface.get_width() + round(12 * s)
            box = pygame.Rect(right, y - round(1 * s), surface.get_width() + round(10 * s), round(20 * s))
            pygame.draw.rect(panel, (*color[:3], 50), box, border_radius=round(4 * s))
            panel.blit(surface, (right + round(5 * s), y + round(2 * s)))
        return y + round(30 * s)

    def _rates(self, panel: pygame.Surface, info: HudInfo, status: HudStatus, x: int, y: int, row: int) -> int:
        gen = info.generated_fps if info.generated_fps is not None else status.generated_fps
        out = info.displayed_fps if info.displayed_fps is not None else status.displayed_fps
        out_color = _GOOD if out >= 0.9 * status.display_hz else _WARN
        parts: list[tuple[str, tuple[int, ...]]] = [("gen ", _DIM), (f"{gen:4.1f} fps", _TEXT),
                                                    ("   out ", _DIM), (f"{out:4.0f} fps", out_color)]
        if info.latency_ms is not None:
            lat_color = _TEXT if info.latency_ms < 150 else _WARN if info.latency_ms < 400 else _BAD
            parts += [("   lat ", _DIM), (f"{info.latency_ms:.0f} ms", lat_color)]
        for text, color in parts:
            surface = self._text(text, 19, color)
            panel.blit(surface, (x, y))
            x += surface.get_width()
        return y + row

    def _param_bar(self, panel: pygame.Surface, name: str, value: float, x: int, y: int, width: int,
                   row: int) -> int:
        s = self._scale
        label_w, value_w = round(width * 0.36), round(44 * s)
        panel.blit(self._text(self._fit(name, 17, label_w - round(6 * s)), 17, _TEXT), (x, y + round(2 * s)))
        bar = pygame.Rect(x + label_w, y + round(5 * s), width - label_w - value_w, round(10 * s))
        pygame.draw.rect(panel, _TRACK, bar, border_radius=round(4 * s))
        v = 0.0 if value != value else min(1.0, max(0.0, float(value)))  # NaN shows as empty
        if v > 0:
            fill = bar.copy()
            fill.width = max(round(4 * s), round(bar.width * v))
            pygame.draw.rect(panel, _ACCENT, fill, border_radius=round(4 * s))
        text = self._text(f"{v:.2f}", 16, _DIM)
        panel.blit(text, (x + width - text.get_width(), y + round(2 * s)))
        return y + round(row * 0.9)

    def _audio(self, panel: pygame.Surface, info: HudInfo, x: int, y: int, width: int) -> int:
        s = self._scale
        meter_h = round(50 * s)
        panel.blit(self._text("audio", 15, _FAINT), (x, y))
        bands = list(info.bands.items())[:8]
        beat_zone = round(110 * s)
        if bands:
            slot = (width - beat_zone) // len(bands)
            bar_w = max(round(6 * s), min(round(26 * s), slot - round(8 * s)))
            top = y + round(18 * s)
            for i, (name, level) in enumerate(bands):
                bx = x + i * slot
                track = pygame.Rect(bx, top, bar_w, meter_h - round(16 * s))
                pygame.draw.rect(panel, _TRACK, track, border_radius=round(3 * s))
                v = 0.0 if level != level else min(1.0, max(0.0, float(level)))
                if v > 0:
                    h = max(1, round(track.height * v))
                    color = _GOOD if v < 0.7 else _WARN if v < 0.9 else _BAD
                    pygame.draw.rect(panel, color, (bx, track.bottom - h, bar_w, h), border_radius=round(3 * s))
                panel.blit(self._text(self._fit(name, 13, slot), 13, _DIM), (bx, track.bottom + round(2 * s)))
        else:
            panel.blit(self._text("no audio input", 16, _FAINT), (x, y + round(26 * s)))
        flash = 1.0 if info.beat else 0.0
        if info.beat_phase is not None and 0.0 <= info.beat_phase < 0.25:
            flash = max(flash, 1.0 - info.beat_phase / 0.25)
        cx, cy, r = x + width - beat_zone + round(24 * s), y + round(36 * s), round(15 * s)
        pygame.draw.circle(panel, (*_WARN, round(40 + 215 * flash)), (cx, cy), r)
        pygame.draw.circle(panel, (*_WARN, 160), (cx, cy), r, max(1, round(2 * s)))
        if info.beat_phase is not None:
            phase = pygame.Rect(cx - r, cy + r + round(6 * s), 2 * r, max(2, round(3 * s)))
            pygame.draw.rect(panel, _TRACK, phase)
            pygame.draw.rect(panel, _WARN, (phase.x, phase.y, round(phase.width * min(1.0, info.beat_phase)),
                                            phase.height))
        bpm = f"{info.bpm:.1f}" if info.bpm else "--"
        panel.blit(self._text(bpm, 22, _TEXT), (cx + r + round(10 * s), cy - round(14 * s)))
        panel.blit(self._text("BPM", 13, _DIM), (cx + r + round(10 * s), cy + round(4 * s)))
        return y + meter_h + round(28 * s)

    def _activity(self, panel: pygame.Surface, info: HudInfo, status: HudStatus, x: int, y: int, row: int) -> int:
        s = self._scale
        for label, last in (("MIDI", info.midi_last_s), ("OSC", info.osc_last_s)):
            age = None if last is None else status.now_s - last
            lit = age is not None and age < 0.25
            color = (*_GOOD, 255) if lit else (*_GOOD, 70) if age is not None and age < 5.0 else (*_FAINT, 120)
            pygame.draw.circle(panel, color, (x + round(7 * s), y + round(9 * s)), round(6 * s))
            text = self._text(label, 17, _TEXT if age is not None else _FAINT)
            panel.blit(text, (x + round(18 * s), y + round(1 * s)))
            x += text.get_width() + round(40 * s)
        return y + row
