"""Opus in-band FEC and DTX are asked for on every leg the server describes."""

from __future__ import annotations

import pytest

from media import MediaRouter
from signaling import PublishSession, SubscribeSession
from signaling.codecs import with_opus_fmtp
from tests.media.peers import Publisher, Subscriber, ToneAudioTrack, wait_for


def opus_fmtp(sdp: str) -> dict[str, str]:
    pts = [
        line.split()[0].split(":")[1]
        for line in sdp.splitlines()
        if line.lower().startswith("a=rtpmap:") and " opus/48000" in line.lower()
    ]
    assert len(pts) == 1, sdp
    lines = [line for line in sdp.splitlines() if line.startswith(f"a=fmtp:{pts[0]} ")]
    assert len(lines) == 1, sdp
    params = lines[0].split(" ", 1)[1]
    return dict(p.split("=", 1) for p in params.split(";"))


def test_fmtp_is_added_or_merged_and_nothing_else_changes() -> None:
    base = "v=0\r\nm=audio 9 UDP/TLS/RTP/SAVPF 111 0\r\na=rtpmap:111 opus/48000/2\r\n"
    added = with_opus_fmtp(base)
    assert opus_fmtp(added) == {"minptime": "10", "useinbandfec": "1", "usedtx": "1"}
    merged = with_opus_fmtp(base + "a=fmtp:111 stereo=1;usedtx=0\r\n")
    # A value already there is the sender's choice and stays.
    assert opus_fmtp(merged) == {
        "stereo": "1",
        "usedtx": "0",
        "minptime": "10",
        "useinbandfec": "1",
    }
    video = "v=0\r\nm=video 9 UDP/TLS/RTP/SAVPF 96\r\na=rtpmap:96 VP8/90000\r\n"
    assert with_opus_fmtp(video) == video
    assert with_opus_fmtp(added) == added  # idempotent


@pytest.mark.timeout(20)
async def test_publish_answer_and_subscribe_offer_ask_for_fec_and_dtx() -> None:
    router = MediaRouter()
    publisher = Publisher(PublishSession("teacher", router))
    publisher.pc.addTrack(ToneAudioTrack())
    subscriber = Subscriber(SubscribeSession("s0", router))
    try:
        answer = await publisher.negotiate()
        params = opus_fmtp(answer.sdp)
        assert params["useinbandfec"] == "1" and params["usedtx"] == "1"
        audio_id = answer.published[0].track_id
        # The client (aiortc here, a browser in the web app) accepted that answer and sends.
        await subscriber.subscribe([audio_id])
        await wait_for(
            lambda: subscriber.by_track(audio_id).frames > 10, 10, "audio through the SFU"
        )
        offer = subscriber.pc.remoteDescription.sdp
        assert opus_fmtp(offer)["useinbandfec"] == "1"
    finally:
        await subscriber.close()
        await publisher.close()


def test_every_audio_m_line_of_a_meeting_gets_it() -> None:
    """Payload types are per m-line: a meeting's second and third microphones (their m-lines
    reuse the first one's payload type) are asked for FEC and DTX too."""
    section = "m=audio 9 UDP/TLS/RTP/SAVPF 96\r\na=mid:{}\r\na=rtpmap:96 opus/48000/2\r\n"
    sdp = "v=0\r\n" + section.format(0) + "m=video 9 UDP/TLS/RTP/SAVPF 97\r\n"
    sdp += "a=mid:1\r\na=rtpmap:97 VP8/90000\r\n" + section.format(2)
    sdp += section.format(3) + "a=fmtp:96 usedtx=0\r\n"
    out = with_opus_fmtp(sdp)
    sections = out.split("m=")[1:]
    fmtps = [[line for line in s.splitlines() if line.startswith("a=fmtp:")] for s in sections]
    assert fmtps == [
        ["a=fmtp:96 minptime=10;useinbandfec=1;usedtx=1"],
        [],
        ["a=fmtp:96 minptime=10;useinbandfec=1;usedtx=1"],
        ["a=fmtp:96 usedtx=0;minptime=10;useinbandfec=1"],
    ]
    assert with_opus_fmtp(out) == out
