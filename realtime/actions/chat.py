"""Chat actions: send, edit, delete, history, read positions, typing, mutes, conversations."""

from __future__ import annotations

from typing import Any

from sqlalchemy import bindparam, select

from realtime.actions import attachments, audit, mentions, upload_cleanup
from realtime.actions.access import class_access, display_names, require_visible
from realtime.actions.guardian_history import history_floor
from realtime.actions.once import create_once
from realtime.domain import chat as rules
from realtime.domain import policy
from realtime.domain.policy import require
from realtime.domain.streams import (
    Visibility,
    conv_stream,
    room_name,
    staff_stream,
    user_stream,
)
from realtime.errors import bad_request, forbidden, not_found
from realtime.hub import Hub
from realtime.schemas import (
    ChatEdit,
    ChatHistory,
    ChatRead,
    ChatSend,
    MessageRef,
    Mute,
    OpenConversation,
    Typing,
)
from realtime.store.catchup import unread_messages
from realtime.store.db import DbConnection, inserted_id
from realtime.store.prepared import Prepared
from realtime.store.rows import MessageRow, typed, typed_all, typed_or_none
from realtime.store.schema import conversations, events, messages, mutes, read_positions


def message_view(row: MessageRow, names: dict[int, str]) -> dict[str, Any]:
    deleted = row.deleted_at is not None
    return {
        "id": row.id,
        "stream": row.stream,
        "seq": row.seq,
        "sender_id": row.sender_id,
        "sender_name": names.get(row.sender_id, ""),
        "client_id": row.client_id,
        "body": "" if deleted else row.body,
        "sent_at": row.sent_at,
        "edited_at": row.edited_at,
        "deleted": deleted,
        "attachments": [] if deleted else (row.attachments or []),
        "mentions": row.mentions or [],
    }


# The statements of chat.send, built once: building a statement costs SQLAlchemy more than
# running it on SQLite, and a prebuilt one also keeps its cache key.
_FIND_SENT = Prepared(
    select(messages).where(
        messages.c.sender_id == bindparam("sender_id"),
        messages.c.client_id == bindparam("client_id"),
    )
)
_MUTED_UNTIL = Prepared(
    select(mutes.c.until).where(
        mutes.c.class_id == bindparam("class_id"), mutes.c.user_id == bindparam("user_id")
    )
)
_INSERT_MESSAGE = Prepared(messages.insert())


async def _find_sent(conn: DbConnection, user_id: int, client_id: str) -> MessageRow | None:
    params = {"sender_id": user_id, "client_id": client_id}
    return typed_or_none(MessageRow, (await conn.execute(_FIND_SENT, params)).first())


async def _sent_before(conn: DbConnection, user_id: int, client_id: str) -> dict[str, Any] | None:
    """The answer to a resend after a lost ack: the original message, nothing changed."""
    earlier = await _find_sent(conn, user_id, client_id)
    if earlier is None:
        return None
    names = await display_names(conn, [user_id])
    return {"message": message_view(earlier, names)}


