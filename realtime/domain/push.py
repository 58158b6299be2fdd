"""Web Push rules, without I/O: which committed events are pushed, to whom, what they say.

A push is a nudge to open the app, not a copy of the message: the payload names the kind of
thing that happened and who or what it is about (a notice's title, a sender's name), never the
content of a private message (issue #16). The service worker turns it into text in the person's
language (clients/web/public/sw.js).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Any
from zoneinfo import ZoneInfo

from realtime.domain.streams import StreamKey


class PushKind(StrEnum):
    """What a person can choose to be pushed (their settings hold a set of these)."""

    NOTICE = "notice"  # a new notice to them
    REMINDER = "reminder"  # a teacher's reminder to confirm a notice or hand in homework
    MESSAGE = "message"  # a new private message
    SESSION = "session"  # a lesson or parent meeting starting
    LINK = "link"  # a guardian asks to be linked (teachers)
    MENTION = "mention"  # someone @mentioned them in a class chat
    HOMEWORK = "homework"  # homework due soon (event "homework.due": actions/homework_due.py)


KINDS = tuple(k.value for k in PushKind)

# Bytes of JSON in one push payload at most: push services accept 4 KiB of ciphertext.
MAX_PAYLOAD_BYTES = 3000
# Characters of a title or name carried at most.
MAX_TEXT = 120


class Audience(StrEnum):
    """Whom a pushable event concerns, resolved to people by the dispatcher."""

    USER = "user"  # the user of a user:{id} stream
    CONVERSATION = "conversation"  # both people of a conversation, the sender excepted
    STUDENTS = "students"  # the class's students
    GUARDIANS = "guardians"  # the class's approved guardians
    TEACHERS = "teachers"  # the class's teachers (who decide link requests)


@dataclass(frozen=True)
class Pushable:
    kind: PushKind
    audience: Audience
    id: int  # the class, conversation or user the audience is of
    actor: int | None  # who caused it: never pushed their own action
    payload: dict[str, Any]


def _text(value: Any) -> str:
    return str(value or "")[:MAX_TEXT]


def pushable(stream: StreamKey, type: str, data: dict[str, Any] | None) -> Pushable | None:
    """The push an event calls for, or None. ``data`` is what members of the stream see."""
    d = data or {}
    if type == "notice.published" and stream.kind == "notices":
        return Pushable(
            PushKind.NOTICE,
            Audience(stream.part),
            stream.id,
            d.get("author_id"),
            {
                "kind": "notice",
                "class_id": stream.id,
                "notice_id": d.get("id"),
                "title": _text(d.get("title")),
            },
        )
    if type == "notice.reminder" and stream.kind == "user":
        return Pushable(
            PushKind.REMINDER,
            Audience.USER,
            stream.id,
            None,
            {
                "kind": "reminder",
                "class_id": d.get("class_id"),
                "notice_id": d.get("notice_id"),
                "title": _text(d.get("title")),
            },
        )
    if type == "chat.message" and stream.kind == "conv":
        # Who wrote, never what: the body stays on the server until the app fetches it.
        return Pushable(
            PushKind.MESSAGE,
            Audience.CONVERSATION,
            stream.id,
            d.get("sender_id"),
            {"kind": "message", "stream": str(stream), "from": _text(d.get("sender_name"))},
        )
    if type == "chat.mentioned" and stream.kind == "user":
        # Who and where, never what (the same as a private message).
        return Pushable(
            PushKind.MENTION,
            Audience.USER,
            stream.id,
            None,
            {"kind": "mention", "stream": d.get("stream"), "from": _text(d.get("sender_name"))},
        )
    if type == "session.started" and stream.kind == "class" and stream.part:
        return Pushable(
            PushKind.SESSION,
            Audience(stream.part),
            stream.id,
            d.get("host_id"),
            {
                "kind": "session",
                "class_id": stream.id,
                "session_id": d.get("id"),
                "session_kind": _text(d.get("kind")),
                "title": _text(d.get("title")),
            },
        )
    if type == "link.requested" and stream.kind == "staff":
        return Pushable(
            PushKind.LINK,
            Audience.TEACHERS,
            stream.id,
            d.get("guardian_id"),
            {
                "kind": "link",
                "class_id": stream.id,
                "guardian": _text(d.get("guardian_name")),
                "student": _text(d.get("student_name")),
            },
        )
    if type == "homework.reminder" and stream.kind == "user":
        # A teacher's reminder to hand in homework: a reminder, like a notice's.
        return Pushable(
            PushKind.REMINDER,
            Audience.USER,
            stream.id,
            None,
            {
                "kind": "homework_reminder",
                "class_id": d.get("class_id"),
                "homework_id": d.get("homework_id"),
                "title": _text(d.get("title")),
            },
        )
    if type == "homework.due" and stream.kind == "user":
        return Pushable(
            PushKind.HOMEWORK,
            Audience.USER,
            stream.id,
            None,
            {
                "kind": "homework",
                "class_id": d.get("class_id"),
                "homework_id": d.get("homework_id"),
                "title": _text(d.get("title")),
                "student": _text(d.get("student_name")),
                "due_at": d.get("due_at"),
            },
        )
    return None


@dataclass(frozen=True)
class PushPrefs:
    """One person's settings: kinds to push, and quiet hours (minutes after midnight)."""

    kinds: frozenset[str] = frozenset(KINDS)
    quiet_start: int | None = None
    quiet_end: int | None = None

    def view(self) -> dict[str, Any]:
        return {
            "kinds": sorted(self.kinds),
            "quiet_hours": None
            if self.quiet_start is None or self.quiet_end is None
            else {"start": hhmm(self.quiet_start), "end": hhmm(self.quiet_end)},
        }


