"""A Chromium camera in three layers into Homeroom and into Janus VideoRoom, measured in pairs.

Run by ``python -m bench.sfu_layers`` (part ``vs_janus``) inside a network namespace with only
``lo`` (``tests.chromium.run_in_loopback_namespace``): Chromium, both servers and the viewers
meet on 127.0.0.1 only. One Chromium with two pages (tests/live/pages/live.html) publishes its
fake camera (640x480, 15 fps) in three layers of 100/300/800 kbit/s:

* into **Homeroom** (``homeroom serve`` with the test page, bench/sfu/homeroom_page_server.py)
  the web app's way, three m-lines with ``rtc.publish`` ``layers`` (``hr.publish(true)``);
  viewers are given a layer by Homeroom's own selection (on loopback they climb to the top);
* into **Janus** 1.1 VideoRoom (bench/sfu/janus_room.py) as RID simulcast over Janus's HTTP API
  (``hr.publishJanus``); viewers subscribe to the top substream (``substream`` 2).

Both servers run **at the same time**, so every CPU window is taken over the same seconds for
both (the same load from the rest of the machine: earlier versions measured one server after
the other and fitted slopes over steps; single runs' ratios went from 0.10 to 2.99). Each
server has ``BASE`` viewers throughout; then ``CYCLES`` times: a window with the base viewers
only, ``EXTRA`` more viewers join each server (at once), Homeroom's climb to the top layer,
a window with all, the extra viewers leave. Per cycle and server the marginal CPU per viewer is
(loaded - base) / ``EXTRA`` (CPU from the scheduler's nanoseconds per thread) and per forwarded
RTP packet (loaded - base) / (the packets per second the extra viewers received, from their
own counters); the ratios Homeroom / Janus of
one cycle compare the same seconds. Reported: the median of the per-cycle ratios and their
spread, the packets per second per viewer of both (video and audio), each cycle's Homeroom
layers (``like_for_like``: every viewer on the top layer at both ends of the window), and,
to show what pairing removes, the ratios of windows from different cycles (``unpaired``).
Prints ``RESULT <json>`` last.

Options: ``--udp-mux`` (Homeroom's media on one UDP port, ``media_udp_port``); ``--against DIR``
(instead of Janus, a second Homeroom running the code of the checkout DIR, named ``base`` in
the result: a change measured as a paired ratio, this code's / DIR's, in the same seconds);
``LAYERS_PROFILE_DIR`` / ``LAYERS_PROFILE_TOOLS`` in the environment profile every window
(below).
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import os
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import web
from playwright.async_api import Page, async_playwright

BENCH = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(BENCH))

import sfu_fanout as fanout  # noqa: E402

from tests.chromium import CHROMIUM_ARGS, MEDIA_ARGS, launch_chromium, report_result  # noqa: E402
from tests.live.chromium_scenario import add_test_page  # noqa: E402

BASE = 1  # viewers of each server throughout (the per-track costs are paid in both windows)
EXTRA = 8  # viewers that join and leave each server per cycle
CYCLES = 8
CLIMB_TIMEOUT_S = 30.0  # Homeroom's new viewers start on layer 0 and climb one layer a probe
SETTLE_S = 2.0  # after the climb (or the leave), before a window
WINDOW_S = 12.0
PUBLISH_SETTLE_S = 5.0  # the publisher's encoders reach their layers' rates (transport-cc)
WORKERS_PER_SERVER = 2  # viewer processes per server
TOP_SUBSTREAM = 2
LAUNCHER = [str(BENCH / "sfu" / "homeroom_page_server.py")]
# ``--against DIR``: instead of Janus, a second Homeroom from another checkout of the code (its
# own bench/sfu/homeroom_page_server.py puts DIR first on its path), measured the same way, in
# the same seconds: a change's effect as a paired ratio (this code's / DIR's), named "base".
AGAINST: Path | None = None
OTHER = "janus"
UDP_MUX = False  # --udp-mux: Homeroom's media on one UDP port (media_udp_port)
# libwebrtc sends fewer RID layers than asked below 960x540 (two at 640x480: the quarter-size
# one stays off); this field trial lifts that limit, so Janus gets three layers as Homeroom
# does (its layers are separate m-lines, never limited).
FLAGS = [
    *CHROMIUM_ARGS,
    *MEDIA_ARGS,
    "--disable-background-timer-throttling",
    "--force-fieldtrials=WebRTC-LegacySimulcastLayerLimit/Disabled/",
]


async def publisher_layers(page: Page) -> dict[str, Any]:
    """The page's video encodings now (size, frame rate, target, bytes sent), its estimate of
    the link to the server, and the worst loss and RTT the server's receiver reports say."""
    leg = (await page.evaluate("() => hr.stats()"))["publish"] or {}
    layers = [
        {k: o.get(k) for k in ("rid", "mid", "width", "fps", "targetBitrate", "bytesSent")}
        for o in leg.get("outbound", [])
        if o["kind"] == "video"
    ]
    remote = leg.get("remote") or []
    return {
        "layers": sorted(layers, key=lambda o: o["width"] or 0),
        "available": (leg.get("pair") or {}).get("available"),
        "max_fraction_lost": max((r["fractionLost"] or 0 for r in remote), default=None),
        "max_rtt": max((r["rtt"] or 0 for r in remote), default=None),
    }


