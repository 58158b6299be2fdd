"""Sending what no well-behaved client sends: raw Socket.IO packets and raw HTTP bodies.

The server's own JSON encoder (msgspec, shared with the test clients in this process) refuses
lone surrogates and NaN, so hostile payloads are written with the standard library's ``json``
(which writes ``\\ud800`` escapes, ``NaN``, ``Infinity`` and integers of any size) and sent as
raw Engine.IO messages with an ack id of their own.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

import aiohttp

from clients.homeroom import HomeroomClient

NO_ACK = "no-ack"


def hostile_json(value: Any) -> str:
    return json.dumps(value, ensure_ascii=True, allow_nan=True)


async def raw_call(client: HomeroomClient, packet_body: str, timeout: float = 10.0) -> Any:
    """Send ``2<ack id><packet_body>`` (an EVENT packet with any text after the id) and return
    the acknowledgement's first argument, or NO_ACK if none came within ``timeout``."""
    loop = asyncio.get_running_loop()
    answer: asyncio.Future[Any] = loop.create_future()

    def on_ack(*args: Any) -> None:
        if not answer.done():
            answer.set_result(args[0] if args else None)

    ack_id = client.sio._generate_ack_id("/", on_ack)
    await client.sio.eio.send(f"2{ack_id}{packet_body}")
    try:
        return await asyncio.wait_for(answer, timeout)
    except TimeoutError:
        client.sio.callbacks.get("/", {}).pop(ack_id, None)
        return NO_ACK


async def call(client: HomeroomClient, event: str, payload: Any, timeout: float = 10.0) -> Any:
    return await raw_call(client, hostile_json([event, payload]), timeout)


async def http(
    base_url: str,
    method: str,
    path: str,
    *,
    token: str | None = None,
    data: bytes | str | None = None,
    content_type: str = "application/json",
) -> tuple[int, Any, dict[str, str]]:
    """Status, body (JSON when it is JSON) and headers of one raw request."""
    headers = {"Content-Type": content_type}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    async with (
        aiohttp.ClientSession() as session,
        session.request(method, base_url + path, data=data, headers=headers) as resp,
    ):
        raw = await resp.read()
        body: Any = raw.decode("utf-8", "replace")
        if resp.content_type == "application/json":
            body = json.loads(body)
        return resp.status, body, dict(resp.headers)


def code_of(answer: Any) -> str:
    """ "ok", an error code, or what else came back (for assertion messages)."""
    if isinstance(answer, dict):
        if answer.get("ok") is True:
            return "ok"
        err = answer.get("error")
        if isinstance(err, dict) and isinstance(err.get("code"), str):
            return str(err["code"])
    return f"unexpected: {answer!r}"[:200]


async def snapshot(app: Any) -> dict[str, Any]:
    """What a refused request must not change: every table's row count and largest id, and
    every stream's position (the event log)."""
    from sqlalchemy import func, select

    from realtime.store.schema import metadata, streams
    from realtime.transport.rest import HUB

    state: dict[str, Any] = {}
    async with app[HUB].store.read() as conn:
        for table in metadata.sorted_tables:
            cols = [func.count()]
            if "id" in table.c:
                cols.append(func.max(table.c.id))
            row = (await conn.execute(select(*cols).select_from(table))).one()
            state[table.name] = tuple(row)
        rows = await conn.execute(select(streams))
        state["stream positions"] = sorted(tuple(r) for r in rows)
    return state
