"""The attachment worker processes: msgpack over pipes, bounded, niced, replaced when they fail.

Real worker processes throughout (``python -m``): the real worker for the photo jobs, and
tests/media_worker_stub.py (the same wire and loop) for jobs that die, hang or lie.
"""

from __future__ import annotations

import asyncio
import os
import pickle  # only to hand a worker a pickle and see it refused
import struct
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import msgspec
import pytest

from clients import files
from clients.homeroom import RequestError
from realtime.attachments.frames import MAX_FRAME
from realtime.attachments.workers import JOBS, LATER, NICE_LATER, NICE_URGENT, URGENT, MediaWorkers
from realtime.errors import HomeroomError
from realtime.transport.uploads import FILES
from tests.attachment_files import jpeg_with_gps, webm_voice
from tests.conftest import Server

STUB = "tests.media_worker_stub"
STUB_JOBS: dict[str, tuple[Any, float]] = {
    **JOBS,
    "sleep": (int, 1.5),
    "die": (int, 10.0),
    "die_once": (int, 10.0),
    "refuse": (int, 10.0),
    "big": (str, 10.0),
    "garbage": (int, 10.0),
    "huge_frame": (int, 10.0),
    "wrong_type": (tuple[int, int], 10.0),
    "print": (int, 10.0),
    "env": (list[str], 10.0),
    "nope": (int, 10.0),  # the server would ask, but the worker's allow-list has no such job
}


def stub(processes: int = 2) -> MediaWorkers:
    return MediaWorkers(processes, module=STUB, jobs=STUB_JOBS)


async def test_photo_jobs_run_in_niced_and_normal_workers(tmp_path: Path) -> None:
    workers = MediaWorkers(2)
    try:
        assert workers.processes == 0  # lazy: nothing started before the first job
        photo = tmp_path / "p.jpg"
        photo.write_bytes(jpeg_with_gps())
        ftype, meta = await workers.identify(photo, 60)
        assert ftype.mime == "image/jpeg" and meta == {}
        size = await workers.thumbnail(photo, tmp_path / "t.jpg")
        assert size["width"] > 0 and size["height"] > 0
        assert (tmp_path / "t.jpg").read_bytes()[:2] == b"\xff\xd8"
        mime = await workers.preview_and_original(photo, tmp_path / "v.jpg", tmp_path / "o.img")
        assert mime == "image/jpeg" and (tmp_path / "o.img").stat().st_size > 0
        (pid_now, nice_now), (pid_later, nice_later) = await asyncio.gather(
            workers.run(URGENT, "ping"), workers.run(LATER, "ping")
        )
        assert pid_now != pid_later != os.getpid()
        # Both below the server (whose event loop must get a core first), the preview and
        # original below the thumbnails.
        base = os.nice(0)
        assert nice_now == min(19, base + NICE_URGENT) and NICE_URGENT > 0
        assert nice_later == min(19, base + NICE_LATER) and NICE_LATER > NICE_URGENT
        assert workers.processes == 2
        # A file the worker cannot read comes back as the worker's refusal, not as a crash.
        junk = tmp_path / "junk.jpg"
        junk.write_bytes(b"\xff\xd8\xff\xe0" + b"\x00" * 64)
        with pytest.raises(HomeroomError) as err:
            await workers.thumbnail(junk, tmp_path / "t2.jpg")
        assert err.value.code == "unsupported_type"
    finally:
        await workers.close()
    assert workers.processes == 0


async def test_the_number_of_processes_is_bounded_and_the_loop_keeps_running() -> None:
    workers = stub(3)  # two for what a parent waits for, one for the rest
    gaps: list[float] = []
    stop = asyncio.Event()

    async def tick() -> None:
        last = time.monotonic()
        while not stop.is_set():
            await asyncio.sleep(0.02)
            now = time.monotonic()
            gaps.append(now - last)
            last = now

    ticker = asyncio.create_task(tick())
    try:
        pids = await asyncio.gather(*(workers.run(URGENT, "sleep", 0.3) for _ in range(6)))
        assert len(set(pids)) == 2
        assert workers.processes == 2
    finally:
        stop.set()
        await ticker
        await workers.close()
    assert max(gaps) < 1.0  # the loop never waited for the work (generous: a shared machine)


