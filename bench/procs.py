"""Small helpers the benchmarks share: output, ports, and what /proc says of a process."""

from __future__ import annotations

import math
import os
import socket
from pathlib import Path

CLK_TCK = os.sysconf("SC_CLK_TCK")


def say(text: str) -> None:
    print(text, flush=True)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def cpu_seconds(pid: int) -> float:
    """User + system CPU of one process (all its threads, none of its children); NaN if gone."""
    user, system = cpu_user_system(pid)
    return user + system


def cpu_user_system(pid: int) -> tuple[float, float]:
    """(user, system) CPU seconds of one process, as :func:`cpu_seconds`; NaNs if gone."""
    try:
        with open(f"/proc/{pid}/stat") as fh:
            stat = fh.read()
    except OSError:
        return math.nan, math.nan
    rest = stat[stat.rindex(")") + 2 :].split()
    return int(rest[11]) / CLK_TCK, int(rest[12]) / CLK_TCK


def tail(path: Path, n: int = 30) -> str:
    """The last lines of a log, for an error message."""
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-n:])
    except OSError:
        return ""
