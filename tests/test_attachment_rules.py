"""Attachment rules without I/O: types by content, names, links, ranges, quota; the parsers."""

from __future__ import annotations

from pathlib import Path
from urllib.parse import unquote

import pytest

from realtime.attachments import voice
from realtime.domain import attachments as rules
from realtime.errors import HomeroomError
from tests.attachment_files import (
    heic_bytes,
    jpeg_with_gps,
    ogg_voice,
    pdf_bytes,
    png_bytes,
    webm_voice,
)


def test_types_are_read_from_content() -> None:
    assert rules.sniff(jpeg_with_gps()) is rules.JPEG
    assert rules.sniff(png_bytes()) is rules.PNG
    assert rules.sniff(pdf_bytes()) is rules.PDF
    assert rules.sniff(heic_bytes()) is rules.HEIC
    assert rules.sniff(webm_voice(0.2)) is rules.WEBM_AUDIO
    assert rules.sniff(b"MZ\x90\x00" + b"\x00" * 100) is None  # a Windows program
    assert rules.sniff(b"#!/bin/sh\nrm -rf /\n") is None
    assert rules.settle_zip(["[Content_Types].xml", "word/document.xml"]) is rules.DOCX
    assert rules.settle_zip(["evil.exe"]) is None


def test_a_name_that_lies_is_refused() -> None:
    rules.check_matches_name(rules.JPEG, "IMG_0001.JPG")
    rules.check_matches_name(rules.JPEG, "no-extension")
    with pytest.raises(HomeroomError) as err:
        rules.check_matches_name(rules.PNG, "homework.pdf")
    assert err.value.code == "unsupported_type"
    assert rules.check_name("C:\\Users\\me\\五年级二班作业.pdf") == "五年级二班作业.pdf"
    with pytest.raises(HomeroomError):
        rules.check_name("\x00\x01")


def test_links_expire_and_cannot_be_altered() -> None:
    path = rules.sign_link("k", "abcdefgh", "thumb", 1000)
    sig = path.split("sig=")[1]
    rules.check_link("k", "abcdefgh", "thumb", 1000, sig, now=999)
    with pytest.raises(HomeroomError) as err:
        rules.check_link("k", "abcdefgh", "thumb", 1000, sig, now=1001)
    assert err.value.code == "link_expired"
    for changed in (("k2", "abcdefgh", "thumb", 1000), ("k", "abcdefgh", "original", 1000)):
        with pytest.raises(HomeroomError) as err:
            rules.check_link(*changed, sig, now=0)
        assert err.value.code == "forbidden"


def test_content_disposition_carries_the_utf8_name() -> None:
    header = rules.content_disposition("五年级二班作业.pdf", inline=False)
    assert header.startswith('attachment; filename="')
    assert unquote(header.split("filename*=UTF-8''")[1]) == "五年级二班作业.pdf"
    assert header.isascii()


def test_ranges() -> None:
    assert rules.parse_range("bytes=0-99", 1000) == (0, 100)
    assert rules.parse_range("bytes=900-", 1000) == (900, 1000)
    assert rules.parse_range("bytes=-100", 1000) == (900, 1000)
    assert rules.parse_range("bytes=0-5000", 1000) == (0, 1000)
    assert rules.parse_range("bytes=0-1,5-6", 1000) is None
    with pytest.raises(ValueError):
        rules.parse_range("bytes=1000-", 1000)


def test_quota() -> None:
    rules.check_quota(900, 100, 1000)
    with pytest.raises(HomeroomError) as err:
        rules.check_quota(901, 100, 1000)
    assert err.value.code == "quota_exceeded"


def test_webm_duration_without_decoding(tmp_path: Path) -> None:
    path = tmp_path / "v.webm"
    path.write_bytes(webm_voice(1.5))
    info = voice.probe_webm(path)
    assert info.audio_codecs == ["A_OPUS"] and not info.has_video
    assert info.duration_s is not None and 1.45 <= info.duration_s <= 1.6
    # A recording cut short (a phone that lost power) is still read; its length is the longer
    # of what the header claims and what the blocks hold (a header cannot hide a long file).
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    cut = voice.probe_webm(path)
    assert cut.duration_s is not None and cut.duration_s <= info.duration_s


def test_voice_in_ogg_and_its_length_limit(tmp_path: Path) -> None:
    path = tmp_path / "v.ogg"
    path.write_bytes(ogg_voice(1.5))
    assert rules.sniff(path.read_bytes()) is rules.OGG_OPUS
    length = voice.ogg_opus_duration(path)
    assert length is not None and 1.45 <= length <= 1.6
    path.write_bytes(b"OggS" + b"\0" * 200)  # an Ogg header and nothing readable after it
    assert voice.ogg_opus_duration(path) is None
    rules.check_duration(299.5, 300)
    with pytest.raises(HomeroomError) as err:
        rules.check_duration(300.5, 300)
    assert err.value.code == "too_large"
    with pytest.raises(HomeroomError) as err:
        rules.check_duration(None, 300)
    assert err.value.code == "unsupported_type"
