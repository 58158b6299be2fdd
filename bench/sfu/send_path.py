"""The forwarding sender's send path alone, per packet: one ``sendto`` each against the loop
iteration's ``sendmmsg`` batch (media/internals/sendmmsg.py), on real UDP sockets on 127.0.0.1.

    PYTHONPATH=. python bench/sfu/send_path.py [--viewers 8] [--frames 3000]

``viewers`` sinks, each with its own libsrtp session and receiving socket, get the same frames
(a 15 fps video frame of 3 packets, 1,100/1,100/700 bytes, and an Opus packet of 120 bytes,
per iteration of the loop, as the fan-out hands them over): either all on one sending socket
(the node's shared port, ``media_udp_port``) or each on its own (aioice's socket per
connection). The sending thread's CPU time (user + system: the kernel's UDP send and the
loopback delivery into the receiving socket are in it) per packet sent, the median of
``--repeats``; the receivers are drained by another thread (not counted). Prints one JSON line.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import socket
import statistics
import sys
import threading
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

import uvloop
from aioice.ice import StunProtocol
from pylibsrtp import Policy, Session

from media.internals import sendmmsg, srtp_send
from media.internals.egress import _Egress
from media.internals.srtp_send import _DatagramSink

VIDEO = [os.urandom(1100), os.urandom(1100), os.urandom(700)]
AUDIO = [os.urandom(120)]


class _Quiet:
    def protocol_lost(self, protocol: object) -> None:
        pass


def drain(socks: list[socket.socket], stop: threading.Event) -> None:
    import selectors

    sel = selectors.DefaultSelector()
    for s in socks:
        s.setblocking(False)
        sel.register(s, selectors.EVENT_READ)
    while not stop.is_set():
        for key, _ in sel.select(0.05):
            sock: Any = key.fileobj
            try:
                while True:
                    sock.recv(2048)
            except BlockingIOError:
                pass


async def measure(viewers: int, frames: int, shared: bool, batched: bool) -> float:
    loop = asyncio.get_running_loop()
    srtp_send.BATCH_DATAGRAMS = batched
    from aiortc.rtcrtpparameters import (
        RTCRtpCodecParameters,
        RTCRtpHeaderExtensionParameters,
        RTCRtpSendParameters,
    )

    params = RTCRtpSendParameters(
        codecs=[RTCRtpCodecParameters(mimeType="video/VP8", clockRate=90000, payloadType=96)],
        headerExtensions=[
            RTCRtpHeaderExtensionParameters(id=1, uri="urn:ietf:params:rtp-hdrext:sdes:mid"),
            RTCRtpHeaderExtensionParameters(
                id=3, uri="http://www.webrtc.org/experiments/rtp-hdrext/abs-send-time"
            ),
        ],
        muxId="0",
    )
    egress = _Egress(params)
    receivers, transports, sinks, sessions = [], [], [], []
    shared_transport = None
    for _ in range(viewers):
        rx = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        rx.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 * 1024 * 1024)
        rx.bind(("127.0.0.1", 0))
        receivers.append(rx)
        if shared_transport is None or not shared:
            transport, _ = await loop.create_datagram_endpoint(
                lambda: StunProtocol(_Quiet()),  # type: ignore[arg-type]
                local_addr=("127.0.0.1", 0),
            )
            transports.append(transport)
            shared_transport = transport
        policy = Policy(key=os.urandom(30), ssrc_type=Policy.SSRC_ANY_OUTBOUND)
        session = Session(policy)
        sessions.append(session)
        sink = _DatagramSink()
        sink.direct = True
        sink.srtp = session._srtp[0]
        sink.transport = shared_transport
        sink.addr = rx.getsockname()
        if batched:
            sink._batch_on(shared_transport, sink.addr)
        sinks.append(sink)
    stop = threading.Event()
    drainer = threading.Thread(target=drain, args=(receivers, stop), daemon=True)
    drainer.start()
    sequence = [0] * viewers
    packets = 0
    cpu0 = time.thread_time()
    for n in range(frames):
        for payloads in (VIDEO, AUDIO) if n % 3 == 0 else (AUDIO,):
            first_byte, tail = egress.frame_header(n * 3000, 0x1234, n & 0xFFFFFF, None)
            for i, sink in enumerate(sinks):
                sink.send(first_byte, 96, sequence[i], tail, payloads, egress.history)
                sequence[i] = (sequence[i] + len(payloads)) & 0xFFFF
                packets += len(payloads)
            await asyncio.sleep(0)  # the iteration ends: the batch is flushed
    await asyncio.sleep(0)
    cpu = time.thread_time() - cpu0
    stop.set()
    drainer.join()
    for t in transports:
        t.close()
    for r in receivers:
        r.close()
    return cpu / packets * 1e6


async def main_async(args: argparse.Namespace) -> dict[str, Any]:
    out: dict[str, Any] = {
        "bench": "sfu.send_path",
        "viewers": args.viewers,
        "sendmmsg": sendmmsg.AVAILABLE,
    }
    for shared in (True, False):
        where = "shared_port" if shared else "socket_per_viewer"
        runs: dict[str, list[float]] = {"sendto": [], "sendmmsg": []}
        for _ in range(args.repeats):
            for batched in (False, True):
                us = await measure(args.viewers, args.frames, shared, batched)
                runs["sendmmsg" if batched else "sendto"].append(us)
        a, b = statistics.median(runs["sendto"]), statistics.median(runs["sendmmsg"])
        out[where] = {
            "us_per_packet_sendto": round(a, 2),
            "us_per_packet_sendmmsg": round(b, 2),
            "ratio": round(b / a, 3),
        }
    out["load"] = [round(x, 1) for x in os.getloadavg()]
    return out


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--viewers", type=int, default=8)
    parser.add_argument("--frames", type=int, default=3000)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    print(json.dumps(uvloop.run(main_async(args))))


if __name__ == "__main__":
    main()
