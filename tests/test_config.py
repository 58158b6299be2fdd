"""Settings: a bad value names its setting and why, from the environment or the TOML file."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from realtime.config import ConfigError, Settings, load_settings

ROOT = Path(__file__).resolve().parent.parent


def _env(**values: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("HOMEROOM_")}
    env.update(values)
    return env


def test_a_bad_port_is_named_not_a_traceback(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "realtime.cli", "serve", "--demo"],
        cwd=tmp_path,
        env=_env(HOMEROOM_PORT="abc", PYTHONPATH=str(ROOT)),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    assert "HOMEROOM_PORT" in result.stderr and "whole number" in result.stderr


@pytest.mark.parametrize(
    ("var", "value", "words"),
    [
        ("HOMEROOM_DEMO", "maybe", "true or false"),
        ("HOMEROOM_RATE_PER_S", "fast", "a number"),
        ("HOMEROOM_OLD_SECRETS", "just-a-secret", "key-id=secret"),
    ],
)
def test_bad_values_from_the_environment(
    monkeypatch: pytest.MonkeyPatch, var: str, value: str, words: str
) -> None:
    for key in list(os.environ):
        if key.startswith("HOMEROOM_"):
            monkeypatch.delenv(key)
    monkeypatch.setenv(var, value)
    with pytest.raises(ConfigError) as err:
        load_settings()
    assert var in str(err.value) and words in str(err.value)


def test_booleans_and_numbers_that_are_fine(monkeypatch: pytest.MonkeyPatch) -> None:
    for key in list(os.environ):
        if key.startswith("HOMEROOM_"):
            monkeypatch.delenv(key)
    monkeypatch.setenv("HOMEROOM_DEMO", "Off")
    monkeypatch.setenv("HOMEROOM_PORT", " 9000 ")
    s = load_settings()
    assert s.demo is False and s.port == 9000
    monkeypatch.setenv("HOMEROOM_DEMO", "yes")
    assert load_settings().demo is True


def test_bad_values_in_the_toml_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for key in list(os.environ):
        if key.startswith("HOMEROOM_"):
            monkeypatch.delenv(key)
    path = tmp_path / "homeroom.toml"
    path.write_text('port = "eighty"\n', encoding="utf-8")
    with pytest.raises(ConfigError, match=r"port in .*homeroom.toml.*whole number"):
        load_settings(path)
    path.write_text("demo = 3\n", encoding="utf-8")
    with pytest.raises(ConfigError, match="true or false"):
        load_settings(path)
    path.write_text("port = [\n", encoding="utf-8")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_settings(path)
    with pytest.raises(ConfigError, match="cannot read"):
        load_settings(tmp_path / "missing.toml")
    path.write_text("port = 70000\n", encoding="utf-8")
    with pytest.raises(ConfigError, match="not a TCP port"):
        load_settings(path).validate()


def test_importing_the_app_hashes_nothing_and_loads_no_migrations() -> None:
    """``import realtime.app`` does no work: no password hash (the sign-in's stand-in for an
    unknown username is made at the first sign-in), no Alembic (only migrations need it)."""
    code = (
        "import argon2\n"
        "hashed = []\n"
        "real = argon2.PasswordHasher.hash\n"
        "argon2.PasswordHasher.hash = (\n"
        "    lambda self, *a, **k: hashed.append(1) or real(self, *a, **k)\n"
        ")\n"
        "import sys, realtime.app\n"
        "assert not hashed, 'hashed at import'\n"
        "assert 'alembic' not in sys.modules, 'alembic imported'\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, env=_env(), capture_output=True, text=True
    )
    assert result.returncode == 0, result.stderr


@pytest.mark.parametrize(
    ("values", "words"),
    [
        ({"media_udp_port": 70000}, "media_udp_port 70000 is not a UDP port"),
        ({"media_tcp_port": -1}, "media_tcp_port -1 is not a TCP port"),
        ({"port": 8080, "media_tcp_port": 8080}, "media_tcp_port 8080 is the HTTP port"),
    ],
)
def test_media_ports_are_checked(values: dict[str, int], words: str) -> None:
    with pytest.raises(ConfigError, match=words):
        Settings(**values).validate()


def test_media_peer_networks_are_checked() -> None:
    with pytest.raises(ConfigError, match=r"media_peer_networks: .*10\.0\.0\.0/33"):
        Settings(media_peer_networks="127.0.0.0/8, 10.0.0.0/33").validate()
    settings = Settings(media_peer_networks=" 127.0.0.0/8, 192.168.1.7/24 ")
    assert [str(n) for n in settings.peer_networks] == ["127.0.0.0/8", "192.168.1.0/24"]
    assert Settings().peer_networks == []  # anywhere
