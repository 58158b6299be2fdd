"""One media node of the cascade benchmark: Homeroom's forwarding path behind a tiny HTTP API.

The node is the media half of a Homeroom node (``media.MediaRouter`` with
``signaling.PublishSession`` / ``SubscribeSession``, and for an edge ``signaling.relay
.RelayIngest``) without the app around it, so that bench/cascade.py can read one node's CPU
and nothing else. Same signalling shape as bench/sfu/relay_server.py (peer.py's "mediarelay"
kind speaks it): the publisher offers (``POST /publish``), the node offers to each viewer
(``POST /subscribe``) and the viewer answers (``POST /answer``). An edge attaches to an origin
with ``POST /attach {"origin": url}``: it asks the origin for a subscribe leg as a viewer named
``edge:<port>`` and publishes what arrives under the origin's track ids; ``POST /detach`` drops
the leg. ``GET /stats``: frames in and out, keyframes, PLIs and queue drops over its tracks.
Everything on 127.0.0.1, no STUN.

    python bench/sfu/cascade_node.py --port 8124
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import web

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from aiortc import RTCConfiguration  # noqa: E402

from media import MediaRouter  # noqa: E402
from media.ice import configure_host_addresses, rtc_configuration  # noqa: E402
from signaling import (  # noqa: E402
    CodecPolicy,
    PublishSession,
    SubscribedTrack,
    SubscribeOffer,
    SubscribeSession,
)
from signaling.relay import RelayIngest  # noqa: E402

CODECS = CodecPolicy("VP8")


def configuration() -> RTCConfiguration:
    # The server's own (max-bundle: aiortc's default "balanced" breaks a first offer with
    # two m-lines of a kind other than the first's, see clients/live.py).
    return rtc_configuration()


class Node:
    def __init__(self, port: int) -> None:
        self.port = port
        self.router = MediaRouter()
        self.publisher: PublishSession | None = None
        self.subscribers: dict[str, SubscribeSession] = {}
        self.ingest: RelayIngest | None = None
        self.origin: str | None = None
        self.leg_id: str | None = None
        self.http: aiohttp.ClientSession | None = None
        self.has_tracks = asyncio.Event()
        self.router.add_listener(self._on_track)

    def _on_track(self, event: str, _info: Any) -> None:
        if self.router.tracks():
            self.has_tracks.set()
        else:
            self.has_tracks.clear()

    async def publish(self, request: web.Request) -> web.Response:
        body = await request.json()
        self.publisher = PublishSession(
            "teacher", self.router, codecs=CODECS, configuration=configuration()
        )
        answer = await self.publisher.apply_offer(body["sdp"])
        return web.json_response({"sdp": answer.sdp})

    async def subscribe(self, request: web.Request) -> web.Response:
        body = await request.json()
        await asyncio.wait_for(self.has_tracks.wait(), 15)
        sub_id = body.get("id") or uuid.uuid4().hex
        session = SubscribeSession(
            sub_id, self.router, codecs=CODECS, configuration=configuration()
        )
        self.subscribers[sub_id] = session
        offer = await session.set_tracks([t.track_id for t in self.router.tracks()])
        assert offer is not None
        return web.json_response(
            {"id": sub_id, "sdp": offer.sdp, "tracks": [t.__dict__ for t in offer.tracks]}
        )

    async def answer(self, request: web.Request) -> web.Response:
        body = await request.json()
        follow_up = await self.subscribers[body["id"]].apply_answer(body["sdp"])
        assert follow_up is None, "the bench's tracks never change mid-negotiation"
        return web.json_response({})

    async def leave(self, request: web.Request) -> web.Response:
        body = await request.json()
        session = self.subscribers.pop(body["id"], None)
        if session is not None:
            await session.close()
        return web.json_response({})

    async def attach(self, request: web.Request) -> web.Response:
        """Become an edge of ``origin``: one subscribe leg there, its tracks published here."""
        body = await request.json()
        started = time.monotonic()
        assert self.ingest is None, "already attached"
        self.origin = body["origin"]
        self.http = self.http or aiohttp.ClientSession()
        self.ingest = RelayIngest(
            f"origin:{self.origin}", self.router, codecs=CODECS, configuration=configuration()
        )
        async with self.http.post(
            f"{self.origin}/subscribe", json={"id": f"edge:{self.port}:{uuid.uuid4().hex[:6]}"}
        ) as resp:
            offer = await resp.json()
        self.leg_id = offer["id"]
        answer = await self.ingest.apply_offer(
            SubscribeOffer(offer["sdp"], [SubscribedTrack(**t) for t in offer["tracks"]])
        )
        async with self.http.post(
            f"{self.origin}/answer", json={"id": self.leg_id, "sdp": answer}
        ) as resp:
            await resp.read()
        return web.json_response({"attach_s": time.monotonic() - started})

    async def detach(self, _request: web.Request) -> web.Response:
        for session in self.subscribers.values():
            await session.close()
        self.subscribers.clear()
        if self.ingest is not None:
            await self.ingest.close()
            self.ingest = None
        if self.http is not None and self.leg_id is not None:
            async with self.http.post(f"{self.origin}/leave", json={"id": self.leg_id}) as resp:
                await resp.read()
            self.leg_id = None
        return web.json_response({})

    async def close(self, _app: web.Application) -> None:
        for session in list(self.subscribers.values()):
            with contextlib.suppress(Exception):
                await session.close()
        if self.ingest is not None:
            with contextlib.suppress(Exception):
                await self.ingest.close()
        if self.publisher is not None:
            with contextlib.suppress(Exception):
                await self.publisher.close()
        if self.http is not None:
            await self.http.close()
        self.router.close()

    async def stats(self, _request: web.Request) -> web.Response:
        """Totals over this node's tracks: frames and keyframes in, frames out (to all
        subscribers), PLIs sent upstream, queue drops."""
        tracks = self.router.stats().values()
        keys = (
            "frames_received",
            "keyframes_received",
            "frames_forwarded",
            "plis_sent",
            "queue_drops",
        )
        return web.json_response({k: sum(int(t[k]) for t in tracks) for k in keys})


async def alive(_request: web.Request) -> web.Response:
    return web.json_response({"ok": True})


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args()
    configure_host_addresses(["127.0.0.1"])
    with contextlib.suppress(ImportError):
        import uvloop

        uvloop.install()
    node = Node(args.port)
    app = web.Application()
    app.router.add_get("/", alive)
    app.router.add_get("/stats", node.stats)
    app.router.add_post("/publish", node.publish)
    app.router.add_post("/subscribe", node.subscribe)
    app.router.add_post("/answer", node.answer)
    app.router.add_post("/leave", node.leave)
    app.router.add_post("/attach", node.attach)
    app.router.add_post("/detach", node.detach)
    app.on_shutdown.append(node.close)
    web.run_app(app, host="127.0.0.1", port=args.port, print=None, access_log=None)


if __name__ == "__main__":
    main()
