"""How the stage window looks and paces itself: `StageConfig`, checked when it is made."""

from __future__ import annotations

from dataclasses import dataclass

from livekit.stage.mix import SCALING_MODES

__all__ = ["StageConfig"]


@dataclass(frozen=True)
class StageConfig:
    """How the stage window looks and paces itself."""

    size_px: tuple[int, int] = (1280, 720)  # window size when windowed (rehearsal); fullscreen uses the desktop size
    fullscreen: bool = False  # start fullscreen: borderless at the display's resolution, cursor hidden
    display: int = 0  # display index the window opens on (`livekit devices` lists them)
    scaling: str = "fit"  # fit: whole frame, letterboxed; fill: cover the screen, centre crop; stretch: ignore aspect
    vsync: bool = True  # let presents wait for the display refresh where the platform gives it
    show_hud: bool = False  # HUD visible at start (H toggles it)
    title: str = "livekit"  # window title
    display_hz: float | None = None  # display rate to pace to without vsync; None: the display's refresh rate
    crossfade_max_s: float = 0.5  # longest crossfade between two generated frames; 0 cuts instead
    hud_hz: float = 10.0  # HUD panel redraws per second (the picture moves at the display rate; under a software
    # GL at 1080p each redraw's upload costs display frames: 30 Hz showed 50 fps, 10 Hz 56, no HUD 57-60)
    cpu_mix: bool | None = None  # blend crossfades on the CPU and upload one texture; None: when the renderer draws
    # on the CPU (SDL software, Mesa llvmpipe), where two scaled quads per present cost more than one blend

    def __post_init__(self) -> None:
        if self.scaling not in SCALING_MODES:
            raise ValueError(f"scaling must be one of {', '.join(SCALING_MODES)}, got {self.scaling!r}")
        if len(self.size_px) != 2 or min(self.size_px) < 16:
            raise ValueError(f"size_px must be (width, height) of at least 16 px each, got {self.size_px}")
        if self.display < 0:
            raise ValueError(f"display must be a display index >= 0, got {self.display}")
        if self.display_hz is not None and not 1.0 <= self.display_hz <= 1000.0:
            raise ValueError(f"display_hz must be in 1..1000 (or None for the display's rate), got {self.display_hz}")
        if self.crossfade_max_s < 0:
            raise ValueError(f"crossfade_max_s must be >= 0 (0 cuts between frames), got {self.crossfade_max_s}")
        if self.hud_hz <= 0:
            raise ValueError(f"hud_hz must be > 0, got {self.hud_hz}")