async def send(hub: Hub, user_id: int, req: ChatSend) -> dict[str, Any]:
    body = rules.check_body(req.body, hub.settings.chat_max_chars, bool(req.attachments))

    async def create(conn: DbConnection) -> dict[str, Any]:
        stream, _vis, access, participants = await require_visible(conn, user_id, req.stream)
        require(
            policy.may_post_chat(stream, access, participants),
            "you cannot post in this stream",
        )
        now = hub.now()
        if stream.kind == "class" and access is not None and not access.is_staff:
            params = {"class_id": stream.id, "user_id": user_id}
            until = (await conn.execute(_MUTED_UNTIL, params)).scalar()
            rules.check_not_muted(until, now)
        hub.check_rate(user_id, "chat")
        mentioned = await mentions.check(conn, stream, user_id, req.mentions)
        key = str(stream)
        seq = await hub.store.next_seq(conn, key)
        res = await conn.execute(
            _INSERT_MESSAGE,
            {
                "stream": key,
                "seq": seq,
                "sender_id": user_id,
                "client_id": req.client_id,
                "body": body,
                "sent_at": now,
                "attachments": None,
                "mentions": mentioned or None,
            },
        )
        files = None
        if req.attachments:
            carrier = f"message:{inserted_id(res)}"
            files = await attachments.attach(conn, user_id, req.attachments, carrier, now)
            await conn.execute(
                messages.update().where(messages.c.id == inserted_id(res)).values(attachments=files)
            )
        view = {
            "id": inserted_id(res),
            "stream": key,
            "seq": seq,
            "sender_id": user_id,
            "sender_name": await hub.display_name(conn, user_id),
            "client_id": req.client_id,
            "body": body,
            "sent_at": now,
            "edited_at": None,
            "deleted": False,
            "attachments": files or [],
            "mentions": mentioned,
        }
        await hub.store.append(conn, key, "chat.message", view, seq=seq)
        if mentioned:
            await mentions.tell(hub, conn, mentioned, view)
        return {"message": view}

    async def original(conn: DbConnection) -> dict[str, Any] | None:
        return await _sent_before(conn, user_id, req.client_id)

    return await create_once(hub, create, original)


async def _load_message(conn: DbConnection, message_id: int) -> MessageRow:
    row = (await conn.execute(select(messages).where(messages.c.id == message_id))).first()
    if row is None:
        raise not_found("no such message")
    return typed(MessageRow, row)


async def _rewrite_history(hub: Hub, conn: DbConnection, message_id: int) -> None:
    """Make the stored events of a message say what the message says now.

    Catch-up replays stored events, so an edited message must not come back with its old text
    and a deleted one must not come back at all: the original ``chat.message`` event takes the
    message's present form and earlier ``chat.edited`` events take its present body.
    """
    row = await _load_message(conn, message_id)
    view = message_view(row, {row.sender_id: await hub.display_name(conn, row.sender_id)})
    await conn.execute(
        events.update()
        .where(events.c.stream == row.stream, events.c.seq == row.seq)
        .values(data=view)
    )
    # Edits happen within the edit window after sending: look only there.
    window_end = row.sent_at + hub.settings.chat_edit_window_s + 1
    edits = await conn.execute(
        select(events.c.seq, events.c.data).where(
            events.c.stream == row.stream,
            events.c.type == "chat.edited",
            events.c.at >= row.sent_at,
            events.c.at <= window_end,
        )
    )
    for e in list(edits):
        if e.data and e.data.get("message_id") == message_id:
            await conn.execute(
                events.update()
                .where(events.c.stream == row.stream, events.c.seq == e.seq)
                .values(data={**e.data, "body": view["body"]})
            )


async def edit(hub: Hub, user_id: int, req: ChatEdit) -> dict[str, Any]:
    async with hub.store.transaction() as conn:
        row = await _load_message(conn, req.message_id)
        body = rules.check_body(req.body, hub.settings.chat_max_chars, bool(row.attachments))
        await require_visible(conn, user_id, row.stream)
        now = hub.now()
        rules.check_own_change(
            row.sender_id,
            user_id,
            row.sent_at,
            now,
            hub.settings.chat_edit_window_s,
            row.deleted_at is not None,
        )
        await conn.execute(
            messages.update().where(messages.c.id == row.id).values(body=body, edited_at=now)
        )
        await _rewrite_history(hub, conn, row.id)
        data = {"message_id": row.id, "message_seq": row.seq, "body": body, "edited_at": now}
        await hub.store.append(conn, row.stream, "chat.edited", data)
    return {"edited": data}


