"""Standard clients work: the Node.js reference socket.io-client (tests/node/interop.js) talks to
the server with a token in ``auth``, syncs, receives a message a Python client sends and sends
one the Python client receives — over WebSocket and long-polling, with the JSON and the msgpack
serializer — and reads the error code of a refused connection.
"""

from __future__ import annotations

import asyncio
import json
import shutil
import subprocess
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio

from realtime.auth import TokenIssuer
from tests.conftest import Server, make_settings, start_server, stop_server

pytestmark = [pytest.mark.asyncio(loop_scope="module"), pytest.mark.timeout(90)]

NODE_DIR = Path(__file__).parent / "node"
SCRIPT = NODE_DIR / "interop.js"


def _ensure_node_modules() -> None:
    if shutil.which("node") is None:
        pytest.fail("node is not installed (Node.js 20 is expected on this machine)")
    if (
        not (NODE_DIR / "node_modules" / "socket.io-client").is_dir()
        or not (NODE_DIR / "node_modules" / "socket.io-msgpack-parser").is_dir()
    ):
        subprocess.run(
            ["npm", "ci", "--no-audit", "--no-fund", "--silent"],
            cwd=NODE_DIR,
            check=True,
            timeout=300,
        )


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def servers(
    tmp_path_factory: pytest.TempPathFactory,
) -> AsyncIterator[dict[str, Server]]:
    _ensure_node_modules()
    out: dict[str, Server] = {}
    for serializer in ("json", "msgpack"):
        out[serializer] = await start_server(
            make_settings(tmp_path_factory.mktemp(serializer), serializer=serializer)
        )
    yield out
    for srv in out.values():
        await stop_server(srv)


class Node:
    """One run of interop.js, read line by line."""

    def __init__(self, proc: asyncio.subprocess.Process) -> None:
        self.proc = proc
        self.lines: list[dict[str, Any]] = []

    @classmethod
    async def start(cls, **opts: Any) -> Node:
        proc = await asyncio.create_subprocess_exec(
            "node",
            str(SCRIPT),
            json.dumps(opts),
            cwd=NODE_DIR,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        return cls(proc)

    async def step(self, name: str, timeout: float = 15) -> dict[str, Any]:
        assert self.proc.stdout is not None
        while True:
            raw = await asyncio.wait_for(self.proc.stdout.readline(), timeout)
            if not raw:
                err = await self.proc.stderr.read() if self.proc.stderr else b""
                raise AssertionError(
                    f"node ended before {name!r}: {self.lines} {err.decode()[-2000:]}"
                )
            line = json.loads(raw)
            self.lines.append(line)
            if line["step"] == "error":
                raise AssertionError(f"node failed before {name!r}: {line['message']}")
            if line["step"] == name:
                return line

    async def finish(self) -> int:
        return await asyncio.wait_for(self.proc.wait(), 10)

    def kill(self) -> None:
        if self.proc.returncode is None:
            self.proc.kill()


@pytest.mark.parametrize(
    ("serializer", "transport"),
    [("json", "websocket"), ("json", "polling"), ("msgpack", "websocket"), ("msgpack", "polling")],
)
async def test_node_client_chats_with_python_client(
    servers: dict[str, Server], serializer: str, transport: str
) -> None:
    srv = servers[serializer]
    stream = f"class:{srv.class_id}:students"
    wang = await srv.client("wanghao")  # Python, same serializer as the server
    liming = await srv.client("liming", connect=False)  # only for a token; Node connects
    tag = uuid.uuid4().hex[:8]
    from_python = f"王浩说：分数 ½ + ⅓ = ? [{tag}]"
    from_node = f"李明（Node {transport}）：5/6！ [{tag}]"
    node = await Node.start(
        url=srv.url,
        token=liming.token,
        stream=stream,
        body=from_node,
        expect_body=from_python,
        transport=transport,
        parser=serializer,
    )
    try:
        connected = await node.step("connected")
        assert connected["transport"] == transport
        synced = await node.step("synced")
        assert stream in synced["streams"]
        assert f"class:{srv.class_id}:guardians" not in synced["streams"]

        sent = await wang.send_chat(stream, from_python)
        received = (await node.step("received"))["event"]
        assert received["seq"] == sent["seq"]
        assert received["data"]["id"] == sent["id"]
        assert received["data"]["body"] == from_python
        assert received["data"]["sender_id"] == srv.uid("wanghao")

        ack = (await node.step("sent"))["ack"]
        assert ack["ok"] is True, ack
        assert ack["message"]["body"] == from_node
        assert ack["message"]["sender_id"] == srv.uid("liming")
        assert ack["message"]["seq"] == sent["seq"] + 1
        ev = await wang.wait_for(lambda e: e["data"].get("body") == from_node)
        assert ev["seq"] == ack["message"]["seq"]

        refused = await node.step("bad_request")
        assert refused["ack"]["ok"] is False
        assert refused["ack"]["error"]["code"] == "bad_request"
        assert refused["transport"] == transport  # no upgrade happened behind our back
        await node.step("done")
        assert await node.finish() == 0
    finally:
        node.kill()
    # Exactly once: the Node message is in the history once.
    hist = await wang.history(stream)
    assert [m["body"] for m in hist["messages"]].count(from_node) == 1


@pytest.mark.parametrize("serializer", ["json", "msgpack"])
async def test_node_client_reads_why_it_was_refused(
    servers: dict[str, Server], serializer: str
) -> None:
    srv = servers[serializer]
    expired = TokenIssuer(srv.settings.signing_keys, srv.settings.secret_key_id, -60).issue(
        srv.uid("liming"), 1
    )
    for token, words in ((expired, "expired"), ("not-a-token", "not valid"), (None, "sign in")):
        node = await Node.start(
            url=srv.url, token=token, mode="refused", transport="websocket", parser=serializer
        )
        try:
            refused = await node.step("refused")
            assert refused["data"]["code"] == "unauthorized"
            assert refused["data"]["message"] == refused["message"]
            reasons = ("token_expired", "token_invalid", "signed_out")
            assert refused["data"]["details"]["reason"] in reasons
            assert words in refused["message"]
            assert await node.finish() == 0
        finally:
            node.kill()
