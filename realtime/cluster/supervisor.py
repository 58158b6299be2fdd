"""``homeroom serve --workers N``: N node processes on this machine, kept running.

Each worker is an ordinary ``homeroom serve`` process, a node of its own: its own name
(``<node_name or host>-w<i>``), its own port (``port + i``), its own /metrics and /healthz, its
own media ports: with ``media_udp_port`` set, worker ``i`` binds ``media_udp_port + i`` (one UDP
socket per ICE host address, for every peer connection of that worker), so the firewall opens
the N ports from ``media_udp_port``; without it, each worker's peer connections take ephemeral
ports as a single node's do. ``media_tcp_port`` (ICE over TCP) likewise: worker ``i`` listens on
``media_tcp_port + i``. They share the configured PostgreSQL and Redis, and a load
balancer in front spreads clients over them (docs/operations.md). Own ports rather than
SO_REUSEPORT on one port: the kernel spreads every new TCP connection over SO_REUSEPORT
listeners, so the successive HTTP requests of a Socket.IO client that fell back to long-polling
would land on different workers (which do not know its Engine.IO session); a load balancer with
sticky routing keeps them on one.

The supervisor migrates the database (and seeds the demo school) once, starts the workers, and
restarts one that exits, with a backoff if it keeps failing at start-up, while the others go on.
SIGTERM or SIGINT to the supervisor drains every worker (each gets SIGTERM and closes its
connections as a single node does) and waits for them; a worker that outlives the bound is
killed. If the supervisor itself is killed, its workers get SIGTERM from the kernel.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from urllib.parse import urlsplit

from realtime.config import ConfigError, Settings

# A worker that ran at least this long before exiting is restarted at once (after RESTART_MIN_S);
# one that dies sooner is failing at start-up: its delay doubles each time, up to RESTART_MAX_S.
HEALTHY_RUN_S = 10.0
RESTART_MIN_S = 0.5
RESTART_MAX_S = 30.0
POLL_S = 0.2


def worker_count(value: str, cpus: int | None = None) -> int:
    """``--workers``: a whole number of processes, or ``auto`` (one per usable core)."""
    if value == "auto":
        return max(1, cpus if cpus is not None else len(os.sched_getaffinity(0)))
    try:
        n = int(value)
    except ValueError:
        raise ConfigError(f"--workers {value!r}: a number of processes, or 'auto'") from None
    if not 1 <= n <= 256:
        raise ConfigError(f"--workers {n}: between 1 and 256")
    return n


def check_cluster(settings: Settings, workers: int) -> None:
    """Several workers share state through PostgreSQL and Redis only; say so otherwise."""
    if workers <= 1:
        return
    if urlsplit(settings.database_url).scheme.split("+")[0] != "postgresql":
        raise ConfigError(
            f"--workers {workers} needs PostgreSQL (database_url = postgresql://...): the "
            "workers are separate processes sharing one database, and SQLite is for a "
            "single process. Use --workers 1, or move the database to PostgreSQL."
        )
    if not settings.redis_url:
        raise ConfigError(
            f"--workers {workers} needs Redis (redis_url = redis://...): the workers tell "
            "each other of every message and see each other in the node registry through it."
        )
    if settings.port == 0:
        raise ConfigError(f"--workers {workers} needs a fixed port (workers use port + i)")
    for name in ("media_udp_port", "media_tcp_port"):
        first = getattr(settings, name)
        if first and first + workers - 1 > 65535:
            raise ConfigError(
                f"--workers {workers} with {name} {first}: worker i uses {name} + i, beyond "
                f"65535 for the last ones"
            )


@dataclass
class Worker:
    index: int
    port: int
    name: str
    # Its one UDP port for media (media_udp_port + index; 0: ephemeral ports).
    media_udp_port: int = 0
    # Its one TCP port for ICE over TCP (media_tcp_port + index; 0: none).
    media_tcp_port: int = 0
    proc: subprocess.Popen[bytes] | None = None
    started_at: float = 0.0
    restart_at: float | None = None
    delay: float = RESTART_MIN_S
    restarts: int = 0

    def exited(self, now: float) -> None:
        """It exited: when to start it again."""
        ran = now - self.started_at
        self.delay = RESTART_MIN_S if ran >= HEALTHY_RUN_S else min(self.delay * 2, RESTART_MAX_S)
        self.restart_at = now + self.delay
        self.proc = None


def plan(settings: Settings, workers: int, host_name: str) -> list[Worker]:
    base = settings.node_name or host_name
    udp, tcp = settings.media_udp_port, settings.media_tcp_port
    return [
        Worker(i, settings.port + i, f"{base}-w{i}", udp + i if udp else 0, tcp + i if tcp else 0)
        for i in range(workers)
    ]


def _die_with_parent() -> None:
    """In the child: SIGTERM when the supervisor dies, however it dies (Linux)."""
    try:
        import ctypes

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


@dataclass
class Supervisor:
    settings: Settings
    workers: list[Worker]
    # The arguments before "serve" (the --config), so the workers read the same settings.
    global_args: list[str]
    demo: bool = False
    stopping: bool = False

    def _say(self, text: str) -> None:
        print(f"homeroom supervisor: {text}", flush=True)

    def spawn(self, w: Worker) -> None:
        env = dict(os.environ)
        env.update(
            HOMEROOM_HOST=self.settings.host,
            HOMEROOM_PORT=str(w.port),
            HOMEROOM_NODE_NAME=w.name,
            HOMEROOM_MEDIA_UDP_PORT=str(w.media_udp_port),
            HOMEROOM_MEDIA_TCP_PORT=str(w.media_tcp_port),
        )
        if self.demo:
            env["HOMEROOM_DEMO"] = "true"
        w.proc = subprocess.Popen(
            [sys.executable, "-m", "realtime.cli", *self.global_args, "serve", "--worker"],
            env=env,
            # Only prctl runs before exec (the supervisor has no other threads).
            preexec_fn=_die_with_parent,
        )
        w.started_at = time.monotonic()
        w.restart_at = None
        media = f", media UDP port {w.media_udp_port}" if w.media_udp_port else ""
        media += f", media TCP port {w.media_tcp_port}" if w.media_tcp_port else ""
        self._say(f"worker {w.name} (pid {w.proc.pid}) on port {w.port}{media}")

    def _stop(self, signum: int, _frame: object) -> None:
        self.stopping = True

    def run(self) -> int:
        signal.signal(signal.SIGTERM, self._stop)
        signal.signal(signal.SIGINT, self._stop)
        for w in self.workers:
            self.spawn(w)
        while not self.stopping:
            now = time.monotonic()
            for w in self.workers:
                if w.proc is not None and w.proc.poll() is not None:
                    code = w.proc.returncode
                    w.exited(now)
                    self._say(f"worker {w.name} exited ({code}); restarting in {w.delay:.1f} s")
                elif w.proc is None and w.restart_at is not None and now >= w.restart_at:
                    w.restarts += 1
                    self.spawn(w)
            time.sleep(POLL_S)
        return self.drain()

    def drain(self) -> int:
        """SIGTERM to every worker; each closes its connections and exits. Bounded."""
        from realtime.cli import WATCHDOG_GRACE_S

        self._say("stopping: draining every worker")
        alive = [w.proc for w in self.workers if w.proc is not None and w.proc.poll() is None]
        for p in alive:
            p.send_signal(signal.SIGTERM)
        # A worker's own watchdog ends it after 2 * shutdown_timeout + grace; a little more here.
        s = self.settings
        deadline = (
            time.monotonic() + s.drain_timeout_s + 2 * s.shutdown_timeout_s + WATCHDOG_GRACE_S + 2
        )
        for p in alive:
            try:
                p.wait(timeout=max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                self._say(f"worker pid {p.pid} did not stop in time; killed")
                p.kill()
                p.wait()
        self._say("every worker stopped")
        return 0
