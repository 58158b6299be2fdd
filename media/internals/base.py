"""The pinned versions of the libraries whose internals media/internals/ touches, and its error."""

from __future__ import annotations

# Exact versions media/internals/ was written and tested against (pyproject.toml pins the same).
PINNED = {"aiortc": "1.16.0", "aioice": "0.13.0", "pylibsrtp": "1.0.0"}
PINNED_AIORTC_VERSION = PINNED["aiortc"]


class AiortcInternalsError(RuntimeError):
    """aiortc's (or aioice's, pylibsrtp's) private internals are not what media/internals/ was
    written against."""