async def test_later_jobs_wait_while_thumbnails_are_queued() -> None:
    workers = stub(3)
    try:
        await asyncio.gather(workers.run(URGENT, "sleep", 0.0), workers.run(LATER, "sleep", 0.0))
        done: list[str] = []

        async def job(group: int, name: str) -> None:
            await workers.run(group, "sleep", 0.4)
            done.append(name)

        # Four thumbnails for two workers, and a preview asked for at the same time: the
        # preview's worker is free, yet it starts only once the thumbnails are done.
        await asyncio.gather(*(job(URGENT, f"thumb{i}") for i in range(4)), job(LATER, "preview"))
        assert done[-1] == "preview" and sorted(done[:4]) == [f"thumb{i}" for i in range(4)]
    finally:
        await workers.close()


async def test_a_worker_that_dies_is_replaced_and_the_job_tried_once_more(tmp_path: Path) -> None:
    workers = stub()
    try:
        first = await workers.run(URGENT, "sleep", 0.0)
        marker = tmp_path / "died"
        pid = await workers.run(URGENT, "die_once", str(marker))
        assert marker.read_text() == str(first)  # the first try killed the first worker
        assert pid != first
        with pytest.raises(HomeroomError) as err:  # dies every time: a clear error
            await workers.run(URGENT, "die")
        assert err.value.code == "unavailable"
        assert await workers.run(URGENT, "sleep", 0.0) not in (first, pid)
        assert workers.processes == 1
    finally:
        await workers.close()


async def test_a_job_past_its_timeout_fails_and_its_worker_is_replaced() -> None:
    workers = stub()
    try:
        first = await workers.run(URGENT, "sleep", 0.0)
        t0 = time.monotonic()
        with pytest.raises(HomeroomError) as err:
            await workers.run(URGENT, "sleep", 30.0)
        assert err.value.code == "unavailable"
        assert time.monotonic() - t0 < 10
        assert await workers.run(URGENT, "sleep", 0.0) != first
    finally:
        await workers.close()


def _stub_children() -> list[int]:
    """This process's children running the stub worker (a zombie counts: never reaped)."""
    pids = [
        int(pid)
        for task in Path("/proc/self/task").iterdir()
        for pid in (task / "children").read_text().split()
    ]
    found = []
    for pid in pids:
        try:
            cmd = Path(f"/proc/{pid}/cmdline").read_bytes()
        except FileNotFoundError:
            continue
        if STUB.encode() in cmd or not cmd:
            found.append(pid)
    return found


async def test_a_job_given_up_leaves_no_process_behind() -> None:
    workers = stub()
    try:
        for delay in (0.0, 0.5):  # while its worker starts, and while the job runs
            job = asyncio.create_task(workers.run(URGENT, "sleep", 1.0))
            await asyncio.sleep(delay)
            job.cancel()
            with pytest.raises(asyncio.CancelledError):
                await job
            assert workers.processes == 0
            assert _stub_children() == []
        assert isinstance(await workers.run(URGENT, "sleep", 0.0), int)
    finally:
        await workers.close()


