"""Retransmissions of a publisher with several video m-lines reach their receiver.

aiortc's RTP router knows each m-line's media SSRC but not its RTX SSRC, and routes a packet
of an unknown SSRC by payload type, to nowhere when several m-lines share it (a camera in
layers, or a camera and a screen): every retransmission was dropped. ``route_rtx`` routes
them by the receivers' RTX SSRCs (the long ``test_publish_loss.py`` shows it under real loss).
"""

from __future__ import annotations

from typing import Any

import pytest

from media import MediaRouter
from media.internals import media_ssrc, receive_counts
from media.internals.ingest import _RECEIVER_REMOTE_STREAMS
from signaling import PublishSession
from tests.media.peers import CounterVideoTrack, Publisher, wait_for


@pytest.mark.timeout(25)
async def test_a_nacked_packet_of_each_video_m_line_comes_back_on_its_rtx_ssrc() -> None:
    router = MediaRouter()
    publisher = Publisher(PublishSession("teacher", router))
    camera, screen = CounterVideoTrack(), CounterVideoTrack()
    for track in (camera, screen):
        publisher.pc.addTrack(track)
    try:
        answer = await publisher.negotiate({camera: "camera", screen: "screen"})
        assert not answer.rejected
        receivers = [
            r
            for r in publisher.session.pc.getReceivers()
            if r.track is not None and r.track.kind == "video"
        ]
        assert len(receivers) == 2
        # Both m-lines negotiated the same RTX payload type (what made aiortc drop them).
        rtx_types = {
            c.payloadType
            for t in publisher.session.pc.getTransceivers()
            for c in t._codecs
            if c.mimeType.lower() == "video/rtx"
        }
        assert len(rtx_types) == 1, rtx_types
        await wait_for(
            lambda: all(receive_counts(r)["media"] > 5 for r in receivers), 10, "media on both"
        )
        for receiver in receivers:
            ssrc = media_ssrc(receiver)
            assert ssrc is not None
            streams: dict[int, Any] = getattr(receiver, _RECEIVER_REMOTE_STREAMS)
            newest = streams[ssrc].max_seq
            # The server asks again for a packet it got: the publisher's sender resends it
            # from its history, RTX-wrapped on its RTX SSRC.
            await receiver._send_rtcp_nack(ssrc, [newest])
        await wait_for(
            lambda: all(receive_counts(r)["rtx"] >= 1 for r in receivers),
            5,
            "the retransmission of each m-line at its receiver",
        )
    finally:
        await publisher.close()
