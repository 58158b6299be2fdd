"""A client that stops reading never slows the others and never grows the server's memory."""

from __future__ import annotations

import asyncio
import json
import os
import socket
import struct
import time
from pathlib import Path

from realtime import demo
from tests.conftest import make_settings, start_server, stop_server


def ws_frame(text: str) -> bytes:
    """A masked client-to-server text frame."""
    payload = text.encode()
    mask = os.urandom(4)
    masked = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
    n = len(payload)
    head = bytes((0x81, 0x80 | n)) if n < 126 else struct.pack("!BBH", 0x81, 0x80 | 126, n)
    return head + mask + masked


def stalled_client(port: int, token: str) -> socket.socket:
    """Connect, authenticate and follow the class streams, then never read again."""
    s = socket.create_connection(("127.0.0.1", port))
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    s.sendall(
        b"GET /socket.io/?EIO=4&transport=websocket HTTP/1.1\r\nHost: 127.0.0.1\r\n"
        b"Upgrade: websocket\r\nConnection: Upgrade\r\n"
        b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
    )
    s.settimeout(5)
    buf = b""
    while b"\r\n\r\n" not in buf:
        buf += s.recv(4096)
    s.sendall(ws_frame("40" + json.dumps({"token": token})))
    time.sleep(0.3)
    s.sendall(ws_frame('421["sync",{}]'))
    time.sleep(0.3)
    return s


async def test_stalled_client_is_dropped_and_others_keep_up(tmp_path: Path) -> None:
    srv = await start_server(
        make_settings(
            tmp_path,
            client_buffer_bytes=256 * 1024,
            chat_max_chars=60_000,
            # What is measured is the fan-out's isolation from a stalled reader, not the disk:
            # 200 syncs of 50 KB each on a shared, busy disk would dominate the sender's latency.
            sqlite_synchronous="normal",
        )
    )
    try:
        stream = f"class:{srv.class_id}:students"
        sender = await srv.client("wanghao")
        reader = await srv.client("liming")
        token = (await (await srv.client()).login("zhangwei", demo.DEMO_PASSWORD))["access_token"]
        stalled = await asyncio.to_thread(stalled_client, int(srv.url.rsplit(":", 1)[1]), token)
        body = "x" * 50_000  # 10 MB in all: more than the kernel's socket buffers hold
        latencies = []
        for i in range(200):
            t0 = time.perf_counter()
            await sender.send_chat(stream, f"{i} {body}")
            latencies.append(time.perf_counter() - t0)
        await reader.wait_for(lambda e: e["data"].get("body", "").startswith("199 "), 10)
        got = [e for e in reader.events[stream] if e["type"] == "chat.message"]
        assert len(got) == 200
        # The stalled connection was cut once its buffer passed the bound...
        metrics = await sender.http("GET", "/metrics", auth=False)
        line = next(
            x
            for x in metrics.splitlines()
            if x.startswith("homeroom_slow_client_disconnects_total")
        )
        assert float(line.split()[-1]) >= 1
        # ...and it never held up the sender.
        latencies.sort()
        print(latencies[len(latencies) // 2], latencies[-1])
        assert latencies[len(latencies) // 2] < 0.1
        stalled.close()
    finally:
        await stop_server(srv)
