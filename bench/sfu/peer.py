"""Client processes of the SFU benchmark: the publisher, or a pool of counting subscribers.

    python bench/sfu/peer.py publisher '<json config>'
    python bench/sfu/peer.py subscribers '<json config>'

Config: ``{"server": "homeroom"|"janus"|"mediarelay", "url": ..., ...}`` (see bench/sfu_fanout.py).
Control is one JSON object per line: commands on stdin, replies on stdout (``{"id": n, ...}``);
logs go to stderr. Every process gathers ICE on 127.0.0.1 only and never uses STUN.

Subscribers count reassembled VP8 frames WITHOUT decoding: ``media.internals
.install_ingest`` replaces each receiver's decoder queue in the ``track`` event, so aiortc still
does SRTP, RTP, NACK, jitter buffer and RTCP, and nothing is decoded. Many subscribers share one
event loop. "First frame" is the first *keyframe* (the first frame a decoder could show): Janus
forwards deltas before it, Homeroom gates on it.

The publisher replays a pre-encoded sequence (bench/sfu/video.py) through aiortc's pre-encoded
sender path and answers the server's keyframe requests (PLI) as a browser does (at most one
keyframe per 300 ms): the stock sender ignores PLI on that path, so this bench hooks the
sender's ``_send_keyframe`` (again on every peer connection: a moved lesson publishes anew).

With ``"follow_moves": true`` in the config, the Homeroom publisher and viewers sync their
streams at connection, so that they get ``session.moved`` and join the lesson again on its new
node (clients/live.py); ``arm`` then ``recovery`` tell when each viewer has a keyframe on a new
peer connection (bench/cluster.py's ``recover_s``).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(HERE))

import aiohttp  # noqa: E402
import av  # noqa: E402
from aiortc import (  # noqa: E402
    MediaStreamTrack,
    RTCBundlePolicy,
    RTCConfiguration,
    RTCPeerConnection,
    RTCRtpSender,
    RTCSessionDescription,
)
from aiortc.rtcrtpparameters import RTCRtpCodecParameters  # noqa: E402
from janus_room import ROOM, JanusSession, plugin_data  # noqa: E402
from video import EncodedSequence, ReplayTrack  # noqa: E402

from clients.homeroom import HomeroomClient  # noqa: E402
from clients.live import LiveParticipant  # noqa: E402
from media.ice import configure_host_addresses  # noqa: E402
from media.internals import install_ingest  # noqa: E402

log = logging.getLogger("peer")
JOIN_TIMEOUT_S = 12.0


def rtc_config() -> RTCConfiguration:
    # max-bundle as the Python client (clients/live.py: aiortc's "balanced" breaks a first
    # offer with two m-lines of a kind other than the first's).
    return RTCConfiguration(iceServers=[], bundlePolicy=RTCBundlePolicy.MAX_BUNDLE)


def vp8_preferences() -> list[Any]:
    caps = RTCRtpSender.getCapabilities("video").codecs
    return [c for c in caps if c.mimeType in ("video/VP8", "video/rtx")]


async def wait_connected(pc: RTCPeerConnection, timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while pc.connectionState != "connected":
        if pc.connectionState in ("failed", "closed") or time.monotonic() > deadline:
            raise RuntimeError(f"peer connection {pc.connectionState}")
        await asyncio.sleep(0.02)


# --- control channel -----------------------------------------------------------------------------


def reply(obj: dict[str, Any]) -> None:
    sys.stdout.write(json.dumps(obj) + "\n")
    sys.stdout.flush()


async def serve_commands(handlers: dict[str, Callable[[dict[str, Any]], Awaitable[Any]]]) -> None:
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader(limit=1 << 22)
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    tasks: set[asyncio.Task[None]] = set()

    async def run(msg: dict[str, Any]) -> None:
        try:
            result = await handlers[msg["cmd"]](msg)
            reply({"id": msg.get("id"), "ok": True, **(result or {})})
        except Exception as exc:  # reported to the orchestrator, which decides
            log.exception("command %s failed", msg.get("cmd"))
            reply({"id": msg.get("id"), "ok": False, "error": f"{type(exc).__name__}: {exc}"})

    while True:
        line = await reader.readline()
        if not line:
            return
        msg = json.loads(line)
        if msg["cmd"] == "stop":
            await handlers["stop"](msg)
            reply({"id": msg.get("id"), "ok": True})
            return
        task = loop.create_task(run(msg))
        tasks.add(task)
        task.add_done_callback(tasks.discard)


# --- publisher -----------------------------------------------------------------------------------


class Publisher:
    def __init__(self, cfg: dict[str, Any]) -> None:
        self.cfg = cfg
        self.track = ReplayTrack(EncodedSequence.read(Path(cfg["sequence"])))
        self.pc: RTCPeerConnection | None = None
        self.participant: LiveParticipant | None = None
        self.http: aiohttp.ClientSession | None = None
        self.closers: list[Callable[[], Awaitable[Any]]] = []

    def hook_keyframes(self, pc: RTCPeerConnection) -> None:
        for sender in pc.getSenders():
            if sender.track is self.track:
                # Bench-only: the stock pre-encoded path ignores PLI/FIR; answer like a browser.
                sender._send_keyframe = self.track.request_keyframe  # type: ignore[method-assign]

    async def start(self) -> dict[str, Any]:
        server = self.cfg["server"]
        self.http = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0))
        if server == "homeroom":
            info = await self._homeroom()
        elif server == "mediarelay":
            info = await self._relay()
        else:
            info = await self._janus()
        assert self.pc is not None
        await wait_connected(self.pc)
        return info

    async def _homeroom(self) -> dict[str, Any]:
        client = HomeroomClient(self.cfg["url"], reconnection=False)
        await client.connect(self.cfg["token"], sync=bool(self.cfg.get("follow_moves")))
        self.closers.append(client.close)
        start = await client.request(
            "session.start",
            {"class_id": self.cfg["class_id"], "kind": "lesson", "title": "SFU bench"},
        )
        session_id = start["session"]["id"]
        participant = self.participant = LiveParticipant(client, session_id)
        self.closers.insert(0, participant.close)
        await participant.join()
        publish = participant.publish

        async def publish_hooked(*args: Any, **kw: Any) -> dict[str, Any]:
            # Also when the participant publishes again by itself (the lesson moved): each
            # new peer connection's sender answers PLI.
            ack = await publish(*args, **kw)
            self.pc = participant.publish_pc
            assert self.pc is not None
            self.hook_keyframes(self.pc)
            return ack

        participant.publish = publish_hooked  # type: ignore[method-assign]
        ack = await participant.publish({self.track: "camera"})
        return {"session_id": session_id, "published": ack["published"]}

    async def _relay(self) -> dict[str, Any]:
        assert self.http is not None
        pc = self.pc = RTCPeerConnection(rtc_config())
        self.closers.append(pc.close)
        transceiver = pc.addTransceiver(self.track, direction="sendonly")
        transceiver.setCodecPreferences(vp8_preferences())
        self.hook_keyframes(pc)
        await pc.setLocalDescription(await pc.createOffer())
        async with self.http.post(
            self.cfg["url"] + "/publish", json={"sdp": pc.localDescription.sdp}
        ) as resp:
            answer = await resp.json()
        await pc.setRemoteDescription(RTCSessionDescription(answer["sdp"], "answer"))
        return {}

    async def _janus(self) -> dict[str, Any]:
        assert self.http is not None
        session = JanusSession(self.cfg["url"], self.http)
        await session.create()
        self.closers.append(session.destroy)
        handle = await session.attach()
        pc = self.pc = RTCPeerConnection(rtc_config())
        self.closers.insert(0, pc.close)
        transceiver = pc.addTransceiver(self.track, direction="sendonly")
        transceiver.setCodecPreferences(vp8_preferences())
        self.hook_keyframes(pc)
        await pc.setLocalDescription(await pc.createOffer())
        await session.message(
            handle,
            {
                "request": "joinandconfigure",
                "ptype": "publisher",
                "room": ROOM,
                "display": "teacher",
            },
            {"type": "offer", "sdp": pc.localDescription.sdp},
        )
        ev = await session.event(handle, lambda e: "jsep" in e)
        feed = plugin_data(ev)["id"]
        await pc.setRemoteDescription(RTCSessionDescription(ev["jsep"]["sdp"], "answer"))
        await session.trickle_done(handle)
        # Subscribers may join only after the publisher's webrtcup (MACHINE-NOTES.md).
        await session.event(handle, lambda e: e.get("janus") == "webrtcup")
        return {"feed": feed}

    def stats(self) -> dict[str, Any]:
        t = self.track
        return {
            "frames_sent": t.sent,
            "keyframe_requests": t.keyframe_requests,
            "keyframes_sent": t.keyframes_sent,
            "deferred_keyframe_requests": t.deferred_requests,
            "late_frames": t.late_frames,
            "bytes_sent": t.bytes_sent,
            "rejoins": self.participant.rejoins if self.participant else 0,
        }

    async def stop(self) -> None:
        self.track.end()
        for close in self.closers:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(close(), 5)
        if self.http is not None:
            await self.http.close()


async def run_publisher(cfg: dict[str, Any]) -> None:
    pub = Publisher(cfg)
    try:
        info = await pub.start()
    except Exception as exc:
        log.exception("publisher failed to start")
        reply({"event": "ready", "ok": False, "error": f"{type(exc).__name__}: {exc}"})
        await pub.stop()
        return
    reply({"event": "ready", "ok": True, **info})

    async def stats(_msg: dict[str, Any]) -> dict[str, Any]:
        return pub.stats()

    async def stop(_msg: dict[str, Any]) -> None:
        await pub.stop()

    await serve_commands({"stats": stats, "stop": stop})


# --- subscribers ---------------------------------------------------------------------------------


class Sub:
    """One viewer: its signalling, its peer connection, and frame counters (no decoding)."""

    def __init__(
        self, sub_id: str, cfg: dict[str, Any], http: aiohttp.ClientSession, token: str | None
    ) -> None:
        self.id = sub_id
        self.cfg = cfg
        self.http = http
        self.token = token
        self.frames = 0
        self.keyframes = 0
        self.bytes = 0
        self.t_join: float | None = None
        self.t_first_frame: float | None = None
        self.t_first_key: float | None = None
        self.t_connected: float | None = None
        self.steps: dict[str, float] = {}  # signalling step -> when its reply came
        self.first_key = asyncio.Event()
        self.pc: RTCPeerConnection | None = None
        self._client: HomeroomClient | None = None
        self._participant: LiveParticipant | None = None
        self._janus: JanusSession | None = None
        self._relay_id: str | None = None
        # Arrival time of each frame by its content (bench/cascade.py's edge hop: the same
        # encoded frames reach viewers of different nodes), while recording.
        self.arrivals: dict[int, float] | None = None
        # Recovery (``arm``): the peer connection then, and the first keyframe on a later one.
        self.armed_pc: RTCPeerConnection | None = None
        self.t_back: float | None = None

    # Counting, on the event loop, per reassembled frame.
    def on_packet(
        self,
        _codec: RTCRtpCodecParameters,
        packet: av.Packet,
        pc: RTCPeerConnection | None = None,
    ) -> None:
        now = time.monotonic()
        if (
            self.armed_pc is not None
            and pc is not self.armed_pc
            and self.t_back is None
            and packet.is_keyframe
        ):
            self.t_back = now
        self.frames += 1
        self.bytes += packet.size
        if self.arrivals is not None and len(self.arrivals) < 2000:
            self.arrivals.setdefault(hash(bytes(packet)), now)
        if self.t_first_frame is None:
            self.t_first_frame = now
        if packet.is_keyframe:
            self.keyframes += 1
            if self.t_first_key is None:
                self.t_first_key = now
                self.first_key.set()

    def on_track(self, pc: RTCPeerConnection, track: MediaStreamTrack) -> None:
        for transceiver in pc.getTransceivers():
            if transceiver.receiver.track is track and track.kind == "video":
                install_ingest(
                    transceiver.receiver,
                    lambda codec, packet: self.on_packet(codec, packet, pc),
                    lambda: None,
                )

    def new_pc(self) -> RTCPeerConnection:
        pc = RTCPeerConnection(rtc_config())
        pc.on("track", lambda track: self.on_track(pc, track))
        self.watch_connected(pc)
        return pc

    def watch_connected(self, pc: RTCPeerConnection) -> None:
        """Note when ICE and DTLS are done (the rest of the wait is the server's keyframe)."""

        def changed() -> None:
            if pc.connectionState == "connected" and self.t_connected is None:
                self.t_connected = time.monotonic()

        pc.on("connectionstatechange", changed)

    async def prepare(self) -> None:
        """What a viewer has before pressing "join": an app connection (not timed)."""
        server = self.cfg["server"]
        if server == "homeroom":
            client = self._client = HomeroomClient(self.cfg["url"], reconnection=False)
            await client.connect(self.token, sync=bool(self.cfg.get("follow_moves")))
            request = client.request

            async def timed(event: str, *args: Any, **kw: Any) -> dict[str, Any]:
                try:
                    return await request(event, *args, **kw)
                finally:
                    self.steps.setdefault(event, time.monotonic())

            client.request = timed  # type: ignore[method-assign]
        elif server == "janus":
            self._janus = JanusSession(self.cfg["url"], self.http)
            await self._janus.create()

    async def join(self) -> None:
        self.t_join = time.monotonic()
        server = self.cfg["server"]
        if server == "homeroom":
            assert self._client is not None
            p = self._participant = LiveParticipant(self._client, self.cfg["session_id"])
            p.on_track = lambda track, _info: self.on_track(p.subscribe_pc, track)  # type: ignore[arg-type]
            await p.join()
            await p.subscribe()
            self.pc = p.subscribe_pc
            assert self.pc is not None
            self.watch_connected(self.pc)
        elif server == "janus":
            assert self._janus is not None
            handle = await self._janus.attach()
            await self._janus.message(
                handle,
                {
                    "request": "join",
                    "ptype": "subscriber",
                    "room": ROOM,
                    "streams": [self._janus_stream()],
                },
            )
            ev = await self._janus.event(handle, lambda e: "jsep" in e)
            pc = self.pc = self.new_pc()
            await pc.setRemoteDescription(RTCSessionDescription(ev["jsep"]["sdp"], "offer"))
            await pc.setLocalDescription(await pc.createAnswer())
            await self._janus.message(
                handle, {"request": "start"}, {"type": "answer", "sdp": pc.localDescription.sdp}
            )
            await self._janus.trickle_done(handle)
        else:
            async with self.http.post(self.cfg["url"] + "/subscribe", json={}) as resp:
                offer = await resp.json()
            self._relay_id = offer["id"]
            pc = self.pc = self.new_pc()
            await pc.setRemoteDescription(RTCSessionDescription(offer["sdp"], "offer"))
            await pc.setLocalDescription(await pc.createAnswer())
            async with self.http.post(
                self.cfg["url"] + "/answer",
                json={"id": self._relay_id, "sdp": pc.localDescription.sdp},
            ) as resp:
                await resp.read()
        await asyncio.wait_for(self.first_key.wait(), JOIN_TIMEOUT_S)

    def _janus_stream(self) -> dict[str, Any]:
        """The feed to subscribe to; with ``substream`` in the config, that simulcast layer."""
        stream: dict[str, Any] = {"feed": self.cfg["feed"]}
        if "substream" in self.cfg:
            stream["substream"] = self.cfg["substream"]
        return stream

    def result(self) -> dict[str, Any]:
        def rel(t: float | None) -> float | None:
            return None if t is None or self.t_join is None else t - self.t_join

        return {
            "id": self.id,
            "t_join": self.t_join,
            "t_first_key": self.t_first_key,
            "first_key_s": rel(self.t_first_key),
            "first_frame_s": rel(self.t_first_frame),
            "connected_s": rel(self.t_connected),
            "steps_s": {k: rel(v) for k, v in self.steps.items()},
        }

    async def close(self) -> None:
        if self._participant is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._participant.close(), 5)
        elif self.pc is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self.pc.close(), 5)
        if self._client is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._client.close(), 5)
        if self._janus is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._janus.destroy(), 5)
        if self._relay_id is not None:
            with contextlib.suppress(Exception):
                async with self.http.post(
                    self.cfg["url"] + "/leave", json={"id": self._relay_id}
                ) as resp:
                    await resp.read()


