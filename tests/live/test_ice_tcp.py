"""Behind a firewall that lets no UDP through, Chromium reaches the node over ICE-TCP on its one
TCP media port: the student plays the teacher's video and sound, the teacher's camera goes up
the same way, and the host's participant list says "tcp" for both
(tests/live/ice_tcp_scenario.py, in a network namespace of its own, UDP dropped by nftables
inside it only)."""

from __future__ import annotations

import pytest

from tests.live.chromium_scenario import FRAMES_WANTED, decoded_from, run_page_scenario
from tests.live.shaped_scenario import NFT


@pytest.mark.timeout(150)
def test_a_viewer_without_udp_plays_the_lesson_over_ice_tcp() -> None:
    r = run_page_scenario("tests.live.ice_tcp_scenario", NFT)
    li, wanghao = r["ids"]["li"], r["ids"]["wanghao"]
    ports = r["ports"]
    # The browser did try UDP: the firewall dropped it.
    assert r["udp_dropped"] > 0

    # The student decodes the teacher's camera and receives her microphone, over TCP to the
    # node's TCP media port; the teacher's publish leg went the same way.
    sub = r["student_stats"]["subscribe"]
    assert decoded_from(sub, li, "video") >= FRAMES_WANTED
    assert decoded_from(sub, li, "audio") > 0
    assert {t["source"] for t in r["publish"]["published"]} == {"camera", "microphone"}
    for pair in (sub["pair"], r["teacher_stats"]["publish"]["pair"]):
        assert pair["state"] == "succeeded" and pair["nominated"], pair
        assert pair["local"]["protocol"] == pair["remote"]["protocol"] == "tcp", pair
        assert pair["remote"]["address"] == "127.0.0.1" and pair["remote"]["port"] == ports["tcp"]

    # The server's nominated pairs: its passive TCP host candidate on that port; the browser's
    # end learned from its connection (peer-reflexive), 127.0.0.1 on both ends.
    for leg, pair in r["server_pairs"].items():
        assert pair["local"] == ["tcp", "127.0.0.1", ports["tcp"], "host", "passive"], leg
        assert pair["remote"][0] == "127.0.0.1", leg
    # The forwarding fast path sent the student's media on the TCP connection.
    assert r["direct_sends"].get("_TcpIceTransport", 0) > 0, r["direct_sends"]

    # The host's participant list says TCP for both.
    assert r["links"][str(li)]["publish"]["path"] == "tcp"
    assert r["links"][str(wanghao)]["subscribe"]["path"] == "tcp"

    # The node's sockets: one TCP listening port for media beside the HTTP one, the two
    # browser connections on it, and one UDP socket (its UDP media port), nothing else.
    sockets = r["sockets"]
    assert sockets["tcp_listening"] == sorted([ports["http"], ports["tcp"]])
    assert sockets["tcp_media_connections"] == 2
    assert sockets["udp"] == [ports["udp"]]
    assert r["tcp_mux"] == {"connections": 2, "streams": 2}
    # The lesson ended: the peer connections closed their TCP connections.
    assert r["tcp_mux_after"] == {"connections": 0, "streams": 0}
