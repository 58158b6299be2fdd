"""Debian's Chromium as the tests start it: where it is, its flags, the screen sizes used."""

from __future__ import annotations

import os

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