def hhmm(minutes: int) -> str:
    return f"{minutes // 60:02d}:{minutes % 60:02d}"


def parse_hhmm(text: str) -> int | None:
    """Minutes after midnight of "HH:MM" (00:00 to 23:59), or None if it is not that."""
    parts = text.split(":")
    if len(parts) != 2 or not all(p.isdigit() and len(p) == 2 for p in parts):
        return None
    h, m = int(parts[0]), int(parts[1])
    return h * 60 + m if h < 24 and m < 60 else None


def in_quiet_hours(prefs: PushPrefs, minute_of_day: int) -> bool:
    """Whether this minute of the school's day falls in the quiet hours (which may span
    midnight: 21:30 to 07:00). Start included, end excluded; equal bounds mean none."""
    start, end = prefs.quiet_start, prefs.quiet_end
    if start is None or end is None or start == end:
        return False
    if start < end:
        return start <= minute_of_day < end
    return minute_of_day >= start or minute_of_day < end


def school_minute(now: float, zone: ZoneInfo) -> int:
    """Minutes after midnight of the wall clock in the school's time zone."""
    t = datetime.fromtimestamp(now, zone)
    return t.hour * 60 + t.minute


def wants(prefs: PushPrefs, kind: PushKind, now: float, zone: ZoneInfo) -> bool:
    return kind.value in prefs.kinds and not in_quiet_hours(prefs, school_minute(now, zone))


# Subscriptions one person keeps at most (phone, tablet, PCs): the oldest goes beyond this.
MAX_SUBSCRIPTIONS_PER_PERSON = 10
_LOOPBACK = ("127.0.0.1", "localhost", "[::1]")


def endpoint_allowed(endpoint: str, hosts: str) -> bool:
    """Whether the server may POST to this endpoint: https to a listed push service ("fcm.
    googleapis.com", or ".push.apple.com" for its subdomains), or http to a listed loopback host.
    The server never sends to an address a client makes up."""
    from urllib.parse import urlsplit

    try:
        parts = urlsplit(endpoint)
        host = (parts.hostname or "").lower()
        _ = parts.port
    except ValueError:
        return False
    if not host or parts.username or parts.password:
        return False
    listed = [h.strip().lower() for h in hosts.split(",") if h.strip()]
    match = any(host == h or (h.startswith(".") and host.endswith(h)) for h in listed)
    if parts.scheme == "https":
        return match
    return parts.scheme == "http" and match and host in ("127.0.0.1", "localhost", "::1")
