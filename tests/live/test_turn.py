"""TURN: a relay-only participant through a real coturn, with credentials from the server.

coturn runs on 127.0.0.1 with ``use-auth-secret`` (the REST API scheme): the server shares
coturn's static secret and hands each participant, in the ``session.join`` acknowledgement, a
username ``"<expiry>:<user id>"`` and the base64 HMAC-SHA1 of it. coturn checks both, and refuses
a username whose expiry has passed.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import hmac
import os
import random
import re
import secrets
import shutil
import socket
import subprocess
import time
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from aioice import stun, turn
from aiortc import RTCPeerConnection

from clients.live import LiveParticipant
from realtime.transport.rest import LIVE
from tests.conftest import Server, make_settings, start_server, stop_server
from tests.live.helpers import Watch, advancing, eventually
from tests.media.peers import CounterVideoTrack, ToneAudioTrack

TURN_TTL_S = 600


@dataclass
class Coturn:
    port: int
    secret: str
    relay_ports: range
    log: Path

    @property
    def url(self) -> str:
        return f"turn:127.0.0.1:{self.port}?transport=udp"

    @property
    def address(self) -> tuple[str, int]:
        return ("127.0.0.1", self.port)


def _free_udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _answers_stun(port: int) -> bool:
    request = stun.Message(message_method=stun.Method.BINDING, message_class=stun.Class.REQUEST)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.settimeout(0.2)
        try:
            s.sendto(bytes(request), ("127.0.0.1", port))
            response = stun.parse_message(s.recv(2048))
        except (OSError, ValueError):
            return False
    return response.transaction_id == request.transaction_id


@pytest.fixture
def coturn(tmp_path: Path) -> Iterator[Coturn]:
    binary = shutil.which("turnserver")
    if binary is None:
        message = "coturn's turnserver is not installed (run `make live-deps`)"
        if os.environ.get("CI") == "true":
            pytest.fail(message)
        pytest.skip(message)
    port = _free_udp_port()
    low = random.randrange(40000, 59000, 100)
    server = Coturn(port, secrets.token_hex(16), range(low, low + 100), tmp_path / "turn.log")
    args = [
        binary,
        "-n",  # no configuration file: everything is on this command line
        "--listening-ip=127.0.0.1",
        "--relay-ip=127.0.0.1",
        f"--listening-port={port}",
        f"--min-port={low}",
        f"--max-port={low + 99}",
        "--use-auth-secret",
        f"--static-auth-secret={server.secret}",
        "--realm=homeroom",
        "--allow-loopback-peers",  # the media server is on 127.0.0.1 too
        "--no-cli",
        "--no-tcp",
        "--no-tls",
        "--no-dtls",
        f"--db={tmp_path / 'turndb'}",
        f"--pidfile={tmp_path / 'turnserver.pid'}",
        f"--log-file={server.log}",
        "--simple-log",
        "--no-stdout-log",
    ]
    with running_coturn(args, tmp_path, server.log, lambda: _answers_stun(port)):
        yield server


@contextlib.contextmanager
def running_coturn(
    args: list[str], cwd: Path, log: Path, ready: Callable[[], bool]
) -> Iterator[None]:
    """coturn started with ``args`` until ``ready()`` (10 s at most), stopped at the end."""
    proc = subprocess.Popen(args, cwd=cwd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 10
        while not ready():
            if proc.poll() is not None or time.monotonic() > deadline:
                text = log.read_text() if log.exists() else ""
                pytest.fail(f"turnserver did not start ({' '.join(args[1:4])}):\n{text[-2000:]}")
            time.sleep(0.1)
        yield
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@pytest.fixture
async def turn_server(tmp_path: Path, coturn: Coturn) -> AsyncIterator[Server]:
    """The Homeroom server configured with coturn's URL and shared secret."""
    srv = await start_server(
        make_settings(
            tmp_path,
            ice_host_addresses="127.0.0.1",
            turn_urls=coturn.url,
            turn_secret=coturn.secret,
            turn_ttl_s=TURN_TTL_S,
        )
    )
    yield srv
    await stop_server(srv)


def rest_credential(secret: str, username: str) -> str:
    """coturn's use-auth-secret password for ``username``, computed independently of the server."""
    return base64.b64encode(
        hmac.new(secret.encode(), username.encode(), hashlib.sha1).digest()
    ).decode()


def check_ice_servers(ice_servers: list[dict[str, Any]], coturn: Coturn, user_id: int) -> None:
    assert len(ice_servers) == 1, ice_servers  # no STUN configured, and no default one added
    entry = ice_servers[0]
    assert entry["urls"] == [coturn.url]
    match = re.fullmatch(r"(\d+):(\d+)", entry["username"])
    assert match, entry["username"]
    assert int(match[2]) == user_id
    assert abs(int(match[1]) - (time.time() + TURN_TTL_S)) < 30  # time-limited
    assert entry["credential"] == rest_credential(coturn.secret, entry["username"])


def relay_pair(pc: RTCPeerConnection | None) -> tuple[Any, Any]:
    """(local, remote) candidates of an aiortc connection's nominated pair."""
    assert pc is not None
    connection = pc.getTransceivers()[0].receiver.transport.transport._connection
    pair = connection._nominated.get(1)
    assert pair is not None, "no nominated ICE pair"
    return pair.local_candidate, pair.remote_candidate