async def test_what_a_worker_answers_is_checked(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HOMEROOM_SECRET_FOR_TEST", "s3-key")  # not handed to a worker
    workers = stub()
    try:
        first = await workers.run(URGENT, "sleep", 0.0)
        with pytest.raises(HomeroomError) as err:  # its own refusal, passed on as is
            await workers.run(URGENT, "refuse")
        assert (err.value.code, err.value.message) == ("unsupported_type", "not a photo")
        assert await workers.run(URGENT, "print") == 7  # stray prints do not break the wire
        assert "HOMEROOM_SECRET_FOR_TEST" not in await workers.run(URGENT, "env")
        assert await workers.run(URGENT, "sleep", 0.0) == first  # all that kept the worker
        with pytest.raises(RuntimeError, match="longer than"):  # the worker's own bound
            await workers.run(URGENT, "big")
        for fn in ("huge_frame", "garbage", "wrong_type"):
            with pytest.raises(HomeroomError) as err:
                await workers.run(URGENT, fn)
            assert err.value.code == "unavailable", fn
        with pytest.raises(RuntimeError, match="no job"):  # not in the worker's allow-list
            await workers.run(URGENT, "nope")
        with pytest.raises(ValueError):  # not in the server's
            await workers.run(URGENT, "os.system", "true")
        assert await workers.run(URGENT, "sleep", 0.0) != first
    finally:
        await workers.close()


async def test_an_upload_whose_worker_crashes_is_answered_clearly_and_can_be_finished(
    server: Server,
) -> None:
    wang = await server.client("wanghao")
    # A voice message: its container is parsed in a worker (a PDF or a photo is known by its
    # first bytes alone).
    data = webm_voice()
    node = server.app[FILES]
    real = node.workers
    node.workers = MediaWorkers(2, module="tests.media_worker_crashing")
    try:
        up = await files.create(wang, "语音.webm", len(data))
        with pytest.raises(RequestError) as err:
            await files.send_chunk(wang, up["id"], data, 0, len(data))
        assert err.value.code == "unavailable"  # not "internal": the worker stopped, twice
    finally:
        await node.workers.close()
        node.workers = real
    state = await files.offset(wang, up["id"])
    assert (state["status"], state["offset"]) == ("uploading", len(data))  # nothing lost
    done = await files.resume(wang, up["id"], data)  # sends the (empty) end again
    assert done["status"] == "ready" and done["attachment"]["size"] == len(data)


def _ask(proc: subprocess.Popen[bytes], body: bytes) -> dict[str, Any]:
    assert proc.stdin is not None and proc.stdout is not None
    proc.stdin.write(struct.pack(">I", len(body)) + body)
    proc.stdin.flush()
    (n,) = struct.unpack(">I", proc.stdout.read(4))
    assert n <= MAX_FRAME
    return dict(msgspec.msgpack.decode(proc.stdout.read(n)))


def test_the_worker_runs_only_its_jobs_and_never_unpickles(tmp_path: Path) -> None:
    proc = subprocess.Popen(
        [sys.executable, "-m", "realtime.attachments.worker"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        cwd=Path(__file__).resolve().parent.parent,
    )
    enc = msgspec.msgpack.encode
    try:
        assert proc.stdout is not None
        (n,) = struct.unpack(">I", proc.stdout.read(4))
        assert msgspec.msgpack.decode(proc.stdout.read(n)) == {
            "id": 0,
            "ok": True,
            "result": "ready",
        }
        out = _ask(proc, enc({"id": 1, "fn": "exec", "args": ["print(1)"]}))
        assert out["ok"] is False and out["error"]["code"] == "bad_request"
        out = _ask(proc, enc({"id": 2, "fn": "identify", "args": [str(tmp_path), "60"]}))
        assert out["error"]["code"] == "bad_request"  # wrong argument types
        out = _ask(proc, enc({"id": 3, "fn": "ping", "args": []}))
        assert out["ok"] is True and out["result"][0] == proc.pid
        # A pickle that would create a file if it were ever loaded: refused, the worker stops.
        marker = tmp_path / "pwned"
        evil = pickle.dumps(_Evil(str(marker)))
        out = _ask(proc, evil)
        assert out["ok"] is False and out["error"]["code"] == "bad_request"
        assert proc.wait(timeout=10) == 0
        assert not marker.exists()
    finally:
        proc.kill()
        proc.wait()


class _Evil:
    def __init__(self, path: str) -> None:
        self.path = path

    def __reduce__(self) -> tuple[Any, ...]:
        return (open, (self.path, "w"))
