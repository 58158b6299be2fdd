"""Chat rules that need no I/O: message length, edit window, mutes, who sees what history."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from realtime.domain.roles import ClassAccess
from realtime.domain.streams import StreamKey
from realtime.errors import bad_request, conflict, forbidden, too_large


def check_body(body: str, max_chars: int, has_files: bool = False) -> str:
    text = body.strip()
    if not text and not has_files:
        raise bad_request("a message cannot be empty")
    if len(text) > max_chars:
        raise too_large(f"a message has at most {max_chars} characters")
    return text


def check_own_change(
    sender_id: int, actor_id: int, sent_at: float, now: float, window_s: float, deleted: bool
) -> None:
    if deleted:
        raise conflict("this message was deleted")
    if sender_id != actor_id:
        raise forbidden("you can only change your own messages")
    if now - sent_at > window_s:
        raise conflict(f"messages can only be changed within {int(window_s // 60)} minutes")


def check_not_muted(muted_until: float | None, now: float) -> None:
    if muted_until is not None and muted_until > now:
        raise forbidden("a teacher has muted your posting in this class for now")


def history_from_approval(stream: StreamKey, access: ClassAccess) -> bool:
    """Whether this person sees the stream only from their approval on (when the school keeps
    the guardians' earlier conversation closed): a guardian, not a teacher, in the guardians'
    chat of the class."""
    return (
        stream.kind == "class"
        and stream.part == "guardians"
        and access.is_guardian
        and not access.is_staff
    )


def referred_message(data: Mapping[str, Any] | None) -> int | None:
    """The sequence number of the earlier message an event of a chat stream is about, if any.

    Every event that refers to a message of its stream (``chat.edited``, ``chat.deleted``, and
    any later kind: a reaction, a pin) names it by ``message_seq``; that is what makes it reach
    only those who may see the message (policy.may_see_in_chat)."""
    if not data:
        return None
    seq = data.get("message_seq")
    return seq if isinstance(seq, int) and not isinstance(seq, bool) else None


# People one message may @mention at most (ChatSend.mentions).
MAX_MENTIONS = 20


def mentioned(ids: list[int], sender_id: int) -> list[int]:
    """Whom a message's mentions tell: each once, in order, never the sender."""
    out: list[int] = []
    for uid in ids:
        if uid != sender_id and uid not in out:
            out.append(uid)
    return out[:MAX_MENTIONS]
