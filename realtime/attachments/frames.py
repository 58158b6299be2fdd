"""The attachment workers' wire: msgpack frames over pipes, never pickle.

The workers parse untrusted files (photos, voice), so the server treats what a worker sends as
untrusted too: a frame is a 4-byte big-endian length and a msgpack message (msgspec, no
extension types, no code run while decoding), at most ``MAX_FRAME`` bytes, decoded into a strict
schema, and each result is then converted to the type its job declares.

    request  {id, fn, args}            fn from an allow-list; args are str, int, float, bool, nil
    response {id, ok, result | error}  error: {code, message}

A worker sends ``{id: 0, ok: true, result: "ready"}`` once its imports are done.
"""

from __future__ import annotations

import struct
from typing import Any

import msgspec

LENGTH = struct.Struct(">I")
# A request or a result is a few hundred bytes; a longer frame is a broken or hostile peer (and
# this bounds what one frame costs the server in memory).
MAX_FRAME = 64 * 1024

Arg = str | int | float | bool | None


class FrameError(Exception):
    """A frame that is too long or not a valid message."""


class Request(msgspec.Struct, forbid_unknown_fields=True):
    id: int
    fn: str
    args: list[Arg]


class Failure(msgspec.Struct, forbid_unknown_fields=True):
    code: str
    message: str


class Response(msgspec.Struct, forbid_unknown_fields=True, omit_defaults=True):
    id: int
    ok: bool
    result: Any = None
    error: Failure | None = None


_encoder = msgspec.msgpack.Encoder()
_requests = msgspec.msgpack.Decoder(Request)
_responses = msgspec.msgpack.Decoder(Response)


def frame(message: Request | Response) -> bytes:
    body = _encoder.encode(message)
    if len(body) > MAX_FRAME:
        raise FrameError(f"a frame of {len(body)} bytes is longer than {MAX_FRAME}")
    return LENGTH.pack(len(body)) + body


def body_length(header: bytes) -> int:
    (n,) = LENGTH.unpack(header)
    if n > MAX_FRAME:
        raise FrameError(f"a frame of {n} bytes is longer than {MAX_FRAME}")
    return int(n)


def decode_request(body: bytes) -> Request:
    try:
        return _requests.decode(body)
    except msgspec.DecodeError as exc:
        raise FrameError(str(exc)) from None


def decode_response(body: bytes) -> Response:
    try:
        return _responses.decode(body)
    except msgspec.DecodeError as exc:
        raise FrameError(str(exc)) from None
