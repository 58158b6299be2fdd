"""A lesson behind a firewall that lets no UDP through: Chromium over ICE-TCP on the node's one
TCP media port.

Run by tests/live/test_ice_tcp.py inside a network namespace of its own with only ``lo``
(``tests.chromium.run_in_loopback_namespace``). The server has one UDP media port and one TCP
media port; an nftables table inside that namespace drops (and counts) every UDP packet, so
the browser's UDP candidates never answer. The teacher (Ms. Li) and a student (Wang Hao) are two
pages of one Chromium: the teacher publishes the fake camera and microphone (the server answers
her offer: ICE-controlled), the student watches (the server offers: ICE-controlling). Prints
``RESULT <json>`` last: what the student's page received and its selected pair, what the
server's pairs and the host's participant list say, the node's sockets, the UDP packets
dropped, and the TCP connections left after the lesson ended.
"""

from __future__ import annotations

import asyncio
import json
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from playwright.async_api import Page

from media.ice import TCP_MUX
from media.internals import srtp_send
from realtime.transport.rest import LIVE
from tests.chromium import print_result, report_result
from tests.conftest import free_port
from tests.live.chromium_scenario import (
    CHROMIUM_FLAGS,
    FRAMES_WANTED,
    MEDIA_TIMEOUT_S,
    decoded_from,
    eventually,
    start_server_with_page,
    with_browser,
)
from tests.live.shaped_scenario import NFT, page_for
from tests.live.test_udp_port import free_udp_port, process_sockets

TCP_LISTEN = 10


def nft(*args: str) -> str:
    return subprocess.run([NFT, *args], check=True, capture_output=True, text=True).stdout


def block_udp() -> None:
    """Every UDP packet of the namespace dropped and counted (output: loopback goes out once)."""
    nft("add", "table", "inet", "firewall")
    nft("add", "chain", "inet", "firewall", "out", "{ type filter hook output priority 0; }")
    nft("add", "rule", "inet", "firewall", "out", "meta", "l4proto", "udp", "counter", "drop")


def udp_dropped() -> int:
    listing = json.loads(nft("-j", "list", "table", "inet", "firewall"))
    for item in listing["nftables"]:
        for expr in item.get("rule", {}).get("expr", []):
            if "counter" in expr:
                return int(expr["counter"]["packets"])
    return 0


def server_pair(pc: Any) -> dict[str, Any] | None:
    """The server's nominated pair: its local candidate's transport and tcptype too."""
    for transceiver in pc.getTransceivers():
        pair = transceiver.receiver.transport.transport._connection._nominated.get(1)
        if pair is not None:
            local, remote = pair.local_candidate, pair.remote_candidate
            return {
                "local": [local.transport, local.host, local.port, local.type, local.tcptype],
                "remote": [remote.host, remote.port, remote.type],
            }
    return None


def count_direct_sends(counts: dict[str, int]) -> None:
    """Count the frames the forwarding fast path (``srtp_send``) sends, by transport class."""
    send = srtp_send._DatagramSink.send

    def counted(sink: Any, *args: Any) -> int:
        name = type(sink.transport).__name__
        counts[name] = counts.get(name, 0) + 1
        return send(sink, *args)

    srtp_send._DatagramSink.send = counted  # type: ignore[method-assign]


async def start_server_without_udp(tmp: Path, result: dict[str, Any]) -> Any:
    """The app with one UDP and one TCP media port (``result["ports"]``), UDP then dropped."""
    udp_port, tcp_port = free_udp_port(), free_port()
    srv = await start_server_with_page(tmp, media_udp_port=udp_port, media_tcp_port=tcp_port)
    result["ports"] = {"http": srv.settings.port, "udp": udp_port, "tcp": tcp_port}
    block_udp()
    return srv


async def start_lesson(srv: Any, context: Any, title: str) -> tuple[Page, Page, int, Any]:
    """Ms. Li starts a lesson and publishes her camera and microphone, Wang Hao joins and
    subscribes: (her page, his page, the session id, her publish reply)."""
    teacher = await page_for(context, srv.url, "li")
    started = await teacher.evaluate(
        "(p) => hr.request('session.start', p)",
        {"class_id": srv.class_id, "kind": "lesson", "title": title},
    )
    sid = started["session"]["id"]
    await teacher.evaluate("(s) => hr.join(s)", sid)
    published = await teacher.evaluate("() => hr.publish()")
    student = await page_for(context, srv.url, "wanghao")
    await student.evaluate("(s) => hr.join(s)", sid)
    await student.evaluate("() => hr.subscribe()")
    return teacher, student, sid, published


async def scenario(tmp: Path, result: dict[str, Any]) -> None:
    srv = await start_server_without_udp(tmp, result)
    result["direct_sends"] = {}
    count_direct_sends(result["direct_sends"])
    await with_browser(srv, tmp, CHROMIUM_FLAGS, lambda srv, context: lesson(srv, context, result))


async def lesson(srv: Any, context: Any, result: dict[str, Any]) -> None:
    mux = TCP_MUX.active
    assert mux is not None
    teacher, student, sid, result["publish"] = await start_lesson(srv, context, "No UDP")
    li = srv.uid("li")
    t0 = time.monotonic()

    async def plays() -> bool:
        stats = await student.evaluate("() => hr.stats()")
        result["student_stats"] = stats
        sub = stats["subscribe"]
        return bool(
            decoded_from(sub, li, "video") >= FRAMES_WANTED
            and decoded_from(sub, li, "audio") > 0
            and sub["pair"]
        )

    await eventually(plays, MEDIA_TIMEOUT_S, "the student playing the teacher over TCP")
    result["media_seconds"] = round(time.monotonic() - t0, 2)
    result["teacher_stats"] = await teacher.evaluate("() => hr.stats()")
    runtime = srv.app[LIVE].runtimes[sid]
    wanghao = srv.uid("wanghao")
    result["server_pairs"] = {
        "li/publish": server_pair(runtime.publishers[li].pc),
        "wanghao/subscribe": server_pair(runtime.subscribers[wanghao].pc),
    }
    result["links"] = runtime.stats()["links"]
    result["ids"] = {"li": li, "wanghao": wanghao}
    result["udp_dropped"] = udp_dropped()
    result["sockets"] = {
        "tcp_listening": sorted(
            {p for _, _, p, state in process_sockets("self", "tcp") if state == TCP_LISTEN}
        ),
        "tcp_media_connections": len(
            [s for s in process_sockets("self", "tcp") if s[2] == mux.port and s[3] != TCP_LISTEN]
        ),
        "udp": sorted({p for _, _, p, _ in process_sockets("self", "udp")}),
    }
    result["tcp_mux"] = {"connections": mux.connections, "streams": len(mux.streams)}

    # The lesson ends: the server's peer connections close, and their TCP connections with them.
    await teacher.evaluate("(s) => hr.request('session.end', {session_id: s})", sid)

    async def closed() -> bool:
        return mux.connections == 0 and not mux.streams

    await eventually(closed, 10, "the TCP connections closed with the peer connections")
    result["tcp_mux_after"] = {"connections": mux.connections, "streams": len(mux.streams)}
    result["ok"] = True


async def main() -> int:
    if shutil.which(NFT) is None:
        print_result({"ok": False, "error": "nft is missing"})
        return 1
    return await report_result(scenario, "homeroom-ice-tcp-", 90)


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
