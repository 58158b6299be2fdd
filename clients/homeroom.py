"""A small async Python client for Homeroom.

It signs in over REST, connects over Socket.IO, follows streams with catch-up (every event after
the last one it saw, in order, each exactly once), and sends requests with client ids and retries
so that a resend after a lost acknowledgement never makes a duplicate.
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections import defaultdict
from collections.abc import Awaitable, Callable
from typing import Any

import aiohttp
import socketio

EventHandler = Callable[[dict[str, Any]], Awaitable[None] | None]


class RequestError(Exception):
    """The server refused a request; ``code`` is the stable error code."""

    def __init__(self, code: str, message: str, details: dict[str, Any] | None = None) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message
        self.details: dict[str, Any] = details or {}


class HomeroomClient:
    def __init__(
        self, base_url: str, *, serializer: str = "json", reconnection: bool = True
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.serializer = serializer
        self.token: str | None = None
        self.device_token: str | None = None
        self.refresh_token: str | None = None
        self.user: dict[str, Any] = {}
        self.cursors: dict[str, int] = {}
        self.events: dict[str, list[dict[str, Any]]] = defaultdict(list)
        self.streams: dict[str, dict[str, Any]] = {}
        self.ephemeral: list[tuple[str, Any]] = []
        self._pending: dict[str, dict[int, dict[str, Any]]] = defaultdict(dict)
        self._handlers: list[EventHandler] = []
        self._new_event = asyncio.Event()
        self._sync_lock = asyncio.Lock()
        self.sio = socketio.AsyncClient(
            reconnection=reconnection,
            reconnection_delay=0.2,
            reconnection_delay_max=2,
            serializer="msgpack" if serializer == "msgpack" else "default",
        )
        self.sio.on("connect", self._on_connect)
        self.sio.on("event", self._on_stream_event)
        self.sio.on("resync", self._on_resync)
        self.sio.on("*", self._on_other)
        self.connected_once = asyncio.Event()
        self._sync_tasks: set[asyncio.Task[Any]] = set()

    # --- REST ---------------------------------------------------------------------------------

    async def http(
        self, method: str, path: str, json: Any = None, *, data: Any = None, auth: bool = True
    ) -> Any:
        headers = {"Authorization": f"Bearer {self.token}"} if auth and self.token else {}
        async with (
            aiohttp.ClientSession() as session,
            session.request(
                method, self.base_url + path, json=json, data=data, headers=headers
            ) as resp,
        ):
            if resp.content_type == "application/json":
                body = await resp.json()
            else:
                body = await resp.text()
            if isinstance(body, dict) and body.get("ok") is False:
                err = body["error"]
                raise RequestError(err["code"], err["message"], err.get("details"))
            return body

    async def login(self, username: str, password: str) -> dict[str, Any]:
        creds = {"username": username, "password": password}
        if self.device_token:
            creds["device_token"] = self.device_token
        body = await self.http("POST", "/api/v1/auth/login", creds, auth=False)
        # Proof that this client signed in before: it spares us an attacker's backoff.
        self.device_token = body.get("device_token")
        self.token = body["access_token"]
        self.refresh_token = body["refresh_token"]
        self.user = body["user"]
        return body

    async def refresh(self) -> None:
        body = await self.http(
            "POST", "/api/v1/auth/refresh", {"refresh_token": self.refresh_token}, auth=False
        )
        self.token = body["access_token"]
        self.refresh_token = body["refresh_token"]

    # --- connection ---------------------------------------------------------------------------

    async def connect(
        self, token: str | None = None, *, transports: list[str] | None = None, sync: bool = True
    ) -> None:
        if token is not None:
            self.token = token
        self._auto_sync = sync
        await self.sio.connect(
            self.base_url,
            auth=lambda: {"token": self.token},
            transports=transports or ["websocket"],
            wait_timeout=10,
        )
        if sync:
            await self.sync()

    async def close(self) -> None:
        for task in self._sync_tasks:
            task.cancel()
        await self.sio.disconnect()

    async def _on_connect(self) -> None:
        if self.connected_once.is_set() and getattr(self, "_auto_sync", True):
            # A reconnect: catch up on everything missed while away.
            self._spawn_sync()
        self.connected_once.set()

    def _spawn_sync(self) -> None:
        task = asyncio.get_running_loop().create_task(self._quiet_sync())
        self._sync_tasks.add(task)
        task.add_done_callback(self._sync_tasks.discard)

    async def _quiet_sync(self) -> None:
        with contextlib.suppress(Exception):
            await self.sync()

    async def _on_resync(self, _data: Any = None) -> None:
        self._spawn_sync()

    async def _on_other(self, event: str, data: Any = None) -> None:
        self.ephemeral.append((event, data))

    # --- streams ------------------------------------------------------------------------------

    def on_event(self, handler: EventHandler) -> None:
        self._handlers.append(handler)

    async def sync(self) -> dict[str, Any]:
        """Follow every stream and fetch everything after the cursors, page by page."""
        async with self._sync_lock:
            while True:
                ack = await self.request("sync", {"cursors": dict(self.cursors)})
                for s in ack["streams"]:
                    self.streams[s["stream"]] = s
                for ev in ack["events"]:
                    await self._accept(ev)
                for s in ack["streams"]:
                    # A stream followed for the first time starts at its present end.
                    self.cursors.setdefault(s["stream"], s["last_seq"])
                    await self._drain(s["stream"])
                if not ack["more"]:
                    return ack

    def follow(self, stream: str, from_seq: int = 0) -> None:
        """Ask for a stream's history from ``from_seq`` on the next sync."""
        self.cursors[stream] = from_seq

    async def _on_stream_event(self, ev: dict[str, Any]) -> None:
        stream = ev["stream"]
        if stream not in self.cursors:
            # Not synced yet: hold it; the sync sets the cursor and delivers what follows it.
            self._pending[stream][ev["seq"]] = ev
            return
        seq = ev["seq"]
        last = self.cursors[stream]
        if seq <= last:
            return
        if seq > last + 1:
            # A gap: something is missing. Hold this one and catch up.
            self._pending[stream][seq] = ev
            self._spawn_sync()
            return
        await self._accept(ev)
        await self._drain(stream)

    async def _accept(self, ev: dict[str, Any]) -> None:
        stream = ev["stream"]
        last = self.cursors.get(stream, 0)
        if ev["seq"] <= last:
            return
        self.cursors[stream] = ev["seq"]
        self.events[stream].append(ev)
        self._new_event.set()
        for handler in self._handlers:
            result = handler(ev)
            if asyncio.iscoroutine(result):
                await result

    async def _drain(self, stream: str) -> None:
        pending = self._pending.get(stream)
        while pending:
            nxt = self.cursors.get(stream, 0) + 1
            for seq in [s for s in pending if s < nxt]:
                del pending[seq]
            if nxt not in pending:
                return
            await self._accept(pending.pop(nxt))

    async def wait_for(
        self, predicate: Callable[[dict[str, Any]], bool], timeout: float = 5.0
    ) -> dict[str, Any]:
        """Wait until an event matching ``predicate`` has been received."""

        async def scan() -> dict[str, Any]:
            while True:
                for evs in list(self.events.values()):
                    for ev in evs:
                        if predicate(ev):
                            return ev
                self._new_event.clear()
                await self._new_event.wait()

        return await asyncio.wait_for(scan(), timeout)

    # --- requests -----------------------------------------------------------------------------

    async def request(
        self,
        event: str,
        payload: dict[str, Any] | None = None,
        *,
        timeout: float = 10.0,
        retries: int = 0,
    ) -> dict[str, Any]:
        """Emit with an acknowledgement; raise RequestError if refused.

        Only retry requests that are idempotent (those carrying a client id).
        """
        for attempt in range(retries + 1):
            try:
                ack = await self.sio.call(event, payload or {}, timeout=timeout)
                break
            except (socketio.exceptions.TimeoutError, socketio.exceptions.BadNamespaceError):
                if attempt == retries:
                    raise
                await asyncio.sleep(0.2 * (attempt + 1))
        if not isinstance(ack, dict) or not ack.get("ok"):
            err = (ack or {}).get("error", {}) if isinstance(ack, dict) else {}
            raise RequestError(
                err.get("code", "internal"), err.get("message", repr(ack)), err.get("details")
            )
        return ack

    # --- typed helpers ------------------------------------------------------------------------

    async def send_chat(
        self, stream: str, body: str, client_id: str | None = None, retries: int = 3
    ) -> dict[str, Any]:
        cid = client_id or uuid.uuid4().hex
        ack = await self.request(
            "chat.send", {"stream": stream, "client_id": cid, "body": body}, retries=retries
        )
        return ack["message"]

    async def history(
        self, stream: str, before: int | None = None, limit: int = 50
    ) -> dict[str, Any]:
        payload: dict[str, Any] = {"stream": stream, "limit": limit}
        if before is not None:
            payload["before"] = before
        return await self.request("chat.history", payload)

    async def publish_notice(
        self,
        class_id: int,
        title: str,
        *,
        kind: str = "info",
        audience: str = "guardians",
        body: str = "",
        choices: list[str] | None = None,
        deadline: float | None = None,
    ) -> dict[str, Any]:
        payload = {
            "class_id": class_id,
            "client_id": uuid.uuid4().hex,
            "audience": audience,
            "kind": kind,
            "title": title,
            "body": body,
            "choices": choices or [],
            "deadline": deadline,
        }
        return (await self.request("notice.publish", payload, retries=3))["notice"]

    async def confirm_notice(self, notice_id: int) -> dict[str, Any]:
        return (await self.request("notice.confirm", {"notice_id": notice_id}))["receipt"]

    async def reply_notice(self, notice_id: int, reply: str) -> dict[str, Any]:
        return (await self.request("notice.reply", {"notice_id": notice_id, "reply": reply}))[
            "receipt"
        ]

    async def receipts(
        self,
        notice_id: int,
        *,
        page_of: str | None = None,
        after: int | None = None,
        limit: int | None = None,
    ) -> dict[str, Any]:
        """The roll-up: counts, and the first page of each list; with ``page_of`` ("receipts",
        "covered" or "not_covered") one page of that list after ``after`` (the previous
        answer's ``next[page_of]``)."""
        payload: dict[str, Any] = {"notice_id": notice_id}
        if page_of is not None:
            payload["list"] = page_of
        if after is not None:
            payload["after"] = after
        if limit is not None:
            payload["limit"] = limit
        return await self.request("notice.receipts", payload)

    async def receipts_list(self, notice_id: int, which: str) -> list[dict[str, Any]]:
        """Every entry of one roll-up list ("receipts", "covered", "not_covered"), page by page."""
        out: list[dict[str, Any]] = []
        after: int | None = None
        while True:
            ack = await self.receipts(notice_id, page_of=which, after=after, limit=500)
            out.extend(ack[which])
            after = ack["next"][which]
            if after is None:
                return out

    async def ask(
        self, class_id: int, body: str, *, anonymous: bool = False, session_id: int | None = None
    ) -> dict[str, Any]:
        payload: dict[str, Any] = {
            "class_id": class_id,
            "client_id": uuid.uuid4().hex,
            "body": body,
            "anonymous": anonymous,
        }
        if session_id is not None:
            payload["session_id"] = session_id
        return (await self.request("question.ask", payload, retries=3))["question"]

    async def vote(self, question_id: int, up: bool = True) -> dict[str, Any]:
        return await self.request("question.vote", {"question_id": question_id, "up": up})

    async def answer(
        self, question_id: int, answer: str = "", live: bool = False
    ) -> dict[str, Any]:
        return (
            await self.request(
                "question.answer", {"question_id": question_id, "answer": answer, "live": live}
            )
        )["question"]

    async def open_conversation(self, class_id: int, user_id: int) -> dict[str, Any]:
        return (
            await self.request("conversation.open", {"class_id": class_id, "user_id": user_id})
        )["conversation"]