async def viewer_layers(server: fanout.Server, target: dict[str, Any]) -> dict[str, int] | None:
    """Homeroom: how many viewers receive each layer now (the host's stats; -1: paused)."""
    if server.name != "homeroom":
        return None  # Janus: every viewer asked for the top substream
    url = f"{server.url}/api/v1/sessions/{target['session_id']}/stats"
    headers = {"Authorization": f"Bearer {server.publisher_cfg['token']}"}
    async with (
        aiohttp.ClientSession() as http,
        http.get(url, headers=headers) as resp,
    ):
        stats = await resp.json()
    counts: dict[str, int] = {}
    # The legs that exist now (the tracks' counters keep viewers that left).
    for legs in stats.get("links", {}).values():
        for layer in ((legs.get("subscribe") or {}).get("layers") or {}).values():
            counts[str(layer)] = counts.get(str(layer), 0) + 1
    return counts


async def publish_homeroom(page: Page, server: fanout.Server) -> dict[str, Any]:
    await page.goto(server.url + "/test/live.html")
    await page.evaluate("(t) => { hr.token = t; }", server.publisher_cfg["token"])
    await page.evaluate("() => hr.connect()")
    started = await page.evaluate(
        "(p) => hr.request('session.start', p)",
        {"class_id": server.publisher_cfg["class_id"], "kind": "lesson", "title": "Layers"},
    )
    sid = started["session"]["id"]
    await page.evaluate("(s) => hr.join(s)", sid)
    ack = await page.evaluate("() => hr.publish(true)")
    assert not ack["rejected"], ack
    return {"server": "homeroom", "url": server.url, "session_id": sid}


async def publish_janus(page: Page, server: fanout.Server, page_url: str) -> dict[str, Any]:
    await page.goto(page_url)
    ready = await page.evaluate(
        "([u, r]) => hr.publishJanus(u, r)", [server.url, fanout.janus_room.ROOM]
    )
    return {
        "server": "janus",
        "url": server.url,
        "feed": ready["feed"],
        "substream": TOP_SUBSTREAM,
    }


