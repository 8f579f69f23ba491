"""Soak test: run a sketch headless for many minutes while a fuzzer and a flood play on its OSC port, and report
RSS, threads, file descriptors, fps and dropped-input counts over time.

    python -m livekit.soak --minutes 60                  # hello.py on the builtin model, a table every minute
    python -m livekit.soak --minutes 30 --json           # one JSON object per row, then a summary

The summary gives the RSS growth after the first five minutes (warm-up: caches, allocator pools) and the fps
drift between the first and the last row after the warm-up; targets: both under 5% on a quiet machine.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import socket
import struct
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

from controllers.osc import free_udp_port
from livekit.show.inputs import InputOptions
from livekit.show.loop import RunOptions, Show

WORDS = ("neon", "glass", "storm", "velvet", "xqzt", "plasma", "ruin", "zzyzx", "ember", "qwop", "tide", "fractal")


@dataclass(frozen=True)
class Row:
    """One sample of the running show."""

    minute: float
    rss_mb: float
    threads: int
    fds: int
    fps: float
    frames: int
    dropped_inputs: int  # rejected direct sets + forgotten keys + malformed OSC counted by the server
    sent: int  # datagrams the fuzzer and the flood sent so far


def _rss_mb() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def _fds() -> int:
    try:
        return len(os.listdir("/proc/self/fd"))
    except OSError:
        return -1


def _pad(b: bytes) -> bytes:
    return b + b"\0" * (4 - len(b) % 4)


def _message(address: str, tags: str, payload: bytes) -> bytes:
    return _pad(address.encode()) + _pad(("," + tags).encode()) + payload


class Attack:
    """A fuzzer (random bytes, bad tags, NaN/inf/overflowing numbers) and a flood (unique addresses, random-word
    prompts) sending to one UDP port from one thread, at about `rate` datagrams per second."""

    def __init__(self, port: int, rate: float = 400.0, seed: int = 0) -> None:
        self.port, self.rate = port, rate
        self.sent = 0
        self._rng = random.Random(seed)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="soak-attack", daemon=True)

    def _datagram(self, i: int) -> bytes:
        r = self._rng.random()
        if r < 0.2:
            return self._rng.randbytes(self._rng.randint(1, 200))  # noise
        if r < 0.3:
            return _message("/speed", "d", struct.pack(">d", self._rng.choice((1e308, -1e308, float("nan")))))
        if r < 0.4:
            return _message("/speed", "f", struct.pack(">f", self._rng.choice((3.4e38, float("inf"), 0.5))))
        if r < 0.5:
            return _message("/weird", "c", b"\0\0\0A")  # a type tag python-osc does not handle
        if r < 0.6:
            words = " ".join(self._rng.choice(WORDS) + str(self._rng.randint(0, 10**6)) for _ in range(3))
            return _message("/livekit/prompt", "s", _pad(words.encode()))
        if r < 0.65:
            return _message(f"/livekit/prompt/{self._rng.randint(0, 10**6)}", "s", _pad(b"ember"))
        return _message(f"/flood/{i}", "f", struct.pack(">f", self._rng.random()))  # unique addresses

    def _run(self) -> None:
        period = 1.0 / self.rate
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            i = 0
            while not self._stop.is_set():
                s.sendto(self._datagram(i), ("127.0.0.1", self.port))
                i += 1
                self.sent = i
                if i % 20 == 0:
                    self._stop.wait(20 * period)

    def start(self) -> Attack:
        """Start sending."""
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop sending."""
        self._stop.set()
        self._thread.join(2.0)


def _dropped(show: Show) -> int:
    rejected = show.bus.rejected if show.bus is not None else None
    osc = show.inputs.osc if show.inputs is not None else None
    problems = osc.router.problems.total if osc is not None else 0
    return (rejected.count + rejected.forgotten if rejected else 0) + problems


