"""The server's VAPID key (RFC 8292): read from a file, made at first use if there is none."""

from __future__ import annotations

import base64
import os
import time
from pathlib import Path
from urllib.parse import urlsplit

from cryptography.hazmat.primitives import serialization
from py_vapid import Vapid02

# A signed VAPID token is reused for this long per push service (it is valid for twice that).
TOKEN_REUSE_S = 6 * 3600


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def b64url_decode(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


class VapidKey:
    """The application server's key pair and the Authorization headers it signs."""

    def __init__(self, vapid: Vapid02, subject: str) -> None:
        self._vapid = vapid
        self.subject = subject
        raw = vapid.public_key.public_bytes(
            serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint
        )
        # What the browser's pushManager.subscribe() takes as applicationServerKey.
        self.public_key = b64url(raw)
        self._tokens: dict[str, tuple[float, str]] = {}

    @classmethod
    def load_or_create(cls, path: str | Path, subject: str) -> VapidKey:
        """The key in ``path``; a new one written there (mode 0600) if the file is missing.

        Two nodes starting at once on a shared directory: one creates the file (O_EXCL), the
        other reads it, so both sign with the same key.
        """
        path = Path(path)
        if not path.exists():
            path.parent.mkdir(parents=True, exist_ok=True)
            fresh = Vapid02()
            fresh.generate_keys()
            try:
                fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            except FileExistsError:
                pass
            else:
                with os.fdopen(fd, "wb") as f:
                    f.write(fresh.private_pem())
        return cls(Vapid02.from_pem(path.read_bytes()), subject)

    def authorization(self, endpoint: str, now: float | None = None) -> str:
        """The ``Authorization: vapid t=...,k=...`` value for a push service's origin."""
        now = time.time() if now is None else now
        parts = urlsplit(endpoint)
        audience = f"{parts.scheme}://{parts.netloc}"
        cached = self._tokens.get(audience)
        if cached is not None and now - cached[0] < TOKEN_REUSE_S:
            return cached[1]
        claims = {"aud": audience, "exp": int(now + 2 * TOKEN_REUSE_S), "sub": self.subject}
        header = str(self._vapid.sign(claims)["Authorization"])
        if len(self._tokens) > 1000:
            self._tokens.clear()
        self._tokens[audience] = (now, header)
        return header
