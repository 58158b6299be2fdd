"""ICE over TCP on one port: RFC 4571 framing, demultiplexing by ufrag and the limits, on real
STUN bytes (aioice's own encoder); the last tests on real loopback sockets."""

from __future__ import annotations

import asyncio
import socket
from typing import Any

import aioice.ice
import pytest
from aioice import stun
from aioice.candidate import Candidate
from aioice.ice import CandidatePair, StunProtocol

from media.internals import tcp_mux
from media.internals.tcp_mux import (
    FrameReader,
    FrameTooLarge,
    TcpMux,
    TcpStunProtocol,
    _TcpEndpoint,
    _TcpIceTransport,
    _TcpStream,
    frame,
    tcp_candidate_priority,
)
from media.internals.udp_mux import stun_request_ufrag
from tests.media.test_udp_mux import Receiver, binding_request

DTLS = b"\x16\xfe\xfd" + bytes(40)
RTP = b"\x80\x60" + bytes(100)


class StreamTransport:
    """Stands in for the asyncio transport of one accepted TCP connection."""

    def __init__(self, peer: tuple[str, int]) -> None:
        self.peer = peer
        self.written = bytearray()
        self.closed = False
        self.buffered = 0
        self.protocol: _TcpStream | None = None

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return self.peer if name == "peername" else default

    def write(self, data: bytes) -> None:
        self.written += data

    def get_write_buffer_size(self) -> int:
        return self.buffered

    def is_closing(self) -> bool:
        return self.closed

    def close(self, exc: Exception | None = None) -> None:
        """Closed in order (FIN), or with ``exc`` (a reset)."""
        if not self.closed and self.protocol is not None:
            self.closed = True
            asyncio.get_running_loop().call_soon(self.protocol.connection_lost, exc)

    def reset(self) -> None:
        self.close(ConnectionResetError(104, "Connection reset by peer"))

    def frames(self) -> list[bytes]:
        return FrameReader().feed(bytes(self.written))


def accept(endpoint: _TcpEndpoint, peer: tuple[str, int]) -> tuple[_TcpStream, StreamTransport]:
    stream = _TcpStream(endpoint)
    transport = StreamTransport(peer)
    transport.protocol = stream
    stream.connection_made(transport)  # type: ignore[arg-type]
    return stream, transport


class TcpReceiver(Receiver):
    """Stands in for :class:`TcpStunProtocol`: also the TCP connections it lost."""

    def __init__(self) -> None:
        super().__init__()
        self.streams_lost: list[tuple[tuple[str, int], bool]] = []

    def stream_lost(self, addr: tuple[str, int], reset: bool) -> None:
        self.streams_lost.append((addr, reset))


def ice_on(endpoint: _TcpEndpoint, ufrag: str) -> tuple[_TcpIceTransport, TcpReceiver]:
    receiver = TcpReceiver()
    ice = _TcpIceTransport(endpoint, receiver, ufrag)  # type: ignore[arg-type]
    endpoint.register(ice)
    return ice, receiver


def test_rfc_4571_frames_across_reads_and_the_size_limit() -> None:
    request = binding_request("ufA:r")
    stream = frame(request) + frame(DTLS) + frame(b"") + frame(RTP)
    reader = FrameReader()
    got: list[bytes] = []
    for i in range(0, len(stream), 7):  # any split of the byte stream
        got += reader.feed(stream[i : i + 7])
    assert got == [request, DTLS, b"", RTP]
    assert stun_request_ufrag(got[0]) == "ufA"
    assert FrameReader().feed(stream) == got  # or all at once
    big = FrameReader(max_frame=1000)
    with pytest.raises(FrameTooLarge):
        big.feed(b"\x03\xe9")  # the length alone is refused, before any of its bytes
    assert frame(b"abc") == b"\x00\x03abc"


def test_tcp_candidates_rank_below_every_udp_one() -> None:
    from aioice.candidate import candidate_priority

    tcp = tcp_candidate_priority(1)
    assert tcp < candidate_priority(1, "srflx") < candidate_priority(1, "host")
    assert tcp > candidate_priority(1, "relay")


