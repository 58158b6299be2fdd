"""Access tokens remembered once verified (realtime/auth.py, ``VERIFIED_KEEP``): a token shown
again is accepted without its signature being checked again, but it still expires on time, a
key taken out of the configuration (or given another secret) refuses it at once, and a token
changed by one character is never taken for a remembered one."""

from __future__ import annotations

import time

import pytest

from realtime import auth
from realtime.auth import Identity, TokenIssuer
from realtime.errors import HomeroomError

SECRET = "s" * 40


def reason(issuer: TokenIssuer, token: str) -> str:
    with pytest.raises(HomeroomError) as err:
        issuer.verify(token)
    assert err.value.code == "unauthorized"
    return str(err.value.details["reason"])


def test_a_remembered_token_still_expires_and_follows_its_key() -> None:
    issuer = TokenIssuer({"k1": SECRET}, "k1", 2)
    token = issuer.issue(7, 1)
    assert issuer.verify(token) == Identity(7, 1)
    assert issuer.verify(token) == Identity(7, 1)  # remembered
    # One character changed: not the remembered token, and its signature fails.
    tampered = token[:-2] + ("A" if token[-2] != "A" else "B") + token[-1]
    assert reason(issuer, tampered) == "token_invalid"
    # Its key given another secret: refused at once.
    issuer.keys = {"k1": "t" * 40}
    assert reason(issuer, token) == "token_invalid"
    issuer.keys = {"k1": SECRET}
    assert issuer.verify(token) == Identity(7, 1)
    # Its key taken out: refused at once.
    issuer.keys = {"k2": SECRET}
    assert reason(issuer, token) == "token_invalid"
    issuer.keys = {"k1": SECRET}
    assert issuer.verify(token) == Identity(7, 1)
    # Past its expiry (2 s, whole seconds): refused as expired, remembered or not.
    time.sleep(2.1)
    assert reason(issuer, token) == "token_expired"


def test_the_remembered_tokens_are_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(auth, "VERIFIED_KEEP", 3)
    issuer = TokenIssuer({"k1": SECRET}, "k1", 60)
    tokens = [issuer.issue(u, 1) for u in range(1, 6)]
    for t in tokens:
        issuer.verify(t)
    assert list(issuer._verified) == tokens[2:]
    issuer.verify(tokens[2])  # used again: the last out
    issuer.verify(tokens[0])
    assert list(issuer._verified) == [tokens[4], tokens[2], tokens[0]]
