"""Janus VideoRoom as the C baseline: install, configure and start it on 127.0.0.1, and talk to it.

Janus 1.1 skips loopback interfaces whatever its configuration says; it offers 127.0.0.1 only
with ``ice_enforce_list = "lo"`` plus an ``LD_PRELOAD`` shim around ``getifaddrs()`` that clears
``IFF_LOOPBACK`` (built here with gcc; see /work/shared/MACHINE-NOTES.md). Only the VideoRoom
plugin and the HTTP transport are loaded (their folders hold links to those two libraries
alone), the HTTP API listens on 127.0.0.1, and the room forwards VP8 with no bitrate cap and no
periodic keyframe requests (Homeroom sends none either).

The client half (:class:`JanusSession`) is the HTTP API with one long poll per session, as
janus.js does it; a subscriber must join only after the publisher's ``webrtcup``.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import secrets
import shutil
import subprocess
from pathlib import Path
from typing import Any

import aiohttp

ROOM = 1234
LIB_DIR = Path("/usr/lib/x86_64-linux-gnu/janus")

SHIM_C = r"""
#define _GNU_SOURCE
#include <dlfcn.h>
#include <ifaddrs.h>
#include <net/if.h>

/* Janus skips interfaces flagged IFF_LOOPBACK: hide the flag so "lo" can be enforced. */
int getifaddrs(struct ifaddrs **ifap) {
    static int (*real)(struct ifaddrs **) = 0;
    if (!real) real = (int (*)(struct ifaddrs **))dlsym(RTLD_NEXT, "getifaddrs");
    int rc = real(ifap);
    if (rc == 0)
        for (struct ifaddrs *i = *ifap; i; i = i->ifa_next) i->ifa_flags &= ~IFF_LOOPBACK;
    return rc;
}
"""


def janus_binary() -> str | None:
    return shutil.which("janus") or ("/usr/bin/janus" if Path("/usr/bin/janus").exists() else None)


def ensure_installed(log: Path) -> str:
    """The janus binary; installs Debian's package (apt-get update once, then install) if absent."""
    found = janus_binary()
    if found and (LIB_DIR / "plugins" / "libjanus_videoroom.so").exists():
        return found
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    with open(log, "ab") as fh:
        subprocess.run(
            ["apt-get", "update"],
            stdout=fh,
            stderr=subprocess.STDOUT,
            check=True,
            env=env,
            timeout=240,
        )
        subprocess.run(
            ["apt-get", "install", "-y", "janus"],
            stdout=fh,
            stderr=subprocess.STDOUT,
            check=True,
            env=env,
            timeout=300,
        )
    found = janus_binary()
    if not found:
        raise RuntimeError(f"janus is still missing after apt-get install (see {log})")
    return found


def build_shim(workdir: Path) -> Path:
    gcc = shutil.which("gcc") or shutil.which("cc")
    if gcc is None:
        raise RuntimeError("gcc is needed to build the getifaddrs shim for Janus on loopback")
    src = workdir / "loopback_shim.c"
    out = workdir / "loopback_shim.so"
    src.write_text(SHIM_C)
    subprocess.run(
        [gcc, "-shared", "-fPIC", "-O2", "-o", str(out), str(src), "-ldl"],
        check=True,
        capture_output=True,
        timeout=60,
    )
    return out


def write_config(workdir: Path, http_port: int) -> Path:
    """A config folder with only the VideoRoom plugin and the HTTP transport on 127.0.0.1."""
    conf = workdir / "conf"
    plugins = workdir / "plugins"
    transports = workdir / "transports"
    empty = workdir / "empty"
    for d in (conf, plugins, transports, empty):
        d.mkdir(parents=True, exist_ok=True)
    (plugins / "libjanus_videoroom.so").symlink_to(LIB_DIR / "plugins" / "libjanus_videoroom.so")
    (transports / "libjanus_http.so").symlink_to(LIB_DIR / "transports" / "libjanus_http.so")
    (conf / "janus.jcfg").write_text(
        f"""general: {{
    configs_folder = "{conf}"
    plugins_folder = "{plugins}"
    transports_folder = "{transports}"
    events_folder = "{empty}"
    loggers_folder = "{empty}"
    debug_level = 3
    admin_secret = "{secrets.token_hex(8)}"
    session_timeout = 0
    protected_folders = []
}}
certificates: {{
}}
media: {{
}}
nat: {{
    nice_debug = false
    ice_enforce_list = "lo"
}}
plugins: {{
}}
transports: {{
}}
loggers: {{
}}
events: {{
    broadcast = false
}}
"""
    )
    (conf / "janus.transport.http.jcfg").write_text(
        f"""general: {{
    json = "plain"
    base_path = "/janus"
    http = true
    port = {http_port}
    ip = "127.0.0.1"
    https = false
}}
admin: {{
    admin_http = false
    admin_https = false
}}
cors: {{
}}
"""
    )
    (conf / "janus.plugin.videoroom.jcfg").write_text(
        f"""general: {{
}}
room-{ROOM}: {{
    description = "Homeroom bench"
    publishers = 1
    bitrate = 0
    fir_freq = 0
    videocodec = "vp8"
    audiocodec = "opus"
    record = false
    notify_joining = false
}}
"""
    )
    return conf


