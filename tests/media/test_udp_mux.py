"""The one-port demultiplexer's rules, on real STUN bytes (aioice's own encoder), no network."""

from __future__ import annotations

import asyncio
import socket
from typing import Any

import pytest
from aioice import stun

from media.internals.udp_mux import UdpMux, _MuxEndpoint, _MuxTransport, stun_request_ufrag


def binding_request(username: str) -> bytes:
    msg = stun.Message(message_method=stun.Method.BINDING, message_class=stun.Class.REQUEST)
    msg.attributes["USERNAME"] = username
    msg.attributes["PRIORITY"] = 1234
    msg.add_message_integrity(b"password")
    return bytes(msg)


class Receiver:
    """Stands in for aioice's StunProtocol: what reaches one ICE connection."""

    def __init__(self) -> None:
        self.got: list[tuple[bytes, tuple[str, int]]] = []
        self.lost = False

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        self.got.append((data, addr))

    def connection_lost(self, exc: Any) -> None:
        self.lost = True


class SentTo:
    def __init__(self) -> None:
        self.sent: list[tuple[bytes, Any]] = []

    def sendto(self, data: bytes, addr: Any) -> None:
        self.sent.append((data, addr))

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return ("127.0.0.1", 3479) if name == "sockname" else default


def test_the_ufrag_of_a_binding_request() -> None:
    assert stun_request_ufrag(binding_request("abcd:wxyz")) == "abcd"
    response = stun.Message(message_method=stun.Method.BINDING, message_class=stun.Class.RESPONSE)
    assert stun_request_ufrag(bytes(response)) is None  # responses go by address
    assert stun_request_ufrag(b"\x80\x60" + bytes(30)) is None  # RTP
    assert stun_request_ufrag(b"\x16\xfe\xfd" + bytes(30)) is None  # DTLS
    assert stun_request_ufrag(binding_request("abcd:wxyz")[:30]) is None  # truncated
    assert stun_request_ufrag(b"") is None


@pytest.mark.timeout(5)
async def test_requests_go_by_ufrag_the_rest_by_learned_address() -> None:
    endpoint = _MuxEndpoint()
    sock = SentTo()
    endpoint.connection_made(sock)  # type: ignore[arg-type]
    a, b = Receiver(), Receiver()
    mux_a = _MuxTransport(endpoint, a, "ufA")  # type: ignore[arg-type]
    mux_b = _MuxTransport(endpoint, b, "ufB")  # type: ignore[arg-type]
    endpoint.register(mux_a)
    endpoint.register(mux_b)
    x, y, z = ("127.0.0.1", 5000), ("127.0.0.1", 5001), ("127.0.0.1", 5002)

    endpoint.datagram_received(binding_request("ufA:remote"), x)
    endpoint.datagram_received(b"\x16\xfe\xfd dtls from x", x)  # learned: to A
    endpoint.datagram_received(b"\x80\x60 rtcp from y", y)  # nobody knows y: dropped
    endpoint.datagram_received(binding_request("nobody:remote"), z)  # unknown ufrag: dropped
    assert [addr for _, addr in a.got] == [x, x] and b.got == []
    assert endpoint.dropped == 2

    # B sends a check to y: y's answers now reach B; its bytes go out on the shared socket.
    mux_b.sendto(b"check", y)
    endpoint.datagram_received(b"\x80\x60 from y", y)
    assert b.got[-1][1] == y and sock.sent == [(b"check", y)]

    # A request naming B from x (the remote peer restarted ICE) moves x to B.
    endpoint.datagram_received(binding_request("ufB:remote"), x)
    endpoint.datagram_received(b"\x80\x60 from x", x)
    assert b.got[-1] == (b"\x80\x60 from x", x) and len(a.got) == 2

    # Closing A's connection forgets it; B is untouched; nothing is kept for A.
    mux_a.close()
    await asyncio.sleep(0)
    assert a.lost and "ufA" not in endpoint.by_ufrag
    assert set(endpoint.by_addr) == {x, y} and all(m is mux_b for m in endpoint.by_addr.values())
    mux_a.sendto(b"late", x)  # a closed connection sends nothing
    assert sock.sent == [(b"check", y)]
    mux_b.close()
    await asyncio.sleep(0)
    assert endpoint.by_addr == {} and endpoint.by_ufrag == {}


@pytest.mark.timeout(5)
async def test_a_port_already_taken_is_a_clear_start_up_error() -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as taken:
        taken.bind(("127.0.0.1", 0))
        port = taken.getsockname()[1]
        mux = UdpMux(port, ["127.0.0.1"])
        with pytest.raises(OSError, match=f"media UDP port {port}"):
            await mux.start()
    with pytest.raises(ValueError):
        UdpMux(0, ["127.0.0.1"])
