"""A camera in three layers, two viewers, one of them on a link shaped by the kernel.

Runs in a network namespace with nothing but ``lo`` (``tests.chromium.run_in_loopback_namespace``,
also ``bench/sfu_layers.py``): the shaped viewer's downlink is an HTB class with a short packet
queue on ``lo`` that only that viewer's UDP port is filtered into (real packets, real queueing
and drops; nothing leaves the namespace). Prints ``RESULT <json>`` last: what each viewer decoded
(picture widths tell the layer) and when.

Phases: open link (both climb to the top layer); shaped to ``--mid-kbit`` (the shaped viewer
must move down, the other must not notice); shaped to ``--low-kbit`` (video paused for the
shaped viewer, its audio continues); open again (its video comes back by itself).
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import math
import os
import re
import shutil
import subprocess
import sys
import time
from typing import Any

import av
from aiortc import MediaStreamTrack, RTCPeerConnection, RTCSessionDescription
from aiortc.mediastreams import MediaStreamError

from media.ice import configure_host_addresses
from media.internals.selected_pair import selected_pair
from media.router import MediaRouter
from media.simulcast import LayeredSubscriberTrack
from signaling import SubscribeSession
from tests.media.peers import client_configuration
from tests.media.scenario import publish_layers, scenario_main

TOP_WIDTH = 640


class Viewer:
    """A decoding viewer: per video frame (time, width); audio frame times."""

    def __init__(self, name: str, router: MediaRouter) -> None:
        self.name = name
        self.session = SubscribeSession(name, router)
        self.pc = RTCPeerConnection(client_configuration())
        self.video: list[tuple[float, int]] = []
        self.audio: list[float] = []
        self.layer_messages: list[tuple[float, int]] = []
        self.session.on_layer = lambda _track, layer: self.layer_messages.append(
            (time.monotonic(), layer)
        )
        self._tasks: list[asyncio.Task[None]] = []
        self.pc.on("track", self._on_track)

    def _on_track(self, track: MediaStreamTrack) -> None:
        self._tasks.append(asyncio.ensure_future(self._consume(track)))

    async def _consume(self, track: MediaStreamTrack) -> None:
        try:
            while True:
                frame = await track.recv()
                now = time.monotonic()
                if isinstance(frame, av.VideoFrame):
                    self.video.append((now, frame.width))
                else:
                    self.audio.append(now)
        except MediaStreamError:
            pass

    async def subscribe(self, track_ids: list[str]) -> None:
        offer = await self.session.set_tracks(track_ids)
        while offer is not None:
            await self.pc.setRemoteDescription(RTCSessionDescription(offer.sdp, "offer"))
            await self.pc.setLocalDescription(await self.pc.createAnswer())
            offer = await self.session.apply_answer(self.pc.localDescription.sdp)

    def width(self) -> int | None:
        return self.video[-1][1] if self.video else None

    def port(self) -> int:
        pair = selected_pair(self.pc)
        assert pair is not None, "not connected"
        local, remote = pair
        assert local.host == remote.host == "127.0.0.1"
        return int(local.port)

    def fps(self, since: float, until: float) -> float:
        n = sum(1 for t, _ in self.video if since <= t < until)
        return n / max(until - since, 1e-6)

    def audio_rate(self, since: float, until: float) -> float:
        n = sum(1 for t in self.audio if since <= t < until)
        return n / max(until - since, 1e-6)

    def max_audio_gap(self, since: float, until: float) -> float:
        times = [since] + [t for t in self.audio if since <= t < until] + [until]
        return max(b - a for a, b in itertools.pairwise(times))

    def max_gap(self, since: float, until: float) -> float:
        times = [since] + [t for t, _ in self.video if since <= t < until] + [until]
        return max(b - a for a, b in itertools.pairwise(times))

    def widths(self, since: float, until: float) -> dict[str, int]:
        out: dict[str, int] = {}
        for t, w in self.video:
            if since <= t < until:
                out[str(w)] = out.get(str(w), 0) + 1
        return out

    async def close(self) -> None:
        for task in self._tasks:
            task.cancel()
        await self.pc.close()
        await self.session.close()


TC = shutil.which("tc", path=f"{os.environ.get('PATH', '')}:/usr/sbin:/sbin") or "tc"


def tc(*args: str) -> None:
    subprocess.run([TC, *args], check=True, capture_output=True)


def shape(rate: str, *, add: bool = False) -> None:
    verb = "add" if add else "change"
    tc("class", verb, "dev", "lo", "parent", "1:", "classid", "1:20", "htb", "rate", rate,
       "ceil", rate, "burst", "6k")  # fmt: skip


def install_shaper(port: int, queue_packets: int) -> None:
    """Everything on lo unshaped except what goes to ``port`` (the shaped viewer)."""
    tc("qdisc", "add", "dev", "lo", "root", "handle", "1:", "htb", "default", "10")
    tc("class", "add", "dev", "lo", "parent", "1:", "classid", "1:10", "htb", "rate", "10gbit")
    shape("10gbit", add=True)
    # A short queue, as a mobile link's: beyond it packets are dropped.
    tc("qdisc", "add", "dev", "lo", "parent", "1:20", "handle", "20:", "pfifo", "limit",
       str(queue_packets))  # fmt: skip
    tc("filter", "add", "dev", "lo", "parent", "1:", "protocol", "ip", "prio", "1", "u32",
       "match", "ip", "protocol", "17", "0xff", "match", "ip", "dport", str(port), "0xffff",
       "flowid", "1:20")  # fmt: skip


QDISC = re.compile(
    r"Sent (\d+) bytes (\d+) pkt \(dropped (\d+).*?backlog (\d+)([KM]?)b (\d+)p", re.S
)
UNIT = {"": 1, "K": 1000, "M": 1000_000}


async def sample_queue(trace: list[tuple[Any, ...]], extra: Any, step: float = 0.2) -> None:
    """The shaped viewer's queue on the link, every ``step`` seconds: (time, bytes sent,
    packets sent, packets dropped, bytes queued, packets queued, ``extra()``)
    (the kernel's own counters: what the link did, not what the SFU thinks it did)."""
    while True:
        proc = await asyncio.create_subprocess_exec(
            TC, "-s", "qdisc", "show", "dev", "lo", "parent", "1:20",
            stdout=asyncio.subprocess.PIPE,
        )  # fmt: skip
        out, _ = await proc.communicate()
        found = QDISC.search(out.decode())
        if found:
            sent, packets, dropped, queued, unit, queued_packets = found.groups()
            counts = (int(sent), int(packets), int(dropped), int(queued) * UNIT[unit])
            trace.append((time.monotonic(), *counts, int(queued_packets), *extra()))
        await asyncio.sleep(step)


async def until(check: Any, timeout: float, step: float = 0.05) -> float | None:
    """Seconds until ``check()`` is true, or None after ``timeout``."""
    start = time.monotonic()
    while time.monotonic() - start < timeout:
        if check():
            return time.monotonic() - start
        await asyncio.sleep(step)
    return None


async def run(args: argparse.Namespace) -> dict[str, Any]:
    configure_host_addresses(["127.0.0.1"])
    router = MediaRouter()
    teacher = await publish_layers(router, args.fps)
    camera, track_ids = teacher.camera, teacher.track_ids
    layered = teacher.layered(router)

    shaped, other = Viewer("shaped", router), Viewer("open", router)
    result: dict[str, Any] = {}
    try:
        for viewer in (shaped, other):
            await viewer.subscribe(track_ids)
        # The shaped viewer's selection: each target it sets and why (the trace).
        decisions: list[tuple[float, int, str]] = []
        for transceiver in shaped.session.pc.getTransceivers():
            track = transceiver.sender.track
            if isinstance(track, LayeredSubscriberTrack):
                retarget = track._retarget

                def traced(target: int, track: Any = track, retarget: Any = retarget) -> None:
                    decisions.append((time.monotonic(), target, track.selector.reason))
                    retarget(target)

                track._retarget = traced  # type: ignore[method-assign]
        t0 = time.monotonic()
        connected = await until(lambda: shaped.video and other.video, 20)
        assert connected is not None, "no video decoded"
        result["first_frame_s"] = round(connected, 2)
        install_shaper(shaped.port(), args.queue)
        video_senders = [t.sender for t in shaped.session.pc.getTransceivers() if t.kind == "video"]
        queue: list[tuple[Any, ...]] = []
        sampler = asyncio.ensure_future(
            sample_queue(
                queue,
                lambda: (
                    [getattr(s, "lag", None) for s in video_senders],
                    [t.keyframe_requests for t in camera.tracks],
                ),
            )
        )
        result["first_width"] = shaped.video[0][1]

        # 1. Open link: both climb to the top layer.
        top = await until(
            lambda: shaped.width() == TOP_WIDTH and other.width() == TOP_WIDTH, args.phase * 3
        )
        result["top_s"] = None if top is None else round(top + connected, 2)
        await asyncio.sleep(2)
        # Shape while it receives the top layer (switch_s is from there to a lower one).
        result["top_when_shaped"] = (
            await until(lambda: shaped.width() == TOP_WIDTH, args.phase * 2) is not None
        )
        result["width_when_shaped"] = shaped.width()
        t1 = time.monotonic()

        # 2. Shaped to mid: the shaped viewer moves down, the other keeps its frame rate.
        shape(f"{args.mid_kbit}kbit")
        down = await until(lambda: (shaped.width() or TOP_WIDTH) < TOP_WIDTH, args.phase)
        result["switch_s"] = None if down is None else round(down, 2)
        # Narrowed again before the first probe back up is due (``congestion_hold`` after
        # the move down): a probe whose keyframe (40-60 kB of the top layer) went into the
        # link as it narrowed to 150 kbit/s held 4-5 s of queue, the voice lost for 2-4 s of
        # it (seen twice in ten runs with an 8 s phase here).
        await asyncio.sleep(args.mid_phase)
        t2 = time.monotonic()
        settle = t1 + (down or 0) + 1.0
        result["mid"] = {
            "widths": shaped.widths(settle, t2),
            "max_gap_s": round(shaped.max_gap(settle, t2), 2),
            "fps": round(shaped.fps(settle, t2), 1),
            "other_fps_before": round(other.fps(t0 + connected, t1), 1),
            "other_fps": round(other.fps(t1, t2), 1),
            "other_widths": other.widths(t1, t2),
        }

        # 3. Shaped to low: video paused for the shaped viewer, its audio continues.
        shape(f"{args.low_kbit}kbit")
        paused = await until(
            lambda: bool(shaped.layer_messages) and shaped.layer_messages[-1][1] < 0,
            args.phase * 2,
        )
        result["paused_s"] = None if paused is None else round(paused, 2)
        # The voice over the first half phase after the pause shares the link with the drain
        # of the drop-tail queue the video filled before it (100 packets: seconds at this
        # rate); over the next half phase, with what the SFU does while the video is paused
        # (its padding, its probes of the lowest layer).
        t_paused = time.monotonic()
        await asyncio.sleep(args.phase)
        t3 = time.monotonic()
        t_settled = t3 - args.phase / 2
        result["low"] = {
            "audio_per_s_draining": round(shaped.audio_rate(t_paused, t_settled), 1),
            "audio_per_s": round(shaped.audio_rate(t_settled, t3), 1),
            "audio_max_gap_s": round(shaped.max_audio_gap(t_paused, t3), 2),
            "video_fps": round(shaped.fps(t_settled, t3), 1),
            # Voice packets in each second from the pause on (where the drain ends).
            "audio_each_s": [
                round(shaped.audio_rate(t_paused + i, t_paused + i + 1))
                for i in range(int(args.phase))
            ],
            # The open viewer's voice over the same seconds: what the machine let through
            # (a process starved of CPU decodes less, whatever the link).
            "other_audio_per_s": round(other.audio_rate(t_settled, t3), 1),
            "other_audio_each_s": [
                round(other.audio_rate(t_paused + i, t_paused + i + 1))
                for i in range(int(args.phase))
            ],
            "other_fps": round(other.fps(t2, t3), 1),
        }

        # 4. Open again: video comes back by itself.
        shape("10gbit")
        back = await until(lambda: bool(shaped.video) and shaped.video[-1][0] > t3, args.phase * 3)
        result["resume_s"] = None if back is None else round(back, 2)
        top_again = await until(lambda: shaped.width() == TOP_WIDTH, args.phase * 4)
        result["top_again_s"] = None if top_again is None else round(top_again + (back or 0), 2)
        stats = layered.stats.snapshot()["subscribers"]
        result["switches"] = {k: v["layer_switches"] for k, v in stats.items()}
        result["layer_messages"] = [m for _, m in shaped.layer_messages]
        # The same with their times, from the shaping to mid (the selection's trace).
        result["layer_trace"] = [(round(t - t1, 2), m) for t, m in shaped.layer_messages]
        result["decisions"] = [(round(t - t1, 2), m, why) for t, m, why in decisions]
        sampler.cancel()
        # From the shaping to mid on: (s, kbit/s and packets/s sent over the step, drops in
        # it, kB queued, packets queued, keep-alive lag, keyframes asked of each layer).
        result["queue_trace"] = [
            (round(b[0] - t1, 1), round((b[1] - a[1]) * 8 / 1000 / (b[0] - a[0])),
             round((b[2] - a[2]) / (b[0] - a[0])), b[3] - a[3], round(b[4] / 1000, 1), b[5],
             b[6], b[7])
            for a, b in itertools.pairwise(queue) if b[0] >= t1 - 0.5
        ]  # fmt: skip
        result["fillers"] = sum(getattr(s, "fillers", 0) for s in video_senders)
        result["retransmissions"] = sum(getattr(s, "retransmissions", 0) for s in video_senders)
        result["keyframe_requests"] = [t.keyframe_requests for t in camera.tracks]
        result["plis_sent"] = [layer.stats.plis_sent for layer in layered.layers]
        rates = layered.rates(time.monotonic() + 1) or []
        result["layer_kbit"] = [None if math.isinf(r) else round(r / 1000) for r in rates]
        result["seconds"] = round(time.monotonic() - t0, 1)
    finally:
        for viewer in (shaped, other):
            await viewer.close()
        await teacher.close()
    return result


def shaped_options() -> argparse.ArgumentParser:
    """The options of a scenario with a shaped viewer (also ``relay_layers_scenario``)."""
    parser = argparse.ArgumentParser()
    parser.add_argument("--mid-kbit", type=int, default=600)
    parser.add_argument("--queue", type=int, default=100)
    parser.add_argument("--phase", type=float, default=8.0)
    parser.add_argument("--fps", type=int, default=10)
    return parser


def main() -> int:
    parser = shaped_options()
    parser.add_argument("--mid-phase", type=float, default=6.0)
    # The slowest link: the voice (``VoiceAudioTrack``, a browser's ~32 kbit/s Opus,
    # about 75 kbit/s with its headers at 50 packets a second) and the paused video's padding
    # fit in it, the lowest layer beside them does not.
    parser.add_argument("--low-kbit", type=int, default=150)
    return scenario_main(run, parser)


if __name__ == "__main__":
    sys.exit(main())