def janus_command(binary: str, conf: Path, log: Path) -> list[str]:
    return [binary, "-F", str(conf), "-C", str(conf / "janus.jcfg"), "-L", str(log), "-N"]


# --- client ----------------------------------------------------------------------------------


class JanusError(RuntimeError):
    pass


class JanusSession:
    """One Janus session over the HTTP API: requests, and a long poll delivering events."""

    def __init__(self, base_url: str, http: aiohttp.ClientSession) -> None:
        self.base_url = base_url.rstrip("/")
        self.http = http
        self.session_id: int | None = None
        self._events: dict[int, asyncio.Queue[dict[str, Any]]] = {}
        self._poll: asyncio.Task[None] | None = None
        self._closed = False

    async def _post(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        body = {**body, "transaction": secrets.token_hex(6)}
        async with self.http.post(self.base_url + path, json=body) as resp:
            data = await resp.json(content_type=None)
        if data.get("janus") == "error":
            raise JanusError(str(data.get("error")))
        return data

    async def create(self) -> None:
        data = await self._post("", {"janus": "create"})
        self.session_id = int(data["data"]["id"])
        self._poll = asyncio.get_running_loop().create_task(self._long_poll())

    async def attach(self, plugin: str = "janus.plugin.videoroom") -> int:
        data = await self._post(f"/{self.session_id}", {"janus": "attach", "plugin": plugin})
        handle = int(data["data"]["id"])
        self._events[handle] = asyncio.Queue()
        return handle

    async def message(
        self, handle: int, body: dict[str, Any], jsep: dict[str, Any] | None = None
    ) -> dict[str, Any]:
        msg: dict[str, Any] = {"janus": "message", "body": body}
        if jsep is not None:
            msg["jsep"] = jsep
        return await self._post(f"/{self.session_id}/{handle}", msg)

    async def trickle_done(self, handle: int) -> None:
        await self._post(
            f"/{self.session_id}/{handle}", {"janus": "trickle", "candidate": {"completed": True}}
        )

    async def event(self, handle: int, want: Any, timeout: float = 15.0) -> dict[str, Any]:
        """The next event on ``handle`` for which ``want(event)`` is true."""
        queue = self._events[handle]
        async with asyncio.timeout(timeout):
            while True:
                ev = await queue.get()
                if ev.get("janus") == "hangup":
                    raise JanusError(f"hangup: {ev.get('reason')}")
                if want(ev):
                    return ev

    async def _long_poll(self) -> None:
        url = f"{self.base_url}/{self.session_id}?maxev=20"
        while not self._closed:
            try:
                async with self.http.get(url) as resp:
                    data = await resp.json(content_type=None)
            except (TimeoutError, aiohttp.ClientError):
                if self._closed:
                    return
                await asyncio.sleep(0.2)
                continue
            for ev in data if isinstance(data, list) else [data]:
                sender = ev.get("sender")
                if sender is not None and int(sender) in self._events:
                    self._events[int(sender)].put_nowait(ev)

    async def destroy(self) -> None:
        self._closed = True
        if self.session_id is not None:
            with contextlib.suppress(Exception):
                await self._post(f"/{self.session_id}", {"janus": "destroy"})
        if self._poll is not None:
            self._poll.cancel()
            with contextlib.suppress(BaseException):
                await self._poll


def plugin_data(ev: dict[str, Any]) -> dict[str, Any]:
    return ev.get("plugindata", {}).get("data", {})
