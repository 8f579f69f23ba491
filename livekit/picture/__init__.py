"""Live picture sources for img2img and feedback: camera, video file, NDI in (each decodes on its own thread)."""

from __future__ import annotations

import importlib
from typing import Any

_MODULES = {
    "livekit.picture.base": ["PictureSource", "SourceStalled"],
    "livekit.picture.video_file": ["VideoFile", "video"],
    "livekit.picture.camera": ["Camera", "camera", "list_cameras"],
    "livekit.picture.ndi_in": ["NdiInput", "ndi_in", "list_ndi_sources"],
}
_EXPORTS = {name: module for module, names in _MODULES.items() for name in names}
__all__ = sorted(_EXPORTS)


def public(name: str) -> Any:
    """A public name of the package, always the object itself (``ndi_in`` the function, even once the submodule
    livekit.picture.ndi_in, which shares its name, has been imported)."""
    return getattr(importlib.import_module(_EXPORTS[name]), name)


def __getattr__(name: str) -> Any:
    """Import a public name on first use (so a video file never loads NDI); `camera`/`ndi_in` are the functions."""
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'livekit.picture' has no attribute {name!r}")
    loaded = importlib.import_module(module)
    # bind every name of that module now: importing livekit.picture.camera set `camera` to the submodule itself
    for exported in _MODULES[module]:
        globals()[exported] = getattr(loaded, exported)
    return globals()[name]
