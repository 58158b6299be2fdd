"""Passwords (argon2) and tokens: short-lived JWT access tokens, revocable refresh tokens."""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
import time
from collections import OrderedDict
from dataclasses import dataclass

import jwt
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

from realtime.errors import HomeroomError

AUDIENCE = "homeroom"
ALGORITHM = "HS256"
REQUIRED_CLAIMS = ("exp", "iat", "sub", "sch", "aud")

_hasher = PasswordHasher()
# Access tokens verified lately, remembered by their exact text: a reconnection storm presents
# the same tokens again, and a remembered one skips PyJWT's parsing and the HMAC (56 us of CPU
# measured alone, against 0.2 us; 2-6 % of a reconnection's CPU on the surviving node) but never
# the expiry nor the check that its key is still configured, with the same secret. Least
# recently used first out; 16,384 tokens are a few MB.
VERIFIED_KEEP = 16384


def hash_password(password: str) -> str:
    return _hasher.hash(password)


def verify_password(stored_hash: str | None, password: str) -> bool:
    if not stored_hash:
        return False
    try:
        return _hasher.verify(stored_hash, password)
    except (VerificationError, InvalidHashError):
        return False


@dataclass(frozen=True)
class Identity:
    """Who is acting, as proven by an access token."""

    user_id: int
    school_id: int


class TokenIssuer:
    """Signs with the active key id; verifies with any configured key (so secrets can rotate)."""

    def __init__(self, keys: dict[str, str], active_kid: str, ttl_s: int) -> None:
        self.keys = keys
        self.active_kid = active_kid
        self.ttl_s = ttl_s
        # token -> (identity, kid, the key's secret, exp): see VERIFIED_KEEP.
        self._verified: OrderedDict[str, tuple[Identity, str, str, float]] = OrderedDict()

    def issue(self, user_id: int, school_id: int, now: float | None = None) -> str:
        now = time.time() if now is None else now
        claims = {
            "sub": str(user_id),
            "sch": school_id,
            "aud": AUDIENCE,
            "iat": int(now),
            "exp": int(now + self.ttl_s),
        }
        return jwt.encode(
            claims, self.keys[self.active_kid], ALGORITHM, headers={"kid": self.active_kid}
        )

    def verify(self, token: object) -> Identity:
        if not isinstance(token, str) or not token:
            raise HomeroomError(
                "unauthorized", "sign in first: no access token was given", reason="signed_out"
            )
        hit = self._verified.get(token)
        if hit is not None:
            known, known_kid, known_key, exp = hit
            if time.time() < exp and self.keys.get(known_kid) == known_key:
                self._verified.move_to_end(token)
                return known
            del self._verified[token]  # expired, or its key gone: verified in full below
        try:
            kid = jwt.get_unverified_header(token).get("kid")
            key = self.keys.get(str(kid))
            if key is None:
                raise HomeroomError(
                    "unauthorized",
                    "the access token was signed by an unknown key",
                    reason="token_invalid",
                )
            # A token that does not say when it was issued and when it expires is refused, not
            # taken as valid forever.
            claims = jwt.decode(
                token,
                key,
                algorithms=[ALGORITHM],
                audience=AUDIENCE,
                options={"require": list(REQUIRED_CLAIMS)},
            )
            identity = Identity(int(claims["sub"]), int(claims["sch"]))
            self._verified[token] = (identity, str(kid), key, float(claims["exp"]))
            if len(self._verified) > VERIFIED_KEEP:
                self._verified.popitem(last=False)
            return identity
        except jwt.ExpiredSignatureError:
            raise HomeroomError(
                "unauthorized", "the access token has expired", reason="token_expired"
            ) from None
        except (jwt.InvalidTokenError, KeyError, ValueError):
            raise HomeroomError(
                "unauthorized", "the access token is not valid", reason="token_invalid"
            ) from None


def new_refresh_token() -> tuple[str, str]:
    """A random refresh token and the hash under which it is stored."""
    token = secrets.token_urlsafe(32)
    return token, refresh_hash(token)


def refresh_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


class DeviceTokens:
    """Device tokens (OWASP "device cookies"): proof that this client signed in to this account
    before. They grant nothing on their own; they only let their holder's password attempts skip
    the account's backoff (realtime/domain/signin.py). Signed with the token keys, so rotating
    the secret keeps the old ones valid while the old key is listed."""

    PREFIX = "d1"

    def __init__(self, keys: dict[str, str], active_kid: str) -> None:
        self.keys = keys
        self.active_kid = active_kid

    def _sign(self, kid: str, body: str) -> str:
        key = ("device:" + self.keys[kid]).encode()
        return hmac.new(key, body.encode(), hashlib.sha256).hexdigest()[:32]

    def issue(self, username: str) -> str:
        name = base64.urlsafe_b64encode(username.lower().encode()).decode().rstrip("=")
        body = f"{self.PREFIX}.{self.active_kid}.{name}.{secrets.token_urlsafe(12)}"
        return f"{body}.{self._sign(self.active_kid, body)}"

    def device_id(self, token: object, username: str) -> str | None:
        """The device's id if ``token`` is a valid device token for ``username``, else None."""
        if not isinstance(token, str) or len(token) > 300:
            return None
        parts = token.split(".")
        if len(parts) != 5 or parts[0] != self.PREFIX or parts[1] not in self.keys:
            return None
        body = ".".join(parts[:4])
        if not hmac.compare_digest(parts[4], self._sign(parts[1], body)):
            return None
        pad = "=" * (-len(parts[2]) % 4)
        try:
            name = base64.urlsafe_b64decode(parts[2] + pad).decode()
        except (ValueError, UnicodeDecodeError):
            return None
        return parts[3] if name == username.lower() else None
