"""The JSON of packets and stored events (realtime/jsoncodec.py): what the standard library
accepted is still accepted, and what it refused is still refused with its ValueError."""

from __future__ import annotations

import json

import pytest

from realtime import jsoncodec


def test_round_trip_keeps_text_and_numbers() -> None:
    value = {"body": "老师好 👋", "n": [1, 2.5, 1e20, -3], "none": None, "ok": True}
    text = jsoncodec.dumps(value, separators=(",", ":"))
    assert json.loads(text) == value
    assert "老师好" in text  # UTF-8, not \\u escapes


def test_what_msgspec_is_stricter_about_is_still_read() -> None:
    # A lone surrogate escape (text cut in the middle of an emoji) and NaN: the standard
    # library reads both, so clients that sent them before are not dropped now.
    assert jsoncodec.loads('["\\ud83d"]') == ["\ud83d"]
    assert jsoncodec.loads("[NaN]")[0] != jsoncodec.loads("[NaN]")[0]


def test_malformed_json_is_a_value_error() -> None:
    with pytest.raises(ValueError):
        jsoncodec.loads('{"stream": ')
