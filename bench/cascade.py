"""Cascading one lesson over nodes (issue #13): what an edge costs, and what it adds.

Run from the repository root once ``.venv`` is set up (``make setup``)::

    .venv/bin/python -m bench.cascade            # about 5-6 minutes on 2 cores

Three media nodes (bench/sfu/cascade_node.py: Homeroom's forwarding path — ``MediaRouter``,
``PublishSession``, ``SubscribeSession`` and, on an edge, ``signaling.relay.RelayIngest`` —
behind a tiny HTTP API, so that one node's CPU is all that is read), each its own process on
127.0.0.1: an origin A, where the teacher publishes VP8 720p at 30 fps about 2.5 Mbit/s
(bench/sfu/video.py, replayed; it answers keyframe requests like a browser), and two edges B
and C, each fed by one leg from A (an ordinary subscribe leg there). Viewers count reassembled
frames without decoding (bench/sfu/peer.py, one process per node's viewers). Side by side in
the same run:

- ``join_origin_s`` / ``join_via_edge_s``: join to first keyframe for a viewer of the origin,
  and for a viewer of an edge whose leg is already up (medians of isolated joins);
- ``join_new_edge_s``: from asking an idle edge to attach to the lesson until its first viewer
  has a keyframe (the leg's ICE, DTLS and a keyframe up the leg; median of three);
- ``edge_hop_ms``: the same encoded frames' arrival at an edge viewer minus at an origin viewer
  (median, frames matched by content);
- ``origin_viewer_cpu``: the origin's marginal CPU per local viewer (slope over N viewers, all
  in one viewer process);
- ``edge_leg_cpu``: the origin's CPU for feeding one edge, beside ``LEG_BASE_VIEWERS`` local
  viewers: two edges attached, the window minus the mean of the windows without just before
  and after it, halved, median of the ``LEG_ROUNDS`` rounds in which every subscriber was
  fed; ``solo_viewer_cpu`` the same for two more viewers each alone in its own process, in the
  same rounds (like with like: on loopback the sender's system calls also deliver each packet
  and wake the receiving process, which can cost more for a process that is otherwise idle,
  as an edge is, than for one busy with 12 viewers); ``edge_leg_cost_ratio`` = ``edge_leg_cpu``
  / ``origin_viewer_cpu`` (the issue's figure) and ``edge_leg_vs_solo_viewer`` =
  ``edge_leg_cpu`` / ``solo_viewer_cpu``; user and system parts of both in
  ``*_user_system``; keyframes and subscribers fed per window beside them;
- ``edge_viewer_cost_ratio``: an edge's marginal CPU per viewer over the origin's.

Every process it starts is stopped by pid at the end. The last line is one JSON object.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

from bench.procs import cpu_user_system, free_port, say, tail
from bench.sfu_fanout import CACHE, SFU, Peer, Started, fit, machine_busy, snapshot, wait_http

sys.path.insert(0, str(SFU))
import video

PROFILE = "720p"
WARMUP_S = 2.0
WINDOW_S = 8.0
ISOLATION_S = 1.0  # between joins: no keyframe request of the previous one still pending
JOINS = 6
NEW_EDGE_ROUNDS = 3
RAMP = [0, 6, 12]
LEG_ROUNDS = 3
LEG_BASE_VIEWERS = 2  # local viewers of the origin beside the legs (step 5)
HOP_RECORD_S = 3.0

TARGETS = {
    "edge_leg_cost_ratio": ("<=", 1.5),
    "join_via_edge_s": ("<", 0.5),
    "join_new_edge_s": ("<", 1.0),
    "edge_viewer_cost_ratio": ("<=", 1.1),
    "edge_hop_ms": ("<", 20.0),
}


class Node:
    def __init__(self, name: str, pid: int, url: str) -> None:
        self.name, self.pid, self.url = name, pid, url

    def cpu(self) -> float:
        from bench.procs import cpu_seconds

        return cpu_seconds(self.pid)

    def post(self, path: str, body: dict[str, Any] | None = None) -> dict[str, Any]:
        request = urllib.request.Request(
            self.url + path,
            data=json.dumps(body or {}).encode(),
            headers={"Content-Type": "application/json"},
        )
        with urllib.request.urlopen(request, timeout=30) as resp:
            return dict(json.loads(resp.read()))

    async def apost(self, path: str, body: dict[str, Any] | None = None) -> dict[str, Any]:
        return await asyncio.to_thread(self.post, path, body)

    async def stats(self) -> dict[str, int]:
        def get() -> dict[str, int]:
            with urllib.request.urlopen(self.url + "/stats", timeout=30) as resp:
                return dict(json.loads(resp.read()))

        return await asyncio.to_thread(get)


async def start_node(started: Started, name: str, tmp: Path) -> Node:
    port = free_port()
    log = tmp / f"{name}.log"
    proc = started.popen(
        [sys.executable, str(SFU / "cascade_node.py"), "--port", str(port)],
        log,
        name,
        cwd=str(SFU.parents[1]),
    )
    url = f"http://127.0.0.1:{port}"
    await asyncio.to_thread(wait_http, url + "/", proc, log, 30)
    return Node(name, proc.pid, url)


class Viewers:
    """One viewer process for one node, with numbered viewers."""

    def __init__(self, peer: Peer, prefix: str) -> None:
        self.peer, self.prefix, self.count = peer, prefix, 0
        self.ids: list[str] = []

    async def join(self) -> dict[str, Any]:
        sub_id = f"{self.prefix}{self.count}"
        self.count += 1
        reply = await self.peer.ask("join", timeout=40, subs=[{"id": sub_id}])
        result = dict(reply["results"][0])
        if "error" in result:
            raise RuntimeError(f"join {sub_id}: {result['error']}")
        self.ids.append(sub_id)
        return result

    async def leave_all(self) -> None:
        await self.peer.ask("leave", ids=self.ids)
        self.ids = []


async def frames_in(nodes: list[Node]) -> dict[str, int]:
    """Frames each node has received from its publisher or its leg so far."""
    stats = await asyncio.gather(*(n.stats() for n in nodes))
    return {n.name: st["frames_received"] for n, st in zip(nodes, stats, strict=True)}


def at_fps(cpu_per_s: float, frames: int, seconds: float) -> float:
    """CPU-s/s at the publisher's nominal frame rate: CPU per frame received x FPS. On a busy
    machine the publisher's frames come late and a window holds fewer of them, so raw CPU-s/s
    falls with the load; per frame it does not. Raw when nothing was received."""
    return cpu_per_s * video.FPS * seconds / frames if frames > 0 else cpu_per_s


async def node_cpu_per_s(nodes: list[Node], window: float) -> dict[str, float]:
    """CPU-seconds per second of each node over one window at the nominal frame rate
    (:func:`at_fps`; raw in ``<name>_raw``), and the machine's busy cores."""
    f0 = await frames_in(nodes)
    b0, t0 = machine_busy()
    c0 = {n.name: n.cpu() for n in nodes}
    w0 = time.monotonic()
    await asyncio.sleep(window)
    b1, t1 = machine_busy()
    dt = time.monotonic() - w0
    c1 = {n.name: n.cpu() for n in nodes}
    f1 = await frames_in(nodes)
    out: dict[str, float] = {}
    for n in nodes:
        raw = (c1[n.name] - c0[n.name]) / dt
        out[n.name + "_raw"] = raw
        out[n.name] = at_fps(raw, f1[n.name] - f0[n.name], dt)
    out["machine_busy_cores"] = (b1 - b0) / (t1 - t0) * (os.cpu_count() or 1)
    return out


