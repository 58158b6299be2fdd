"""A lesson over ICE-TCP whose TCP connections are cut: a browser that connects again goes on,
a browser that cannot has its leg failed at once.

Run by tests/live/test_ice_tcp.py in a network namespace of its own with only ``lo``, UDP dropped
by nftables inside it (as ``ice_tcp_scenario``): Ms. Li publishes her camera and microphone over
TCP, Wang Hao watches over TCP. A cut destroys the browser's end of one TCP media connection
(``ss -K``: the kernel resets it, the server reads the reset).

1. Wang Hao's subscribe connection is cut: Chromium connects again at once (a new port), and his
   leg goes on on the new connection: he keeps playing, his peer connection stays connected.
2. New TCP connections to the media port are refused (nftables, as a network that went away or a
   browser that died), then Ms. Li's publish connection is cut, then Wang Hao's: each leg's peer
   connection ends once Chromium had its time to connect again (``tcp_mux.RECONNECT_GRACE_S``),
   the host's participant list says so, and Wang Hao's page hears that Ms. Li no longer
   publishes.

Prints ``RESULT <json>`` last, with the seconds each took. Without ``tcp_mux``'s
``stream_lost``, step 2 takes aioice's consent checks, about 30 s.
"""

from __future__ import annotations

import asyncio
import re
import shutil
import subprocess
import sys
import time
from typing import Any

from media.ice import TCP_MUX
from realtime.transport.rest import LIVE
from tests.chromium import print_result, report_result
from tests.live.chromium_scenario import (
    CHROMIUM_FLAGS,
    FRAMES_WANTED,
    MEDIA_TIMEOUT_S,
    decoded_from,
    eventually,
    with_browser,
)
from tests.live.ice_tcp_scenario import nft, server_pair, start_lesson, start_server_without_udp
from tests.live.shaped_scenario import NFT

# Longer than aioice's consent checks take (6 failures, one every 4-6 s), so that a run of the
# old code measures them rather than giving up.
NOTICE_WAIT_S = 45.0
# After the first cut: long enough for the reconnect grace (tcp_mux.RECONNECT_GRACE_S, 1.8 s) to
# have passed, and for the student's page to have decoded new frames.
GOES_ON_S = 3.0
# A leg's peer connection or its line in the host's participant list: failed or closed (aiortc
# closes a peer connection whose DTLS transports all closed, which they do when ICE fails), or
# the line gone.
DEAD = ("failed", "closed", None)
SS = "ss"


def cut(tcp_port: int, browser_port: int) -> str:
    """Destroy the browser's end of its TCP connection to the node's media port (``ss -K``):
    the kernel resets the connection, as a crashed browser's or a NAT's reset would."""
    match = ["dst", "127.0.0.1", "dport", "=", str(tcp_port), "sport", "=", str(browser_port)]
    return subprocess.run(
        [SS, "-K", "-t", "-n", *match], check=True, capture_output=True, text=True
    ).stdout


def refuse_connections(tcp_port: int) -> None:
    """New TCP connections to the media port refused (reset) and counted."""
    nft(
        "add", "rule", "inet", "firewall", "out", "tcp", "dport", str(tcp_port),
        "tcp", "flags", "&", "(syn", "|", "ack)", "==", "syn",
        "counter", "reject", "with", "tcp", "reset",
    )  # fmt: skip


def connections_refused() -> int:
    for line in nft("list", "table", "inet", "firewall").splitlines():
        found = re.search(r"tcp dport .* counter packets (\d+)", line)
        if found:
            return int(found.group(1))
    return 0


async def seconds_until(check: Any, since: float) -> float | None:
    """Seconds from ``since`` until ``check()`` holds (polled every 20 ms), None if not within
    :data:`NOTICE_WAIT_S`."""
    while not check():
        if time.monotonic() - since > NOTICE_WAIT_S:
            return None
        await asyncio.sleep(0.02)
    return round(time.monotonic() - since, 3)


async def scenario(tmp: Any, result: dict[str, Any]) -> None:
    srv = await start_server_without_udp(tmp, result)
    await with_browser(srv, tmp, CHROMIUM_FLAGS, lambda srv, context: lesson(srv, context, result))


