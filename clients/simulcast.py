"""A camera sent in layers by a Python participant: separate encodings of the same camera.

aiortc negotiates neither simulcast nor RIDs (aiortc#676), so, like the web app, a Python
publisher sends each quality as its own m-line: :class:`SimulcastCamera` reads one source
track's decoded frames, scales each to every layer's size and encodes it with its own VP8
encoder at that layer's bitrate (libvpx through PyAV, aiortc's own real-time settings, in the
default thread pool), and each :class:`EncodedLayerTrack` hands its layer's ``av.Packet``\\ s to
aiortc's pre-encoded sender path. The server's keyframe requests (PLI) reach the layer's
encoder (``media.internals.route_keyframe_requests``): the next frame of that layer is a
keyframe.

Publish with ``LiveParticipant.publish_layers(camera)`` (``rtc.publish`` with ``layers``).
"""

from __future__ import annotations

import asyncio
import contextlib
import fractions
from dataclasses import dataclass

import av
from aiortc import MediaStreamTrack
from aiortc.mediastreams import MediaStreamError

VIDEO_TIME_BASE = fractions.Fraction(1, 90000)
# Frames a layer may queue before its sender takes them (a slow sender loses the oldest).
LAYER_QUEUE_FRAMES = 30


@dataclass(frozen=True)
class LayerEncoding:
    """One quality: picture size and target bitrate (bit/s)."""

    width: int
    height: int
    bitrate: int


# Browser simulcast's usual ladder for a 640x360 camera (quarter, half, full size).
DEFAULT_LAYERS = (
    LayerEncoding(160, 90, 100_000),
    LayerEncoding(320, 180, 300_000),
    LayerEncoding(640, 360, 800_000),
)


def vp8_encoder(
    layer: LayerEncoding,
    *,
    time_base: fractions.Fraction = VIDEO_TIME_BASE,
    gop: int = 100_000,  # keyframes on request only, as a browser
) -> av.VideoCodecContext:
    """A libvpx encoder with aiortc's Vp8Encoder settings (aiortc/codecs/vpx.py): real-time
    CBR at the layer's bitrate, one thread."""
    codec = av.CodecContext.create("libvpx", "w")
    codec.width = layer.width
    codec.height = layer.height
    codec.bit_rate = layer.bitrate
    codec.pix_fmt = "yuv420p"
    codec.time_base = time_base
    codec.gop_size = gop
    codec.qmin = 2
    codec.qmax = 56
    codec.options = {
        "bufsize": str(layer.bitrate),
        "cpu-used": "-6",
        "deadline": "realtime",
        "lag-in-frames": "0",
        "minrate": str(layer.bitrate),
        "maxrate": str(layer.bitrate),
        "noise-sensitivity": "4",
        "overshoot-pct": "15",
        "partitions": "0",
        "static-thresh": "1",
        "undershoot-pct": "100",
    }
    codec.thread_count = 1
    return codec


class EncodedLayerTrack(MediaStreamTrack):
    """One layer of a :class:`SimulcastCamera`: yields encoded ``av.Packet``\\ s."""

    kind = "video"

    def __init__(self, camera: SimulcastCamera, index: int) -> None:
        super().__init__()
        self.camera = camera
        self.index = index
        self.encoding = camera.layers[index]
        self.keyframe_requests = 0
        self._queue: asyncio.Queue[av.Packet | None] = asyncio.Queue()

    async def recv(self) -> av.Packet:
        self.camera.start()
        packet = await self._queue.get()
        if packet is None or self.readyState != "live":
            raise MediaStreamError
        return packet

    def request_keyframe(self) -> None:
        self.keyframe_requests += 1
        self.camera.force_keyframe(self.index)

    def _put(self, packet: av.Packet | None) -> None:
        if self._queue.qsize() >= LAYER_QUEUE_FRAMES:
            self._queue.get_nowait()
        self._queue.put_nowait(packet)


class SimulcastCamera:
    """Encodes ``source``'s frames in every layer of ``layers`` (lowest first)."""

    def __init__(
        self, source: MediaStreamTrack, layers: tuple[LayerEncoding, ...] = DEFAULT_LAYERS
    ) -> None:
        if not 1 <= len(layers) <= 3:
            raise ValueError("1 to 3 layers")
        self.source = source
        self.layers = layers
        self.tracks = [EncodedLayerTrack(self, i) for i in range(len(layers))]
        self.frames = 0
        self._encoders = [vp8_encoder(layer) for layer in layers]
        self._force = [True] * len(layers)  # each layer starts with a keyframe
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._run())

    def force_keyframe(self, index: int) -> None:
        self._force[index] = True

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        try:
            while True:
                frame = await self.source.recv()
                if not isinstance(frame, av.VideoFrame):
                    raise TypeError("a camera's source yields video frames")
                force, self._force = self._force, [False] * len(self.layers)
                encoded = await loop.run_in_executor(None, self._encode, frame, force)
                self.frames += 1
                for track, packets in zip(self.tracks, encoded, strict=True):
                    for packet in packets:
                        track._put(packet)
        except MediaStreamError:
            pass
        finally:
            for track in self.tracks:
                track._put(None)

    def _encode(self, frame: av.VideoFrame, force: list[bool]) -> list[list[av.Packet]]:
        out = []
        pts = frame.pts
        for encoder, layer, key in zip(self._encoders, self.layers, force, strict=True):
            scaled = frame.reformat(width=layer.width, height=layer.height, format="yuv420p")
            scaled.pts = pts
            scaled.time_base = VIDEO_TIME_BASE
            scaled.pict_type = (
                av.video.frame.PictureType.I if key else av.video.frame.PictureType.NONE
            )
            packets = []
            for packet in encoder.encode(scaled):
                packet.pts = pts
                packet.time_base = VIDEO_TIME_BASE
                packets.append(packet)
            out.append(packets)
        return out

    def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
        with contextlib.suppress(Exception):
            self.source.stop()
        for track in self.tracks:
            track.stop()
