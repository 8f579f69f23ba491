"""An NDI stream as a live picture source (TouchDesigner, Resolume, OBS, another livekit), and NDI source discovery."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np

from livekit.outputs.ndi import DEFAULT_EXTRA_IPS, load_ndi
from livekit.picture.base import PictureSource, SourceStalled


class _Finder:
    """An NDI finder that also asks ``extra_ips`` directly (loopback sees senders on this machine)."""

    def __init__(self, extra_ips: Sequence[str]) -> None:
        self._ndi = load_ndi()
        settings = self._ndi.FindCreate()
        settings.show_local_sources = True
        if extra_ips:
            settings.extra_ips = ",".join(extra_ips)
        self._finder = self._ndi.find_create_v2(settings)
        if self._finder is None:
            raise RuntimeError("NDI could not create a finder")

    def sources(self, timeout_s: float, wanted: str | None = None, stop: threading.Event | None = None) -> list[Any]:
        """Sources seen within timeout_s; returns early once one matching ``wanted`` shows up or ``stop`` is set."""
        deadline = time.monotonic() + timeout_s
        found = list(self._ndi.find_get_current_sources(self._finder))
        while time.monotonic() < deadline and not (stop is not None and stop.is_set()):
            if wanted is not None and any(wanted.lower() in s.ndi_name.lower() for s in found):
                break
            remaining_ms = max(1, int((deadline - time.monotonic()) * 1000))
            self._ndi.find_wait_for_sources(self._finder, min(200, remaining_ms))
            found = list(self._ndi.find_get_current_sources(self._finder))
        return found

    def close(self) -> None:
        self._ndi.find_destroy(self._finder)


def list_ndi_sources(timeout_s: float = 1.0, extra_ips: Sequence[str] = DEFAULT_EXTRA_IPS) -> list[str]:
    """Names of the NDI sources visible within timeout_s, e.g. ``["STUDIO (TouchDesigner out1)"]``."""
    finder = _Finder(extra_ips)
    try:
        return sorted(s.ndi_name for s in finder.sources(timeout_s))
    finally:
        finder.close()


class NdiInput(PictureSource):
    """Receives the NDI source whose name contains ``source`` (case-insensitive); reconnects when it goes away."""

    kind = "NDI"

    def __init__(self, source: str, extra_ips: Sequence[str] = DEFAULT_EXTRA_IPS, find_timeout_s: float = 2.0,
                 reconnect_s: float = 0.5, stall_s: float = 2.0, low_bandwidth: bool = False) -> None:
        if not isinstance(source, str) or not source.strip():
            raise ValueError(f"ndi_in needs a source name (or part of one), got {source!r}")
        load_ndi()  # a missing package fails here, with the fix, not on the decoding thread
        super().__init__(source.strip(), reconnect_s=reconnect_s, stall_s=stall_s)
        self.extra_ips = tuple(extra_ips)
        self.find_timeout_s = find_timeout_s
        self.low_bandwidth = low_bandwidth
        self.connected_to: str | None = None  # full name of the source being received

    def _frames(self) -> Iterator[np.ndarray]:
        ndi = load_ndi()
        finder = _Finder(self.extra_ips)
        try:
            found = finder.sources(self.find_timeout_s, wanted=self.name, stop=self._stop)
            if self.stopping:
                return
            matches = [s for s in found if self.name.lower() in s.ndi_name.lower()]
            if not matches:
                seen = ", ".join(sorted(s.ndi_name for s in found)) or "none"
                raise SourceStalled(f"no NDI source matching {self.name!r} (seen: {seen})")
            settings = ndi.RecvCreateV3()
            settings.color_format = ndi.RECV_COLOR_FORMAT_RGBX_RGBA
            settings.bandwidth = ndi.RECV_BANDWIDTH_LOWEST if self.low_bandwidth else ndi.RECV_BANDWIDTH_HIGHEST
            receiver = ndi.recv_create_v3(settings)
            if receiver is None:
                raise RuntimeError("NDI could not create a receiver")
            ndi.recv_connect(receiver, matches[0])
            self.connected_to = matches[0].ndi_name
        finally:
            finder.close()
        try:
            last_frame_s = time.monotonic()
            while not self.stopping:
                kind, video, _audio, _meta = ndi.recv_capture_v2(receiver, 100)
                if kind == ndi.FRAME_TYPE_VIDEO:
                    try:
                        frame = np.array(video.data[..., :3])  # a copy: NDI reuses the buffer after free
                    finally:
                        ndi.recv_free_video_v2(receiver, video)
                    last_frame_s = time.monotonic()
                    yield frame
                elif kind == ndi.FRAME_TYPE_AUDIO:
                    ndi.recv_free_audio_v2(receiver, _audio)
                elif kind == ndi.FRAME_TYPE_METADATA:
                    ndi.recv_free_metadata(receiver, _meta)
                elif time.monotonic() - last_frame_s > self.stall_s:
                    raise SourceStalled(f"no frame from {self.connected_to!r} for {self.stall_s:.1f} s")
        finally:
            ndi.recv_destroy(receiver)
            self.connected_to = None


def ndi_in(source: str, low_bandwidth: bool = False) -> NdiInput:
    """An NDI picture source for a sketch: ``image = ndi_in("TouchDesigner (out1)")``; the show starts and closes it."""
    return NdiInput(source, low_bandwidth=low_bandwidth)
