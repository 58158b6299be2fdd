"""The forwarding fast path's last hop on ICE-TCP against UDP, side by side in one run.

What one packet costs the SFU's process (CPU seconds, ``time.process_time``) when the sink of
``media.internals.srtp_send`` hands it to the nominated pair's transport: ``sendto`` on the
node's one UDP socket (``udp_mux``) or one RFC 4571 frame written on the viewer's TCP
connection (``tcp_mux``). The viewer is a child process on 127.0.0.1 that reads and discards
(for TCP it first sends the Binding request that attaches its connection). Packets of 1,200
bytes in frames of 8 (30 fps video at about 2.3 Mbit/s has that many), paced at ``RATE``;
rounds alternate UDP and TCP; medians of the rounds.

    python -m bench.ice_tcp_send [--rounds 7] [--packets 20000]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing
import socket
import statistics
import time
from typing import Any

from aioice import stun

from media.internals.tcp_mux import TcpMux, _TcpIceTransport, frame
from media.internals.udp_mux import UdpMux, _MuxTransport

PACKET = bytes(1200)
PER_FRAME = 8
# Packets a second: about 48 Mbit/s, 20 viewers of a 2.4 Mbit/s camera; a rate the reading
# child keeps up with (faster, the bounded TCP buffers drop and the cost measured is a drop's).
RATE = 5_000


class Sink:
    """Stands in for aioice's StunProtocol: what the viewer sends is not looked at."""

    def datagram_received(self, data: bytes, addr: Any) -> None:
        pass

    def connection_lost(self, exc: Any) -> None:
        pass


def tcp_viewer(port: int, ufrag: str) -> None:
    request = stun.Message(message_method=stun.Method.BINDING, message_class=stun.Class.REQUEST)
    request.attributes["USERNAME"] = f"{ufrag}:viewer"
    with socket.create_connection(("127.0.0.1", port)) as s:
        s.sendall(frame(bytes(request)))
        while s.recv(1 << 16):
            pass


def udp_viewer(sock: socket.socket) -> None:
    sock.settimeout(3)
    try:
        while True:
            sock.recv(1 << 16)
    except OSError:
        pass


async def send(transport: Any, addr: Any, packets: int) -> float:
    """CPU seconds per packet, sending ``RATE`` packets a second (a frame at a time)."""
    loop = asyncio.get_running_loop()
    start, began = time.process_time(), loop.time()
    for i in range(packets // PER_FRAME):
        for _ in range(PER_FRAME):
            transport.sendto(PACKET, addr)
        await asyncio.sleep(max(0.0, began + (i + 1) * PER_FRAME / RATE - loop.time()))
    return (time.process_time() - start) / packets


async def udp_round(mux: UdpMux, packets: int) -> float:
    receiver = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    receiver.bind(("127.0.0.1", 0))
    receiver.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 8 << 20)
    child = multiprocessing.Process(target=udp_viewer, args=(receiver,))
    child.start()
    endpoint = mux.endpoints["127.0.0.1"]
    view = _MuxTransport(endpoint, Sink(), "udpview")  # type: ignore[arg-type]
    endpoint.register(view)
    try:
        return await send(view, receiver.getsockname(), packets)
    finally:
        view.close()
        child.terminate()
        child.join()
        receiver.close()


async def tcp_round(mux: TcpMux, packets: int, ufrag: str) -> tuple[float, int]:
    endpoint = mux.endpoints["127.0.0.1"]
    view = _TcpIceTransport(endpoint, Sink(), ufrag)  # type: ignore[arg-type]
    endpoint.register(view)
    child = multiprocessing.Process(target=tcp_viewer, args=(mux.port, ufrag))
    child.start()
    while not view.streams:  # noqa: ASYNC110 (the viewer's connection, attached by the mux)
        await asyncio.sleep(0.01)
    [(addr, stream)] = view.streams.items()
    try:
        return await send(view, addr, packets), stream.dropped
    finally:
        view.close()  # the loop flushes and closes the connection: the viewer then exits
        await asyncio.to_thread(child.join)


def free_port(kind: socket.SocketKind) -> int:
    with socket.socket(socket.AF_INET, kind) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def main(rounds: int, packets: int) -> dict[str, Any]:
    udp = UdpMux(free_port(socket.SOCK_DGRAM), ["127.0.0.1"])
    tcp = TcpMux(free_port(socket.SOCK_STREAM), ["127.0.0.1"])
    await udp.start()
    await tcp.start()
    udp_us: list[float] = []
    tcp_us: list[float] = []
    dropped = 0
    try:
        for i in range(rounds):
            udp_us.append(await udp_round(udp, packets) * 1e6)
            per_packet, lost = await tcp_round(tcp, packets, f"view{i}")
            tcp_us.append(per_packet * 1e6)
            dropped += lost
    finally:
        udp.close()
        tcp.close()
    udp_median, tcp_median = statistics.median(udp_us), statistics.median(tcp_us)
    return {
        "packets_per_round": packets,
        "rounds": rounds,
        "udp_us_per_packet": round(udp_median, 2),
        "tcp_us_per_packet": round(tcp_median, 2),
        "tcp_over_udp": round(tcp_median / udp_median, 2),
        "udp_rounds": [round(x, 2) for x in udp_us],
        "tcp_rounds": [round(x, 2) for x in tcp_us],
        "tcp_dropped": dropped,
    }


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--packets", type=int, default=20000)
    args = parser.parse_args()
    result = asyncio.run(main(args.rounds, args.packets))
    with open("/proc/loadavg") as f:
        result["loadavg"] = f.read().split()[:3]
    print(json.dumps(result))