async def lesson(srv: Any, context: Any, result: dict[str, Any]) -> None:
    mux = TCP_MUX.active
    assert mux is not None
    tcp_port = mux.port
    _, student, sid, _ = await start_lesson(srv, context, "TCP cut")
    li, wanghao = srv.uid("li"), srv.uid("wanghao")
    result["ids"] = {"li": li, "wanghao": wanghao}

    async def decoded() -> int:
        sub = (await student.evaluate("() => hr.stats()"))["subscribe"]
        return decoded_from(sub, li, "video") if sub["pair"] else 0

    async def plays() -> bool:
        return await decoded() >= FRAMES_WANTED

    await eventually(plays, MEDIA_TIMEOUT_S, "the student playing the teacher over TCP")
    # Wang Hao's page keeps every session state it is told (the people list, who publishes).
    await student.evaluate(
        "() => { hr.states = []; hr.socket.on('session.state', (m) => "
        "hr.states.push({at: performance.now(), m})); }"
    )
    runtime = srv.app[LIVE].runtimes[sid]
    publish, subscribe = runtime.publishers[li], runtime.subscribers[wanghao]
    pairs = {"publish": server_pair(publish.pc), "subscribe": server_pair(subscribe.pc)}
    result["server_pairs"] = pairs
    assert pairs["publish"] is not None and pairs["subscribe"] is not None

    # Each leg's connection states, with the time they came.
    states: dict[str, list[tuple[str, float]]] = {"publish": [], "subscribe": []}
    for name, leg in (("publish", publish), ("subscribe", subscribe)):
        leg.pc.on(
            "connectionstatechange",
            lambda name=name, pc=leg.pc: states[name].append(
                (pc.connectionState, time.monotonic())
            ),
        )

    def ended(name: str) -> bool:
        return any(state in DEAD for state, _ in states[name])

    def since(changes: list[tuple[str, float]], t: float) -> list[tuple[str, float]]:
        return [(state, round(at - t, 3)) for state, at in changes]

    def link_state(user_id: int, leg: str) -> str | None:
        return runtime.stats()["links"].get(str(user_id), {}).get(leg, {}).get("state")

    # 1. Wang Hao's connection is reset; Chromium connects again and his leg goes on.
    before = await decoded()
    t = time.monotonic()
    old_port = pairs["subscribe"]["remote"][1]
    result["cut_reconnecting"] = cut(tcp_port, old_port)

    def moved() -> bool:
        pair = server_pair(subscribe.pc)
        return pair is None or pair["remote"][1] != old_port

    # How long until the server's nominated pair is on Chromium's new connection.
    result["reconnect_s"] = await seconds_until(moved, t)
    await asyncio.sleep(max(0.0, GOES_ON_S - (time.monotonic() - t)))
    result["reconnected"] = {
        "states": since(states["subscribe"], t),
        "state": subscribe.pc.connectionState,
        "frames_decoded_since": await decoded() - before,
        "pair": server_pair(subscribe.pc),
    }

    # 2. No new connection gets through any more.
    refuse_connections(tcp_port)
    # Ms. Li's publish connection is cut.
    page_t0 = await student.evaluate("() => performance.now()")
    t0 = time.monotonic()
    result["cut_publish"] = cut(tcp_port, pairs["publish"]["remote"][1])
    result["publish_failed_s"] = await seconds_until(lambda: ended("publish"), t0)
    result["publish_link_failed_s"] = await seconds_until(
        lambda: link_state(li, "publish") in DEAD, t0
    )
    result["publishing_ended_s"] = await seconds_until(lambda: not runtime.publishing().get(li), t0)
    result["publish_states"] = since(states["publish"], t0)

    async def told() -> bool:
        for state in await student.evaluate("() => hr.states"):
            for p in state["m"]["participants"]:
                if p["user_id"] == li and not p["publishing"]:
                    result["student_told_s"] = round((state["at"] - page_t0) / 1000, 3)
                    return True
        return False

    if result["publishing_ended_s"] is not None:
        await eventually(told, 10, "Wang Hao's page told that Ms. Li no longer publishes")
    # Only the cut connection's leg ended.
    result["subscribe_state_after_publish_cut"] = subscribe.pc.connectionState

    # Wang Hao's subscribe connection (the one he connected again with) is cut.
    now = server_pair(subscribe.pc)
    t1 = time.monotonic()
    result["cut_subscribe"] = cut(tcp_port, now["remote"][1]) if now is not None else ""
    result["subscribe_failed_s"] = await seconds_until(lambda: ended("subscribe"), t1)
    result["subscribe_link_failed_s"] = await seconds_until(
        lambda: link_state(wanghao, "subscribe") in DEAD, t1
    )
    result["subscribe_states"] = since(states["subscribe"], t1)
    result["connections_refused"] = connections_refused()
    result["tcp_mux_after"] = {
        "connections": mux.connections,
        "streams": len(mux.streams),
        "rejected": mux.rejected,
    }
    result["ok"] = True


async def main() -> int:
    for tool in (NFT, SS):
        if shutil.which(tool) is None:
            print_result({"ok": False, "error": f"{tool} is missing"})
            return 1
    return await report_result(scenario, "homeroom-ice-tcp-cut-", 130)


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