@pytest.mark.timeout(5)
async def test_connections_go_by_the_ufrag_of_their_first_request() -> None:
    endpoint = _TcpEndpoint(TcpMux(3478, ["127.0.0.1"]))
    endpoint.sockname = ("127.0.0.1", 3478)
    mux = endpoint.mux
    ice_a, a = ice_on(endpoint, "ufA")
    ice_b, b = ice_on(endpoint, "ufB")
    x, y, z, w = (("127.0.0.1", p) for p in (5000, 5001, 5002, 5003))

    # x names A: it and all that follows on x reach A (a frame may span reads).
    sx, tx = accept(endpoint, x)
    assert mux.pending == {sx}
    request_a, request_b = binding_request("ufA:r"), binding_request("ufB:r")
    data = frame(request_a) + frame(DTLS) + frame(RTP)
    sx.data_received(data[:30])
    sx.data_received(data[30:])
    assert a.got == [(request_a, x), (DTLS, x), (RTP, x)] and b.got == []
    assert ice_a.streams == {x: sx} and mux.pending == set()
    # y names B.
    sy, ty = accept(endpoint, y)
    sy.data_received(frame(request_b))
    assert b.got == [(request_b, y)]

    # What A sends to x goes out framed on x only; to an address with no connection: nothing.
    ice_a.sendto(b"answer", x)
    ice_a.sendto(b"lost", y)
    assert tx.frames() == [b"answer"] and ty.frames() == []

    # An unknown ufrag, or anything but a Binding request first: closed, nothing delivered.
    sz, tz = accept(endpoint, z)
    sz.data_received(frame(binding_request("nobody:r")))
    sw, tw = accept(endpoint, w)
    sw.data_received(frame(DTLS) + frame(binding_request("ufA:r")))
    assert tz.closed and tw.closed and mux.rejected == 2
    assert len(a.got) == 3 and len(b.got) == 1
    # A frame over the limit closes the connection.
    sy.data_received(b"\xff\xff")
    assert ty.closed
    await asyncio.sleep(0)
    assert ice_b.streams == {} and mux.streams == {sx}
    # B's protocol heard that its connection from y closed; connections never identified
    # (z, w) belong to no ICE connection.
    assert b.streams_lost == [(y, False)] and a.streams_lost == []

    # A full send queue drops whole datagrams (TCP's own buffer is already full).
    tx.buffered = tcp_mux.MAX_QUEUED_BYTES + 1
    ice_a.sendto(b"dropped", x)
    tx.buffered = 0
    ice_a.sendto(b"sent", x)
    assert tx.frames() == [b"answer", b"sent"] and sx.dropped == 1

    # Closing A's ICE connection closes its TCP connections and forgets its ufrag (its own
    # closing is no lost connection).
    ice_a.close()
    await asyncio.sleep(0)
    assert a.lost and tx.closed and "ufA" not in endpoint.by_ufrag and mux.streams == set()
    assert a.streams_lost == []


