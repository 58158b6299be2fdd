"""The last resort behind a strict firewall: TURN over TLS (``turns:…?transport=tcp``) through a
real coturn, and the host's participant list saying the path is relayed.

coturn listens for TLS on 127.0.0.1 with a certificate made for the test (subjectAltName
127.0.0.1); the clients trust it through ``SSL_CERT_FILE`` (what a school deploying its own
CA would do), and aioice connects with certificate and host name checks on.
"""

from __future__ import annotations

import os
import secrets
import shutil
import subprocess
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from clients.live import LiveParticipant
from realtime.transport.rest import LIVE
from tests.conftest import Server, make_settings, start_server, stop_server
from tests.live.helpers import Watch, advancing, eventually
from tests.live.test_turn import _free_udp_port, relay_pair, running_coturn
from tests.media.peers import CounterVideoTrack, ToneAudioTrack


def _free_tcp_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _accepts(port: int) -> bool:
    import socket

    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.2):
            return True
    except OSError:
        return False


@pytest.fixture
def coturn_tls(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[str, str]]:
    """coturn with only TLS over TCP open; returns (turns URL, shared secret)."""
    binary = shutil.which("turnserver")
    if binary is None:
        message = "coturn's turnserver is not installed (run `make live-deps`)"
        if os.environ.get("CI") == "true":
            pytest.fail(message)
        pytest.skip(message)
    cert, key = tmp_path / "turn.crt", tmp_path / "turn.key"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
         "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1",
         "-keyout", str(key), "-out", str(cert)],
        check=True, capture_output=True,
    )  # fmt: skip
    monkeypatch.setenv("SSL_CERT_FILE", str(cert))
    tls_port, plain_port = _free_tcp_port(), _free_udp_port()
    secret = secrets.token_hex(16)
    log = tmp_path / "turn.log"
    args = [binary, "-n", "--listening-ip=127.0.0.1", "--relay-ip=127.0.0.1",
         f"--listening-port={plain_port}", f"--tls-listening-port={tls_port}",
         f"--cert={cert}", f"--pkey={key}", "--no-udp", "--no-dtls",
         "--use-auth-secret", f"--static-auth-secret={secret}", "--realm=homeroom",
         "--allow-loopback-peers", "--no-cli", f"--db={tmp_path / 'turndb'}",
         f"--pidfile={tmp_path / 'turnserver.pid'}", f"--log-file={log}", "--simple-log",
         "--no-stdout-log"]  # fmt: skip
    with running_coturn(args, tmp_path, log, lambda: _accepts(tls_port)):
        yield f"turns:127.0.0.1:{tls_port}?transport=tcp", secret


@pytest.fixture
async def tls_server(tmp_path: Path, coturn_tls: tuple[str, str]) -> AsyncIterator[Server]:
    url, secret = coturn_tls
    srv = await start_server(
        make_settings(tmp_path, ice_host_addresses="127.0.0.1", turn_urls=url, turn_secret=secret)
    )
    yield srv
    await stop_server(srv)


@pytest.mark.timeout(90)
async def test_relay_only_participants_through_turn_over_tls_and_the_host_sees_it(
    tls_server: Server, coturn_tls: tuple[str, str]
) -> None:
    srv = tls_server
    url, _ = coturn_tls
    teacher = await srv.client("li")
    sid = (
        await teacher.request(
            "session.start", {"class_id": srv.class_id, "kind": "lesson", "title": "TLS"}
        )
    )["session"]["id"]
    host = LiveParticipant(teacher, sid, relay_only=True)
    joined = await host.join()
    assert [s["urls"] for s in joined["ice_servers"]] == [[url]]
    await host.publish({CounterVideoTrack(): "camera", ToneAudioTrack(): "microphone"})
    student = LiveParticipant(await srv.client("wanghao"), sid, relay_only=True)
    await student.join()
    watch = Watch()
    watch.attach(student)
    await student.subscribe()
    host_id = srv.uid("li")
    await eventually(
        lambda: advancing(watch.video_from(host_id)), 30, "video through TURN over TLS"
    )
    await eventually(
        lambda: watch.audio_frames.get(host_id, 0) > 10, 10, "audio through TURN over TLS"
    )
    # Every packet went over the TLS connection to coturn: the client's pair is relayed.
    for pc in (host.publish_pc, student.subscribe_pc):
        local, _remote = relay_pair(pc)
        assert local.type == "relay"
    # The host's participant list (the stats the console polls) says "relayed" for both.
    stats = srv.app[LIVE].runtimes[sid].stats()
    links = stats["links"]
    assert links[str(host_id)]["publish"]["path"] == "relayed"
    assert links[str(srv.uid("wanghao"))]["subscribe"]["path"] == "relayed"
    await teacher.request("session.end", {"session_id": sid})
    watch.stop()
    for p in (host, student):
        await p.close()
