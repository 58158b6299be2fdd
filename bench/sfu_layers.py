"""Layers per viewer: what layer selection costs per viewer, and how fast a viewer follows its link.

Three parts, side by side in one run, JSON on the last line (with ``uptime``):

1. ``cost``: the server's per-viewer work for one frame, plain forwarding against a camera in
   three layers, measured in one process without sockets (the network part, SRTP and
   ``sendto``, is the same for both and is measured by ``bench/sfu_fanout.py``). N viewers
   (``--viewers``) each take every frame from their ``SubscriberTrack`` as a forwarding sender
   does; per frame: ingest, packetization once, the fan-out, each viewer's queue and
   ``recv_encoded``. Layered viewers are spread over the three layers (a third of them after
   a switch, so their timestamps and VP8 picture ids are rewritten per frame: the worst case)
   and each gets one feedback per second (REMB's pace) through the selector. Reported: CPU
   microseconds per viewer per frame (``process_time``, the slope over N), and the ratio.
2. ``switch``: ``tests/media/layers_scenario.py`` in a network namespace (real aiortc peers, the
   viewer's link shaped by HTB on ``lo``): ``switch_s``, from the drop of the link to the first
   lower-layer frame the viewer decodes, and the other figures of that scenario.

3. ``vs_janus``: bench/sfu/layers_vs_janus.py in a loopback-only namespace: one Chromium
   publishes its camera in three layers into Homeroom (three m-lines) and into Janus VideoRoom
   (RID simulcast) at the same time; viewers join and leave both in cycles, and each cycle's
   CPU windows cover the same seconds for both servers: the marginal CPU per viewer and per
   forwarded packet of both, ``layers_cpu_ratio_vs_janus`` (the median over cycles of
   Homeroom's / Janus's per packet, target <= 1.0) with its spread.

Run: ``python -m bench.sfu_layers`` (as root, for the namespaces; ``--no-cost``,
``--no-switch``, ``--no-janus`` skip parts).
"""

from __future__ import annotations

import argparse
import asyncio
import fractions
import json
import subprocess
import sys
import time
from typing import Any

import av
from aiortc.rtcrtpparameters import RTCRtpCodecParameters

from media.forwarder import ForwardedTrack, SubscriberTrack
from media.router import MediaRouter
from media.simulcast import LayeredSubscriberTrack
from tests.chromium import run_in_loopback_namespace

VP8 = RTCRtpCodecParameters(mimeType="video/VP8", clockRate=90000, payloadType=96)
FPS = 30
# Frame sizes of the three layers (bytes): 100 / 300 / 800 kbit/s at 30 fps.
SIZES = (420, 1250, 3330)


def _packet(size: int, keyframe: bool, pts: int) -> av.Packet:
    packet = av.Packet(bytes([0x10 if keyframe else 0x11]) + bytes(size - 1))
    packet.pts = pts
    packet.time_base = fractions.Fraction(1, 90000)
    packet.is_keyframe = keyframe
    return packet


async def _no_pli() -> bool:
    return True


async def _drain(subs: list[SubscriberTrack]) -> None:
    for sub in subs:
        while sub._queue:
            await sub.recv_encoded()


