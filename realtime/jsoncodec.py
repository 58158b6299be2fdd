"""JSON for Socket.IO packets and for the store's JSON columns, by msgspec.

Every chat message is turned into JSON three times on its way out (the stored event, the
sender's ack, the broadcast) and parsed once on its way in; the standard library's ``json``
spent about as long on that as SQLite spent storing the message. msgspec writes the same JSON
several times faster. What differs, all of it valid JSON that every client reads alike: text
other than ASCII is written as UTF-8 instead of ``\\uXXXX`` escapes, and ``1e20`` loses its
``+``. Input msgspec refuses (a lone surrogate escape, ``NaN``) is handed to the standard
library, so what was accepted before still is.
"""

from __future__ import annotations

import json
from typing import Any

import msgspec

_encode = msgspec.json.Encoder().encode
_decode = msgspec.json.Decoder().decode


def dumps(obj: Any, **_options: Any) -> str:
    """``json.dumps`` for Socket.IO and Engine.IO packets, which pass compact separators."""
    return _encode(obj).decode()


def loads(text: str | bytes, **_options: Any) -> Any:
    try:
        return _decode(text)
    except msgspec.DecodeError:
        return json.loads(text)  # its ValueError, or what msgspec was stricter about