async def fps(viewers: list[Viewers], window: float = 2.0) -> float:
    """The lowest frame rate among these viewers over a short window."""
    s0 = await snapshot([v.peer for v in viewers])
    await asyncio.sleep(window)
    s1 = await snapshot([v.peer for v in viewers])
    rates = [
        (s1[i][1] - s0[i][1]) / (s1[i][0] - s0[i][0])
        for v in viewers
        for i in v.ids
        if i in s0 and i in s1
    ]
    return min(rates) if rates else 0.0


async def origin_split(
    origin: Node, window: float, keyframes: list[int], fed: list[float]
) -> tuple[float, float]:
    """The origin's (user, system) CPU-seconds per second over one window, at the nominal
    frame rate (:func:`at_fps`); appends the keyframes it received meanwhile to ``keyframes``
    (each costs every subscriber several frames' worth) and how many subscribers it fed
    (frames out / frames in; a viewer process the machine starves falls out) to ``fed``."""
    s0 = await origin.stats()
    u0, y0 = cpu_user_system(origin.pid)
    t0 = time.monotonic()
    await asyncio.sleep(window)
    u1, y1 = cpu_user_system(origin.pid)
    dt = time.monotonic() - t0
    s1 = await origin.stats()
    keyframes.append(s1["keyframes_received"] - s0["keyframes_received"])
    frames = s1["frames_received"] - s0["frames_received"]
    out = s1["frames_forwarded"] - s0["frames_forwarded"]
    fed.append(round(out / frames, 1) if frames else 0.0)
    return at_fps((u1 - u0) / dt, frames, dt), at_fps((y1 - y0) / dt, frames, dt)


