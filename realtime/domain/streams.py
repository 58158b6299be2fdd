"""Streams: ordered, numbered event logs that clients follow and catch up on.

A stream key names what it carries and who may follow it:

- ``class:{cid}:students``  class chat of teachers with students
- ``class:{cid}:guardians`` class chat of teachers with guardians
- ``notices:{cid}:students`` / ``notices:{cid}:guardians`` notices to that audience
- ``qa:{cid}``               the class Q&A board
- ``qa:{cid}:{scope}``       Q&A of a live session in that class
- ``conv:{id}``              a private conversation of two people
- ``user:{uid}``             personal events (link decisions, reminders)
- ``staff:{cid}``            what only the class's teachers see (notice receipts)

Everyone who follows a stream sees every sequence number in it (a redacted form at most), so a
client that sees a gap knows it missed something. The most redacted form is :func:`hidden_form`:
an event this follower may not see at all keeps only its number.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import IntEnum
from typing import Any

from realtime.errors import bad_request
from realtime.schemas import MAX_ID

# An id in a stream key: plain ASCII digits, no sign, no leading zero, at most MAX_ID (int()
# would also take " 7", "+7", "7_0" and other scripts' digits, and any size).
_ID = re.compile(r"[1-9][0-9]{0,15}")


class Visibility(IntEnum):
    """How much of a stream someone sees: nothing, what members see, or everything."""

    NONE = 0
    MEMBER = 1
    STAFF = 2


@dataclass(frozen=True)
class StreamKey:
    kind: str  # class | notices | qa | conv | user | staff
    id: int
    part: str = ""

    def __str__(self) -> str:
        return f"{self.kind}:{self.id}:{self.part}" if self.part else f"{self.kind}:{self.id}"

    @property
    def class_id(self) -> int | None:
        return self.id if self.kind in ("class", "notices", "qa", "staff") else None


AUDIENCES = ("students", "guardians")


def parse_stream(key: str) -> StreamKey:
    parts = key.split(":")
    if len(parts) not in (2, 3) or not _is_id(parts[1]):
        raise bad_request(f"not a stream key: {key[:80]!r}")
    kind, ident = parts[0], int(parts[1])
    part = parts[2] if len(parts) == 3 else ""
    if kind in ("class", "notices") and part in AUDIENCES:
        return StreamKey(kind, ident, part)
    if kind == "qa" and (part == "" or (part.startswith("s") and _is_id(part[1:]))):
        return StreamKey(kind, ident, part)
    if kind in ("conv", "user", "staff") and part == "":
        return StreamKey(kind, ident)
    raise bad_request(f"not a stream key: {key[:80]!r}")


def _is_id(text: str) -> bool:
    return _ID.fullmatch(text) is not None and int(text) <= MAX_ID


def chat_stream(class_id: int, audience: str) -> StreamKey:
    return StreamKey("class", class_id, audience)


def notice_stream(class_id: int, audience: str) -> StreamKey:
    return StreamKey("notices", class_id, audience)


def qa_stream(class_id: int, session_id: int | None = None) -> StreamKey:
    return StreamKey("qa", class_id, f"s{session_id}" if session_id else "")


def conv_stream(conversation_id: int) -> StreamKey:
    return StreamKey("conv", conversation_id)


def staff_stream(class_id: int) -> StreamKey:
    return StreamKey("staff", class_id)


def user_stream(user_id: int) -> StreamKey:
    return StreamKey("user", user_id)


def room_name(stream: StreamKey | str, visibility: Visibility) -> str:
    """The Socket.IO room of a stream's followers at one visibility."""
    return f"{stream}#{'s' if visibility is Visibility.STAFF else 'm'}"


# The type of an event's form that keeps only its number (policy.may_see_in_chat said no).
HIDDEN = "hidden"


def hidden_form(stream: str, seq: int, at: float) -> dict[str, Any]:
    """An event for a follower who may not see it: its number, so their sequence has no gap."""
    return {"stream": stream, "seq": seq, "type": HIDDEN, "at": at, "data": {}}
