"""A real nginx in front of real ``homeroom serve`` node processes, for tests and benchmarks.

:class:`Nginx` runs Debian's nginx (``make lb-deps``) in the foreground from a main file of its
own (``nginx -c FILE -p DIR``) that includes the configuration ``homeroom nginx-config`` makes
(realtime/cluster/nginx.py), listening on 127.0.0.1 and a free port; its access log records, for
every request, the node it went to. :func:`start_nodes` starts N node processes on PostgreSQL
and Redis (one configuration each, as on N machines). tests/test_loadbalancer.py uses both;
bench/cluster.py may.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp

from realtime.cluster import nginx
from tests.conftest import TEST_SECRET, free_port
from tests.test_restart import ServerProcess, clean_env, homeroom

# Fields of the access log line (tab-separated): what a test asserts on.
LOG_FIELDS = ("status", "upstream", "method", "uri", "sid")
_LOG_FORMAT = "$status\\t$upstream_addr\\t$request_method\\t$uri\\t$arg_sid"


def nginx_binary() -> str:
    # /usr/sbin is not on every user's PATH.
    found = shutil.which("nginx") or shutil.which("nginx", path="/usr/sbin")
    if not found:
        raise AssertionError("nginx is not installed: `make lb-deps` installs it (Debian's nginx)")
    return found


def main_config(prefix: Path, include: Path) -> str:
    """nginx's main file for a test: foreground, every path under ``prefix``."""
    temp = "\n".join(
        f"    {kind}_temp_path {prefix}/{kind};"
        for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")
    )
    # As root, nginx's workers would run as nobody, who cannot enter pytest's private
    # temporary directories; they stay root (in the test only).
    user = "user root;\n" if os.geteuid() == 0 else ""
    return (
        f"{user}daemon off;\nworker_processes 1;\npid {prefix}/nginx.pid;\n"
        f"error_log {prefix}/error.log warn;\n"
        "events { worker_connections 4096; }\n"
        "http {\n"
        f"    log_format homeroom_test '{_LOG_FORMAT}';\n"
        f"    access_log {prefix}/access.log homeroom_test;\n"
        f"{temp}\n"
        f"    include {include};\n"
        "}\n"
    )


@dataclass
class Nginx:
    """nginx on 127.0.0.1:``port`` in front of ``nodes``, from the generated configuration."""

    prefix: Path
    nodes: list[nginx.Node]
    port: int = field(default_factory=free_port)
    proc: subprocess.Popen[bytes] | None = None
    # A change to the generated configuration (tests that show what a part of it is for).
    edit: Callable[[str], str] | None = None
    # The configuration itself (``homeroom nginx-config``'s output) instead of rendering it.
    site: str | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def write(self) -> Path:
        self.prefix.mkdir(parents=True, exist_ok=True)
        site = self.prefix / "homeroom.conf"
        conf = self.site or nginx.render(self.nodes, listen=f"127.0.0.1:{self.port}")
        site.write_text(self.edit(conf) if self.edit else conf)
        main = self.prefix / "nginx.conf"
        main.write_text(main_config(self.prefix, site))
        return main

    def check(self) -> None:
        """``nginx -t``: the configuration is accepted."""
        out = subprocess.run(
            [nginx_binary(), "-t", "-q", "-p", str(self.prefix), "-c", str(self.write())],
            capture_output=True,
            text=True,
            timeout=30,
        )
        assert out.returncode == 0, out.stderr

    def launch(self) -> None:
        main = self.write()
        with open(self.prefix / "nginx.out", "ab") as log:
            self.proc = subprocess.Popen(
                [nginx_binary(), "-p", str(self.prefix), "-c", str(main)],
                stdout=log,
                stderr=subprocess.STDOUT,
            )

    async def start(self, timeout: float = 20) -> None:
        """Launch it and wait until it accepts connections."""
        self.launch()
        assert self.proc is not None
        deadline = time.monotonic() + timeout
        while True:
            assert self.proc.poll() is None, self.errors()
            try:
                _r, w = await asyncio.open_connection("127.0.0.1", self.port)
                w.close()
                return
            except OSError:
                assert time.monotonic() < deadline, f"nginx did not start: {self.errors()}"
                await asyncio.sleep(0.05)

    def errors(self) -> str:
        return "".join(
            p.read_text()[-3000:]
            for p in (self.prefix / "nginx.out", self.prefix / "error.log")
            if p.exists()
        )

    def requests(self) -> list[dict[str, str]]:
        """Every request nginx has logged so far."""
        path = self.prefix / "access.log"
        if not path.exists():
            return []
        return [
            dict(zip(LOG_FIELDS, line.split("\t"), strict=False))
            for line in path.read_text().splitlines()
            if line
        ]

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGQUIT)  # graceful: finish the requests in flight
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)


def node_config(path: Path, port: int, **values: Any) -> Path:
    """A node's TOML configuration."""
    lines = [
        'host = "127.0.0.1"',
        f"port = {port}",
        f'secret = "{TEST_SECRET}"',
        "media_warm_start = false",
        "shutdown_timeout_s = 3.0",
    ]
    for k, v in values.items():
        lines.append(f'{k} = "{v}"' if isinstance(v, str) else f"{k} = {v}")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines) + "\n")
    return path


async def start_nodes(
    workdir: Path, count: int, *, database_url: str, redis: str, channel: str, **values: Any
) -> list[ServerProcess]:
    """``count`` node processes named ``lb-0``... on free ports, the demo school seeded once."""
    nodes: list[ServerProcess] = []
    for i in range(count):
        port = free_port()
        config = node_config(
            workdir / f"lb-{i}" / "homeroom.toml",
            port,
            database_url=database_url,
            redis_url=redis,
            bus_channel=channel,
            node_name=f"lb-{i}",
            storage_dir=str(workdir / "files"),  # shared, as a cluster's must be
            **values,
        )
        if i == 0:
            seeded = homeroom("--config", str(config), "demo", env=clean_env())
            assert seeded.returncode == 0, seeded.stderr
        nodes.append(ServerProcess(config, port, workdir / f"lb-{i}" / "server.log"))
    for n in nodes:
        n.start()
    await asyncio.gather(*(n.wait_ready(timeout=60) for n in nodes))
    return nodes


def lb_nodes(nodes: list[ServerProcess]) -> list[nginx.Node]:
    """The nodes as nginx's configuration names them."""
    return [nginx.Node(f"lb-{i}", n.url.removeprefix("http://")) for i, n in enumerate(nodes)]


async def healthy(url: str) -> bool:
    try:
        async with (
            aiohttp.ClientSession() as http,
            http.get(url + "/healthz", timeout=aiohttp.ClientTimeout(total=3)) as r,
        ):
            return r.status == 200
    except (aiohttp.ClientError, TimeoutError):
        return False
