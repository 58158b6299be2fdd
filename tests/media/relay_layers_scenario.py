"""A camera in three layers on an origin, two viewers on an edge, one on a shaped link.

Publisher (aiortc ``SimulcastCamera``, three layers, and a tone) -> origin -> node-to-node leg
-> edge -> two decoding viewers. Runs in a network namespace with nothing but ``lo``
(``tests.chromium.run_in_loopback_namespace``): the shaped viewer's downlink is an HTB class
with a short packet queue on ``lo`` that only that viewer's UDP port enters (as
``tests/media/layers_scenario.py``); the leg and the other viewer are not shaped. Prints
``RESULT <json>`` last: what each edge viewer decoded (picture widths tell the layer) and what
the leg carried.

Phases: open link (both edge viewers climb to the top layer); shaped to ``--mid-kbit`` (the
shaped viewer must move to a lower layer, the other must keep the top one).
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import sys
import time
from typing import Any

from media.ice import configure_host_addresses
from media.router import MediaRouter
from media.simulcast import LayeredTrack
from signaling import SubscribeSession
from signaling.relay import RelayIngest, negotiate
from tests.media.layers_scenario import (
    TOP_WIDTH,
    Viewer,
    install_shaper,
    shape,
    shaped_options,
    until,
)
from tests.media.scenario import publish_layers, scenario_main


def changes(video: list[tuple[float, int]], since: float) -> list[tuple[float, int]]:
    out: list[tuple[float, int]] = []
    last = None
    for t, width in video:
        if t >= since and width != last:
            out.append((round(t - since, 2), width))
        last = width
    return out


async def run(args: argparse.Namespace) -> dict[str, Any]:
    configure_host_addresses(["127.0.0.1"])
    origin, edge = MediaRouter(), MediaRouter()
    teacher = await publish_layers(origin, args.fps)
    camera, track_ids, camera_id = teacher.camera, teacher.track_ids, teacher.camera_id
    at_origin = teacher.layered(origin)

    leg = SubscribeSession("edge:B", origin, relay=True)
    ingest = RelayIngest("origin:A", edge)
    shaped, other = Viewer("shaped", edge), Viewer("open", edge)
    result: dict[str, Any] = {}
    try:
        offer = await leg.set_tracks(track_ids)
        assert offer is not None
        result["leg_layers"] = sorted(
            (t.layer for t in offer.tracks if t.track_id == camera_id),
            key=lambda layer: -1 if layer is None else layer,
        )
        await negotiate(leg, ingest, offer)
        at_edge = edge.get(camera_id)
        result["edge_layers"] = (
            len(at_edge.layers) if isinstance(at_edge, LayeredTrack) else "one (not in layers)"
        )

        for viewer in (shaped, other):
            await viewer.subscribe(track_ids)
        t0 = time.monotonic()
        connected = await until(lambda: shaped.video and other.video, 20)
        assert connected is not None, "no video decoded at the edge"
        result["first_widths"] = [shaped.video[0][1], other.video[0][1]]
        install_shaper(shaped.port(), args.queue)

        # 1. Open link: both edge viewers climb to the top layer.
        top = await until(
            lambda: shaped.width() == TOP_WIDTH and other.width() == TOP_WIDTH, args.phase * 3
        )
        result["top_s"] = None if top is None else round(top + connected, 2)
        result["width_when_shaped"] = shaped.width()
        t1 = time.monotonic()

        # 2. Shaped: the shaped viewer moves down, the other keeps the top layer.
        shape(f"{args.mid_kbit}kbit")
        down = await until(lambda: (shaped.width() or TOP_WIDTH) < TOP_WIDTH, args.phase)
        result["switch_s"] = None if down is None else round(down, 2)
        await asyncio.sleep(args.phase)
        t2 = time.monotonic()
        settle = t1 + (down or 0) + 1.0
        # Video paused for the shaped viewer's connection (audio first) is no freeze.
        paused_at = next((t for t, m in shaped.layer_messages if t >= settle and m < 0), t2)
        result["shaped"] = {
            "widths": shaped.widths(settle, t2),
            "paused_s": None if paused_at == t2 else round(paused_at - t1, 2),
            "max_gap_s": round(shaped.max_gap(settle, paused_at), 2),
            # (seconds after shaping, width) at each change of layer, and the frame gaps over
            # half a second (when they ended, how long).
            "changes": changes(shaped.video, t1),
            "gaps": [
                (round(b - t1, 2), round(b - a, 2))
                for (a, _), (b, _) in itertools.pairwise(shaped.video)
                if a >= t1 and b - a > 0.5
            ],
            "layer_messages": [(round(t - t1, 2), m) for t, m in shaped.layer_messages if t >= t1],
            "last_frame_before_end_s": round(t2 - shaped.video[-1][0], 2) if shaped.video else None,
        }
        result["open"] = {
            "widths": other.widths(settle, t2),
            "fps_before": round(other.fps(t0 + connected, t1), 1),
            "fps": round(other.fps(t1, t2), 1),
            "last_width": other.width(),
        }
        # Keyframe requests per layer: the edge's (PLIs up the leg, one per layer's m-line)
        # as the origin counted them for its subscriber "edge:B", and what reached the camera.
        result["origin_requests_from_edge"] = [
            layer.stats.snapshot()["subscribers"].get("edge:B", {}).get("keyframe_requests")
            for layer in at_origin.layers
        ]
        if isinstance(at_edge, LayeredTrack):
            result["edge_plis_sent"] = [layer.stats.plis_sent for layer in at_edge.layers]
            stats = at_edge.stats.snapshot()["subscribers"]
            result["edge_switches"] = {k: v["layer_switches"] for k, v in stats.items()}
        result["camera_keyframe_requests"] = [t.keyframe_requests for t in camera.tracks]
        result["leg_layer_counts"] = sorted(leg.layer_counts())
        result["seconds"] = round(time.monotonic() - t0, 1)
    finally:
        for viewer in (shaped, other):
            await viewer.close()
        await leg.close()
        await ingest.close()
        await teacher.close()
        origin.close()
        edge.close()
    return result


def main() -> int:
    return scenario_main(run, shaped_options())


if __name__ == "__main__":
    sys.exit(main())
