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


@pytest.mark.parametrize(
    "text",
    [
        '["\\ud83d"]',  # a lone surrogate: cannot be stored or sent on as UTF-8
        '["\\udc00 tail"]',
        "[NaN]",
        "[Infinity]",
        "[1e999]",
        '{"body": "a\\u0000b"}',  # NUL: PostgreSQL cannot store it
        '{"k\\u0000": 1}',
        "[" * 100_000 + "]" * 100_000,  # deeper than the decoder goes
    ],
)
def test_what_the_server_cannot_keep_is_a_value_error(text: str) -> None:
    with pytest.raises(ValueError):
        jsoncodec.loads(text)
    with pytest.raises(ValueError):
        jsoncodec.loads(text.encode())


def test_an_escaped_backslash_before_u0000_is_plain_text() -> None:
    assert jsoncodec.loads('["\\\\u0000"]') == ["\\u0000"]


def test_malformed_json_is_a_value_error() -> None:
    with pytest.raises(ValueError):
        jsoncodec.loads('{"stream": ')
