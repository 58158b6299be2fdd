"""The ICE candidate pair a peer connection uses (aioice's nominated pair, a private attribute).

aiortc exposes no selected candidate pair (its ``getStats`` has no candidate-pair entries), so
the path a participant's media takes is read from aioice's ``Connection._nominated`` — the
same attribute ``srtp_send`` sends on.
"""

from __future__ import annotations

from typing import Any

from aiortc import RTCPeerConnection

from media.internals.srtp_send import _ICE_NOMINATED


def selected_pair(pc: RTCPeerConnection) -> tuple[Any, Any] | None:
    """(local, remote) aioice ``Candidate`` of ``pc``'s nominated pair (RTP component), or None
    before ICE has nominated one."""
    for ice_transport in pc._RTCPeerConnection__iceTransports:  # type: ignore[attr-defined]
        pair = getattr(ice_transport._connection, _ICE_NOMINATED).get(1)
        if pair is not None:
            return pair.local_candidate, pair.remote_candidate
    return None