async def measure(n: int, layered: bool, frames: int) -> float:
    """CPU seconds for ``frames`` frames with ``n`` viewers."""
    router = MediaRouter()
    subs: list[SubscriberTrack] = []
    if layered:
        _track, layers = router.publish_layers("p", "camera", [_no_pli, _no_pli, _no_pli])
        inputs = layers
    else:
        plain = router.publish("p", "camera", "video", _no_pli)
        assert isinstance(plain, ForwardedTrack)
        inputs = [plain]
    track = router.get(router.tracks()[0].track_id)
    # Plain forwarding sends everyone the full picture (what a viewer gets without layers).
    sizes = SIZES if layered else SIZES[2:]
    for i in range(n):
        sub = track.subscribe(f"v{i}")
        sub._joined = True
        track._attach(sub)
        subs.append(sub)
    pts = 0
    for layer_input, size in zip(inputs, sizes, strict=True):
        layer_input.on_packet(VP8, _packet(size, True, pts))
    await _drain(subs)
    if layered:
        # Spread the viewers over the layers: switch 2/3 of them (on keyframes, as live).
        for i, sub in enumerate(subs):
            assert isinstance(sub, LayeredSubscriberTrack)
            if i % 3:
                sub._retarget(i % 3)
        pts += 3000
        for layer_input, size in zip(inputs, sizes, strict=True):
            layer_input.on_packet(VP8, _packet(size, True, pts))
        await _drain(subs)
    start = time.process_time()
    for f in range(frames):
        pts += 3000
        for layer_input, size in zip(inputs, sizes, strict=True):
            layer_input.on_packet(VP8, _packet(size, False, pts))
        if layered and f % FPS == 0:
            for sub in subs:
                sub.link_feedback(2_000_000, 0.1, 0.0, 0.02, True)
        await _drain(subs)
    used = time.process_time() - start
    forwarded = sum(sub.stats.frames_forwarded for sub in subs)
    # Every viewer got every frame of its layer (nothing skipped or dropped).
    assert forwarded >= n * (frames + 1), (forwarded, n, frames)
    router.close()
    return used


def slope(points: list[tuple[int, float]]) -> float:
    n = len(points)
    mx = sum(x for x, _ in points) / n
    my = sum(y for _, y in points) / n
    return sum((x - mx) * (y - my) for x, y in points) / sum((x - mx) ** 2 for x, _ in points)


def cost(viewers: list[int], frames: int, repeats: int) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for name, layered in (("plain", False), ("layers", True)):
        per_n: dict[int, float] = {}
        for n in viewers:
            runs = [asyncio.run(measure(n, layered, frames)) for _ in range(repeats)]
            per_n[n] = min(runs) / frames  # CPU seconds per frame (least disturbed run)
        us = slope([(n, per_n[n]) for n in viewers]) * 1e6
        out[name] = {
            "us_per_frame_by_viewers": {str(n): round(v * 1e6, 1) for n, v in per_n.items()},
            "us_per_viewer_per_frame": round(us, 2),
        }
    out["ratio_layers_to_plain"] = round(
        out["layers"]["us_per_viewer_per_frame"] / out["plain"]["us_per_viewer_per_frame"], 2
    )
    return out


def switch() -> dict[str, Any]:
    result, _stderr = run_in_loopback_namespace("tests.media.layers_scenario", "--phase", "8")
    result.pop("queue_trace", None)  # the kernel's queue every 0.2 s: the test's diagnosis
    return result


def vs_janus() -> dict[str, Any]:
    """bench/sfu/layers_vs_janus.py: a Chromium camera in three layers into both servers."""
    result, _stderr = run_in_loopback_namespace("bench.sfu.layers_vs_janus", timeout=900)
    return result


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--viewers", default="4,16,48")
    parser.add_argument("--frames", type=int, default=300)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--no-cost", action="store_true")
    parser.add_argument("--no-switch", action="store_true")
    parser.add_argument("--no-janus", action="store_true")
    args = parser.parse_args()
    uptime_before = subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()
    figures: dict[str, Any] = {}
    if not args.no_cost:
        figures["cost"] = cost([int(v) for v in args.viewers.split(",")], args.frames, args.repeats)
    if not args.no_switch:
        figures["switch"] = switch()
    if not args.no_janus:
        side = figures["vs_janus"] = vs_janus()
        for key in ("layers_cpu_ratio_vs_janus", "layers_cpu_ratio_vs_janus_per_viewer"):
            figures[key] = side.get(key)
        for key in ("ratio_per_packet", "ratio_per_viewer", "like_for_like_cycles"):
            figures[f"vs_janus_{key}"] = side.get(key)
        for key in ("marginal_cpu_per_viewer", "cpu_s_per_kpacket", "video_pps_per_viewer"):
            figures[key] = {s: (side.get(s) or {}).get(key) for s in ("homeroom", "janus")}
    figures["uptime"] = [
        uptime_before,
        subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip(),
    ]
    print(json.dumps(figures))
    return 0


if __name__ == "__main__":
    sys.exit(main())