class Side:
    """One server, its publisher page and its viewers (base ones and this cycle's extra)."""

    def __init__(self, name: str, server: fanout.Server, page: Page, target: dict[str, Any]):
        self.name = name
        self.server = server
        self.page = page
        self.target = target
        self.workers: list[fanout.Peer] = []
        self.joined = 0
        self.extra: dict[int, list[str]] = {}  # worker index -> ids of this cycle's extra

    async def start_workers(self, started: fanout.Started, tmp: Path) -> None:
        for i in range(WORKERS_PER_SERVER):
            log = tmp / f"{self.name}-viewers{i}.log"
            peer = await fanout.Peer.start(
                started, "subscribers", self.target, log, f"{self.name}-viewers{i}"
            )
            self.workers.append(peer)

    async def join(self, count: int, extra: bool) -> None:
        """``count`` viewers join at once, spread over the worker processes."""
        batches: dict[int, list[dict[str, Any]]] = {}
        for _ in range(count):
            sub_id = f"s{self.joined}"
            w = self.joined % len(self.workers)
            batches.setdefault(w, []).append(
                {"id": sub_id, "token": self.server.tokens.get(sub_id)}
            )
            if extra:
                self.extra.setdefault(w, []).append(sub_id)
            self.joined += 1
        replies = await asyncio.gather(
            *(self.workers[w].ask("join", timeout=60, subs=subs) for w, subs in batches.items())
        )
        for reply in replies:
            for r in reply["results"]:
                if "error" in r:
                    raise RuntimeError(f"{self.name} join {r['id']}: {r['error']}")

    async def leave_extra(self) -> None:
        await asyncio.gather(
            *(self.workers[w].ask("leave", timeout=60, ids=ids) for w, ids in self.extra.items())
        )
        self.extra = {}

    def extra_ids(self) -> set[str]:
        return {i for ids in self.extra.values() for i in ids}

    async def packets(self) -> dict[str, tuple[float, list[int]]]:
        """Viewer id -> (when, [video packets, audio packets, frames, bytes]) now."""
        replies = await asyncio.gather(*(w.ask("packets", timeout=30) for w in self.workers))
        return {i: (r["now"], c) for r in replies for i, c in r["subs"].items()}

    async def layers(self) -> dict[str, int] | None:
        return await viewer_layers(self.server, self.target)


def thread_cpu_ns(pid: int) -> dict[int, int]:
    """Thread id -> nanoseconds on a CPU (``/proc/PID/task/TID/schedstat``, the scheduler's
    own clock: no 10 ms ticks, which at ~0.015 CPU-s/s over a window would be +-10 %)."""
    out: dict[int, int] = {}
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            out[int(task.name)] = int((task / "schedstat").read_text().split()[0])
        except (OSError, ValueError, IndexError):
            continue  # the thread ended meanwhile
    return out


def cpu_between(before: dict[int, int], after: dict[int, int]) -> float:
    """CPU seconds of the threads between two readings (a thread new since: all of its)."""
    return sum(ns - before.get(tid, 0) for tid, ns in after.items()) / 1e9


# A directory: every window is also profiled (CPU figures of such a run are not comparable):
# py-spy on Homeroom's server (--nonblocking: the stops of --native land in system calls; raw
# stacks, for a diff of the window with one viewer against the one with all), ``perf trace -s``
# (syscalls per thread) and ``perf record`` (CPU samples by function, the kernel's too) on both
# servers. LAYERS_PROFILE_TOOLS picks among "spy,trace,perf" (default: all; each one's own
# overhead shows in the others': py-spy's reads and perf trace's tracepoints: one at a time).
PROFILE_DIR = os.environ.get("LAYERS_PROFILE_DIR")
PROFILE_TOOLS = set(os.environ.get("LAYERS_PROFILE_TOOLS", "spy,trace,perf").split(","))
PY_SPY = str(Path(sys.executable).with_name("py-spy"))


async def profilers(sides: list[Side], label: str) -> list[asyncio.subprocess.Process]:
    if not PROFILE_DIR:
        return []
    out = Path(PROFILE_DIR)
    os.makedirs(out, exist_ok=True)
    procs = []
    for side in sides:
        pid = str(side.server.pid)
        if "trace" in PROFILE_TOOLS:
            perf = ["timeout", "-s", "INT", str(WINDOW_S), "perf", "trace", "-s", "-p", pid]
            perf += ["-o", str(out / f"{label}-{side.name}-syscalls.txt")]
            procs.append(await asyncio.create_subprocess_exec(*perf))
        if "perf" in PROFILE_TOOLS:
            record = ["perf", "record", "-e", "cpu-clock", "-F", "999", "-q", "-p", pid]
            record += ["-o", str(out / f"{label}-{side.name}-perf.data")]
            record += ["--", "sleep", str(WINDOW_S)]
            procs.append(
                await asyncio.create_subprocess_exec(
                    *record, stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL
                )
            )
        if side.name == "homeroom" and "spy" in PROFILE_TOOLS:
            spy = [PY_SPY, "record", "--nonblocking", "--format", "raw", "-r", "200"]
            spy += ["-d", str(int(WINDOW_S)), "-p", pid, "-o", str(out / f"{label}-py-spy.txt")]
            procs.append(
                await asyncio.create_subprocess_exec(
                    *spy, stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL
                )
            )
    return procs


