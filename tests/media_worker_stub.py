"""A worker for tests/test_media_workers.py: the real wire and loop with jobs that misbehave."""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

from realtime.attachments.worker import JOBS, Job, serve
from realtime.errors import HomeroomError


def _sleep(seconds: float) -> int:
    time.sleep(seconds)
    return os.getpid()


def _die() -> None:
    os._exit(3)


def _die_once(marker: str) -> int:
    path = Path(marker)
    if not path.exists():
        path.write_text(str(os.getpid()))
        os._exit(3)
    return os.getpid()


def _refuse() -> None:
    raise HomeroomError("unsupported_type", "not a photo")


def _big() -> str:
    return "x" * 200_000


def _garbage() -> int:
    out = os.fdopen(_PIPE, "wb")  # the server's pipe (fd 1 goes to stderr in a worker)
    out.write(b"\x00\x00\x00\x05\xc1\xc1\xc1\xc1\xc1")
    out.flush()
    time.sleep(5)
    return 0


def _huge_frame() -> int:
    out = os.fdopen(_PIPE, "wb")
    out.write(b"\x10\x00\x00\x00")  # announces 256 MiB
    out.flush()
    time.sleep(5)
    return 0


def _env() -> list[str]:
    return sorted(os.environ)


def _wrong_type() -> str:
    return "not a pair of ints"


def _print() -> int:
    print("chatty library output", flush=True)
    sys.stdout.write("more\n")
    sys.stdout.flush()
    return 7


STUB_JOBS = {
    **JOBS,
    "sleep": Job(_sleep, (float,)),
    "die": Job(_die, ()),
    "die_once": Job(_die_once, (str,)),
    "refuse": Job(_refuse, ()),
    "big": Job(_big, ()),
    "garbage": Job(_garbage, ()),
    "huge_frame": Job(_huge_frame, ()),
    "wrong_type": Job(_wrong_type, ()),
    "env": Job(_env, ()),
    "print": Job(_print, ()),
}

_PIPE = -1

if __name__ == "__main__":
    _PIPE = os.dup(1)
    serve(STUB_JOBS)
