"""The MediaRelay baseline: aiortc's stock way to serve one track to many viewers.

The publisher's VP8 is decoded once (the receiver's decoder thread), ``MediaRelay`` hands each
decoded frame to every viewer, and each viewer's ``RTCRtpSender`` encodes it with its own VP8
encoder (in the default thread pool). A drain consumer reads the relay from the moment the
track arrives, so decoded frames never pile up before the first viewer.

Viewers use ``buffered=False``: a viewer whose encoder falls behind gets the latest frame, not
an ever-growing backlog (with the default buffered queue the latency and memory grow without
bound once the machine saturates; frame rate is what shows saturation either way).

Same signalling shape as Homeroom: the publisher offers (``POST /publish``), the server offers
to each viewer (``POST /subscribe``) and the viewer answers (``POST /answer``). Everything on
127.0.0.1, no STUN.

    python bench/sfu/relay_server.py --port 8123
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import sys
import uuid
from pathlib import Path

from aiohttp import web

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from aiortc import (  # noqa: E402
    RTCConfiguration,
    RTCPeerConnection,
    RTCRtpSender,
    RTCSessionDescription,
)
from aiortc.contrib.media import MediaRelay  # noqa: E402
from aiortc.mediastreams import MediaStreamError, MediaStreamTrack  # noqa: E402

from media.ice import configure_host_addresses  # noqa: E402


def vp8_preferences() -> list:
    caps = RTCRtpSender.getCapabilities("video").codecs
    return [c for c in caps if c.mimeType in ("video/VP8", "video/rtx")]


class RelayServer:
    def __init__(self) -> None:
        self.relay = MediaRelay()
        self.source: MediaStreamTrack | None = None
        self.source_ready = asyncio.Event()
        self.pcs: dict[str, RTCPeerConnection] = {}
        self._tasks: set[asyncio.Task[None]] = set()

    async def publish(self, request: web.Request) -> web.Response:
        body = await request.json()
        pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
        self.pcs["publisher"] = pc

        @pc.on("track")
        def on_track(track: MediaStreamTrack) -> None:
            if track.kind == "video" and self.source is None:
                self.source = track
                self.source_ready.set()
                drain = self.relay.subscribe(track, buffered=False)
                task = asyncio.ensure_future(self._drain(drain))
                self._tasks.add(task)

        await pc.setRemoteDescription(RTCSessionDescription(body["sdp"], "offer"))
        for t in pc.getTransceivers():
            if t.kind == "video":
                t.setCodecPreferences(vp8_preferences())
        await pc.setLocalDescription(await pc.createAnswer())
        return web.json_response({"sdp": pc.localDescription.sdp})

    async def _drain(self, track: MediaStreamTrack) -> None:
        with contextlib.suppress(MediaStreamError):
            while True:
                await track.recv()

    async def subscribe(self, request: web.Request) -> web.Response:
        await asyncio.wait_for(self.source_ready.wait(), 10)
        assert self.source is not None
        pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
        sub_id = uuid.uuid4().hex
        self.pcs[sub_id] = pc
        transceiver = pc.addTransceiver(
            self.relay.subscribe(self.source, buffered=False), direction="sendonly"
        )
        transceiver.setCodecPreferences(vp8_preferences())
        await pc.setLocalDescription(await pc.createOffer())
        return web.json_response({"id": sub_id, "sdp": pc.localDescription.sdp})

    async def answer(self, request: web.Request) -> web.Response:
        body = await request.json()
        pc = self.pcs[body["id"]]
        await pc.setRemoteDescription(RTCSessionDescription(body["sdp"], "answer"))
        return web.json_response({})

    async def leave(self, request: web.Request) -> web.Response:
        body = await request.json()
        pc = self.pcs.pop(body["id"], None)
        if pc is not None:
            await pc.close()
        return web.json_response({})

    async def close(self, _app: web.Application) -> None:
        for pc in list(self.pcs.values()):
            with contextlib.suppress(Exception):
                await pc.close()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args()
    configure_host_addresses(["127.0.0.1"])
    try:
        import uvloop

        uvloop.install()
    except ImportError:
        pass
    server = RelayServer()
    app = web.Application()
    app.router.add_post("/publish", server.publish)
    app.router.add_post("/subscribe", server.subscribe)
    app.router.add_post("/answer", server.answer)
    app.router.add_post("/leave", server.leave)
    app.on_shutdown.append(server.close)
    web.run_app(app, host="127.0.0.1", port=args.port, print=None, access_log=None)


if __name__ == "__main__":
    main()
