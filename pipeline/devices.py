"""Which torch device and dtype a model runs on: `auto` picks cuda, then mps, then cpu."""

from __future__ import annotations

import torch

_GPU_TYPES = ("cuda", "mps", "xpu")  # accelerators where float16 is the fast default


def _available(kind: str) -> bool:
    """Whether this torch build and machine can run on the device type `kind`."""
    if kind == "cpu":
        return True
    if kind == "mps":
        return bool(getattr(torch.backends, "mps", None) and torch.backends.mps.is_available())
    backend = getattr(torch, kind, None)
    return bool(backend is not None and hasattr(backend, "is_available") and backend.is_available())


def resolve_device(device: str | torch.device = "auto") -> torch.device:
    """Turn "auto", "cpu", "cuda", "cuda:1", "mps", ... into a torch.device that exists on this machine."""
    if isinstance(device, torch.device):
        requested = device
    else:
        name = str(device).strip().lower()
        if name == "auto":
            for kind in ("cuda", "mps"):
                if _available(kind):
                    return resolve_device(kind)
            return torch.device("cpu")
        try:
            requested = torch.device(name)
        except RuntimeError:
            raise ValueError(
                f"unknown device {device!r}: use 'auto' (cuda, then mps, then cpu), 'cpu', 'cuda', 'cuda:N' or 'mps'"
            ) from None
    kind = requested.type
    if not _available(kind):
        raise ValueError(
            f"device {str(requested)!r} is not available here (torch {torch.__version__}, "
            f"torch.{kind}.is_available() is False): pass device='auto' to use the best one present, or 'cpu'"
        )
    if kind == "cuda":
        index = torch.cuda.current_device() if requested.index is None else requested.index
        count = torch.cuda.device_count()
        if index >= count:
            raise ValueError(
                f"device 'cuda:{index}' does not exist: this machine has {count} CUDA device(s), 0..{count - 1}"
            )
        return torch.device("cuda", index)
    if kind == "mps":
        return torch.device("mps", 0)  # tensors on the single Apple GPU report mps:0
    return requested


def default_dtype(device: str | torch.device) -> torch.dtype:
    """float16 on a GPU (cuda, mps, xpu), float32 on the CPU (the dtype that always works there)."""
    if isinstance(device, str) and device.strip().lower() == "auto":
        device = resolve_device("auto")
    kind = device.type if isinstance(device, torch.device) else torch.device(str(device).strip().lower()).type
    return torch.float16 if kind in _GPU_TYPES else torch.float32


def channels_last_default(device: torch.device) -> bool:
    """Whether UNets and VAEs run channels-last by default: on CUDA and the CPU (oneDNN), not on mps."""
    return device.type in ("cuda", "cpu")


DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


def parse_dtype(name: str | torch.dtype | None) -> torch.dtype | None:
    """'float32' | 'bfloat16' | 'float16' -> the torch dtype; None or 'auto' -> None (the device's default)."""
    if name is None or isinstance(name, torch.dtype):
        return name
    key = str(name).strip().lower().removeprefix("torch.")
    if key == "auto":
        return None
    if key not in DTYPES:
        raise ValueError(f"unknown dtype {name!r}; choose auto, {', '.join(DTYPES)}")
    return DTYPES[key]


def set_threads(threads: int) -> None:
    """Use this many torch CPU threads (intra-op) from now on."""
    if threads < 1:
        raise ValueError(f"threads must be >= 1, got {threads}")
    torch.set_num_threads(threads)