def paired(
    added: tuple[float, float], before: tuple[float, float], after: tuple[float, float]
) -> tuple[float, float]:
    """Per added leg or viewer (two were added): the window minus its neighbours' mean."""
    return (
        (added[0] - (before[0] + after[0]) / 2) / 2,
        (added[1] - (before[1] + after[1]) / 2) / 2,
    )


def median(values: list[float]) -> float | None:
    return round(statistics.median(values), 4) if values else None


async def run(tmp: Path) -> dict[str, Any]:
    started = Started()
    out: dict[str, Any] = {"profile": PROFILE, "notes": []}
    try:
        seq = await asyncio.to_thread(video.load_or_encode, PROFILE, CACHE)
        seq_path = video.sequence_path(PROFILE, CACHE)
        say(f"sequence {PROFILE}: {seq.width}x{seq.height}")
        origin, edge_b, edge_c = await asyncio.gather(
            *(start_node(started, name, tmp) for name in ("origin", "edge_b", "edge_c"))
        )
        nodes = [origin, edge_b, edge_c]
        pub = await Peer.start(
            started,
            "publisher",
            {"server": "mediarelay", "url": origin.url, "sequence": str(seq_path)},
            tmp / "publisher.log",
            "publisher",
        )
        ready = await pub.event(60)
        if not ready.get("ok"):
            raise RuntimeError(f"publisher: {ready.get('error')}\n{tail(tmp / 'publisher.log')}")
        # One viewer process per node, and two more of the origin, each holding one viewer
        # alone (step 5).
        targets = [(n.url, n.name) for n in nodes] + [(origin.url, f"solo{i}") for i in range(2)]
        *peers, solo0, solo1 = await asyncio.gather(
            *(
                Peer.start(
                    started,
                    "subscribers",
                    {"server": "mediarelay", "url": url},
                    tmp / f"viewers_{name}.log",
                    f"viewers_{name}",
                )
                for url, name in targets
            )
        )
        at_origin, at_b, at_c = (
            Viewers(p, n.name[0] + n.name[-1]) for p, n in zip(peers, nodes, strict=True)
        )
        solo_peers = [solo0, solo1]
        solo = [Viewers(p, f"s{i}") for i, p in enumerate(solo_peers)]

        # 1. A new edge: attach, then its first viewer (side by side with the origin's joins).
        new_edge: list[float] = []
        for _ in range(NEW_EDGE_ROUNDS):
            await asyncio.sleep(ISOLATION_S)
            t0 = time.monotonic()
            await edge_b.apost("/attach", {"origin": origin.url})
            result = await at_b.join()
            new_edge.append(result["t_first_key"] - t0)
            await at_b.leave_all()
            await edge_b.apost("/detach")
        out["join_new_edge_s"] = median(new_edge)
        out["join_new_edge_runs_s"] = [round(x, 3) for x in new_edge]
        say(f"join_new_edge_s {out['join_new_edge_s']} ({out['join_new_edge_runs_s']})")

        # 2. Joins through an edge whose leg is up, beside joins at the origin.
        await edge_b.apost("/attach", {"origin": origin.url})
        via_origin, via_edge = [], []
        for _ in range(JOINS):
            await asyncio.sleep(ISOLATION_S)
            via_origin.append((await at_origin.join())["first_key_s"])
            await asyncio.sleep(ISOLATION_S)
            via_edge.append((await at_b.join())["first_key_s"])
        out["join_origin_s"] = median(via_origin)
        out["join_via_edge_s"] = median(via_edge)
        say(f"join_origin_s {out['join_origin_s']}  join_via_edge_s {out['join_via_edge_s']}")

        # 3. The edge hop: the same frames at an origin viewer and at an edge viewer.
        pair = {"o": at_origin.ids[0], "e": at_b.ids[0]}
        same_process = at_origin.peer is at_b.peer
        if not same_process:
            # Frames are matched by content: both viewers must hash in one process, so a
            # viewer of each node joins in the origin's viewer process too.
            probe = Viewers(at_origin.peer, "hop")
            await probe.join()
            edge_probe_id = "hope"
            reply = await at_origin.peer.ask(
                "join", timeout=40, subs=[{"id": edge_probe_id}], target={"url": edge_b.url}
            )
            if "error" in reply["results"][0]:
                raise RuntimeError(f"hop probe: {reply['results'][0]['error']}")
            pair = {"o": probe.ids[0], "e": edge_probe_id}
        await asyncio.sleep(WARMUP_S)
        await at_origin.peer.ask("record", ids=list(pair.values()))
        await asyncio.sleep(HOP_RECORD_S)
        noted = (await at_origin.peer.ask("arrivals", ids=list(pair.values())))["subs"]
        o_seen, e_seen = noted[pair["o"]], noted[pair["e"]]
        hops = [(e_seen[k] - o_seen[k]) * 1000 for k in e_seen if k in o_seen]
        out["edge_hop_ms"] = median(hops)
        out["edge_hop_frames"] = len(hops)
        out["edge_hop_p90_ms"] = round(sorted(hops)[int(len(hops) * 0.9)], 2) if hops else None
        say(f"edge_hop_ms {out['edge_hop_ms']} over {len(hops)} frames")
        await at_origin.peer.ask("leave", ids=list(pair.values()))
        await at_origin.leave_all()
        await at_b.leave_all()
        await edge_b.apost("/detach")

        # 4. The origin's marginal CPU per local viewer.
        points: list[tuple[float, float]] = []
        raw_points: list[tuple[float, float]] = []
        for n in RAMP:
            while len(at_origin.ids) < n:
                await at_origin.join()
            await asyncio.sleep(WARMUP_S)
            cpu = await node_cpu_per_s(nodes, WINDOW_S)
            low = await fps([at_origin]) if n else None
            points.append((n, cpu["origin"]))
            raw_points.append((n, round(cpu["origin_raw"], 4)))
            say(
                f"origin N={n:2d}: {cpu['origin']:.4f} CPU-s/s at {video.FPS} fps "
                f"(raw {cpu['origin_raw']:.4f})  min fps {low}  machine "
                f"{cpu['machine_busy_cores']:.2f} cores"
            )
        line = fit(points)
        assert line is not None
        per_viewer = line[1]
        out["origin_viewer_cpu"] = round(per_viewer, 5)
        out["origin_points"] = [(n, round(c, 4)) for n, c in points]
        out["origin_points_raw"] = raw_points

        # 5. What feeding an edge costs the origin, like with like: beside a few local
        # viewers (so the track is already packetized for someone: that cost is the first
        # subscriber's, not a leg's), in turn, two legs (each to an edge process with one viewer
        # of its own) and two more viewers each in a process of its own (the same loopback work
        # for the kernel as a leg: a packet wakes an otherwise idle receiving process), each
        # window paired with the windows without either just before and after it. A round
        # counts only if the origin fed the subscribers it should have in all three windows
        # (on a saturated machine a starved viewer process stops being fed).
        # Fresh ones: on a saturated machine the 12 of step 4 may have lost their connections.
        await at_origin.leave_all()
        for _ in range(LEG_BASE_VIEWERS):
            await at_origin.join()
        await asyncio.sleep(WARMUP_S)
        base: list[tuple[float, float]] = []  # (user, system) CPU-s/s of the origin
        legs: list[tuple[float, float]] = []
        solos: list[tuple[float, float]] = []
        keys: dict[str, list[int]] = {"base": [], "legs": [], "solo": []}
        fed: dict[str, list[float]] = {"base": [], "legs": [], "solo": []}
        base.append(await origin_split(origin, WINDOW_S, keys["base"], fed["base"]))
        for _ in range(LEG_ROUNDS):
            await asyncio.gather(
                *(e.apost("/attach", {"origin": origin.url}) for e in (edge_b, edge_c))
            )
            # Legs carry frames before they are counted (each edge's first viewer's keyframe).
            await asyncio.gather(at_b.join(), at_c.join())
            await asyncio.sleep(WARMUP_S)
            legs.append(await origin_split(origin, WINDOW_S, keys["legs"], fed["legs"]))
            await asyncio.gather(at_b.leave_all(), at_c.leave_all())
            await asyncio.gather(*(e.apost("/detach") for e in (edge_b, edge_c)))
            await asyncio.sleep(WARMUP_S)
            base.append(await origin_split(origin, WINDOW_S, keys["base"], fed["base"]))
            await asyncio.gather(*(v.join() for v in solo))
            await asyncio.sleep(WARMUP_S)
            solos.append(await origin_split(origin, WINDOW_S, keys["solo"], fed["solo"]))
            await asyncio.gather(*(v.leave_all() for v in solo))
            await asyncio.sleep(WARMUP_S)
            base.append(await origin_split(origin, WINDOW_S, keys["base"], fed["base"]))
        # Each added window minus the mean of the windows around it, halved (two of each).
        leg_d = [paired(legs[i], base[2 * i], base[2 * i + 1]) for i in range(LEG_ROUNDS)]
        solo_d = [paired(solos[i], base[2 * i + 1], base[2 * i + 2]) for i in range(LEG_ROUNDS)]
        fed_ok = [
            all(abs(b - LEG_BASE_VIEWERS) < 0.5 for b in fed["base"][2 * i : 2 * i + 3])
            and abs(fed["legs"][i] - LEG_BASE_VIEWERS - 2) < 0.5
            and abs(fed["solo"][i] - LEG_BASE_VIEWERS - 2) < 0.5
            for i in range(LEG_ROUNDS)
        ]
        if not any(fed_ok):
            out["notes"].append("no round fed every subscriber: leg figures from all rounds")
            fed_ok = [True] * LEG_ROUNDS
        elif not all(fed_ok):
            out["notes"].append(f"leg rounds left out (a subscriber not fed): {fed_ok}")
        leg_d = [d for d, ok in zip(leg_d, fed_ok, strict=True) if ok]
        solo_d = [d for d, ok in zip(solo_d, fed_ok, strict=True) if ok]
        leg = statistics.median(sum(d) for d in leg_d)
        solo_cpu = statistics.median(sum(d) for d in solo_d)
        out["edge_leg_cpu"] = round(leg, 5)
        out["solo_viewer_cpu"] = round(solo_cpu, 5)
        out["edge_leg_cpu_user_system"] = [
            round(statistics.median(d[k] for d in leg_d), 5) for k in (0, 1)
        ]
        out["solo_viewer_cpu_user_system"] = [
            round(statistics.median(d[k] for d in solo_d), 5) for k in (0, 1)
        ]
        out["edge_leg_rounds"] = [round(sum(d), 5) for d in leg_d]
        out["solo_viewer_rounds"] = [round(sum(d), 5) for d in solo_d]
        out["origin_keyframes_per_window"] = keys
        out["origin_subscribers_fed_per_window"] = fed
        out["edge_leg_cost_ratio"] = round(leg / per_viewer, 3) if per_viewer > 0 else None
        out["edge_leg_vs_solo_viewer"] = round(leg / solo_cpu, 3) if solo_cpu > 0 else None
        say(
            f"origin base {[round(sum(b), 4) for b in base]}, +2 legs "
            f"{[round(sum(x), 4) for x in legs]}, +2 solo viewers "
            f"{[round(sum(x), 4) for x in solos]}: one leg {leg:.5f} CPU-s/s = "
            f"{out['edge_leg_cost_ratio']} x the slope, {out['edge_leg_vs_solo_viewer']} x "
            f"a viewer in its own process ({solo_cpu:.5f}); keyframes at the origin per "
            f"window {keys}, subscribers fed {fed}"
        )
        await at_origin.leave_all()

        # 6. An edge's marginal CPU per viewer (its leg up, the origin with no local viewer).
        await edge_b.apost("/attach", {"origin": origin.url})
        edge_points: list[tuple[float, float]] = []
        edge_raw: list[tuple[float, float]] = []
        for n in RAMP:
            while len(at_b.ids) < n:
                await at_b.join()
            await asyncio.sleep(WARMUP_S)
            cpu = await node_cpu_per_s(nodes, WINDOW_S)
            low = await fps([at_b]) if n else None
            edge_points.append((n, cpu["edge_b"]))
            edge_raw.append((n, round(cpu["edge_b_raw"], 4)))
            say(
                f"edge N={n:2d}: {cpu['edge_b']:.4f} CPU-s/s at {video.FPS} fps "
                f"(raw {cpu['edge_b_raw']:.4f})  min fps {low}  machine "
                f"{cpu['machine_busy_cores']:.2f} cores"
            )
        edge_line = fit(edge_points)
        assert edge_line is not None
        out["edge_viewer_cpu"] = round(edge_line[1], 5)
        out["edge_points"] = [(n, round(c, 4)) for n, c in edge_points]
        out["edge_points_raw"] = edge_raw
        out["edge_viewer_cost_ratio"] = (
            round(edge_line[1] / per_viewer, 3) if per_viewer > 0 else None
        )
        await at_b.leave_all()
        await edge_b.apost("/detach")
        for p in (*peers, *solo_peers):
            await p.stop(started)
        await pub.stop(started)
    finally:
        started.stop_all()
    out["load_average"] = [round(x, 2) for x in os.getloadavg()]
    for key in ("edge_leg_cost_ratio", "edge_leg_vs_solo_viewer", "edge_viewer_cost_ratio"):
        if out.get(key) is not None and out[key] <= 0:
            # A cost cannot be negative: the machine's other work swamped the difference.
            out["notes"].append(f"{key} {out[key]} is noise (other load); not a figure")
            out[key] = None
    out["targets"] = {
        key: (
            None
            if out.get(key) is None
            else (out[key] <= limit if op == "<=" else out[key] < limit)
        )
        for key, (op, limit) in TARGETS.items()
    }
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-cascade-") as tmp:
        out = asyncio.run(run(Path(tmp)))
    keys = [
        "edge_leg_cost_ratio",
        "edge_leg_vs_solo_viewer",
        "join_via_edge_s",
        "join_new_edge_s",
        "edge_viewer_cost_ratio",
        "edge_hop_ms",
    ]
    say("  ".join(f"{k} {out.get(k)}" for k in keys))
    print(json.dumps(out), flush=True)


if __name__ == "__main__":
    main()
