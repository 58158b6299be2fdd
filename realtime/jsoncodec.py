"""JSON for Socket.IO packets, REST bodies and the store's JSON columns, by msgspec.

Every chat message is turned into JSON three times on its way out (the stored event, the
sender's ack, the broadcast) and parsed once on its way in; the standard library's ``json``
spent about as long on that as SQLite spent storing the message. msgspec writes the same JSON
several times faster. What differs, all of it valid JSON that every client reads alike: text
other than ASCII is written as UTF-8 instead of ``\\uXXXX`` escapes, and ``1e20`` loses its
``+``.

Reading is strict, and this is the one place that decides what JSON the server reads: a lone
surrogate escape (text that cannot be stored or sent on as UTF-8), ``NaN`` and ``Infinity``
(not JSON), nesting deeper than msgspec's recursion limit, and text with a NUL character
(PostgreSQL cannot store one) are refused with a ``ValueError`` like any malformed input; the
transports answer it with ``bad_request``.
"""

from __future__ import annotations

from typing import Any

import msgspec

_encode = msgspec.json.Encoder().encode
_decode = msgspec.json.Decoder().decode


def dumps(obj: Any, **_options: Any) -> str:
    """``json.dumps`` for Socket.IO and Engine.IO packets, which pass compact separators."""
    return _encode(obj).decode()


def loads(text: str | bytes, **_options: Any) -> Any:
    """``json.loads``, stricter: anything that is not plain JSON is a ``ValueError``."""
    try:
        value = _decode(text)
    except (msgspec.DecodeError, RecursionError) as exc:
        raise ValueError(f"not valid JSON: {exc}") from None
    # NUL can only arrive escaped; the walk runs only when the escape is there at all.
    escaped = b"\\u0000" in text if isinstance(text, bytes) else "\\u0000" in text
    if escaped and contains_nul(value):
        raise ValueError("text must not contain the NUL character")
    return value


def contains_nul(value: Any) -> bool:
    """Whether any string in a decoded value (keys included) contains NUL. Iterative: decoded
    values may be nested as deep as the decoder allows."""
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, str):
            if "\x00" in item:
                return True
        elif isinstance(item, dict):
            stack.extend(item.keys())
            stack.extend(item.values())
        elif isinstance(item, list | tuple):
            stack.extend(item)
    return False
