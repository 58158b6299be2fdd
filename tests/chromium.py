"""Debian's Chromium as the tests start it: where it is, its flags, the screen sizes used, and
the loopback-only network namespace the live scenarios run in."""

from __future__ import annotations

import asyncio
import json
import os
import shlex
import shutil
import subprocess
import sys
import tempfile
import traceback
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[1]

CHROMIUM = os.environ.get("HOMEROOM_CHROMIUM", "/usr/bin/chromium")
# No sandbox (root in a container), nothing talking to the internet.
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
# A fake camera and microphone, granted without asking, and WebRTC over 127.0.0.1.
MEDIA_ARGS = [
    "--use-fake-device-for-media-stream",
    "--use-fake-ui-for-media-stream",
    "--allow-loopback-in-peer-connection",
]
PC = {"width": 1280, "height": 800}
PAD = {"width": 820, "height": 1180}
PHONE = {"width": 390, "height": 844}


def require(ok: bool, what: str) -> None:
    """A missing tool fails in CI (``make test`` installs it) and skips elsewhere."""
    if ok:
        return
    if os.environ.get("CI") == "true":
        pytest.fail(what)
    pytest.skip(what)


async def launch_chromium(pw: Any, profile: Path, args: list[str]) -> Any:
    """Headless Debian Chromium with a fresh profile (a Playwright ``BrowserContext``)."""
    return await pw.chromium.launch_persistent_context(
        str(profile), executable_path=CHROMIUM, headless=True, args=args
    )


def run_in_loopback_namespace(
    *module_args: str, timeout: float = 110
) -> tuple[dict[str, Any], str]:
    """Run ``python -m <module_args>`` in a network namespace with nothing but ``lo`` up, so
    that whatever it starts can only meet on 127.0.0.1; returns the JSON of its last
    ``RESULT`` line and its stderr."""
    require(
        shutil.which("unshare") is not None and shutil.which("ip") is not None,
        "unshare and ip are needed for a loopback-only network namespace",
    )
    command = " ".join(shlex.quote(a) for a in (sys.executable, "-m", *module_args))
    proc = subprocess.run(
        ["unshare", "-n", "sh", "-c", f"ip link set lo up && exec {command}"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")]
    assert lines, (
        f"no result from the scenario (exit {proc.returncode}); stderr:\n{proc.stderr[-3000:]}"
    )
    result: dict[str, Any] = json.loads(lines[-1][len("RESULT ") :])
    return result, proc.stderr


def print_result(result: dict[str, Any]) -> None:
    """Print ``RESULT <json>``: the line :func:`run_in_loopback_namespace` reads (a scenario
    prints it last)."""
    print("RESULT " + json.dumps(result, default=str), flush=True)


async def report_result(
    scenario: Callable[[Path, dict[str, Any]], Awaitable[None]], prefix: str, timeout: float
) -> int:
    """Run ``scenario(temp dir, result)`` (it sets ``result["ok"]``) and print ``RESULT
    <json>`` last, whatever happened, for :func:`run_in_loopback_namespace`."""
    result: dict[str, Any] = {"ok": False}
    with tempfile.TemporaryDirectory(prefix=prefix) as tmp:
        try:
            await asyncio.wait_for(scenario(Path(tmp), result), timeout=timeout)
        except BaseException as exc:  # report everything, the test prints it
            result["error"] = "".join(traceback.format_exception(exc))[-4000:]
    print_result(result)
    return 0 if result["ok"] else 1
