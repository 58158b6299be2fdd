"""Firewalls: with ``media_udp_port`` set, all of a node's media uses that one UDP port."""

from __future__ import annotations

import asyncio
import os
import socket
import time
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from clients.live import LiveParticipant
from media.ice import UDP_MUX
from media.internals import sendmmsg
from realtime import demo
from realtime.actions.accounts import create_user
from realtime.actions.roster import add_member
from realtime.auth import hash_password
from realtime.domain.roles import Role
from realtime.store.schema import classes
from realtime.transport.rest import HUB, LIVE
from tests.conftest import make_settings, start_server, stop_server
from tests.live.helpers import Watch, advancing, eventually
from tests.media.peers import CounterVideoTrack, ToneAudioTrack

VIEWERS = 10


def process_sockets(pid: int | str = "self", table: str = "udp") -> set[tuple[int, str, int, int]]:
    """(inode, local address, local port, state) of every IPv4 socket of one kind (``udp``,
    ``tcp``: /proc/net/<table>) a process (this one) holds; TCP state 10 is LISTEN."""
    inodes = set()
    for fd in os.listdir(f"/proc/{pid}/fd"):
        try:
            target = os.readlink(f"/proc/{pid}/fd/{fd}")
        except OSError:
            continue
        if target.startswith("socket:["):
            inodes.add(int(target[8:-1]))
    out = set()
    with open(f"/proc/{pid}/net/{table}") as f:
        next(f)
        for line in f:
            bits = line.split()
            inode = int(bits[9])
            if inode in inodes:
                hex_addr, hex_port = bits[1].split(":")
                addr = socket.inet_ntoa(int(hex_addr, 16).to_bytes(4, "little"))
                out.add((inode, addr, int(hex_port, 16), int(bits[3], 16)))
    return out


def process_udp_sockets(pid: int | str = "self") -> set[tuple[int, str, int]]:
    """(inode, local address, local port) of every UDP socket a process (this one) holds."""
    return {(inode, addr, port) for inode, addr, port, _ in process_sockets(pid, "udp")}


def free_udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.mark.timeout(120)
async def test_a_lesson_with_many_viewers_uses_one_udp_port(tmp_path: Path) -> None:
    port = free_udp_port()
    srv = await start_server(
        make_settings(tmp_path, ice_host_addresses="127.0.0.1", media_udp_port=port)
    )
    viewers: list[LiveParticipant] = []
    watches: list[Watch] = []
    try:
        mux = UDP_MUX.active
        assert mux is not None and mux.port == port
        # More viewers than the demo class has: extra students.
        store = srv.app[HUB].store
        pw = hash_password(demo.DEMO_PASSWORD)
        viewer_ids: list[str] = []
        async with store.transaction() as conn:
            row = (
                await conn.execute(select(classes.c.school_id).where(classes.c.id == srv.class_id))
            ).one()
            for i in range(VIEWERS):
                uid = await create_user(
                    conn, row.school_id, f"viewer{i}", f"Viewer {i}", None,
                    password_hash=pw, now=time.time(),
                )  # fmt: skip
                await add_member(conn, srv.class_id, uid, Role.STUDENT)
                viewer_ids.append(str(uid))

        before = process_udp_sockets()
        teacher = await srv.client("li")
        start = await teacher.request(
            "session.start", {"class_id": srv.class_id, "kind": "lesson", "title": "firewall"}
        )
        sid = start["session"]["id"]
        host = LiveParticipant(teacher, sid)
        await host.join()
        await host.publish({CounterVideoTrack(): "camera", ToneAudioTrack(): "microphone"})
        for i in range(VIEWERS):
            p = LiveParticipant(await srv.client(f"viewer{i}"), sid)
            w = Watch()
            w.attach(p)
            await p.join()
            await p.subscribe()
            viewers.append(p)
            watches.append(w)
        host_id = srv.uid("li")
        for i, w in enumerate(watches):
            await eventually(
                lambda w=w: advancing(w.video_from(host_id), 5), 30, f"viewer{i} decoding video"
            )

        # What the node's peer connections use: every host candidate and every selected pair
        # on the one port.
        runtime = srv.app[LIVE].runtimes[sid]
        legs = [*runtime.publishers.values(), *runtime.subscribers.values()]
        assert len(legs) == 1 + VIEWERS
        for leg in legs:
            assert leg.pc.connectionState == "connected"
            for transceiver in leg.pc.getTransceivers():
                connection = transceiver.receiver.transport.transport._connection
                for candidate in connection.local_candidates:
                    assert (candidate.host, candidate.port) == ("127.0.0.1", port)
                pair = connection._nominated[1]
                assert pair.local_addr == ("127.0.0.1", port)
                assert pair.remote_addr[0] == "127.0.0.1" and pair.remote_addr[1] != port
        assert mux.connections >= 1 + VIEWERS

        # The viewers' packets leave the shared socket together: one sendmmsg per loop
        # iteration carries a frame for many viewers (media/internals/sendmmsg.py).
        batch = sendmmsg.batch_for(asyncio.get_running_loop())
        calls, packets = batch.calls, batch.packets
        await eventually(lambda: batch.calls - calls >= 50, 20, "50 sendmmsg calls")
        calls, packets = batch.calls - calls, batch.packets - packets
        assert calls > 0 and packets / calls > 2, (calls, packets)
        assert batch.dropped == 0

        # The host sees each participant's path and what each viewer's reports say.

        async def links() -> dict[str, Any]:
            stats = await teacher.http("GET", f"/api/v1/sessions/{sid}/stats")
            return stats["links"]  # type: ignore[no-any-return]

        deadline = asyncio.get_running_loop().time() + 15
        while True:
            got = await links()
            if all(got[v]["subscribe"]["rtt_ms"] is not None for v in viewer_ids):
                break
            assert asyncio.get_running_loop().time() < deadline, got
            await asyncio.sleep(0.5)
        assert got[str(host_id)]["publish"]["path"] == "udp"
        for v in viewer_ids:
            leg = got[v]["subscribe"]
            assert leg["path"] == "udp" and leg["state"] == "connected", leg
            assert leg["loss"] < 0.05 and "loss" not in leg["bad"], leg

        # What the process opened meanwhile: the client peer connections' sockets (the
        # teacher's publishing one and each viewer's), none for the node. (Counted by the
        # clients' own candidates: a count of sockets alone also saw, on a loaded machine,
        # fewer sockets than clients.)
        clients = [host, *viewers]
        client_pcs = [
            c for participant in clients for c in (participant.publish_pc, participant.subscribe_pc)
        ]
        client_ports = {
            candidate.port
            for client_pc in client_pcs
            if client_pc is not None
            for tr in client_pc.getTransceivers()
            for candidate in tr.receiver.transport.transport._connection.local_candidates
        }
        assert len(client_ports) == 1 + VIEWERS
        opened = process_udp_sockets() - before
        assert {p for _, _, p in opened} <= client_ports, (opened, client_ports)
        assert all(p != port for _, _, p in opened)
        assert [s for s in process_udp_sockets() if s[2] == port] != []
    finally:
        for w in watches:
            w.stop()
        for p in viewers:
            await p.close()
        await stop_server(srv)
    # The last app of the process closed the port.
    assert UDP_MUX.active is None
    assert not [s for s in process_udp_sockets() if s[2] == port]
