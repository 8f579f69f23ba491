"""The laptop half of the README's render-node recipe, as a check: run it on the laptop while the node runs.

    python tools/render_node_check.py --node 192.168.1.20         # node: livekit run ... --osc-out LAPTOP:9100

It finds the node's NDI source, counts frames and their rate, sends `/livekit/prompt` and reports how the picture's
colour moved, reads the node's state (bpm, beat, fps) from OSC, joins Link at --bpm and then moves the tempo to see
the node follow. Needs ndi-python, aalink and python-osc (all in livekit's install).
"""

from __future__ import annotations

import argparse
import asyncio
import threading
import time

import numpy as np


def main() -> int:
    """Command line: prints one line per step; exit status 1 when the node's NDI source is not found."""
    import NDIlib as ndi
    from aalink import Link
    from pythonosc.dispatcher import Dispatcher
    from pythonosc.osc_server import ThreadingOSCUDPServer
    from pythonosc.udp_client import SimpleUDPClient

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--node", default="127.0.0.1", help="the render machine's address (OSC in, NDI extra IP)")
    ap.add_argument("--source", default="(livekit)", help="a fragment of the node's NDI source name")
    ap.add_argument("--osc-port", type=int, default=9000, help="the node's OSC input port")
    ap.add_argument("--state-port", type=int, default=9100, help="where the node's --osc-out sends its state")
    ap.add_argument("--prompt", default="golden plasma fire")
    ap.add_argument("--bpm", type=float, default=133.0)
    args = ap.parse_args()

    state: dict[str, float] = {}
    disp = Dispatcher()
    disp.map("/livekit/state/*", lambda addr, *v: state.__setitem__(addr.rsplit("/", 1)[-1], float(v[0])))
    server = ThreadingOSCUDPServer(("0.0.0.0", args.state_port), disp)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    osc = SimpleUDPClient(args.node, args.osc_port)
    loop = asyncio.new_event_loop()

    async def join() -> Link:
        return Link(args.bpm)  # aalink binds to the running loop

    link = loop.run_until_complete(join())
    link.quantum, link.enabled = 4.0, True

    if not ndi.initialize():
        print("NDI runtime did not start")
        return 1
    settings = ndi.FindCreate()
    settings.extra_ips = args.node
    finder = ndi.find_create_v2(settings)
    start, source = time.monotonic(), None
    while source is None and time.monotonic() - start < 30:
        ndi.find_wait_for_sources(finder, 500)
        source = next((s for s in ndi.find_get_current_sources(finder) if args.source in s.ndi_name), None)
    if source is None:
        print(f"no NDI source with {args.source!r} in its name after 30 s")
        return 1
    print(f"source {source.ndi_name} found after {time.monotonic() - start:.1f} s")
    settings_rx = ndi.RecvCreateV3()
    settings_rx.color_format = ndi.RECV_COLOR_FORMAT_RGBX_RGBA
    receiver = ndi.recv_create_v3(settings_rx)
    ndi.recv_connect(receiver, source)

    def frames(n: int) -> list[tuple[float, np.ndarray, tuple]]:
        got = []
        while len(got) < n:
            kind, video, _a, _m = ndi.recv_capture_v2(receiver, 2000)
            if kind == ndi.FRAME_TYPE_VIDEO:
                got.append((time.monotonic(), video.data[..., :3].astype(np.float64).mean((0, 1)), video.data.shape))
                ndi.recv_free_video_v2(receiver, video)
            loop.run_until_complete(asyncio.sleep(0))  # Link's callbacks
        return got

    first = frames(60)
    rate = (len(first) - 1) / max(1e-6, first[-1][0] - first[0][0])
    print(f"frames {first[-1][2][1]}x{first[-1][2][0]} at {rate:.1f} fps, mean RGB {first[-1][1].round(1).tolist()}")
    osc.send_message("/livekit/prompt", args.prompt)
    after = frames(90)
    print(f"after /livekit/prompt {args.prompt!r}: mean RGB {after[-1][1].round(1).tolist()}")
    print("node state:", {k: round(v, 2) for k, v in sorted(state.items())}, f"(Link peers here: {link.num_peers})")
    link.tempo = args.bpm - 5
    frames(60)
    print(f"Link tempo moved to {args.bpm - 5:g}: the node reports {state.get('bpm', float('nan')):.2f} BPM")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
