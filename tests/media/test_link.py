"""The host's view of a link: path and the bad-connection rule."""

from __future__ import annotations

from media.link import assess, path_of


def test_path_of_a_candidate_pair() -> None:
    assert path_of("host", "host", "udp") == "udp"
    assert path_of("host", "prflx", "udp") == "udp"
    assert path_of("host", "relay", "udp") == "relayed"  # the viewer relays through TURN
    assert path_of("relay", "host", "udp") == "relayed"
    assert path_of("host", "host", "TCP") == "tcp"


def test_bad_links_are_flagged_with_their_reasons() -> None:
    assert assess(2_000_000, 0.0, 0.03) == []
    assert assess(None, 0.0, None) == []  # nothing reported yet: not flagged
    assert assess(2_000_000, 0.2, 0.03) == ["loss"]
    assert assess(2_000_000, 0.0, 0.9) == ["rtt"]
    assert assess(100_000, 0.06, 0.6) == ["loss", "rtt", "bandwidth"]