async def window(sides: list[Side], label: str = "") -> dict[str, dict[str, Any]]:
    """One CPU window over the same seconds for every server, with what their viewers got."""
    before = await asyncio.gather(*(s.packets() for s in sides))
    layers0 = await asyncio.gather(*(s.layers() for s in sides))
    profiling = await profilers(sides, label)
    c0 = [thread_cpu_ns(s.server.pid) for s in sides]
    (b0, t0), m0 = fanout.machine_busy(), time.monotonic()
    await asyncio.sleep(WINDOW_S)
    for proc in profiling:
        await proc.wait()
    c1 = [thread_cpu_ns(s.server.pid) for s in sides]
    (b1, t1), dt = fanout.machine_busy(), time.monotonic() - m0
    after = await asyncio.gather(*(s.packets() for s in sides))
    layers1 = await asyncio.gather(*(s.layers() for s in sides))
    out: dict[str, dict[str, Any]] = {}
    for k, side in enumerate(sides):
        viewers: dict[str, dict[str, float]] = {}
        for sub_id, (when1, n1) in after[k].items():
            if sub_id not in before[k]:
                continue
            when0, n0 = before[k][sub_id]
            span = max(when1 - when0, 1e-6)
            viewers[sub_id] = {
                "video_pps": (n1[0] - n0[0]) / span,
                "audio_pps": (n1[1] - n0[1]) / span,
                "fps": (n1[2] - n0[2]) / span,
                "kbit_s": (n1[3] - n0[3]) * 8 / span / 1000,
            }
        out[side.name] = {
            "cpu_s_per_s": cpu_between(c0[k], c1[k]) / dt,
            "viewers": viewers,
            "layers": [layers0[k], layers1[k]],
        }
    machine = round((b1 - b0) / (t1 - t0) * 2, 2)
    for w in out.values():
        w["machine_busy_cores"] = machine
    return out


def summarize_viewers(viewers: dict[str, dict[str, float]], ids: set[str]) -> dict[str, Any]:
    chosen = [v for i, v in viewers.items() if i in ids]
    if not chosen:
        return {"n": 0}
    return {
        "n": len(chosen),
        "pps": round(sum(v["video_pps"] + v["audio_pps"] for v in chosen), 1),
        "video_pps_per_viewer": round(statistics.median(v["video_pps"] for v in chosen), 1),
        "audio_pps_per_viewer": round(statistics.median(v["audio_pps"] for v in chosen), 1),
        "median_fps": round(statistics.median(v["fps"] for v in chosen), 1),
        "min_fps": round(min(v["fps"] for v in chosen), 1),
        "median_kbit_s": round(statistics.median(v["kbit_s"] for v in chosen)),
    }


async def climbed(side: Side, total: int) -> float | None:
    """Seconds until every Homeroom viewer receives the top layer (None: not within the time)."""
    if side.server.name != "homeroom":
        return 0.0  # Janus: every viewer asked for the top substream
    start = time.monotonic()
    while time.monotonic() - start < CLIMB_TIMEOUT_S:
        if await side.layers() == {"2": total}:
            return time.monotonic() - start
        await asyncio.sleep(1.0)
    return None


def spread(values: list[float]) -> dict[str, Any]:
    if not values:
        return {"n": 0, "median": None}
    qs = statistics.quantiles(values, n=4) if len(values) >= 2 else [values[0]] * 3
    return {
        "n": len(values),
        "median": round(statistics.median(values), 3),
        "min": round(min(values), 3),
        "max": round(max(values), 3),
        "q1": round(qs[0], 3),
        "q3": round(qs[2], 3),
    }


