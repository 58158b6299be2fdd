"""Sending one push message: encrypt (RFC 8291, aes128gcm) and POST it to the push service."""

from __future__ import annotations

import asyncio
import os
from dataclasses import dataclass
from enum import Enum

import aiohttp
import http_ece
from cryptography.hazmat.primitives.asymmetric import ec

from realtime.push.vapid import VapidKey, b64url_decode


@dataclass(frozen=True)
class Subscription:
    id: int
    user_id: int
    endpoint: str
    p256dh: str
    auth: str


class Outcome(Enum):
    SENT = "sent"
    GONE = "gone"  # 404/410: the subscription has expired or was revoked; forget it
    FAILED = "failed"  # anything else: kept, tried again with the next event


def encrypt(payload: bytes, sub: Subscription) -> bytes:
    """The aes128gcm body for one subscription (CPU work: run it in a thread)."""
    ephemeral = ec.generate_private_key(ec.SECP256R1())
    body: bytes = http_ece.encrypt(
        payload,
        salt=os.urandom(16),
        private_key=ephemeral,
        dh=b64url_decode(sub.p256dh),
        auth_secret=b64url_decode(sub.auth),
        version="aes128gcm",
    )
    return body


async def send(
    http: aiohttp.ClientSession,
    vapid: VapidKey,
    sub: Subscription,
    payload: bytes,
    *,
    ttl_s: int,
    urgency: str = "normal",
) -> Outcome:
    body = await asyncio.to_thread(encrypt, payload, sub)
    headers = {
        "Authorization": vapid.authorization(sub.endpoint),
        "Content-Encoding": "aes128gcm",
        "Content-Type": "application/octet-stream",
        "TTL": str(ttl_s),
        "Urgency": urgency,
    }
    try:
        async with http.post(sub.endpoint, data=body, headers=headers) as resp:
            await resp.read()
            if resp.status in (404, 410):
                return Outcome.GONE
            return Outcome.SENT if 200 <= resp.status < 300 else Outcome.FAILED
    except (aiohttp.ClientError, TimeoutError, OSError):
        return Outcome.FAILED