@pytest.mark.timeout(5)
async def test_connection_limits(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(tcp_mux, "MAX_PENDING", 2)
    monkeypatch.setattr(tcp_mux, "MAX_STREAMS_PER_ICE", 1)
    endpoint = _TcpEndpoint(TcpMux(3478, ["127.0.0.1"]))
    ice, receiver = ice_on(endpoint, "ufA")
    streams = [accept(endpoint, ("127.0.0.1", 6000 + i)) for i in range(3)]
    assert [t.closed for _, t in streams] == [False, False, True]  # 2 pending at most
    (s0, t0), (s1, t1), _ = streams
    s0.data_received(frame(binding_request("ufA:r")))
    s1.data_received(frame(binding_request("ufA:r")))  # a second one for the same ICE: no
    assert not t0.closed and t1.closed and len(receiver.got) == 1 and list(ice.streams) == [s0.addr]
    for _, t in streams:
        t.close()
    await asyncio.sleep(0)
    assert endpoint.mux.streams == set() and endpoint.mux.pending == set()


@pytest.mark.timeout(5)
async def test_checks_on_tcp_are_answered_not_started_and_never_replace_udp() -> None:
    """aioice pairs a remote ``tcptype active`` candidate (port 9) like any other and, when it
    controls, nominates every pair it checks: on TCP it fails such checks at once instead."""
    connection = aioice.ice.Connection(ice_controlling=True)
    endpoint = _TcpEndpoint(TcpMux(3478, ["127.0.0.1"]))
    protocol = TcpStunProtocol(connection)
    ice = _TcpIceTransport(endpoint, protocol, connection.local_username)
    protocol.connection_made(ice)
    protocol.local_candidate = Candidate("f", 1, "tcp", 1, "127.0.0.1", 3478, "host")
    stream, transport = accept(endpoint, ("127.0.0.1", 7000))
    ice.attach(stream)

    def check(nominate: bool) -> stun.Message:
        msg = stun.Message(message_method=stun.Method.BINDING, message_class=stun.Class.REQUEST)
        msg.attributes["USERNAME"] = "remote:local"
        if nominate:
            msg.attributes["USE-CANDIDATE"] = None
        return msg

    with pytest.raises(stun.TransactionError, match="no TCP connection"):
        await protocol.request(check(False), ("127.0.0.1", 9))
    # With a UDP pair nominated, a nominating check on TCP fails without being sent.
    remote = Candidate("r", 1, "udp", 1, "127.0.0.1", 7001, "host")
    connection._nominated[1] = CandidatePair(StunProtocol(connection), remote)
    with pytest.raises(stun.TransactionError, match="UDP pair is nominated"):
        await protocol.request(check(True), ("127.0.0.1", 7000))
    assert transport.written == b""
    # Otherwise the check goes out framed on the connection and its response completes it.
    task = asyncio.ensure_future(protocol.request(check(False), ("127.0.0.1", 7000)))
    await asyncio.sleep(0)
    [sent] = transport.frames()
    request = stun.parse_message(sent)
    response = stun.Message(
        message_method=stun.Method.BINDING,
        message_class=stun.Class.RESPONSE,
        transaction_id=request.transaction_id,
    )
    stream.data_received(frame(bytes(response)))
    got, addr = await task
    assert got.transaction_id == request.transaction_id and addr == ("127.0.0.1", 7000)


async def read_closed(reader: asyncio.StreamReader) -> bytes:
    return await reader.read()  # b"" once the server closed it


@pytest.mark.timeout(10)
async def test_the_listener_closes_what_is_not_ice(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(tcp_mux, "FIRST_REQUEST_TIMEOUT_S", 0.3)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    mux = TcpMux(port, ["127.0.0.1"])
    await mux.start()
    try:
        # Silent: closed after the time-out.
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        assert await asyncio.wait_for(read_closed(reader), 3) == b""
        writer.close()
        # An HTTP request (not RFC 4571 STUN): closed at once.
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        assert await asyncio.wait_for(read_closed(reader), 3) == b""
        writer.close()
        assert mux.rejected == 2 and len(mux.streams) == 0
        # A second listener on the port is refused with a clear error.
        with pytest.raises(OSError, match=f"media TCP port {port}"):
            await TcpMux(port, ["127.0.0.1"]).start()
    finally:
        mux.close()


class Datagrams(asyncio.DatagramTransport):
    """Stands in for a UDP socket (aioice's or ``udp_mux``'s) under a StunProtocol."""

    def sendto(self, data: Any, addr: Any = None) -> None:
        pass

    def is_closing(self) -> bool:
        return False


def tcp_and_udp(connection: aioice.ice.Connection) -> tuple[TcpStunProtocol, StunProtocol]:
    """``connection`` with a passive TCP candidate on a listener and a UDP host candidate."""
    endpoint = _TcpEndpoint(TcpMux(3478, ["127.0.0.1"]))
    tcp = TcpStunProtocol(connection)
    tcp.connection_made(_TcpIceTransport(endpoint, tcp, connection.local_username))
    tcp.local_candidate = Candidate(
        "t", 1, "tcp", tcp_candidate_priority(1), "127.0.0.1", 3478, "host"
    )
    udp = StunProtocol(connection)
    udp.connection_made(Datagrams())
    udp.local_candidate = Candidate("u", 1, "udp", 2130706431, "127.0.0.1", 3479, "host")
    return tcp, udp


def pair(
    connection: aioice.ice.Connection,
    protocol: StunProtocol,
    port: int,
    state: CandidatePair.State = CandidatePair.State.SUCCEEDED,
) -> CandidatePair:
    kind = protocol.local_candidate.transport
    remote = Candidate(f"r{port}", 1, kind, 1000 + port, "127.0.0.1", port, "prflx")
    new = CandidatePair(protocol, remote)
    new.state = state
    connection._check_list.append(new)
    connection.sort_check_list()
    return new


def connected(tcp: TcpStunProtocol, port: int) -> StreamTransport:
    stream, transport = accept(tcp.transport.endpoint, ("127.0.0.1", port))
    assert tcp.transport.attach(stream)
    return transport


async def closed_event(connection: aioice.ice.Connection) -> Any:
    return await asyncio.wait_for(connection.get_event(), 1)


@pytest.mark.timeout(5)
async def test_a_closed_tcp_connection_under_the_nominated_pair_fails_ice_at_once(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The nominated pair's TCP connection closes: another open TCP connection of the same ICE
    connection takes over, then (none left, the UDP pair never answered) ICE fails: aioice's
    connection closes, as its consent checks would close it about 30 s later. At once when
    the connection was closed in order (FIN); after a reset, once nothing connected again
    within the grace."""
    monkeypatch.setattr(tcp_mux, "RECONNECT_GRACE_S", 0.2)
    loop = asyncio.get_running_loop()
    for reset in (False, True):
        connection = aioice.ice.Connection(ice_controlling=False)
        tcp, udp = tcp_and_udp(connection)
        tx, ty, tz = (connected(tcp, port) for port in (7000, 7001, 7002))
        via_x, via_y = pair(connection, tcp, 7000), pair(connection, tcp, 7001)
        pair(connection, tcp, 7002, CandidatePair.State.IN_PROGRESS)  # open, not checked yet
        pair(connection, udp, 7003, CandidatePair.State.FAILED)
        connection._nominated[1] = via_x

        # A connection that carries no nominated pair closes: nothing changes.
        tz.reset()
        await asyncio.sleep(0)
        assert connection._nominated[1] is via_x
        # The nominated one closes: the other succeeded TCP pair carries the media now.
        tx.reset() if reset else tx.close()
        await asyncio.sleep(0)
        assert connection._nominated[1] is via_y and not connection._closed
        # It closes too: nothing else can carry media; ICE has failed.
        lost_at = loop.time()
        ty.reset() if reset else ty.close()
        event = await closed_event(connection)
        assert isinstance(event, aioice.ice.ConnectionClosed)
        took = loop.time() - lost_at
        assert 0.2 <= took < 0.5 if reset else took < 0.05, (reset, took)
        assert connection._nominated == {} and connection._protocols == []


@pytest.mark.timeout(5)
async def test_a_connection_made_again_within_the_grace_takes_over(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Chromium connects again after a reset: its new connection's pair, checked within the
    grace (nominated by the browser or not), carries the media; the ICE connection goes on."""
    monkeypatch.setattr(tcp_mux, "RECONNECT_GRACE_S", 0.1)
    for browser_nominates in (False, True):
        connection = aioice.ice.Connection(ice_controlling=False)
        tcp, _ = tcp_and_udp(connection)
        tx = connected(tcp, 7000)
        connection._nominated[1] = pair(connection, tcp, 7000)
        tx.reset()
        await asyncio.sleep(0.02)
        connected(tcp, 7001)
        via_new = pair(connection, tcp, 7001)
        if browser_nominates:
            connection._nominated[1] = via_new
        await asyncio.sleep(0.2)
        assert connection._nominated[1] is via_new and not connection._closed


@pytest.mark.timeout(5)
async def test_a_succeeded_udp_pair_takes_over_from_a_closed_tcp_connection() -> None:
    connection = aioice.ice.Connection(ice_controlling=True)
    tcp, udp = tcp_and_udp(connection)
    tx = connected(tcp, 7000)
    via_x, via_udp = pair(connection, tcp, 7000), pair(connection, udp, 7003)
    assert connection._check_list[0] is via_udp  # UDP first (priority)
    connection._nominated[1] = via_x
    tx.close()
    await asyncio.sleep(0)
    assert connection._nominated[1] is via_udp and not connection._closed


@pytest.mark.timeout(5)
async def test_the_listener_closing_fails_no_ice_connection() -> None:
    """At the app's end the mux closes its connections: the peer connections close themselves."""
    connection = aioice.ice.Connection(ice_controlling=False)
    tcp, _ = tcp_and_udp(connection)
    tx = connected(tcp, 7000)
    connection._nominated[1] = via_x = pair(connection, tcp, 7000)
    tcp.transport.endpoint.mux.close()
    await asyncio.sleep(0.05)
    assert tx.closed and connection._nominated[1] is via_x and not connection._closed
