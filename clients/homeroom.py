"""A small async Python client for Homeroom.

It signs in over REST, connects over Socket.IO, follows streams with catch-up (every event after
the last one it saw, in order, each exactly once), and sends requests with client ids and retries
so that a resend after a lost acknowledgement never makes a duplicate.
"""

from __future__ import annotations

import asyncio
import random
import uuid
from collections import defaultdict
from collections.abc import Awaitable, Callable, Coroutine
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


# A sync the server could not answer (``unavailable``) is tried again after this long.
SYNC_RETRY_S = 2.0


def retry_delay_s(details: dict[str, Any] | None) -> float:
    """How long to wait before trying again: the server's ``retry_after_s`` if it gave one
    (``SYNC_RETRY_S`` otherwise), times a random factor of 0.5 to 1.5 so that the clients of a
    reconnection storm do not all come back at once."""
    asked = (details or {}).get("retry_after_s")
    base = float(asked) if isinstance(asked, int | float) and asked > 0 else SYNC_RETRY_S
    return base * random.uniform(0.5, 1.5)


# A first connect refused busy (HTTP 503) is tried again this many times, each after the wait
# the server asked for (a reconnection is tried again by python-socketio, without end).
BUSY_RETRIES = 5


def _busy_trace(client: HomeroomClient) -> aiohttp.TraceConfig:
    """A handshake the server refused because it is busy with other new connections (HTTP 503
    with ``Retry-After``: admission control) fails only after the wait the server asked for,
    times the same jitter as ``retry_delay_s``. So whichever loop tries again (``connect`` on a
    first connect, python-socketio's on a reconnection, whose own delay is at most 2 s) does
    not come back sooner than asked, and a storm's clients come back spread out."""

    async def on_end(_s: Any, _ctx: Any, params: aiohttp.TraceRequestEndParams) -> None:
        r = params.response
        if r.status != 503 or "/socket.io/" not in params.url.path + "/":
            return
        try:
            asked = float(r.headers.get("Retry-After", ""))
        except ValueError:
            asked = SYNC_RETRY_S
        client.busy_waits += 1
        await asyncio.sleep(retry_delay_s({"retry_after_s": asked}))

    trace = aiohttp.TraceConfig()
    trace.on_request_end.append(on_end)
    return trace


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
        self._reconnect_handlers: list[Callable[[], Coroutine[Any, Any, None]]] = []
        self._new_event = asyncio.Event()
        self._sync_lock = asyncio.Lock()
        self.busy_waits = 0  # handshakes refused busy, each waited out (Retry-After)
        self.sio = socketio.AsyncClient(
            reconnection=reconnection,
            reconnection_delay=0.2,
            reconnection_delay_max=2,
            serializer="msgpack" if serializer == "msgpack" else "default",
            # Made for each connection (python-engineio closes it after).
            http_session=lambda: aiohttp.ClientSession(trace_configs=[_busy_trace(self)]),
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
        for n in range(BUSY_RETRIES + 1):
            busy = self.busy_waits
            try:
                await self.sio.connect(
                    self.base_url,
                    auth=lambda: {"token": self.token},
                    transports=transports or ["websocket"],
                    wait_timeout=10,
                )
                break
            except socketio.exceptions.ConnectionError:
                # Refused busy: the wait it asked for is behind us (_busy_trace); again.
                if self.busy_waits == busy or n == BUSY_RETRIES:
                    raise
        if sync:
            await self.sync()

    async def close(self) -> None:
        for task in self._sync_tasks:
            task.cancel()
        await self.sio.disconnect()

    async def _on_connect(self) -> None:
        if self.connected_once.is_set():
            if getattr(self, "_auto_sync", True):
                # A reconnect: catch up on everything missed while away.
                self._spawn_sync()
            for handler in self._reconnect_handlers:
                task = asyncio.get_running_loop().create_task(handler())
                self._sync_tasks.add(task)
                task.add_done_callback(self._sync_tasks.discard)
        self.connected_once.set()

    def on_reconnect(self, handler: Callable[[], Coroutine[Any, Any, None]]) -> None:
        """Run ``handler`` after every reconnection (a live participant joins again)."""
        self._reconnect_handlers.append(handler)

    def _spawn_sync(self) -> None:
        task = asyncio.get_running_loop().create_task(self._quiet_sync())
        self._sync_tasks.add(task)
        task.add_done_callback(self._sync_tasks.discard)

    async def _quiet_sync(self) -> None:
        """A sync nobody waits for (after a reconnect or a ``resync``); while the server
        cannot answer it (``unavailable``: restarting, its database unreachable or busy) it is
        tried again after the ``retry_after_s`` the server asked for (2 s without one), with
        jitter, as long as the connection is up, as the web app does."""
        while True:
            try:
                await self.sync()
                return
            except RequestError as err:
                if err.code != "unavailable":
                    return
                wait = retry_delay_s(err.details)
            except Exception:
                return
            await asyncio.sleep(wait)
            if not self.sio.connected:
                return

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
        self,
        stream: str,
        body: str,
        client_id: str | None = None,
        retries: int = 3,
        attachments: list[str] | None = None,
        mentions: list[int] | None = None,
    ) -> dict[str, Any]:
        cid = client_id or uuid.uuid4().hex
        payload: dict[str, Any] = {"stream": stream, "client_id": cid, "body": body}
        if attachments:
            payload["attachments"] = attachments
        if mentions:
            payload["mentions"] = mentions
        ack = await self.request("chat.send", payload, retries=retries)
        return ack["message"]

    async def upload(self, data: Any, name: str | None = None) -> dict[str, Any]:
        """Upload a file (resumable; clients/files.py); returns its attachment view."""
        from clients import files

        return await files.upload(self, data, name)

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
        attachments: list[str] | None = None,
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
            "attachments": attachments or [],
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
        self,
        class_id: int,
        body: str,
        *,
        anonymous: bool = False,
        session_id: int | None = None,
        attachments: list[str] | None = None,
    ) -> dict[str, Any]:
        payload: dict[str, Any] = {
            "class_id": class_id,
            "client_id": uuid.uuid4().hex,
            "body": body,
            "anonymous": anonymous,
            "attachments": attachments or [],
        }
        if session_id is not None:
            payload["session_id"] = session_id
        return (await self.request("question.ask", payload, retries=3))["question"]

    async def vote(self, question_id: int, up: bool = True) -> dict[str, Any]:
        return await self.request("question.vote", {"question_id": question_id, "up": up})

    async def answer(
        self,
        question_id: int,
        answer: str = "",
        live: bool = False,
        attachments: list[str] | None = None,
    ) -> dict[str, Any]:
        payload = {
            "question_id": question_id,
            "answer": answer,
            "live": live,
            "attachments": attachments or [],
        }
        return (await self.request("question.answer", payload))["question"]

    async def open_conversation(self, class_id: int, user_id: int) -> dict[str, Any]:
        return (
            await self.request("conversation.open", {"class_id": class_id, "user_id": user_id})
        )["conversation"]

    # --- polls and quizzes ----------------------------------------------------------------------

    async def create_poll(
        self,
        class_id: int,
        question: str,
        kind: str = "single",
        options: list[str] | None = None,
        *,
        correct: list[str] | None = None,
        anonymous: bool = False,
        audience: str = "students",
        session_id: int | None = None,
        answer_by: str = "person",
        time_limit_s: int | None = None,
    ) -> dict[str, Any]:
        """Open a poll (a quiz when ``correct`` is given); retried safely with one client id."""
        payload: dict[str, Any] = {
            "class_id": class_id,
            "client_id": uuid.uuid4().hex,
            "kind": kind,
            "question": question,
            "options": options or [],
            "correct": correct or [],
            "anonymous": anonymous,
            "audience": audience,
            "answer_by": answer_by,
        }
        if session_id is not None:
            payload["session_id"] = session_id
        if time_limit_s is not None:
            payload["time_limit_s"] = time_limit_s
        return (await self.request("poll.create", payload, retries=3))["poll"]

    async def answer_poll(self, poll_id: int, answer: list[str] | str) -> dict[str, Any]:
        """Answer (or change one's answer) while the poll is open; resending is harmless."""
        value = [answer] if isinstance(answer, str) else answer
        return await self.request("poll.answer", {"poll_id": poll_id, "answer": value}, retries=3)

    async def close_poll(self, poll_id: int) -> dict[str, Any]:
        return (await self.request("poll.close", {"poll_id": poll_id}))["poll"]

    async def publish_poll(self, poll_id: int) -> dict[str, Any]:
        return (await self.request("poll.publish", {"poll_id": poll_id}))["poll"]

    async def poll(self, poll_id: int) -> dict[str, Any]:
        return await self.request("poll.get", {"poll_id": poll_id})

    async def polls(self, class_id: int, session_id: int | None = None) -> list[dict[str, Any]]:
        payload: dict[str, Any] = {"class_id": class_id}
        if session_id is not None:
            payload["session_id"] = session_id
        return list((await self.request("poll.list", payload))["polls"])

    # --- attendance and learning records --------------------------------------------------------

    async def attendance_report(self, session_id: int) -> dict[str, Any]:
        return await self.request("attendance.report", {"session_id": session_id})

    async def correct_attendance(
        self, session_id: int, student_id: int, status: str, note: str = ""
    ) -> dict[str, Any]:
        payload = {"session_id": session_id, "student_id": student_id, "status": status}
        return (await self.request("attendance.correct", {**payload, "note": note}))["attendance"]

    async def student_record(
        self, class_id: int, student_id: int, period: str = "week", **bounds: float
    ) -> dict[str, Any]:
        payload = {"class_id": class_id, "student_id": student_id, "period": period, **bounds}
        return await self.request("record.student", payload)

    async def class_record(
        self, class_id: int, period: str = "week", **bounds: float
    ) -> dict[str, Any]:
        return await self.request(
            "record.class", {"class_id": class_id, "period": period, **bounds}
        )

    async def send_digest(self, class_id: int) -> dict[str, Any]:
        return await self.request("record.digest", {"class_id": class_id})

    # --- homework -------------------------------------------------------------------------------

    async def assign_homework(
        self,
        class_id: int,
        title: str,
        due_at: float,
        instructions: str = "",
        attachments: list[str] | None = None,
    ) -> dict[str, Any]:
        payload = {
            "class_id": class_id,
            "client_id": uuid.uuid4().hex,
            "title": title,
            "due_at": due_at,
            "instructions": instructions,
            "attachments": attachments or [],
        }
        return (await self.request("homework.assign", payload, retries=3))["homework"]

    async def submit_homework(
        self, homework_id: int, body: str = "", attachments: list[str] | None = None
    ) -> dict[str, Any]:
        """Submit (or resubmit: ``attachments`` are the files it has now, kept or new)."""
        payload = {"homework_id": homework_id, "body": body, "attachments": attachments or []}
        ack = await self.request("homework.submit", payload)
        return dict(ack["submission"])

    async def review_homework(
        self,
        homework_id: int,
        student_id: int,
        comment: str = "",
        *,
        score: float | None = None,
        grade: str | None = None,
        redo: bool = False,
    ) -> dict[str, Any]:
        payload: dict[str, Any] = {
            "homework_id": homework_id,
            "student_id": student_id,
            "comment": comment,
            "redo": redo,
        }
        if score is not None:
            payload["score"] = score
        if grade is not None:
            payload["grade"] = grade
        return dict((await self.request("homework.review", payload))["submission"])

    async def homework_rollup(self, homework_id: int) -> dict[str, Any]:
        return await self.request("homework.rollup", {"homework_id": homework_id})

    async def remind_homework(self, homework_id: int) -> dict[str, Any]:
        return await self.request("homework.remind", {"homework_id": homework_id})

    async def homework_list(self, class_id: int, student_id: int | None = None) -> dict[str, Any]:
        payload: dict[str, Any] = {"class_id": class_id}
        if student_id is not None:
            payload["student_id"] = student_id
        return await self.request("homework.list", payload)