async def delete(hub: Hub, user_id: int, req: MessageRef) -> dict[str, Any]:
    async with hub.store.transaction() as conn:
        row = await _load_message(conn, req.message_id)
        stream, _vis, access, _p = await require_visible(conn, user_id, row.stream)
        now = hub.now()
        moderating = stream.kind == "class" and policy.may_moderate_chat(access)
        if not moderating:
            rules.check_own_change(
                row.sender_id,
                user_id,
                row.sent_at,
                now,
                hub.settings.chat_edit_window_s,
                row.deleted_at is not None,
            )
        elif row.deleted_at is not None:
            return {"deleted": {"message_id": row.id, "message_seq": row.seq}}
        await conn.execute(
            messages.update()
            .where(messages.c.id == row.id)
            .values(deleted_at=now, deleted_by=user_id)
        )
        await _rewrite_history(hub, conn, row.id)
        released = await attachments.release(conn, [f"message:{row.id}"], now)
        data = {"message_id": row.id, "message_seq": row.seq, "by": user_id}
        await hub.store.append(conn, row.stream, "chat.deleted", data)
        if stream.class_id is not None:
            await audit.record(
                conn,
                actor_id=user_id,
                action="chat.delete",
                now=now,
                class_id=stream.class_id,
                target=f"message:{row.id}",
                detail={"stream": row.stream, "sender_id": row.sender_id},
            )
    if released and hub.files is not None:
        # Its files' bytes go once nothing else refers to them (the sweep retries a failure).
        await upload_cleanup.collect(hub, hub.files, released)
    return {"deleted": data}


async def history(hub: Hub, user_id: int, req: ChatHistory) -> dict[str, Any]:
    limit = min(req.limit, hub.settings.history_page_max)
    async with hub.store.read() as conn:
        stream, _vis, access, _p = await require_visible(conn, user_id, req.stream)
        query = select(messages).where(messages.c.stream == str(stream))
        floor = await history_floor(conn, stream, access)
        if floor:
            query = query.where(messages.c.seq > floor)
        if req.before is not None:
            query = query.where(messages.c.seq < req.before)
        rows = typed_all(
            MessageRow, await conn.execute(query.order_by(messages.c.seq.desc()).limit(limit))
        )
        rows.reverse()
        names = await display_names(conn, sorted({r.sender_id for r in rows}))
    items = [message_view(r, names) for r in rows]
    return {
        "messages": items,
        "next_before": items[0]["seq"] if len(items) == limit else None,
    }


async def mark_read(hub: Hub, user_id: int, req: ChatRead) -> dict[str, Any]:
    async with hub.store.transaction() as conn:
        stream, _v, access, _p = await require_visible(conn, user_id, req.stream)
        key = str(stream)
        floor = await history_floor(conn, stream, access)
        current = (
            await conn.execute(
                select(read_positions.c.seq).where(
                    read_positions.c.user_id == user_id, read_positions.c.stream == key
                )
            )
        ).scalar()
        if current is None:
            await conn.execute(
                read_positions.insert().values(user_id=user_id, stream=key, seq=req.seq)
            )
        elif req.seq > current:
            await conn.execute(
                read_positions.update()
                .where(read_positions.c.user_id == user_id, read_positions.c.stream == key)
                .values(seq=req.seq)
            )
        read_seq = max(req.seq, current or 0)
        unread = await unread_count(conn, user_id, key, max(read_seq, floor))
        position = {"stream": key, "read_seq": read_seq, "unread": unread}
        if read_seq != current:
            # The person's other devices update their unread counts.
            await hub.store.append(conn, str(user_stream(user_id)), "chat.read", position)
            if policy.tells_read_by(stream, access):
                # The class's teachers see "read by" of their messages change as it happens.
                seen = {
                    "stream": key,
                    "user_id": user_id,
                    "name": await hub.display_name(conn, user_id),
                    "read_seq": read_seq,
                }
                await hub.store.append(conn, str(staff_stream(stream.id)), "chat.read_by", seen)
    return position


_UNREAD = Prepared(unread_messages(bindparam("stream"), bindparam("after"), bindparam("user_id")))


async def unread_count(conn: DbConnection, user_id: int, stream: str, after: int) -> int:
    params = {"stream": stream, "after": after, "user_id": user_id}
    return int((await conn.execute(_UNREAD, params)).scalar_one())


