"""The performer's HUD: a semi-transparent panel with rates, latency, model, parameter bars, audio meters, activity
lights and the last error, drawn into a pygame Surface that the Stage uploads as a texture."""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass, field

import pygame

Color = tuple[int, ...]

# palette: calm on a dark panel, colour only where it means something; 4-tuples are translucent over the panel
_PANEL = (10, 12, 18, 200)
_TEXT = (236, 239, 246)
_DIM = (160, 166, 182)
_FAINT = (112, 118, 134)
_ACCENT = (92, 204, 255)
_TRACK = (255, 255, 255, 36)
_RULE = (255, 255, 255, 40)
_GOOD = (112, 232, 142)
_WARN = (255, 192, 82)
_BAD = (255, 98, 98)
_KEYS_HELP = "H hud   F full   Space freeze   R rec   S shot   1-9 scene   L learn   Esc quit"


@dataclass(frozen=True)
class HudInfo:
    """What the runtime reports for the HUD (pass fresh mappings, not ones another thread keeps mutating)."""

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
    notes: tuple[str, ...] = ()  # short status lines: tempo source and confidence, Link peers, dropped input


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
        self._s = 1.0  # UI scale: 1.0 at a 720 px tall window

    def _px(self, value: float) -> int:
        return max(1, round(value * self._s))

    def _font(self, size: float) -> pygame.font.Font:
        px = max(9, self._px(size))
        if px not in self._fonts:
            self._fonts[px] = pygame.font.Font(None, px)  # pygame's bundled default font
        return self._fonts[px]

    def _text(self, text: str, size: float, color: Color) -> pygame.Surface:
        key = (text, self._px(size), color)
        surface = self._text_cache.get(key)
        if surface is None:
            surface = self._font(size).render(text, True, color)
            self._text_cache[key] = surface
            if len(self._text_cache) > 512:
                self._text_cache.popitem(last=False)
        else:
            self._text_cache.move_to_end(key)
        return surface

    def _fit(self, text: str, size: float, width: int) -> str:
        font = self._font(size)
        if font.size(text)[0] <= width:
            return text
        while text and font.size(text + "...")[0] > width:
            text = text[:-1]
        return text + "..."

    def _wrap(self, text: str, size: float, width: int, lines: int) -> list[str]:
        font = self._font(size)
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

    def _set_scale(self, window_px: tuple[int, int]) -> None:
        self._s = min(3.0, max(0.8, min(window_px[1] / 720, window_px[0] / 1000)))

    def render(self, info: HudInfo, status: HudStatus, window_px: tuple[int, int]) -> pygame.Surface:
        """The HUD panel for a window of window_px (w, h), as a per-pixel-alpha Surface to draw at the top left."""
        self._set_scale(window_px)
        pad = self._px(16)
        width = min(self._px(460), window_px[0] - 2 * pad)
        inner = width - 2 * pad
        # content goes on a tall transparent sheet first; the panel is cut to the height it used
        sheet = pygame.Surface((width, self._px(1200)), pygame.SRCALPHA)
        y = self._header(sheet, info, status, pad, pad, inner)
        y = self._rates(sheet, info, status, pad, y)
        label = " · ".join(p for p in (info.model, info.sampler, f"{info.steps} steps" if info.steps else "",
                                       f"scene {info.scene}" if info.scene else "") if p)
        size = f"{status.frame_px[0]}x{status.frame_px[1]}" if status.frame_px else "waiting for the first frame"
        sheet.blit(self._text(self._fit(f"{label}   {size}" if label else size, 19, inner), 19, _DIM), (pad, y))
        y = self._rule(sheet, pad, y + self._px(26), inner)
        params = list(info.params.items())
        for name, value in params[:12]:
            y = self._param_bar(sheet, name, value, pad, y, inner)
        if len(params) > 12:
            sheet.blit(self._text(f"+{len(params) - 12} more", 17, _FAINT), (pad, y))
            y += self._px(22)
        if params:
            y = self._rule(sheet, pad, y + self._px(4), inner)
        y = self._audio(sheet, info, pad, y, inner)
        y = self._activity(sheet, info, status, pad, y)
        for note in info.notes[:4]:
            sheet.blit(self._text(self._fit(note, 17, inner), 17, _DIM), (pad, y))
            y += self._px(21)
        if info.last_error:
            for line in self._wrap(info.last_error.replace("\n", " "), 19, inner, lines=2):
                sheet.blit(self._text(line, 19, _BAD), (pad, y))
                y += self._px(21)
            y += self._px(6)
        y += self._px(4)
        sheet.blit(self._text(self._fit(_KEYS_HELP, 16, inner), 16, _FAINT), (pad, y))
        height = y + self._px(16) + pad
        panel = pygame.Surface((width, height), pygame.SRCALPHA)
        pygame.draw.rect(panel, _PANEL, panel.get_rect(), border_radius=self._px(12))
        panel.blit(sheet, (0, 0), area=pygame.Rect(0, 0, width, height))
        return panel

    def toast(self, text: str, window_px: tuple[int, int]) -> pygame.Surface:
        """A short message box ("Press Esc again to quit") sized for the window, to draw centred near the bottom."""
        self._set_scale(window_px)
        label = self._text(text, 28, _TEXT)
        pad = self._px(14)
        box = pygame.Surface((label.get_width() + 2 * pad, label.get_height() + 2 * pad), pygame.SRCALPHA)
        pygame.draw.rect(box, _PANEL, box.get_rect(), border_radius=self._px(10))
        box.blit(label, (pad, pad))
        return box

    def _fill(self, sheet: pygame.Surface, color: Color, rect: pygame.Rect, radius: int = 0) -> None:
        """A rounded rect alpha-blended onto the sheet (pygame.draw alone would overwrite the sheet's alpha)."""
        if len(color) == 3 or color[3] == 255:
            pygame.draw.rect(sheet, color, rect, border_radius=radius)
            return
        patch = pygame.Surface(rect.size, pygame.SRCALPHA)
        pygame.draw.rect(patch, color, patch.get_rect(), border_radius=radius)
        sheet.blit(patch, rect.topleft)

    def _dot(self, sheet: pygame.Surface, color: Color, center: tuple[int, int], radius: int, width: int = 0) -> None:
        """A circle alpha-blended onto the sheet."""
        patch = pygame.Surface((2 * radius + 2, 2 * radius + 2), pygame.SRCALPHA)
        pygame.draw.circle(patch, color, (radius + 1, radius + 1), radius, width)
        sheet.blit(patch, (center[0] - radius - 1, center[1] - radius - 1))

    def _rule(self, sheet: pygame.Surface, x: int, y: int, width: int) -> int:
        self._fill(sheet, _RULE, pygame.Rect(x, y, width, max(1, self._px(1))))
        return y + self._px(10)

    def _header(self, sheet: pygame.Surface, info: HudInfo, status: HudStatus, x: int, y: int, width: int) -> int:
        sheet.blit(self._text("LIVEKIT", 26, _ACCENT), (x, y))
        badges: list[tuple[str, Color]] = []
        if info.recording:
            badges.append(("REC", _BAD))
        if status.frozen:
            badges.append(("FROZEN", _ACCENT))
        if info.learning:
            badges.append(("LEARN", _WARN))
        if status.stalled_s > 1.0:
            badges.append((f"STALLED {status.stalled_s:.0f} s", _WARN))
        right = x + width
        for text, color in reversed(badges):
            label = self._text(text, 18, color)
            dot = self._px(5) if text == "REC" else 0
            box = pygame.Rect(0, y - self._px(2), label.get_width() + self._px(14) + (3 * dot if dot else 0),
                              label.get_height() + self._px(6))
            box.right = right
            self._fill(sheet, (*color[:3], 48), box, self._px(5))
            if dot:
                self._dot(sheet, color, (box.x + self._px(7) + dot, box.centery), dot)
            sheet.blit(label, (box.right - self._px(7) - label.get_width(), box.y + self._px(4)))
            right = box.x - self._px(8)
        return y + self._px(34)

    def _rates(self, sheet: pygame.Surface, info: HudInfo, status: HudStatus, x: int, y: int) -> int:
        gen = info.generated_fps if info.generated_fps is not None else status.generated_fps
        out = info.displayed_fps if info.displayed_fps is not None else status.displayed_fps
        out_color = _GOOD if out >= 0.9 * status.display_hz else _WARN
        parts: list[tuple[str, Color]] = [("gen ", _DIM), (f"{gen:.1f} fps", _TEXT),
                                          ("    out ", _DIM), (f"{out:.0f} fps", out_color)]
        if info.latency_ms is not None:
            lat_color = _TEXT if info.latency_ms < 150 else _WARN if info.latency_ms < 400 else _BAD
            parts += [("    lat ", _DIM), (f"{info.latency_ms:.0f} ms", lat_color)]
        for text, color in parts:
            label = self._text(text, 22, color)
            sheet.blit(label, (x, y))
            x += label.get_width()
        return y + self._px(28)

    def _param_bar(self, sheet: pygame.Surface, name: str, value: float, x: int, y: int, width: int) -> int:
        label_w, value_w = round(width * 0.34), self._px(46)
        sheet.blit(self._text(self._fit(name, 20, label_w - self._px(8)), 20, _TEXT), (x, y))
        bar = pygame.Rect(x + label_w, y + self._px(3), width - label_w - value_w, self._px(10))
        self._fill(sheet, _TRACK, bar, self._px(5))
        v = 0.0 if value != value else min(1.0, max(0.0, float(value)))  # NaN shows as empty
        if v > 0:
            self._fill(sheet, _ACCENT, pygame.Rect(bar.x, bar.y, max(self._px(6), round(bar.width * v)),
                                                   bar.height), self._px(5))
        number = self._text(f"{v:.2f}", 18, _DIM)
        sheet.blit(number, (x + width - number.get_width(), y))
        return y + self._px(23)

    def _audio(self, sheet: pygame.Surface, info: HudInfo, x: int, y: int, width: int) -> int:
        sheet.blit(self._text("AUDIO", 15, _FAINT), (x, y))
        top, meter_h = y + self._px(18), self._px(40)
        bands = list(info.bands.items())[:8]
        beat_w = self._px(120)
        if bands:
            slot = (width - beat_w) // len(bands)
            bar_w = max(self._px(8), min(self._px(28), slot - self._px(10)))
            for i, (name, level) in enumerate(bands):
                track = pygame.Rect(x + i * slot, top, bar_w, meter_h)
                self._fill(sheet, _TRACK, track, self._px(3))
                v = 0.0 if level != level else min(1.0, max(0.0, float(level)))
                if v > 0:
                    h = max(1, round(meter_h * v))
                    color = _GOOD if v < 0.7 else _WARN if v < 0.9 else _BAD
                    self._fill(sheet, color, pygame.Rect(track.x, track.bottom - h, bar_w, h), self._px(3))
                sheet.blit(self._text(self._fit(name, 15, slot), 15, _DIM), (track.x, track.bottom + self._px(3)))
        else:
            sheet.blit(self._text("no audio input", 19, _FAINT), (x, top + self._px(12)))
        flash = 1.0 if info.beat else 0.0
        if info.beat_phase is not None and 0.0 <= info.beat_phase < 0.25:
            flash = max(flash, 1.0 - info.beat_phase / 0.25)
        r = self._px(16)
        cx, cy = x + width - beat_w + r + self._px(4), top + r
        self._dot(sheet, (*_WARN, round(45 + 210 * flash)), (cx, cy), r)
        self._dot(sheet, (*_WARN, 170), (cx, cy), r, self._px(2))
        if info.beat_phase is not None:
            phase = pygame.Rect(cx - r, cy + r + self._px(6), 2 * r, self._px(4))
            self._fill(sheet, _TRACK, phase)
            self._fill(sheet, _WARN, pygame.Rect(phase.x, phase.y, round(phase.width * min(1.0, info.beat_phase)),
                                                 phase.height))
        sheet.blit(self._text(f"{info.bpm:.1f}" if info.bpm else "--", 26, _TEXT), (cx + r + self._px(12), top))
        sheet.blit(self._text("BPM", 15, _DIM), (cx + r + self._px(12), top + self._px(22)))
        return top + meter_h + self._px(26)

    def _activity(self, sheet: pygame.Surface, info: HudInfo, status: HudStatus, x: int, y: int) -> int:
        for label, last in (("MIDI", info.midi_last_s), ("OSC", info.osc_last_s)):
            age = None if last is None else status.now_s - last
            if age is not None and age < 0.25:
                color: Color = _GOOD  # lit: a message in the last quarter second
            elif age is not None and age < 5.0:
                color = (*_GOOD, 80)  # glowing: active recently
            else:
                color = (*_FAINT, 110)  # dark: silent or never seen
            self._dot(sheet, color, (x + self._px(7), y + self._px(8)), self._px(7))
            text = self._text(label, 20, _TEXT if age is not None else _FAINT)
            sheet.blit(text, (x + self._px(20), y))
            x += text.get_width() + self._px(46)
        return y + self._px(30)
