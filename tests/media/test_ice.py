from __future__ import annotations

import base64
import hashlib
import hmac
from pathlib import Path

import aioice.ice
import pytest
from aiortc import RTCIceServer, RTCPeerConnection

from media.ice import (
    TurnServer,
    announce_address,
    configure_host_addresses,
    host_addresses,
    rtc_configuration,
    turn_credentials,
    turn_ice_server,
    use_host_addresses,
)
from realtime.app import create_app
from tests.conftest import make_settings


@pytest.mark.timeout(5)
def test_host_addresses_setting_replaces_aioices_loopback_skipping() -> None:
    configure_host_addresses(["127.0.0.1", "::1"])
    assert aioice.ice.get_host_addresses(True, False) == ["127.0.0.1"]
    assert aioice.ice.get_host_addresses(True, True) == ["127.0.0.1", "::1"]
    assert aioice.ice.get_host_addresses(False, True) == ["::1"]
    configure_host_addresses(None)
    assert "127.0.0.1" not in host_addresses()  # aioice's own function is back
    with pytest.raises(ValueError):
        configure_host_addresses(["not-an-address"])


@pytest.mark.timeout(5)
async def test_gathered_candidates_are_loopback_only_and_no_stun() -> None:
    configuration = rtc_configuration()
    assert configuration.iceServers == []  # never aiortc's default Google STUN
    pc = RTCPeerConnection(configuration)
    try:
        pc.addTransceiver("video")
        await pc.setLocalDescription(await pc.createOffer())
        candidates = [
            line for line in pc.localDescription.sdp.splitlines() if line.startswith("a=candidate")
        ]
        assert candidates and all(" 127.0.0.1 " in c and "typ host" in c for c in candidates)
    finally:
        await pc.close()


@pytest.mark.timeout(5)
def test_turn_rest_credentials_match_coturn_use_auth_secret() -> None:
    username, password = turn_credentials("s3cret", "alice", ttl=600, now=1_700_000_000)
    assert username == "1700000600:alice"
    expected = base64.b64encode(
        hmac.new(b"s3cret", b"1700000600:alice", hashlib.sha1).digest()
    ).decode()
    assert password == expected
    server = turn_ice_server(
        TurnServer(("turn:127.0.0.1:3478?transport=udp",), "s3cret", ttl=60), "bob", now=100
    )
    assert isinstance(server, RTCIceServer)
    assert server.username == "160:bob" and server.credential
    assert rtc_configuration([server]).iceServers == [server]


@pytest.mark.timeout(5)
def test_announce_address_adds_public_copy_of_host_candidates() -> None:
    sdp = (
        "v=0\r\nm=video 9 UDP/TLS/RTP/SAVPF 96\r\n"
        "a=candidate:abc 1 udp 2130706431 10.0.0.5 40000 typ host\r\n"
        "a=candidate:def 1 udp 1694498815 1.1.1.1 40001 typ srflx raddr 10.0.0.5 rport 40001\r\n"
    )
    out = announce_address(sdp, "203.0.113.7").splitlines()
    assert "a=candidate:abcn 1 udp 2130705431 203.0.113.7 40000 typ host" in out
    assert sum("203.0.113.7" in line for line in out) == 1  # srflx untouched
    with pytest.raises(ValueError):
        announce_address(sdp, "nope")


@pytest.mark.timeout(10)
def test_an_app_sets_the_host_addresses_at_start_up_not_when_built(tmp_path: Path) -> None:
    """Building an app has no process-wide effect; its start-up (use_host_addresses) has, and a
    second app of the process asking for other addresses is refused."""
    configure_host_addresses(None)
    create_app(make_settings(tmp_path, ice_host_addresses="127.0.0.2"))
    assert host_addresses() != ["127.0.0.2"]
    use_host_addresses(["127.0.0.2"])
    assert host_addresses() == ["127.0.0.2"]
    use_host_addresses(["127.0.0.2"])  # the same again: another node of the same process
    with pytest.raises(ValueError, match=r"already gathers ICE candidates on 127\.0\.0\.2"):
        use_host_addresses(["127.0.0.1"])
    assert host_addresses() == ["127.0.0.2"]
