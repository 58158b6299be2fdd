"""Signaling errors carry stable codes; sessions refuse what they cannot forward."""

from __future__ import annotations

import pytest
from aiortc import RTCPeerConnection, RTCSessionDescription

from media import MediaRouter
from signaling import CodecPolicy, PublishSession, SignalingError, SubscribeSession
from tests.media.peers import CounterVideoTrack, client_configuration


async def client_offer(pc: RTCPeerConnection, video_codec: str | None = None) -> str:
    track = CounterVideoTrack()
    transceiver = pc.addTransceiver(track, direction="sendonly")
    if video_codec:
        codecs = [
            c
            for c in transceiver.sender.getCapabilities("video").codecs
            if c.mimeType == f"video/{video_codec}"
        ]
        transceiver.setCodecPreferences(codecs)
    await pc.setLocalDescription(await pc.createOffer())
    return pc.localDescription.sdp


@pytest.mark.timeout(10)
async def test_publish_errors() -> None:
    router = MediaRouter()
    session = PublishSession("p", router)
    client = RTCPeerConnection(client_configuration())
    try:
        with pytest.raises(SignalingError) as bad:
            await session.apply_offer("garbage")
        assert bad.value.code == "bad_request"
        with pytest.raises(SignalingError) as unsupported:
            await session.apply_offer(await client_offer(client, "H264"))
        assert unsupported.value.code == "unsupported_codec"
        assert "VP8" in str(unsupported.value)
        await session.close()
        with pytest.raises(SignalingError) as closed:
            await session.apply_offer("v=0")
        assert closed.value.code == "closed"
    finally:
        await client.close()
        await session.close()


@pytest.mark.timeout(10)
async def test_h264_room_answers_h264_and_subscribe_errors() -> None:
    router = MediaRouter()
    session = PublishSession("p", router, codecs=CodecPolicy("H264"))
    subscriber = SubscribeSession("s", router, codecs=CodecPolicy("H264"))
    client = RTCPeerConnection(client_configuration())
    try:
        answer = await session.apply_offer(await client_offer(client))
        video = [line for line in answer.sdp.splitlines() if line.startswith("a=rtpmap")]
        assert video and all("H264" in line or "rtx" in line for line in video), video
        assert "42e01f" in answer.sdp and "packetization-mode=1" in answer.sdp
        await client.setRemoteDescription(RTCSessionDescription(answer.sdp, "answer"))

        with pytest.raises(SignalingError) as conflict:
            await subscriber.apply_answer("v=0")
        assert conflict.value.code == "conflict"
        offer = await subscriber.set_tracks([answer.published[0].track_id])
        assert offer is not None and "H264" in offer.sdp and "VP8" not in offer.sdp
        # A change while the offer is outstanding waits for the answer.
        assert await subscriber.set_tracks([]) is None
    finally:
        await client.close()
        await subscriber.close()
        await session.close()