def summarize(rows: list[Row], warmup_min: float = 5.0) -> dict:
    """RSS growth and fps drift after the warm-up, in percent of the first row after it."""
    after = [r for r in rows if r.minute >= warmup_min] or rows[-1:]
    first, last = after[0], after[-1]
    return {
        "rows": len(rows), "minutes": rows[-1].minute if rows else 0.0,
        "rss_growth_pct": round(100.0 * (last.rss_mb - first.rss_mb) / max(first.rss_mb, 1e-9), 2),
        "fps_drift_pct": round(100.0 * (last.fps - first.fps) / max(first.fps, 1e-9), 2),
        "threads": [min(r.threads for r in after), max(r.threads for r in after)],
        "fds": [min(r.fds for r in after), max(r.fds for r in after)],
        "dropped_inputs": rows[-1].dropped_inputs if rows else 0, "sent": rows[-1].sent if rows else 0,
    }


def soak(sketch: Path, minutes: float, every_s: float = 60.0, size: tuple[int, int] = (256, 256),
         rate: float = 400.0, emit: Callable[[Row], None] = print) -> list[Row]:
    """Run the show for `minutes` under attack; emit each Row as it is measured and return them all."""
    port = free_udp_port()
    show = Show(RunOptions(sketch=sketch, size=size, headless=True, reload=False, inputs=InputOptions(osc_port=port)),
                status=lambda line: print(line, file=sys.stderr))
    runner = threading.Thread(target=show.run, name="soak-show", daemon=True)
    runner.start()
    while show.frames_out == 0 and runner.is_alive():
        time.sleep(0.1)
    attack = Attack(port, rate).start()
    rows: list[Row] = []
    t0 = time.monotonic()
    last_t, last_frames = t0, show.frames_out
    try:
        while runner.is_alive() and time.monotonic() - t0 < minutes * 60.0:
            time.sleep(min(every_s, max(0.0, minutes * 60.0 - (time.monotonic() - t0))))
            now, frames = time.monotonic(), show.frames_out
            row = Row(minute=round((now - t0) / 60.0, 2), rss_mb=round(_rss_mb(), 1), threads=threading.active_count(),
                      fds=_fds(), fps=round((frames - last_frames) / max(now - last_t, 1e-9), 2), frames=frames,
                      dropped_inputs=_dropped(show), sent=attack.sent)
            last_t, last_frames = now, frames
            rows.append(row)
            emit(row)
    finally:
        attack.stop()
        show.stop_event.set()
        runner.join(5.0)
    return rows


def main(argv: list[str] | None = None) -> int:
    """`python -m livekit.soak`: print the table (or JSON rows) and the summary."""
    root = Path(__file__).resolve().parents[1]
    p = argparse.ArgumentParser(prog="python -m livekit.soak", description=__doc__.splitlines()[0])
    p.add_argument("--sketch", type=Path, default=root / "sketches" / "hello.py")
    p.add_argument("--minutes", type=float, default=60.0)
    p.add_argument("--every", type=float, default=60.0, help="seconds between rows")
    p.add_argument("--size", default="256x256")
    p.add_argument("--rate", type=float, default=400.0, help="attack datagrams per second")
    p.add_argument("--warmup", type=float, default=5.0, help="minutes before the growth and drift baseline")
    p.add_argument("--json", action="store_true")
    args = p.parse_args(argv)
    w, h = (int(v) for v in args.size.lower().split("x"))
    header = f"{'min':>6} {'rss MB':>8} {'threads':>7} {'fds':>5} {'fps':>7} {'frames':>8} {'dropped':>9} {'sent':>9}"

    def emit(row: Row) -> None:
        if args.json:
            print(json.dumps(asdict(row)), flush=True)
        else:
            print(f"{row.minute:6.2f} {row.rss_mb:8.1f} {row.threads:7d} {row.fds:5d} {row.fps:7.2f} "
                  f"{row.frames:8d} {row.dropped_inputs:9d} {row.sent:9d}", flush=True)

    if not args.json:
        print(header, flush=True)
    rows = soak(args.sketch, args.minutes, args.every, (w, h), args.rate, emit)
    if not rows:
        print("soak: the show ended before the first row", file=sys.stderr)
        return 1
    print(json.dumps({"summary": summarize(rows, args.warmup)}), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
