"""Settings: defaults, then a TOML file, then ``HOMEROOM_*`` environment variables.

Every setting is documented in docs/operations.md.
"""

from __future__ import annotations

import os
import tomllib
from dataclasses import dataclass, field, fields
from ipaddress import IPv4Network, IPv6Network, ip_network
from pathlib import Path
from typing import Any

DEMO_SECRET = "homeroom-demo-secret-not-for-production"
MIN_SECRET_LENGTH = 32


class ConfigError(Exception):
    """The configuration cannot be used; the message says why."""


@dataclass
class Settings:
    host: str = "127.0.0.1"
    port: int = 8080
    database_url: str = "sqlite:///var/homeroom.db"
    redis_url: str = ""
    # The Redis channel the nodes of one deployment share (two deployments on one Redis: two).
    bus_channel: str = "homeroom"
    # Signing keys for access tokens: {key id: secret}. The active one signs; all verify.
    secret: str = DEMO_SECRET
    secret_key_id: str = "k1"
    old_secrets: dict[str, str] = field(default_factory=dict)
    demo: bool = False
    access_token_ttl_s: int = 900
    refresh_token_ttl_s: int = 30 * 24 * 3600
    # Wire encoding for Socket.IO: "json" (any client) or "msgpack".
    serializer: str = "json"
    # Largest Engine.IO packet accepted; bounds memory per inbound message.
    max_packet_bytes: int = 64 * 1024
    chat_max_chars: int = 2000
    chat_edit_window_s: int = 15 * 60
    # Token bucket per member for chat/questions: burst and sustained rate.
    rate_burst: int = 20
    rate_per_s: float = 5.0
    notice_max_chars: int = 10_000
    notice_remind_interval_s: int = 3600
    question_max_chars: int = 1000
    history_page_max: int = 200
    catchup_page_max: int = 500
    log_level: str = "INFO"
    # Live sessions and media (docs/operations.md: ICE, TURN and firewall advice).
    # Addresses to gather ICE host candidates on, comma-separated; empty: every interface.
    ice_host_addresses: str = ""
    # The public address to announce behind 1:1 NAT; empty: none.
    ice_public_address: str = ""
    stun_urls: str = ""
    turn_urls: str = ""
    # coturn's static-auth-secret (use-auth-secret); TURN credentials expire after turn_ttl_s.
    turn_secret: str = ""
    turn_ttl_s: int = 6 * 3600
    video_codec: str = "VP8"
    # This node's name among several (live sessions remember where they run); empty: host:port.
    node_name: str = ""
    # A session nobody publishes in for this long ends by itself.
    session_idle_end_s: int = 1800
    # A participant who drops out keeps their place (stage, hand) for this long.
    session_grace_s: int = 30
    # Bound on bytes queued to one slow client before it is disconnected.
    client_buffer_bytes: int = 4 * 1024 * 1024
    # Who may read /metrics: clients from these addresses or networks (comma-separated; empty:
    # none), or anyone who sends ``Authorization: Bearer <metrics_token>`` (empty: no token).
    metrics_allow: str = "127.0.0.1,::1"
    metrics_token: str = ""

    def validate(self) -> None:
        try:
            self.metrics_networks  # noqa: B018 (parsed to check it)
        except ValueError as exc:
            raise ConfigError(f"metrics_allow: {exc}") from None
        if self.video_codec.upper() not in ("VP8", "H264"):
            raise ConfigError("video_codec must be 'VP8' or 'H264'")
        if self.serializer not in ("json", "msgpack"):
            raise ConfigError("serializer must be 'json' or 'msgpack'")
        if not self.demo:
            if self.secret == DEMO_SECRET:
                raise ConfigError(
                    "refusing to start: the secret is the built-in demo secret. Set "
                    "HOMEROOM_SECRET (at least 32 random characters) or run in demo mode."
                )
            if len(self.secret) < MIN_SECRET_LENGTH:
                raise ConfigError(
                    f"refusing to start: the secret is {len(self.secret)} characters; "
                    f"it must be at least {MIN_SECRET_LENGTH}."
                )

    @property
    def metrics_networks(self) -> list[IPv4Network | IPv6Network]:
        return [
            ip_network(a.strip(), strict=False) for a in self.metrics_allow.split(",") if a.strip()
        ]

    @property
    def signing_keys(self) -> dict[str, str]:
        keys = dict(self.old_secrets)
        keys[self.secret_key_id] = self.secret
        return keys


def _coerce(name: str, raw: Any, default: Any) -> Any:
    if isinstance(default, bool):
        if isinstance(raw, bool):
            return raw
        return str(raw).strip().lower() in ("1", "true", "yes", "on")
    if isinstance(default, int):
        return int(raw)
    if isinstance(default, float):
        return float(raw)
    if isinstance(default, dict):
        if isinstance(raw, dict):
            return {str(k): str(v) for k, v in raw.items()}
        # "kid1=secret1,kid2=secret2"
        pairs = [p.split("=", 1) for p in str(raw).split(",") if "=" in p]
        return {k.strip(): v.strip() for k, v in pairs}
    return str(raw)


def load_settings(path: str | Path | None = None, **overrides: Any) -> Settings:
    """Build settings from defaults, an optional TOML file, the environment, then overrides."""
    values: dict[str, Any] = {}
    defaults = Settings()
    known = {f.name for f in fields(Settings)}
    path = path or os.environ.get("HOMEROOM_CONFIG")
    if path:
        with open(path, "rb") as fh:
            data = tomllib.load(fh)
        for key, raw in data.items():
            if key not in known:
                raise ConfigError(f"unknown setting {key!r} in {path}")
            values[key] = _coerce(key, raw, getattr(defaults, key))
    for key in known:
        env = os.environ.get("HOMEROOM_" + key.upper())
        if env is not None:
            values[key] = _coerce(key, env, getattr(defaults, key))
    values.update(overrides)
    return Settings(**values)
