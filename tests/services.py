"""Real services for tests: PostgreSQL and Redis on 127.0.0.1, started if they are not running.

In CI (CI=true) a service that cannot be reached fails the test; it is never skipped silently.
"""

from __future__ import annotations

import os
import socket
import subprocess
import time
import uuid

import pytest

PG_START = "pg_ctlcluster --skip-systemctl-redirect $(ls /etc/postgresql) main start"
REDIS_START = (
    'redis-server --daemonize yes --bind 127.0.0.1 -::1 --port 6379 --save "" --appendonly no '
    "--dir /var/lib/redis --logfile /var/log/redis/ci.log"
)


def _answers(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1):
            return True
    except OSError:
        return False


def ensure_service(name: str, port: int, start: str) -> None:
    if _answers(port):
        return
    subprocess.run(start, shell=True, check=False, capture_output=True)
    for _ in range(50):
        if _answers(port):
            return
        time.sleep(0.2)
    message = f"{name} on 127.0.0.1:{port} does not answer, and `{start}` did not start it"
    if os.environ.get("CI") == "true":
        pytest.fail(message)
    pytest.skip(message)


def postgres_database() -> tuple[str, str]:
    """Create a fresh database; returns (its URL, its name)."""
    ensure_service("PostgreSQL", 5432, PG_START)
    name = "homeroom_test_" + uuid.uuid4().hex[:10]
    subprocess.run(
        [
            "psql",
            "-h",
            "127.0.0.1",
            "-U",
            "postgres",
            "-d",
            "postgres",
            "-q",
            "-c",
            f"CREATE DATABASE {name}",
        ],
        check=True,
        capture_output=True,
    )
    return f"postgresql://postgres@127.0.0.1:5432/{name}", name


def drop_postgres_database(name: str) -> None:
    subprocess.run(
        [
            "psql",
            "-h",
            "127.0.0.1",
            "-U",
            "postgres",
            "-d",
            "postgres",
            "-q",
            "-c",
            f"DROP DATABASE IF EXISTS {name} WITH (FORCE)",
        ],
        check=False,
        capture_output=True,
    )


def redis_url() -> str:
    ensure_service("Redis", 6379, REDIS_START)
    return "redis://127.0.0.1:6379/0"
