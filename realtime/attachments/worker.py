"""One attachment worker process: ``python -m realtime.attachments.worker [nice]``.

Reads requests from stdin and writes responses to stdout, one at a time, as msgpack frames
(realtime/attachments/frames.py). Only the jobs in ``JOBS`` can be asked for, each with the
argument types it declares; nothing received is ever turned into code or objects. It exits when
stdin closes (the server stopped or died). Blocking work is fine here: this is not the server.
"""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

from realtime.attachments.frames import (
    Failure,
    FrameError,
    Request,
    Response,
    body_length,
    decode_request,
    frame,
)
from realtime.errors import HomeroomError


@dataclass(frozen=True)
class Job:
    fn: Callable[..., Any]
    # The exact type of each argument (str for paths): anything else is refused.
    args: tuple[type, ...]


def _ping() -> list[int]:
    return [os.getpid(), os.nice(0)]


def _identify(path: str, voice_max_s: int) -> list[Any]:
    from realtime.attachments.identify import identify

    ftype, meta = identify(Path(path), voice_max_s)
    return [ftype.mime, meta]


def _unreadable_photo() -> HomeroomError:
    return HomeroomError("unsupported_type", "the photo cannot be read")


def _thumbnail(src: str, dest: str) -> dict[str, Any]:
    from PIL import Image, UnidentifiedImageError

    from realtime.attachments import images

    try:
        return images.thumbnail(Path(src), Path(dest))
    except (images.BadImage, UnidentifiedImageError, Image.DecompressionBombError):
        raise _unreadable_photo() from None


def _preview_and_original(src: str, preview: str, original: str) -> str:
    from PIL import Image, UnidentifiedImageError

    from realtime.attachments import images

    try:
        return images.preview_and_original(Path(src), Path(preview), Path(original))
    except (images.BadImage, UnidentifiedImageError, Image.DecompressionBombError):
        raise _unreadable_photo() from None


JOBS: dict[str, Job] = {
    "ping": Job(_ping, ()),
    "identify": Job(_identify, (str, int)),
    "thumbnail": Job(_thumbnail, (str, str)),
    "preview_and_original": Job(_preview_and_original, (str, str, str)),
}
# Imported once at start, before "ready": the first photo does not wait for them.
PRELOAD = ("realtime.attachments.images", "realtime.attachments.identify")


def answer(jobs: Mapping[str, Job], req: Request) -> Response:
    job = jobs.get(req.fn)
    if job is None:
        return Response(req.id, False, error=Failure("bad_request", f"no job {req.fn!r}"))
    if len(req.args) != len(job.args) or any(
        type(a) is not t for a, t in zip(req.args, job.args, strict=False)
    ):
        return Response(req.id, False, error=Failure("bad_request", f"bad arguments for {req.fn}"))
    try:
        return Response(req.id, True, result=job.fn(*req.args))
    except HomeroomError as exc:
        return Response(req.id, False, error=Failure(exc.code, exc.message))
    except Exception as exc:  # a bug: reported as such, and the worker goes on
        return Response(req.id, False, error=Failure("internal", f"{type(exc).__name__}: {exc}"))


def _read(fh: BinaryIO, n: int) -> bytes | None:
    data = fh.read(n)
    return data if len(data) == n else None


def serve(jobs: Mapping[str, Job], preload: tuple[str, ...] = ()) -> None:
    """Answer requests on stdin until it closes."""
    # The frames get a private copy of stdout; fd 1 now goes to stderr, so a library that
    # prints cannot corrupt the stream.
    out = os.fdopen(os.dup(1), "wb")
    os.dup2(2, 1)
    inp = sys.stdin.buffer
    if len(sys.argv) > 1:
        with contextlib.suppress(OSError):
            os.nice(int(sys.argv[1]))
    for name in preload:
        __import__(name)
    out.write(frame(Response(0, True, result="ready")))
    out.flush()
    while True:
        header = _read(inp, 4)
        if header is None:
            return
        try:
            body = _read(inp, body_length(header))
            if body is None:
                return
            req = decode_request(body)
        except FrameError as exc:
            # The stream can no longer be trusted to be in step: say why, and stop.
            out.write(frame(Response(0, False, error=Failure("bad_request", str(exc)))))
            out.flush()
            return
        try:
            data = frame(answer(jobs, req))
        except (FrameError, TypeError) as exc:  # a result too long, or not plain data
            data = frame(Response(req.id, False, error=Failure("internal", str(exc))))
        out.write(data)
        out.flush()


if __name__ == "__main__":
    serve(JOBS, PRELOAD)