def mux_port() -> int:
    return fanout.free_udp_port() if UDP_MUX else 0


async def run(tmp: Path, result: dict[str, Any]) -> None:
    started = fanout.Started()
    # The page for Janus comes from here (Janus serves no pages); Homeroom serves its own.
    app = web.Application()
    add_test_page(app)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    port = fanout.free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    sides: list[Side] = []
    cycles: list[dict[str, Any]] = []
    result["cycles"] = cycles
    result["design"] = {
        "base_viewers": BASE,
        "extra_viewers": EXTRA,
        "cycles": CYCLES,
        "window_s": WINDOW_S,
        "other": OTHER,
        "udp_mux": UDP_MUX,
    }
    try:
        async with async_playwright() as pw:
            context = await launch_chromium(pw, tmp / "chromium-profile", FLAGS)
            try:
                (tmp / "homeroom").mkdir()
                (tmp / OTHER).mkdir()
                seq = tmp / "unused.seq"
                homeroom = await fanout.start_homeroom(
                    started, tmp / "homeroom", seq, mux_port(), launcher=LAUNCHER
                )
                hpage, jpage = await context.new_page(), await context.new_page()
                if AGAINST is not None:
                    other_launcher = [str(AGAINST / "bench" / "sfu" / "homeroom_page_server.py")]
                    janus = await fanout.start_homeroom(
                        started, tmp / OTHER, seq, mux_port(), launcher=other_launcher
                    )
                else:
                    binary, shim = fanout.prepare_janus(tmp / "janus", tmp / "janus" / "apt.log")
                    janus = await fanout.start_janus(started, tmp / "janus", seq, binary, shim)
                htarget = await publish_homeroom(hpage, homeroom)
                if AGAINST is not None:
                    jtarget = await publish_homeroom(jpage, janus)
                else:
                    jtarget = await publish_janus(
                        jpage, janus, f"http://127.0.0.1:{port}/test/live.html"
                    )
                await asyncio.sleep(PUBLISH_SETTLE_S)
                sides = [
                    Side("homeroom", homeroom, hpage, htarget),
                    Side(OTHER, janus, jpage, jtarget),
                ]
                for side in sides:
                    await side.start_workers(started, tmp / side.name)
                await asyncio.gather(*(side.join(BASE, extra=False) for side in sides))
                result["publisher_before"] = {s.name: await publisher_layers(s.page) for s in sides}
                for r in range(CYCLES):
                    await asyncio.gather(*(climbed(side, BASE) for side in sides))
                    await asyncio.sleep(SETTLE_S)
                    base = await window(sides, f"c{r}-base")
                    await asyncio.gather(*(side.join(EXTRA, extra=True) for side in sides))
                    climb, *_ = await asyncio.gather(
                        *(climbed(side, BASE + EXTRA) for side in sides)
                    )
                    await asyncio.sleep(SETTLE_S)
                    loaded = await window(sides, f"c{r}-loaded")
                    cycle: dict[str, Any] = {"cycle": r, "climb_s": climb}
                    for side in sides:
                        b, lo = base[side.name], loaded[side.name]
                        extra_ids = side.extra_ids()
                        extra = summarize_viewers(lo["viewers"], extra_ids)
                        delta = lo["cpu_s_per_s"] - b["cpu_s_per_s"]
                        cycle[side.name] = {
                            "base_cpu": round(b["cpu_s_per_s"], 4),
                            "loaded_cpu": round(lo["cpu_s_per_s"], 4),
                            "per_viewer": round(delta / EXTRA, 5),
                            "per_kpacket": round(delta / extra["pps"] * 1000, 5)
                            if extra.get("pps")
                            else None,
                            "extra": extra,
                            "base_viewers": summarize_viewers(
                                b["viewers"], set(b["viewers"]) - extra_ids
                            ),
                            "layers": lo["layers"] if side.server.name == "homeroom" else None,
                            "publisher": await publisher_layers(side.page),
                        }
                    cycle["loadavg"] = round(os.getloadavg()[0], 1)
                    cycle["machine_busy_cores"] = [
                        base["homeroom"]["machine_busy_cores"],
                        loaded["homeroom"]["machine_busy_cores"],
                    ]
                    top = {"2": BASE + EXTRA}
                    cycle["like_for_like"] = all(
                        loaded[side.name]["layers"] in ([top, top], [None, None]) for side in sides
                    )
                    fanout.say(f"cycle {r}: {cycle}")
                    cycles.append(cycle)
                    await asyncio.gather(*(side.leave_extra() for side in sides))
            finally:
                for side in sides:
                    for w in side.workers:
                        await w.stop(started)
                await context.close()
    finally:
        started.stop_all()
        await runner.cleanup()
    result.update(analyse(cycles))
    result["ok"] = True


