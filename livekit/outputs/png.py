"""PNG files without an imaging library: an encoder for (H, W, 3|4) uint8 frames and an atomic save."""

from __future__ import annotations

import os
import struct
import zlib
from pathlib import Path

import numpy as np


def encode_png(frame: np.ndarray, compress_level: int = 6) -> bytes:
    """PNG bytes of an (H,W,3) or (H,W,4) uint8 image (8-bit RGB/RGBA, the "Sub" row filter, zlib)."""
    if frame.ndim != 3 or frame.shape[2] not in (3, 4) or frame.dtype != np.uint8:
        raise ValueError(f"PNG images must be (H, W, 3 or 4) uint8, got shape {frame.shape} dtype {frame.dtype}")
    h, w, c = frame.shape
    rows = np.ascontiguousarray(frame).reshape(h, w * c)
    filtered = np.empty((h, w * c + 1), dtype=np.uint8)
    filtered[:, 0] = 1  # filter type Sub: each byte minus the same channel of the pixel to its left
    filtered[:, 1 : 1 + c] = rows[:, :c]
    np.subtract(rows[:, c:], rows[:, :-c], out=filtered[:, 1 + c :])  # uint8 wraps modulo 256, as PNG wants

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", w, h, 8, 2 if c == 3 else 6, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header)
            + chunk(b"IDAT", zlib.compress(filtered.tobytes(), compress_level)) + chunk(b"IEND", b""))


def save_png(path: str | os.PathLike, frame: np.ndarray, compress_level: int = 6) -> Path:
    """Write a frame as a PNG file (created atomically, parent folders made) and return its path."""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_name(target.name + ".partial")
    partial.write_bytes(encode_png(frame, compress_level))
    os.replace(partial, target)
    return target
