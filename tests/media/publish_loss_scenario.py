"""NACK/RTX with a camera in layers: loss on the publish leg, then on a viewer's link.

Runs in a network namespace with nothing but ``lo`` (``tests.chromium.run_in_loopback_namespace``).
A real aiortc publisher sends a camera in three layers (``SimulcastCamera``, three m-lines with
one RTX payload type, as the web app's layers) and a tone; two decoding aiortc viewers.

1. **Publish leg**: an nftables rule drops ``--publish-loss`` % of the packets sent to the
   SFU's publish port, at random (media, RTX and RTCP alike). The SFU's receivers must NACK
   and get the retransmissions on each layer's RTX SSRC (``receive_counts``), and the frames
   reaching the fan-out (per layer) must keep up with what the camera encodes.
2. **A viewer's link**: the publish leg clean again, ``--viewer-loss`` % of what goes to one
   viewer dropped. Its reports' loss moves it down the layers (each switch rewrites the
   timestamps and picture ids the viewer sees; the sequence numbers are its sender's own), and
   its NACKs are answered from its own sender's history (``retransmissions``): it keeps
   decoding the layer it is on.

``--no-route-rtx`` leaves aiortc's routing as it is (what Homeroom did before
``media.internals.route_rtx``). Prints ``RESULT <json>`` last.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from typing import Any

from media import internals
from media.ice import configure_host_addresses
from media.internals import receive_counts
from media.internals.selected_pair import selected_pair
from media.router import MediaRouter
from tests.media.layers_scenario import TOP_WIDTH, Viewer, until
from tests.media.lossy_scenario import drop_to, dropped, stop_dropping
from tests.media.scenario import publish_layers, scenario_main


def video_sender(viewer: Viewer) -> Any:
    """The SFU's sender of the camera to ``viewer`` (its ``SharedPayloadSender``)."""
    for transceiver in viewer.session.pc.getTransceivers():
        sender = transceiver.sender
        if sender.kind == "video" and sender.track is not None:
            return sender
    raise AssertionError("no video sender")