def sdp_candidates(sdp: str) -> list[list[str]]:
    return [line.split()[4:8] for line in sdp.splitlines() if line.startswith("a=candidate:")]


@pytest.mark.timeout(90)
async def test_relay_only_participants_send_and_receive_through_coturn(
    turn_server: Server, coturn: Coturn
) -> None:
    srv = turn_server
    teacher = await srv.client("li")
    sid = (
        await teacher.request(
            "session.start", {"class_id": srv.class_id, "kind": "lesson", "title": "TURN"}
        )
    )["session"]["id"]

    host = LiveParticipant(teacher, sid, relay_only=True)
    check_ice_servers((await host.join())["ice_servers"], coturn, srv.uid("li"))
    ack = await host.publish({CounterVideoTrack(): "camera", ToneAudioTrack(): "microphone"})
    assert {t["source"] for t in ack["published"]} == {"camera", "microphone"}
    # The offer carries only coturn's relayed address: no host candidate leaks out.
    assert host.publish_pc is not None
    offered = sdp_candidates(host.publish_pc.localDescription.sdp)
    assert offered, "no relay candidate: the TURN allocation failed"
    for address, port, _typ, kind in offered:
        assert (address, kind) == ("127.0.0.1", "relay") and int(port) in coturn.relay_ports

    student = LiveParticipant(await srv.client("wanghao"), sid, relay_only=True)
    check_ice_servers((await student.join())["ice_servers"], coturn, srv.uid("wanghao"))
    watch = Watch()
    watch.attach(student)
    await student.subscribe()
    host_id = srv.uid("li")
    await eventually(
        lambda: advancing(watch.video_from(host_id)),
        20,
        "the student decoding the teacher through the relay",
    )
    await eventually(
        lambda: watch.audio_frames.get(host_id, 0) > 10,
        5,
        "the student hearing the teacher through the relay",
    )

    # Both clients' selected pairs run from a relayed address to the server's 127.0.0.1; the
    # server sees both peers at coturn's relay ports, so every packet went through coturn.
    rt = srv.app[LIVE].runtimes[sid]
    for pc, server_pc in (
        (host.publish_pc, rt.publishers[host_id].pc),
        (student.subscribe_pc, rt.subscribers[srv.uid("wanghao")].pc),
    ):
        local, remote = relay_pair(pc)
        assert local.type == "relay" and local.host == "127.0.0.1"
        assert local.port in coturn.relay_ports
        assert remote.host == "127.0.0.1" and remote.type == "host"
        server_local, server_remote = relay_pair(server_pc)
        assert (server_local.host, server_local.port) == (remote.host, remote.port)
        assert (server_remote.host, server_remote.port) == (local.host, local.port)

    await teacher.request("session.end", {"session_id": sid})
    watch.stop()
    for p in (host, student):
        await p.close()


async def allocate(coturn: Coturn, username: str, password: str) -> tuple[str, int]:
    """A TURN allocation on coturn; the relayed address it gives."""
    transport, _ = await asyncio.wait_for(
        turn.create_turn_endpoint(asyncio.DatagramProtocol, coturn.address, username, password), 5
    )
    try:
        relayed: tuple[str, int] = transport.get_extra_info("sockname")
        return relayed
    finally:
        transport.close()


async def refused(coturn: Coturn, username: str, password: str) -> int:
    """The STUN error code coturn answers an Allocate with bad credentials with."""
    with pytest.raises(stun.TransactionFailed) as err:
        await allocate(coturn, username, password)
    code: int = err.value.response.attributes["ERROR-CODE"][0]
    return code


@pytest.mark.timeout(60)
async def test_coturn_refuses_expired_and_forged_credentials(
    turn_server: Server, coturn: Coturn
) -> None:
    srv = turn_server
    teacher = await srv.client("li")
    sid = (
        await teacher.request(
            "session.start", {"class_id": srv.class_id, "kind": "lesson", "title": "TURN"}
        )
    )["session"]["id"]
    joined = await (await srv.client("liming")).request("session.join", {"session_id": sid})
    entry = joined["ice_servers"][0]
    user, password = entry["username"], entry["credential"]
    check_ice_servers(joined["ice_servers"], coturn, srv.uid("liming"))

    # What the server handed out allocates a relay.
    address, port = await allocate(coturn, user, password)
    assert address == "127.0.0.1" and port in coturn.relay_ports

    # A credential whose expiry has passed, though correctly signed, is refused.
    expired = f"{int(time.time()) - 60}:{srv.uid('liming')}"
    assert await refused(coturn, expired, rest_credential(coturn.secret, expired)) == 401
    # Stretching the expiry of a real credential breaks its signature.
    stretched = f"{int(user.split(':')[0]) + 86400}:{srv.uid('liming')}"
    assert await refused(coturn, stretched, password) == 401
    # Signed with another secret: refused.
    assert await refused(coturn, user, rest_credential("not-" + coturn.secret, user)) == 401
    await teacher.request("session.end", {"session_id": sid})