async def typing(hub: Hub, user_id: int, req: Typing) -> dict[str, Any]:
    async with hub.store.read() as conn:
        stream, _v, access, participants = await require_visible(conn, user_id, req.stream)
        require(policy.may_post_chat(stream, access, participants), "you cannot post here")
        names = await display_names(conn, [user_id])
    rooms = [room_name(stream, Visibility.MEMBER), room_name(stream, Visibility.STAFF)]
    data = {"stream": str(stream), "user_id": user_id, "name": names.get(user_id, "")}
    await hub.ephemeral(rooms, "typing", data, skip_user=user_id)
    return {}


async def mute(hub: Hub, user_id: int, req: Mute) -> dict[str, Any]:
    async with hub.store.transaction() as conn:
        access = await class_access(conn, user_id, req.class_id)
        require(policy.may_moderate_chat(access), "only teachers of this class can mute")
        target = await class_access(conn, req.user_id, req.class_id)
        if not target.is_member:
            raise not_found("that person is not a member of this class")
        if target.is_staff:
            raise forbidden("teachers cannot be muted")
        now = hub.now()
        until = now + req.minutes * 60
        await conn.execute(
            mutes.delete().where(mutes.c.class_id == req.class_id, mutes.c.user_id == req.user_id)
        )
        if req.minutes:
            await conn.execute(
                mutes.insert().values(
                    class_id=req.class_id, user_id=req.user_id, until=until, by=user_id
                )
            )
        data = {"class_id": req.class_id, "until": until if req.minutes else None}
        await hub.store.append(conn, str(user_stream(req.user_id)), "chat.muted", data)
        await audit.record(
            conn,
            actor_id=user_id,
            action="chat.mute" if req.minutes else "chat.unmute",
            now=now,
            class_id=req.class_id,
            target=f"user:{req.user_id}",
            detail={"minutes": req.minutes},
        )
    return {"muted": {"user_id": req.user_id, **data}}


async def open_conversation(hub: Hub, user_id: int, req: OpenConversation) -> dict[str, Any]:
    if req.user_id == user_id:
        raise bad_request("a conversation needs two people")
    a, b = sorted((user_id, req.user_id))
    created = False
    async with hub.store.transaction() as conn:
        mine = await class_access(conn, user_id, req.class_id)
        theirs = await class_access(conn, req.user_id, req.class_id)
        require(
            policy.may_open_conversation(mine, theirs),
            "private conversations are between a teacher and a student or guardian of the class",
        )
        row = (
            await conn.execute(
                select(conversations.c.id).where(
                    conversations.c.class_id == req.class_id,
                    conversations.c.user_a == a,
                    conversations.c.user_b == b,
                )
            )
        ).first()
        if row is None:
            res = await conn.execute(
                conversations.insert().values(
                    class_id=req.class_id, user_a=a, user_b=b, created_at=hub.now()
                )
            )
            conv_id = inserted_id(res)
            created = True
        else:
            conv_id = row.id
        names = await display_names(conn, [a, b])
        view = {
            "id": conv_id,
            "stream": str(conv_stream(conv_id)),
            "class_id": req.class_id,
            "people": [{"id": u, "name": names.get(u, "")} for u in (a, b)],
        }
        if created:
            for uid in (a, b):
                await hub.store.append(conn, str(user_stream(uid)), "conversation.opened", view)
    if created:
        await hub.resync_user(a)
        await hub.resync_user(b)
    return {"conversation": view}


_CONVERSATIONS = Prepared(
    select(conversations).where(
        (conversations.c.user_a == bindparam("user_id"))
        | (conversations.c.user_b == bindparam("user_id"))
    )
)


async def list_conversations(conn: DbConnection, user_id: int) -> list[dict[str, Any]]:
    rows = list(await conn.execute(_CONVERSATIONS, {"user_id": user_id}))
    names = await display_names(conn, sorted({u for r in rows for u in (r.user_a, r.user_b)}))
    return [
        {
            "id": r.id,
            "stream": str(conv_stream(r.id)),
            "class_id": r.class_id,
            "people": [{"id": u, "name": names.get(u, "")} for u in (r.user_a, r.user_b)],
        }
        for r in rows
    ]