def analyse(cycles: list[dict[str, Any]]) -> dict[str, Any]:
    """Median ratios of the same windows, their spread; the same from unpaired windows."""

    def ratios(key: str, only_like: bool) -> list[float]:
        out = []
        for c in cycles:
            hr, jn = c["homeroom"][key], c[OTHER][key]
            if (c["like_for_like"] or not only_like) and hr is not None and jn and jn > 0:
                out.append(hr / jn)
        return out

    def unpaired(key: str) -> list[float]:
        out = []
        for a, b in itertools.permutations(cycles, 2):
            hr, jn = a["homeroom"][key], b[OTHER][key]
            if a["like_for_like"] and b["like_for_like"] and hr is not None and jn and jn > 0:
                out.append(hr / jn)
        return out

    def median_of(name: str, key: str, sub: str | None = None) -> float | None:
        values = [
            (c[name][key] if sub is None else c[name][key].get(sub))
            for c in cycles
            if c["like_for_like"]
        ]
        values = [v for v in values if v is not None]
        return round(statistics.median(values), 5) if values else None

    per_packet = spread(ratios("per_kpacket", True))
    per_viewer = spread(ratios("per_viewer", True))
    return {
        "layers_cpu_ratio_vs_janus": per_packet["median"],
        "layers_cpu_ratio_vs_janus_per_viewer": per_viewer["median"],
        "ratio_per_packet": per_packet,
        "ratio_per_viewer": per_viewer,
        "ratio_per_packet_all_cycles": spread(ratios("per_kpacket", False)),
        "ratio_per_viewer_all_cycles": spread(ratios("per_viewer", False)),
        "unpaired_ratio_per_viewer": spread(unpaired("per_viewer")),
        "like_for_like_cycles": sum(1 for c in cycles if c["like_for_like"]),
        **{
            name: {
                "marginal_cpu_per_viewer": median_of(name, "per_viewer"),
                "cpu_s_per_kpacket": median_of(name, "per_kpacket"),
                "video_pps_per_viewer": median_of(name, "extra", "video_pps_per_viewer"),
                "audio_pps_per_viewer": median_of(name, "extra", "audio_pps_per_viewer"),
                "kbit_s_per_viewer": median_of(name, "extra", "median_kbit_s"),
                "fps_per_viewer": median_of(name, "extra", "median_fps"),
            }
            for name in ("homeroom", OTHER)
        },
    }


async def main() -> int:
    global AGAINST, CYCLES, EXTRA, OTHER, UDP_MUX
    parser = argparse.ArgumentParser()
    parser.add_argument("--cycles", type=int, default=CYCLES)
    parser.add_argument("--extra", type=int, default=EXTRA)
    parser.add_argument("--against", type=Path, default=None)
    parser.add_argument("--udp-mux", action="store_true")
    args = parser.parse_args()
    CYCLES, EXTRA, UDP_MUX = args.cycles, args.extra, args.udp_mux
    if args.against is not None:
        AGAINST, OTHER = args.against.resolve(), "base"
    return await report_result(run, "homeroom-layers-vs-janus-", 120 + 75 * CYCLES)


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