async def run_subscribers(cfg: dict[str, Any]) -> None:
    http = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0))
    subs: dict[str, Sub] = {}

    async def prepare(msg: dict[str, Any]) -> dict[str, Any]:
        new = [
            Sub(s["id"], {**cfg, **msg.get("target", {})}, http, s.get("token"))
            for s in msg["subs"]
        ]
        for s in new:
            subs[s.id] = s
        await asyncio.gather(*(s.prepare() for s in new))
        return {}

    async def start(msg: dict[str, Any]) -> dict[str, Any]:
        chosen = [subs[i] for i in msg["ids"]]
        at = msg.get("at")
        if at is not None:
            await asyncio.sleep(max(0.0, at - time.monotonic()))
        outcomes = await asyncio.gather(*(s.join() for s in chosen), return_exceptions=True)
        results = []
        for s, outcome in zip(chosen, outcomes, strict=True):
            r = s.result()
            if isinstance(outcome, BaseException):
                r["error"] = f"{type(outcome).__name__}: {outcome}"
            results.append(r)
        return {"results": results}

    async def join(msg: dict[str, Any]) -> dict[str, Any]:
        await prepare(msg)
        return await start({"ids": [s["id"] for s in msg["subs"]]})

    async def snapshot(_msg: dict[str, Any]) -> dict[str, Any]:
        return {
            "now": time.monotonic(),
            "subs": {i: [s.frames, s.keyframes, s.bytes] for i, s in subs.items()},
        }

    async def packets(_msg: dict[str, Any]) -> dict[str, Any]:
        """RTP packets each viewer received so far (video, audio; aiortc's inbound-rtp
        ``packetsReceived``: retransmissions and padding on RTX SSRCs not included)."""
        out: dict[str, list[int]] = {}
        for i, s in list(subs.items()):
            counts = {"video": 0, "audio": 0}
            if s.pc is not None:
                with contextlib.suppress(Exception):
                    report = await asyncio.wait_for(s.pc.getStats(), 5)
                    for stat in report.values():
                        if getattr(stat, "type", "") == "inbound-rtp":
                            counts[stat.kind] = counts.get(stat.kind, 0) + stat.packetsReceived
            out[i] = [counts["video"], counts["audio"], s.frames, s.bytes]
        return {"now": time.monotonic(), "subs": out}

    async def diag(msg: dict[str, Any]) -> dict[str, Any]:
        """Why some viewers get nothing: their connection state and RTP reception counters."""
        out = {}
        for i in msg["ids"]:
            s = subs.get(i)
            if s is None:
                continue
            info: dict[str, Any] = {
                "state": s.pc.connectionState if s.pc else None,
                "frames": s.frames,
                "joined_s_ago": None if s.t_join is None else round(time.monotonic() - s.t_join, 1),
                "first_key_s": s.result()["first_key_s"],
            }
            if s.pc is not None:
                with contextlib.suppress(Exception):
                    report = await asyncio.wait_for(s.pc.getStats(), 5)
                    for stat in report.values():
                        if getattr(stat, "type", "") == "inbound-rtp":
                            info["packets_received"] = stat.packetsReceived
                            info["packets_lost"] = stat.packetsLost
            out[i] = info
        return {"subs": out}

    async def record(msg: dict[str, Any]) -> dict[str, Any]:
        """Start noting when each frame (by content) arrives at these viewers."""
        for i in msg["ids"]:
            subs[i].arrivals = {}
        return {}

    async def arrivals(msg: dict[str, Any]) -> dict[str, Any]:
        """What was noted since ``record``; keys are comparable within this process only."""
        out = {}
        for i in msg["ids"]:
            noted = subs[i].arrivals or {}
            subs[i].arrivals = None
            out[i] = {str(k): v for k, v in noted.items()}
        return {"subs": out}

    async def arm(msg: dict[str, Any]) -> dict[str, Any]:
        """From now on, note each viewer's first keyframe on a peer connection other than its
        present one (it joined again: the lesson moved)."""
        for i in msg.get("ids") or list(subs):
            s = subs[i]
            p = s._participant
            s.armed_pc = p.subscribe_pc if p is not None else s.pc
            s.t_back = None
        return {}

    async def recovery(msg: dict[str, Any]) -> dict[str, Any]:
        out = {}
        for i in msg.get("ids") or list(subs):
            s = subs[i]
            p = s._participant
            out[i] = {
                "t_back": s.t_back,
                "rejoins": p.rejoins if p is not None else 0,
                "frames": s.frames,
            }
        return {"now": time.monotonic(), "subs": out}

    async def leave(msg: dict[str, Any]) -> dict[str, Any]:
        ids = msg.get("ids") or list(subs)
        gone = [subs.pop(i) for i in ids if i in subs]
        await asyncio.gather(*(s.close() for s in gone))
        return {"left": len(gone)}

    async def stop(_msg: dict[str, Any]) -> None:
        await leave({})
        await http.close()

    await serve_commands(
        {
            "prepare": prepare,
            "start": start,
            "join": join,
            "snapshot": snapshot,
            "packets": packets,
            "diag": diag,
            "record": record,
            "arrivals": arrivals,
            "arm": arm,
            "recovery": recovery,
            "leave": leave,
            "stop": stop,
        }
    )


def main() -> None:
    role, raw = sys.argv[1], sys.argv[2]
    cfg = json.loads(raw)
    logging.basicConfig(
        level=logging.WARNING,
        stream=sys.stderr,
        format=f"%(asctime)s {role}[{os.getpid()}] %(levelname)s %(name)s %(message)s",
    )
    configure_host_addresses(["127.0.0.1"])
    try:
        import uvloop

        uvloop.install()
    except ImportError:
        pass
    asyncio.run(run_publisher(cfg) if role == "publisher" else run_subscribers(cfg))


if __name__ == "__main__":
    main()
