"""Image and container work in worker processes: thumbnails first, the heavy rest niced.

Processes, not threads: decoding a 12-megapixel photo in a thread of the server takes the GIL
back dozens of times per photo, and with fifty photos at once the event loop waited behind them
(bench/uploads.py measured it). Two groups: the checks and thumbnails a parent waits for run at
normal CPU priority in two thirds of the processes (a thumbnail decodes the photo at 1/8 scale,
so these hold little memory); the stripped full-size original and the preview, which nobody
waits for, run at nice 10 in the rest, and start only when no thumbnail is queued (or after
``LATER_YIELD_S``). With one thumbnail process, fifty photos at once queued behind each other
for two seconds (bench/uploads.py, docs/performance.md). Memory: one decoded photo per process
(at most ``Image.MAX_IMAGE_PIXELS`` x 4 bytes).

No pickle: each worker is ``python -m realtime.attachments.worker`` speaking msgpack frames over
its stdin and stdout (realtime/attachments/frames.py), one job at a time. A worker parses
untrusted files, so what it answers is checked like a client's request: a strict schema, then
the result type its job declares. A worker that dies, hangs past its job's timeout or sends
anything else is killed and replaced by a fresh one on the next job.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import os
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import msgspec

import realtime
from realtime.attachments.frames import (
    FrameError,
    Request,
    Response,
    body_length,
    decode_response,
    frame,
)
from realtime.domain import attachments as rules
from realtime.domain.attachments import FileType
from realtime.errors import HomeroomError

log = logging.getLogger(__name__)

URGENT = 0  # what the uploader waits for (the checks, the thumbnail)
LATER = 1  # the preview and the stripped original
# CPU priorities (nice) of the two groups, both below the server's own: a worker that decodes
# a photo must not keep the event loop from a core. At the same priority, fifty photos' worth of
# thumbnails had the loop runnable but waiting for a CPU for up to 115 ms at a time
# (bench/uploads.py, BENCH_STACKS=1); at nice 5 a thumbnail worker gets a third of the loop's
# share while both want a core, and all of an idle core.
NICE_URGENT = 5
NICE_LATER = 10
# The longest a later job waits for the urgent ones to be done before it starts anyway (so a
# steady stream of photos cannot hold previews back for ever).
LATER_YIELD_S = 5.0
MODULE = "realtime.attachments.worker"
# The jobs the server may ask for: the type its result must have, and how long it may take
# (seconds, once a worker has it; a job waiting for a free worker is not timed).
JOBS: dict[str, tuple[Any, float]] = {
    "ping": (tuple[int, int], 10.0),
    "identify": (tuple[str, dict[str, float | None]], 60.0),
    "thumbnail": (dict[str, int], 60.0),
    "preview_and_original": (str, 300.0),
}
# The refusals a job may answer with, passed on to the uploader (a worker's other errors are
# the server's bugs); their text shortened to MAX_MESSAGE characters.
REFUSALS = frozenset({"unsupported_type", "too_large"})
MAX_MESSAGE = 200
# A worker has this long to import what it needs and say "ready".
START_S = 60.0
STOP_S = 2.0
_TYPES = {t.mime: t for t in vars(rules).values() if isinstance(t, FileType)}
# What a worker inherits of the server's environment (what Python and its libraries need).
_ENV = frozenset({"PATH", "PYTHONPATH", "LANG", "LC_ALL", "LC_CTYPE", "TMPDIR", "LD_LIBRARY_PATH"})
# The tree this server runs from, for the workers' imports (whatever the current directory).
_SOURCE = str(Path(realtime.__file__).resolve().parent.parent)


class WorkerGone(Exception):
    """The worker died, hung, or sent something that is not a valid answer."""


def _stopped() -> HomeroomError:
    return HomeroomError(
        "unavailable", "the file could not be processed (a worker stopped); try again"
    )


class Worker:
    """One worker process and its pipes; one job at a time."""

    def __init__(self, proc: asyncio.subprocess.Process) -> None:
        self.proc = proc
        self._ids = itertools.count(1)

    @classmethod
    async def start(cls, module: str, nice: int) -> Worker:
        # Only what Python needs: the server's secrets (database, S3 keys) stay out of a
        # process that parses untrusted files.
        env = {k: v for k, v in os.environ.items() if k in _ENV}
        env["PYTHONPATH"] = os.pathsep.join(p for p in (_SOURCE, env.get("PYTHONPATH")) if p)
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", module, str(nice),
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            env=env,
        )  # fmt: skip
        worker = cls(proc)
        try:
            hello = await asyncio.wait_for(worker._receive(), START_S)
        except BaseException as exc:  # cancelled too: never leave a process behind
            await asyncio.shield(worker.kill())
            if isinstance(exc, WorkerGone | TimeoutError):
                raise WorkerGone("the worker did not start") from None
            raise
        if not (hello.id == 0 and hello.ok and hello.result == "ready"):
            await worker.kill()
            raise WorkerGone("the worker did not start")
        return worker

    async def _receive(self) -> Response:
        stdout = self.proc.stdout
        assert stdout is not None
        try:
            body = await stdout.readexactly(body_length(await stdout.readexactly(4)))
            return decode_response(body)
        except (asyncio.IncompleteReadError, FrameError, ConnectionError) as exc:
            raise WorkerGone(str(exc)) from None

    async def call(self, fn: str, args: list[Any], timeout: float) -> Response:
        """Send one request and wait for its answer.

        TimeoutError if none comes within ``timeout``; WorkerGone if the worker died or sent
        something that is not the answer to this request.
        """
        stdin = self.proc.stdin
        assert stdin is not None
        req_id = next(self._ids)
        try:
            stdin.write(frame(Request(req_id, fn, args)))
            await stdin.drain()
            resp = await asyncio.wait_for(self._receive(), timeout)  # TimeoutError goes up
        except ConnectionError as exc:
            raise WorkerGone(f"{type(exc).__name__}: {exc}") from None
        if resp.id != req_id:
            raise WorkerGone(f"answer {resp.id} to request {req_id}")
        return resp

    async def kill(self) -> None:
        with contextlib.suppress(ProcessLookupError):
            self.proc.kill()
        await self.proc.wait()

    async def stop(self) -> None:
        """Close its stdin (it exits when idle); kill it if it does not."""
        if self.proc.stdin is not None:
            self.proc.stdin.close()
        try:
            await asyncio.wait_for(self.proc.wait(), STOP_S)
        except TimeoutError:
            await self.kill()


class MediaWorkers:
    """A bounded set of worker processes, started on first use, replaced when one fails."""

    def __init__(
        self,
        processes: int,
        *,
        module: str = MODULE,
        jobs: Mapping[str, tuple[Any, float]] = JOBS,
    ) -> None:
        n = max(2, processes)
        later = max(1, n // 3)
        self._sizes = {URGENT: n - later, LATER: later}
        self._module = module
        self._jobs = jobs
        self._slots = {p: asyncio.Semaphore(size) for p, size in self._sizes.items()}
        self._idle: dict[int, list[Worker]] = {URGENT: [], LATER: []}
        self._busy: set[Worker] = set()
        self._warming: set[asyncio.Task[None]] = set()
        self._closed = False
        # Urgent jobs queued or running; later jobs wait (up to LATER_YIELD_S) until there are
        # none, so a burst of thumbnails has the CPU to itself.
        self._urgent = 0
        self._urgent_idle = asyncio.Event()
        self._urgent_idle.set()

    @property
    def processes(self) -> int:
        """Worker processes running now (idle or busy)."""
        return len(self._busy) + sum(len(ws) for ws in self._idle.values())

    async def run(self, priority: int, fn: str, *args: Any) -> Any:
        """Run job ``fn`` in a worker; its result, checked against the job's declared type.

        A worker that dies or sends nonsense is replaced and the job tried once more on a new
        one; a job past its timeout is not (the worker is killed): both end in ``unavailable``.
        A job's own refusal comes back as the HomeroomError it raised.
        """
        if fn not in self._jobs:
            raise ValueError(f"no job {fn!r}")
        result_type, timeout = self._jobs[fn]
        group = URGENT if priority == URGENT else LATER
        for attempt in (1, 2):
            try:
                resp = await self._call(group, fn, list(args), timeout)
            except TimeoutError:
                raise HomeroomError("unavailable", "processing the file took too long") from None
            except WorkerGone as exc:
                log.warning("media worker lost during %s (attempt %d): %s", fn, attempt, exc)
                continue
            if resp.ok:
                try:
                    return msgspec.convert(resp.result, result_type)
                except msgspec.ValidationError as exc:
                    log.error("media worker answered %s with a bad result: %s", fn, exc)
                    raise _stopped() from None
            assert resp.error is not None
            if resp.error.code in REFUSALS:
                raise HomeroomError(resp.error.code, resp.error.message[:MAX_MESSAGE])
            raise RuntimeError(f"media worker failed {fn}: {resp.error.message}")
        raise _stopped()

    async def _call(self, group: int, fn: str, args: list[Any], timeout: float) -> Response:
        if group == URGENT:
            self._urgent += 1
            self._urgent_idle.clear()
            try:
                return await self._call_in(group, fn, args, timeout)
            finally:
                self._urgent -= 1
                if not self._urgent:
                    self._urgent_idle.set()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._urgent_idle.wait(), LATER_YIELD_S)
        return await self._call_in(group, fn, args, timeout)

    async def _call_in(self, group: int, fn: str, args: list[Any], timeout: float) -> Response:
        async with self._slots[group]:
            if self._closed:
                raise HomeroomError("unavailable", "the server is stopping")
            idle = self._idle[group]
            worker = idle.pop() if idle else await self._start(group)
            self._busy.add(worker)
            ok = False
            try:
                resp = await worker.call(fn, args, timeout)
                ok = True
                return resp
            finally:
                self._busy.discard(worker)
                if ok and not self._closed:
                    idle.append(worker)
                else:  # dead, hung, confused or cancelled mid-job: never reused
                    await asyncio.shield(worker.kill())

    async def _start(self, group: int) -> Worker:
        return await Worker.start(self._module, NICE_LATER if group == LATER else NICE_URGENT)

    def warm(self) -> None:
        """Start the worker processes now rather than with the first photo (in the background)."""
        for group, size in self._sizes.items():
            for _ in range(size):
                task = asyncio.get_running_loop().create_task(self._warm_one(group))
                self._warming.add(task)
                task.add_done_callback(self._warming.discard)

    async def _warm_one(self, group: int) -> None:
        async with self._slots[group]:
            if self._closed or len(self._idle[group]) >= self._sizes[group]:
                return
            try:
                self._idle[group].append(await self._start(group))
            except WorkerGone as exc:
                log.warning("media worker did not start: %s", exc)

    async def close(self) -> None:
        self._closed = True
        for task in list(self._warming):
            task.cancel()
        for task in list(self._warming):
            with contextlib.suppress(BaseException):
                await task
        workers = [w for ws in self._idle.values() for w in ws] + list(self._busy)
        for ws in self._idle.values():
            ws.clear()
        await asyncio.gather(*(w.stop() for w in workers), return_exceptions=True)

    # --- the jobs, typed ---------------------------------------------------------------------

    async def identify(self, path: Path, voice_max_s: int) -> tuple[FileType, dict[str, Any]]:
        mime, meta = await self.run(URGENT, "identify", str(path), voice_max_s)
        ftype = _TYPES.get(mime)
        if ftype is None:
            log.error("media worker named an unknown type %r", mime)
            raise _stopped()
        return ftype, dict(meta)

    async def thumbnail(self, src: Path, dest: Path) -> dict[str, Any]:
        return dict(await self.run(URGENT, "thumbnail", str(src), str(dest)))

    async def preview_and_original(self, src: Path, preview: Path, original: Path) -> str:
        return str(
            await self.run(LATER, "preview_and_original", str(src), str(preview), str(original))
        )