async def run(args: argparse.Namespace) -> dict[str, Any]:
    configure_host_addresses(["127.0.0.1"])
    if args.no_route_rtx:
        internals.ingest.route_rtx = lambda _receiver: None  # type: ignore[assignment]
    router = MediaRouter()
    teacher = await publish_layers(router, args.fps)
    pub_pc, camera, mids, track_ids = teacher.pc, teacher.camera, teacher.mids, teacher.track_ids
    layered = teacher.layered(router)
    server = {t.mid: t.receiver for t in teacher.session.pc.getTransceivers()}
    receivers = [server[m] for m in mids[:3]]

    def counts() -> dict[str, Any]:
        return {
            "encoded": [camera.frames] * 3,  # every source frame, each layer
            "ingest": [layer.stats.frames_received for layer in layered.layers],
            "received": [receive_counts(r) for r in receivers],
            "keyframe_requests": [t.keyframe_requests for t in camera.tracks],
        }

    def per_layer(c0: dict[str, Any], c1: dict[str, Any], dt: float) -> list[dict[str, Any]]:
        out = []
        for i in range(3):
            out.append(
                {
                    "encoded_fps": round((c1["encoded"][i] - c0["encoded"][i]) / dt, 1),
                    "ingest_fps": round((c1["ingest"][i] - c0["ingest"][i]) / dt, 1),
                    "media_packets": c1["received"][i]["media"] - c0["received"][i]["media"],
                    "rtx_packets": c1["received"][i]["rtx"] - c0["received"][i]["rtx"],
                    "keyframe_requests": c1["keyframe_requests"][i] - c0["keyframe_requests"][i],
                }
            )
        return out

    lossy, clean = Viewer("lossy", router), Viewer("clean", router)
    result: dict[str, Any] = {"route_rtx": not args.no_route_rtx}
    try:
        for viewer in (lossy, clean):
            await viewer.subscribe(track_ids)
        top = await until(
            lambda: lossy.width() == TOP_WIDTH and clean.width() == TOP_WIDTH, args.phase * 3
        )
        assert top is not None, "the viewers did not reach the top layer"
        await asyncio.sleep(1)

        # 0. Clean: what each layer does without loss.
        t0, c0 = time.monotonic(), counts()
        await asyncio.sleep(args.phase / 2)
        t1, c1 = time.monotonic(), counts()
        result["clean"] = {
            "layers": per_layer(c0, c1, t1 - t0),
            "viewer_fps": round(clean.fps(t0, t1), 1),
        }

        # 1. Loss on the publish leg: every layer must be repaired from the publisher's RTX.
        pair = selected_pair(pub_pc)
        assert pair is not None and pair[0].host == pair[1].host == "127.0.0.1"
        drop_to(int(pair[1].port), args.publish_loss)
        await asyncio.sleep(args.phase)
        t2, c2 = time.monotonic(), counts()
        result["publish_loss"] = {
            "percent": args.publish_loss,
            "dropped_packets": dropped(),
            "seconds": round(t2 - t1, 1),
            "layers": per_layer(c1, c2, t2 - t1),
            "viewer_fps": round(clean.fps(t1, t2), 1),
            "viewer_max_gap_s": round(clean.max_gap(t1, t2), 2),
            "viewer_widths": clean.widths(t1, t2),
        }
        stop_dropping()
        await until(lambda: lossy.width() == TOP_WIDTH, args.phase * 2)
        await asyncio.sleep(1)

        # 2. Loss on one viewer's link: it moves down (switches) and is repaired from its own
        # sender's history under the rewritten stream.
        sender = video_sender(lossy)
        switches0 = layered.stats.snapshot()["subscribers"]["lossy"]["layer_switches"]
        sent0, missed0 = sender.retransmissions, sender.retransmissions_missed
        t3, c3 = time.monotonic(), counts()
        drop_to(lossy.port(), args.viewer_loss)
        # Retransmissions to it once it decoded a lower layer than it had (after a switch).
        width0, after_switch = lossy.width(), None
        while time.monotonic() - t3 < args.phase:
            await asyncio.sleep(0.05)
            if after_switch is None and (lossy.width() or TOP_WIDTH) < (width0 or TOP_WIDTH):
                after_switch = sender.retransmissions
        t4, c4 = time.monotonic(), counts()
        layers_now = per_layer(c3, c4, t4 - t3)
        widths = lossy.widths(t3, t4)
        subs = layered.stats.snapshot()["subscribers"]
        result["viewer_loss"] = {
            "percent": args.viewer_loss,
            "dropped_packets": dropped(),
            "seconds": round(t4 - t3, 1),
            "layer_switches": subs["lossy"]["layer_switches"] - switches0,
            "layer_now": subs["lossy"]["layer"],
            "retransmissions": sender.retransmissions - sent0,
            "retransmissions_missed": sender.retransmissions_missed - missed0,
            "retransmissions_after_switch": (
                None if after_switch is None else sender.retransmissions - after_switch
            ),
            "lossy_fps": round(lossy.fps(t3, t4), 1),
            "lossy_max_gap_s": round(lossy.max_gap(t3, t4), 2),
            "lossy_widths": widths,
            "lossy_keyframe_requests": subs["lossy"]["keyframe_requests"],
            "clean_fps": round(clean.fps(t3, t4), 1),
            "ingest_fps": [layer["ingest_fps"] for layer in layers_now],
            "keyframe_requests": [layer["keyframe_requests"] for layer in layers_now],
        }
        stop_dropping()
    finally:
        for viewer in (lossy, clean):
            await viewer.close()
        await teacher.close()
    return result


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--publish-loss", type=int, default=10)
    parser.add_argument("--viewer-loss", type=int, default=20)
    parser.add_argument("--phase", type=float, default=8.0)
    parser.add_argument("--fps", type=int, default=15)
    parser.add_argument("--no-route-rtx", action="store_true")
    return scenario_main(run, parser)


if __name__ == "__main__":
    sys.exit(main())
