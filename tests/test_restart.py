"""Nothing acknowledged is lost in a crash: the server runs as its own process (``homeroom serve``
from a TOML config), is killed with SIGKILL right after the last acknowledgement, and restarted; a
classmate who was offline throughout catches up from its old cursors and gets every acknowledged
message exactly once, in order.

Also: ``serve`` without demo mode refuses the built-in secret and a short one, and says why.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import aiohttp
import pytest

from clients.homeroom import HomeroomClient
from realtime.demo import DEMO_PASSWORD
from tests.conftest import free_port

pytestmark = pytest.mark.timeout(120)

ROOT = Path(__file__).resolve().parent.parent
SECRET = "restart-test-secret-0123456789-abcdefghij"  # 41 characters
N_MESSAGES = 40


def clean_env(**extra: str) -> dict[str, str]:
    """This process's environment without any HOMEROOM_* setting, plus ``extra``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("HOMEROOM_")}
    env.update(extra)
    return env


def homeroom(*args: str, env: dict[str, str], timeout: float = 60) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "realtime.cli", *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


class ServerProcess:
    def __init__(self, config: Path, port: int, log: Path) -> None:
        self.config = config
        self.url = f"http://127.0.0.1:{port}"
        self.log = log
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        with open(self.log, "ab") as out:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "realtime.cli", "--config", str(self.config), "serve"],
                cwd=ROOT,
                env=clean_env(),
                stdout=out,
                stderr=subprocess.STDOUT,
            )

    async def wait_ready(self, timeout: float = 30) -> None:
        deadline = time.monotonic() + timeout
        async with aiohttp.ClientSession() as http:
            while time.monotonic() < deadline:
                assert self.proc is not None
                if self.proc.poll() is not None:
                    raise AssertionError(f"the server exited: {self.log.read_text()[-3000:]}")
                try:
                    async with http.get(self.url + "/healthz") as resp:
                        if resp.status == 200:
                            return
                except aiohttp.ClientError:
                    pass
                await asyncio.sleep(0.1)
        raise AssertionError(f"the server did not start: {self.log.read_text()[-3000:]}")

    def crash(self) -> None:
        """SIGKILL: no shutdown handler runs, nothing is flushed by the server."""
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(timeout=10)

    def terminate(self) -> None:
        """SIGTERM without waiting (several nodes stop side by side, then :meth:`stop` each)."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)


@pytest.fixture
def server_process(tmp_path: Path) -> Iterator[ServerProcess]:
    port = free_port()
    config = tmp_path / "homeroom.toml"
    config.write_text(
        f'host = "127.0.0.1"\n'
        f"port = {port}\n"
        f'database_url = "sqlite:///{tmp_path}/data/homeroom.db"\n'
        f'secret = "{SECRET}"\n'
        f"rate_burst = 1000\n"
        f"rate_per_s = 1000.0\n"
    )
    seeded = homeroom("--config", str(config), "demo", env=clean_env())
    assert seeded.returncode == 0, seeded.stderr
    assert "wanghao" in seeded.stdout
    srv = ServerProcess(config, port, tmp_path / "server.log")
    yield srv
    srv.stop()


async def test_acknowledged_messages_survive_a_crash(server_process: ServerProcess) -> None:
    srv = server_process
    srv.start()
    await srv.wait_ready()

    wang = HomeroomClient(srv.url, reconnection=False)
    liming = HomeroomClient(srv.url, reconnection=False)
    await wang.login("wanghao", DEMO_PASSWORD)
    await liming.login("liming", DEMO_PASSWORD)
    await wang.connect()
    await liming.connect()
    stream = next(s for s in liming.cursors if s.startswith("class:") and s.endswith(":students"))
    before = await wang.send_chat(stream, "下课前最后一条 before")
    await liming.wait_for(lambda e: e["data"].get("id") == before["id"])
    cursors = dict(liming.cursors)
    assert cursors[stream] == before["seq"]
    await liming.close()  # the classmate goes offline and stays offline through the crash

    acked = []
    for i in range(N_MESSAGES):
        msg = await wang.send_chat(stream, f"第{i}条 message {i}", client_id=f"crash-{i}")
        acked.append(msg)
    srv.crash()  # right after the last acknowledgement
    await wang.close()
    assert [m["seq"] for m in acked] == list(
        range(before["seq"] + 1, before["seq"] + 1 + N_MESSAGES)
    )

    srv.start()
    await srv.wait_ready()

    # The classmate comes back with its old cursors (and its still-valid token).
    back = HomeroomClient(srv.url, reconnection=False)
    back.token = liming.token
    back.cursors = dict(cursors)
    await back.connect()
    got = [e for e in back.events[stream] if e["type"] == "chat.message"]
    assert [e["data"]["id"] for e in got] == [m["id"] for m in acked]
    assert [e["data"]["body"] for e in got] == [m["body"] for m in acked]
    assert [e["seq"] for e in got] == [m["seq"] for m in acked]  # in order, no gap, no repeat
    # Syncing again brings nothing twice.
    await back.sync()
    assert len([e for e in back.events[stream] if e["type"] == "chat.message"]) == N_MESSAGES

    # The sender's client did not know whether its last send got through; resending it with the
    # same client id after the restart gives back the original, not a second message.
    wang2 = HomeroomClient(srv.url, reconnection=False)
    wang2.token = wang.token
    await wang2.connect(sync=False)
    again = await wang2.request(
        "chat.send", {"stream": stream, "client_id": f"crash-{N_MESSAGES - 1}", "body": "dup?"}
    )
    assert again["duplicate"] is True and again["message"]["id"] == acked[-1]["id"]
    # New messages continue the sequence.
    new = await wang2.send_chat(stream, "重启之后 after restart")
    assert new["seq"] == acked[-1]["seq"] + 1
    ev = await back.wait_for(lambda e: e["data"].get("id") == new["id"])
    assert ev["seq"] == new["seq"]
    await back.close()
    await wang2.close()


@pytest.mark.parametrize(
    ("secret", "words"),
    [
        (None, "built-in demo secret"),
        ("too-short-secret", "16 characters"),
    ],
)
def test_serve_refuses_a_weak_secret(tmp_path: Path, secret: str | None, words: str) -> None:
    extra = {
        "HOMEROOM_DATABASE_URL": f"sqlite:///{tmp_path}/homeroom.db",
        "HOMEROOM_PORT": str(free_port()),
    }
    if secret is not None:
        extra["HOMEROOM_SECRET"] = secret
    result = homeroom("serve", env=clean_env(**extra), timeout=60)
    assert result.returncode != 0
    assert "refusing to start" in result.stderr
    assert words in result.stderr
    assert "HOMEROOM_SECRET" in result.stderr or "at least 32" in result.stderr
    assert "serving" not in result.stdout
    # It refused before touching anything: no database was created.
    assert not (tmp_path / "homeroom.db").exists()


def test_serve_demo_mode_accepts_the_builtin_secret(tmp_path: Path) -> None:
    """The other side of the refusal: --demo may use the built-in secret (and seeds the demo)."""
    port = free_port()
    env = clean_env(
        HOMEROOM_DATABASE_URL=f"sqlite:///{tmp_path}/homeroom.db", HOMEROOM_PORT=str(port)
    )
    log = tmp_path / "demo.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "realtime.cli", "serve", "--demo"],
            cwd=ROOT,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:
        deadline = time.monotonic() + 40
        while "serving on" not in log.read_text():
            assert proc.poll() is None, log.read_text()
            assert time.monotonic() < deadline, log.read_text()
            time.sleep(0.1)
        assert "wanghao" in log.read_text()
    finally:
        proc.terminate()
        proc.wait(timeout=10)
