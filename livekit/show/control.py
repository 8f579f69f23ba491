"""ControlNet in a show: the ControlNet loaded with the model, and the control picture folded into every tick.

The sketch's `controlnet` loads with its model (on the main thread at startup, on the model-loading thread on hot
reload); its `control` source (or, without one, the `image`) gives each tick's picture, which the worker's
pre-processing thread turns into the ControlNet's input (`control_mode`) and the engine hands to the model with the
tick's `control_scale`.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import numpy as np

from pipeline.conditioning import Conditioning

NO_UNET = ("builtin", "folder:")  # model names (prefixes) whose models a ControlNet cannot steer


def check_controlnet(model: str, controlnet: str | None) -> None:
    """ValueError in one line, before anything loads, for a ControlNet on a model without a UNet (builtin) or a
    ControlNet that is neither a local folder nor in the local hub cache (a typo costs one line, not a model load)."""
    if controlnet is None:
        return
    name = str(model).strip() or "builtin"
    if name == NO_UNET[0] or name.startswith(NO_UNET[1]):
        raise ValueError(f"controlnet {controlnet!r} needs a Stable Diffusion 1.x/2.x model (a diffusers folder, a "
                         f"cached hub id, or random-sd:tiny to try it); the model {name!r} has no UNet for a "
                         "ControlNet to steer: set model = ... or remove controlnet")
    from pipeline.sd_files import resolve_local  # no torch: paths and the hub cache only

    try:
        resolve_local(controlnet, "ControlNet")
    except ValueError as exc:
        raise ValueError(f"cannot load controlnet {controlnet!r}: {_first_line(exc)}") from exc


def _first_line(exc: BaseException) -> str:
    """The first line of an error's message (its type's name when it has none)."""
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def attach_controlnet(model: Any, controlnet: str | None, control_scale: float = 1.0) -> Any:
    """The model with its ControlNet (pipeline.controlnet.ControlledModel), or the model itself without one;
    ValueError in one line when the ControlNet cannot load."""
    if controlnet is None:
        return model
    from pipeline.controlnet import load_controlnet

    try:
        return load_controlnet(model, controlnet, control_scale)
    except Exception as exc:  # a missing folder, a broken file, a ControlNet for another base model: one line
        raise ValueError(f"cannot load controlnet {controlnet!r}: {_first_line(exc)}") from exc


def with_control(cond: Conditioning, engine: Any, image: np.ndarray | None,
                 control: np.ndarray | None) -> Conditioning:
    """This tick's Conditioning with the ControlNet's picture (the `control` source's newest frame, else the
    `image`'s) and mode; unchanged when the sketch has no controlnet. engine: the sketch's EngineSettings."""
    if engine.controlnet is None:
        return cond
    picture = control if engine.control is not None else image
    if picture is None:  # a live source that has not delivered yet: the model keeps the last picture it had
        return replace(cond, control_mode=engine.control_mode)
    return replace(cond, control_image=picture, control_mode=engine.control_mode)
