"""A worker for tests/test_media_workers.py whose file check always kills it (a crashing parser)."""

from __future__ import annotations

import os

from realtime.attachments.worker import JOBS, Job, serve


def _crash(path: str, voice_max_s: int) -> None:
    os._exit(139)


if __name__ == "__main__":
    serve({**JOBS, "identify": Job(_crash, (str, int))})
