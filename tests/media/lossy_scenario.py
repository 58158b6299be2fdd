"""One viewer dropping 20 % of its packets, another on a clean link, one camera (issue #17).

Runs in a network namespace with nothing but ``lo`` (``tests.chromium.run_in_loopback_namespace``):
an nftables rule in that namespace drops one packet in five of what goes to the lossy viewer's
UDP port, at random (``numgen random mod 100 < 20``; this kernel has no ``netem``). The lossy
viewer's decoder asks for keyframes and retransmissions; the SFU answers NACKs from its own
history and passes keyframe requests on to the publisher coalesced, so the other viewer's
frame rate does not suffer and the publisher is asked at most once per interval. Prints
``RESULT <json>`` last.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import shutil
import subprocess
import sys
import time
from typing import Any

from aiortc import RTCPeerConnection, RTCSessionDescription

from media.ice import configure_host_addresses
from media.router import MediaRouter
from signaling import PublishSession
from tests.media.layers_scenario import Viewer, until
from tests.media.peers import TextureVideoTrack, client_configuration
from tests.media.scenario import scenario_main

NFT = shutil.which("nft", path="/usr/sbin:/sbin:/usr/bin") or "nft"


def nft(rules: str) -> None:
    subprocess.run([NFT, "-f", "-"], input=rules, text=True, check=True, capture_output=True)


def drop_to(port: int, percent: int) -> None:
    """Drop ``percent`` % of the UDP packets sent to ``port`` (table ``lossy``, made anew)."""
    nft("table inet lossy\ndelete table inet lossy\n")
    nft(f"""
    table inet lossy {{
      chain out {{
        type filter hook output priority 0; policy accept;
        udp dport {port} numgen random mod 100 < {percent} counter drop
      }}
    }}
    """)


def stop_dropping() -> None:
    nft("table inet lossy\ndelete table inet lossy\n")


def dropped() -> int:
    out = subprocess.run(
        [NFT, "-j", "list", "table", "inet", "lossy"], text=True, check=True, capture_output=True
    ).stdout
    for item in json.loads(out)["nftables"]:
        for expr in item.get("rule", {}).get("expr", []):
            if "counter" in expr:
                return int(expr["counter"]["packets"])
    return 0


async def run(args: argparse.Namespace) -> dict[str, Any]:
    configure_host_addresses(["127.0.0.1"])
    router = MediaRouter()
    publish = PublishSession("teacher", router)
    pub_pc = RTCPeerConnection(client_configuration())
    pub_pc.addTransceiver(TextureVideoTrack(320, 180, args.fps), direction="sendonly")
    await pub_pc.setLocalDescription(await pub_pc.createOffer())
    mid = str(pub_pc.getTransceivers()[0].mid)
    answer = await publish.apply_offer(pub_pc.localDescription.sdp, {mid: "camera"}, {})
    await pub_pc.setRemoteDescription(RTCSessionDescription(answer.sdp, "answer"))
    track_id = answer.published[0].track_id
    forwarded = router.get(track_id)

    lossy, clean = Viewer("lossy", router), Viewer("clean", router)
    result: dict[str, Any] = {}
    try:
        for viewer in (lossy, clean):
            await viewer.subscribe([track_id])
        connected = await until(lambda: lossy.video and clean.video, 20)
        assert connected is not None, "no video decoded"
        await asyncio.sleep(1)
        t0 = time.monotonic()
        ingest0 = forwarded.stats.frames_received
        await asyncio.sleep(args.phase)
        t1 = time.monotonic()
        ingest1 = forwarded.stats.frames_received
        plis_before = forwarded.stats.plis_sent
        drop_to(lossy.port(), args.loss)
        await asyncio.sleep(args.phase)
        t2 = time.monotonic()
        ingest2 = forwarded.stats.frames_received
        stats = forwarded.stats.snapshot()
        result.update(
            {
                "seconds": round(t2 - t1, 2),
                # What the publisher sent meanwhile (a starved encoder lowers everyone's).
                "ingest_fps_before": round((ingest1 - ingest0) / (t1 - t0), 1),
                "ingest_fps": round((ingest2 - ingest1) / (t2 - t1), 1),
                "clean_fps_before": round(clean.fps(t0, t1), 1),
                "clean_fps": round(clean.fps(t1, t2), 1),
                "clean_max_gap_s": round(clean.max_gap(t1, t2), 2),
                "lossy_fps": round(lossy.fps(t1, t2), 1),
                "plis_to_publisher": forwarded.stats.plis_sent - plis_before,
                "pli_interval_s": forwarded.pli_interval,
                "lossy_keyframe_requests": stats["subscribers"]["lossy"]["keyframe_requests"],
                "clean_keyframe_requests": stats["subscribers"]["clean"]["keyframe_requests"],
                "dropped_packets": dropped(),
            }
        )
    finally:
        for viewer in (lossy, clean):
            await viewer.close()
        await pub_pc.close()
        await publish.close()
    return result


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--loss", type=int, default=20, help="%% of the lossy viewer's packets")
    parser.add_argument("--phase", type=float, default=6.0)
    parser.add_argument("--fps", type=int, default=15)
    return scenario_main(run, parser)


if __name__ == "__main__":
    sys.exit(main())
