"""An installed wheel serves the web app: the built app ships as package data and is found there.

The wheel is built (pip, as a packager would) from a copy of the source tree with a stand-in
build of the web app, installed into a directory of its own, and asked where its web app is.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def _copy_source(dest: Path) -> None:
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, dest / name)
    skip = shutil.ignore_patterns("__pycache__", "node_modules", "dist", "*.egg-info")
    for package in ("realtime", "signaling", "media", "clients"):
        shutil.copytree(ROOT / package, dest / package, ignore=skip)
    dist = dest / "clients" / "web" / "dist"
    (dist / "assets").mkdir(parents=True)
    (dist / "index.html").write_text("<!doctype html><head></head><p>built app", "utf-8")
    (dist / "assets" / "index-abc.js").write_text("console.log(1)", "utf-8")


def test_a_built_wheel_contains_the_web_app_and_finds_it_installed(tmp_path: Path) -> None:
    source = tmp_path / "source"
    source.mkdir()
    _copy_source(source)
    wheels = tmp_path / "wheels"
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w", str(wheels), str(source)],
        check=True,
        timeout=300,
    )
    (wheel,) = wheels.glob("homeroom-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    assert "clients/web/dist/index.html" in names
    assert "clients/web/dist/assets/index-abc.js" in names
    assert "realtime/store/migrations/versions/0001_initial_schema.py" in names
    # The app's source and its node_modules are not Python and do not ship.
    assert not [n for n in names if n.startswith(("clients/web/src", "clients/web/node_modules"))]

    site = tmp_path / "site"
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--target", str(site), wheel],
        check=True,
        timeout=300,
    )
    found = subprocess.run(
        [sys.executable, "-c", "import realtime.app as a; print(a.web_dist())"],
        check=True,
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env={"PYTHONPATH": str(site), "PATH": "/usr/bin:/bin"},
        timeout=120,
    ).stdout.strip()
    assert Path(found) == site / "clients" / "web" / "dist"
    assert (Path(found) / "index.html").read_text("utf-8").endswith("built app")
