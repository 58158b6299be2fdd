"""Behind a firewall that lets no UDP through, Chromium reaches the node over ICE-TCP on its one
TCP media port: the student plays the teacher's video and sound, the teacher's camera goes up
the same way, and the host's participant list says "tcp" for both
(tests/live/ice_tcp_scenario.py, in a network namespace of its own, UDP dropped by nftables
inside it only)."""

from __future__ import annotations

import pytest

from media.internals import tcp_mux
from realtime.live.service import ANNOUNCE_AFTER_S
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


# What a user would notice as "at once" (the old code: aioice's consent checks, about 30 s);
# after a reset the server gives Chromium tcp_mux.RECONNECT_GRACE_S (1.8 s) to connect again.
NOTICED_WITHIN_S = 2.0


@pytest.mark.timeout(150)
def test_a_cut_tcp_connection_fails_its_leg_at_once_unless_the_browser_connects_again() -> None:
    """The browser's end of a TCP media connection is destroyed (``ss -K``; the server reads a
    reset). While Chromium can connect again, the leg goes on on its new connection; once it
    cannot, the leg's peer connection ends within 2 s, the host's participant list says so,
    and, for the teacher's publish leg, the student's page hears at once that she no longer
    publishes (tests/live/ice_tcp_drop_scenario.py)."""
    r = run_page_scenario("tests.live.ice_tcp_drop_scenario", NFT, "ss")
    tcp_port = r["ports"]["tcp"]
    for leg in ("publish", "subscribe"):
        # Both legs were on TCP, on the node's TCP media port.
        pair = r["server_pairs"][leg]
        assert pair["local"] == ["tcp", "127.0.0.1", tcp_port, "host", "passive"], leg
    for cut in ("cut_reconnecting", "cut_publish", "cut_subscribe"):
        assert r[cut].count("ESTAB") == 1, (cut, r[cut])  # one connection cut each time

    # 1. Chromium connected again (another port): Wang Hao's leg went on, he kept playing.
    again = r["reconnected"]
    assert again["states"] == [] and again["state"] == "connected", again
    assert again["frames_decoded_since"] >= FRAMES_WANTED, again
    assert again["pair"]["remote"][1] != r["server_pairs"]["subscribe"]["remote"][1], again
    assert r["reconnect_s"] is not None and r["reconnect_s"] < tcp_mux.RECONNECT_GRACE_S

    # 2. Connecting again refused: each cut leg ended at once, and the host's list says so.
    assert r["connections_refused"] > 0  # Chromium tried
    for leg in ("publish", "subscribe"):
        for measure in (f"{leg}_failed_s", f"{leg}_link_failed_s"):
            assert r[measure] is not None and r[measure] <= NOTICED_WITHIN_S, (measure, r)
        assert r[f"{leg}_states"][-1][0] in ("failed", "closed"), r[f"{leg}_states"]
    # Ms. Li's cut: her tracks ended, and Wang Hao's page was told.
    assert r["publishing_ended_s"] is not None and r["publishing_ended_s"] <= NOTICED_WITHIN_S
    # (The server tells everyone a track's end ANNOUNCE_AFTER_S later, the leg's other tracks
    # ending meanwhile.)
    assert r["student_told_s"] <= NOTICED_WITHIN_S + ANNOUNCE_AFTER_S, r
    # Only the cut leg ended: Wang Hao's subscribe leg was still connected until its own cut.
    assert r["subscribe_state_after_publish_cut"] == "connected"
    assert r["tcp_mux_after"]["connections"] == r["tcp_mux_after"]["streams"] == 0
