"""Settings: defaults, then a TOML file, then ``HOMEROOM_*`` environment variables.

Every setting is documented in docs/operations.md.
"""

from __future__ import annotations

import os
import socket
import tomllib
from dataclasses import dataclass, field, fields
from ipaddress import IPv4Network, IPv6Network, ip_network
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from realtime.transport.clientaddr import ClientAddresses

DEMO_SECRET = "homeroom-demo-secret-not-for-production"
MIN_SECRET_LENGTH = 32


class ConfigError(Exception):
    """The configuration cannot be used; the message says why."""


@dataclass
class Settings:
    host: str = "127.0.0.1"
    port: int = 8080
    database_url: str = "sqlite:///var/homeroom.db"
    # SQLite only: "full" (default) syncs every commit to disk before it is acknowledged
    # (group commit shares one sync among concurrent requests); "normal" is faster but an
    # acknowledged write can be lost on power loss or an OS crash (docs/operations.md).
    sqlite_synchronous: str = "full"
    # PostgreSQL: a statement unanswered for this long fails and its request answers
    # ``unavailable`` (a network that drops packets would otherwise hold it for minutes); it
    # also bounds the longest statement (exports, sweeps). 0: no limit.
    database_statement_timeout_s: float = 10.0
    # PostgreSQL: when all 20 pooled connections are in use, at most this many transactions
    # and reads wait for one, each at most database_queue_wait_s; the others answer
    # ``unavailable`` (reason ``database_busy``) at once.
    database_queue: int = 256
    database_queue_wait_s: float = 5.0
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
    # The networks media peers may be in (comma-separated CIDRs, e.g. a school's LAN); ICE
    # ignores candidates and checks from anywhere else. Empty: anywhere.
    media_peer_networks: str = ""
    # One UDP port for all media of this node (ICE demultiplexed by ufrag); 0: one ephemeral
    # port per peer connection (aioice's default). docs/operations.md, "Firewalls".
    media_udp_port: int = 0
    # ICE over TCP (RFC 6544, passive candidates) on one TCP port of this node, for networks
    # that let no UDP through; 0: none. docs/operations.md, "Firewalls".
    media_tcp_port: int = 0
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
    # The node registry (docs/operations.md: several nodes): each node announces itself this
    # often, and is taken for lost (its live sessions ended by another node) when it has not
    # for node_ttl_s.
    # The defaults put a lost node's live sessions on another node within about 3 s (TTL plus
    # a beat), and its viewers playing again within 5 s.
    node_heartbeat_s: float = 0.5
    node_ttl_s: float = 2.5
    # A node whose event loop has not run for this long stops announcing itself (the heartbeat
    # runs on a thread of its own, so a loop merely slowed by a storm stays announced).
    node_stall_s: float = 30.0
    # Admission control (realtime/transport/admission.py): at most this many new connections in
    # their handshake at once (connect to first answered request); this many more wait their
    # turn, each at most handshake_wait_s; the others are refused at once with 503 and
    # Retry-After (``unavailable``, ``server_busy``).
    handshake_concurrency: int = 32
    handshake_queue: int = 1024
    handshake_wait_s: float = 10.0
    # The listening socket's backlog: connections the kernel has completed and holds until the
    # node accepts them (the kernel caps it at net.core.somaxconn, 4096 on Linux >= 5.4).
    # aiohttp's default, 128, overflowed when 2,000 clients of a dead node reconnected within
    # half a second: the kernel dropped their handshakes and they waited for its retransmissions
    # (1, 2, 4, 8 s ...; many ran into their 15 s time-out) while the node had room.
    listen_backlog: int = 4096
    # Catch-ups (``sync``) in progress at once; the same queue and wait as handshakes, then
    # ``unavailable`` (``server_busy``) with ``retry_after_s``.
    sync_concurrency: int = 16
    # A live-session request carried to the session's node (another node) is answered
    # ``unavailable`` when that node has not answered within this long.
    node_request_timeout_s: float = 10.0
    # How often a node reads the positions of the streams its people follow from the store, to
    # deliver events the bus never brought (their node died before publishing them, or Redis
    # was down): such an event arrives within about two periods. 0: off. Only with Redis.
    follow_interval_s: float = 1.0
    # Tests only, never in production: the node kills itself (SIGKILL) right after committing
    # an event of this type, before publishing it (tests/test_follower.py).
    test_crash_before_publish: str = ""
    # On SIGTERM a node first moves its live sessions to the other nodes, for at most this long,
    # then closes its connections (shutdown_timeout_s) and exits (docs/operations.md).
    drain_timeout_s: float = 10.0
    # A node whose CPU is at or above this share of one core takes no new live session while
    # another node has room (realtime/cluster/placement.py).
    placement_cpu_full: float = 0.9
    # One lesson over several nodes (realtime/cluster/cascade.py, docs/scaling.md): the streams
    # this node may send (a viewer's camera and microphone count as one, a leg to an edge node
    # as one plus one per layer beyond the first of a camera in layers; ~250 per core at
    # 720p), announced in the registry. A session's origin serves
    # viewers itself up to this, less cascade_leg_reserve; the next ones go to edge nodes.
    cascade_node_streams: int = 250
    # Streams every node of a session's tree keeps free to feed new edges.
    cascade_leg_reserve: int = 4
    # An edge node that has not answered the origin within this long is given up for the
    # viewer being placed (placed elsewhere, or ``unavailable``) and takes no new viewer of
    # this node's sessions for a while; shorter than a client's request time-out (10 s).
    cascade_edge_timeout_s: float = 4.0
    # A session nobody publishes in for this long ends by itself.
    session_idle_end_s: int = 1800
    # A participant who drops out keeps their place (stage, hand) for this long.
    session_grace_s: int = 30
    # Bound on bytes queued to one slow client before it is disconnected.
    client_buffer_bytes: int = 4 * 1024 * 1024
    # Sign-in and registration defences (docs/security.md). Proxies whose X-Forwarded-For is
    # believed, comma-separated addresses or networks; empty: the peer address is the client's.
    trusted_proxies: str = ""
    # Argon2 runs in this many threads; this many more attempts may wait, the rest are refused.
    password_hash_workers: int = 2
    password_hash_queue: int = 32
    # Per account: wrong passwords before backoff (1 s, 2 s, 4 s ... up to the maximum).
    signin_account_free_failures: int = 5
    signin_account_backoff_max_s: int = 900
    # Per known device (device token): wrong passwords before that device backs off too.
    signin_device_free_failures: int = 10
    # Per client address: attempts (burst, then per second) and failures (burst, drained per s).
    signin_address_burst: int = 30
    signin_address_per_s: float = 0.5
    signin_address_failure_burst: int = 20
    signin_address_failures_per_s: float = 1 / 60
    # Registration per client address: failures (bad join codes, taken names) only.
    register_address_failure_burst: int = 10
    register_address_failures_per_s: float = 1 / 60
    # Failures older than this are forgotten.
    signin_failure_window_s: int = 3600
    # On SIGTERM: how long to wait for requests in flight to finish before exiting anyway; the
    # process exits within about this plus a second or two (docs/operations.md).
    shutdown_timeout_s: float = 10.0
    # Attachments (docs/operations.md: storage). "directory" (storage_dir) or "s3".
    storage_backend: str = "directory"
    # Blobs (directory backend) and this node's copies of unfinished uploads live here. In a
    # cluster on the s3 backend each node has its own: upload parts go to the bucket.
    storage_dir: str = "var/files"
    s3_endpoint: str = ""
    s3_bucket: str = "homeroom"
    s3_access_key: str = ""
    s3_secret_key: str = ""
    s3_region: str = "us-east-1"
    # Largest file per kind, in bytes (checked against the declared size and the content).
    upload_max_image_bytes: int = 20 * 1024 * 1024
    upload_max_document_bytes: int = 25 * 1024 * 1024
    upload_max_audio_bytes: int = 10 * 1024 * 1024
    upload_max_video_bytes: int = 200 * 1024 * 1024
    # Longest voice message, in seconds.
    voice_max_s: int = 300
    # Largest body of one PATCH (one chunk); memory per chunk in flight is 256 KiB regardless.
    upload_chunk_max_bytes: int = 16 * 1024 * 1024
    # Bytes a school may keep (uploads in progress count their declared size); a school's own
    # setting (schools.storage_quota_bytes) overrides it.
    school_quota_bytes: int = 20 * 1024 * 1024 * 1024
    # Days attachments are kept after they were sent; 0: for ever. Per school overridable.
    attachment_retention_days: int = 0
    # An upload never finished is dropped after this long.
    upload_abandon_s: int = 24 * 3600
    # Lifetime of a signed download link: a forwarded link stops working after this.
    download_link_ttl_s: int = 300
    # Threads for blocking file work (writes, fsync, hashing): the loop's default executor.
    # They mostly wait on the disk, so there are more than CPUs (Python's default is CPUs + 4,
    # and fifty uploads' fsyncs queued behind six threads). All started with the server.
    # Memory: a thread stack each.
    io_threads: int = 32
    # Worker processes that check files, make thumbnails and strip photos (off the event loop):
    # two thirds make thumbnails, the rest the full-size work. About the CPUs + 1.
    media_workers: int = 3
    # Start the worker processes with the server (else with the first photo: seconds later).
    media_warm_start: bool = True
    # How often the retention sweep runs.
    sweep_interval_s: int = 3600
    # How often each node looks for time-limited polls past their deadline whose own node did
    # not close them (it died): one indexed query per node per interval.
    poll_sweep_interval_s: float = 2.0

    # Who may read /metrics: clients from these addresses or networks (comma-separated; empty:
    # none), or anyone who sends ``Authorization: Bearer <metrics_token>`` (empty: no token).
    metrics_allow: str = "127.0.0.1,::1"
    metrics_token: str = ""

    # The school's time zone: quiet hours of push notifications are in it.
    school_time_zone: str = "Asia/Shanghai"
    # Web Push (docs/operations.md). The VAPID private key (PEM): made at first use if missing;
    # every node of a deployment must use the same file.
    push_enabled: bool = True
    push_vapid_key_file: str = "var/vapid_private.pem"
    push_vapid_subject: str = "mailto:admin@homeroom.invalid"
    # Hosts of push services the server may send to, comma-separated; ".example.com" matches
    # its subdomains. Subscriptions to other endpoints are refused (no requests to anywhere a
    # client names). Plain http only for 127.0.0.1/localhost listed here (tests, development).
    push_endpoint_hosts: str = (
        "fcm.googleapis.com,updates.push.services.mozilla.com,.notify.windows.com,.push.apple.com"
    )
    # Pushes in flight at once, and events waiting to be pushed (more are dropped and counted).
    push_concurrency: int = 8
    push_queue: int = 1000
    # How long a push service keeps trying a device that is offline.
    push_ttl_s: int = 24 * 3600
    push_timeout_s: float = 10.0
    # Homework "due soon" reminders (event homework.due, pushed): sent this long before the due
    # time to the students who have not handed it in and their guardians, once per homework.
    homework_due_notice_s: float = 3 * 3600
    # How often each node looks for homework due soon (a conditional UPDATE picks one node).
    homework_due_sweep_s: float = 60.0

    def validate(self) -> None:
        try:
            self.peer_networks  # noqa: B018
        except ValueError as exc:
            raise ConfigError(f"media_peer_networks: {exc}") from None
        if not 0 <= self.port <= 65535:
            raise ConfigError(f"port {self.port} is not a TCP port (0 to 65535)")
        try:
            ClientAddresses(self.trusted_proxies)
        except ValueError as exc:
            raise ConfigError(f"trusted_proxies: {exc}") from None
        try:
            self.metrics_networks  # noqa: B018 (parsed to check it)
        except ValueError as exc:
            raise ConfigError(f"metrics_allow: {exc}") from None
        if not 0 <= self.media_udp_port <= 65535:
            raise ConfigError(
                f"media_udp_port {self.media_udp_port} is not a UDP port (0 to 65535)"
            )
        if not 0 <= self.media_tcp_port <= 65535:
            raise ConfigError(
                f"media_tcp_port {self.media_tcp_port} is not a TCP port (0 to 65535)"
            )
        if self.media_tcp_port and self.media_tcp_port == self.port:
            raise ConfigError(f"media_tcp_port {self.media_tcp_port} is the HTTP port")
        if self.video_codec.upper() not in ("VP8", "H264"):
            raise ConfigError("video_codec must be 'VP8' or 'H264'")
        if self.sqlite_synchronous not in ("full", "normal"):
            raise ConfigError("sqlite_synchronous must be 'full' or 'normal'")
        if not 0 < self.node_heartbeat_s < self.node_ttl_s:
            raise ConfigError(
                "node_heartbeat_s must be positive and shorter than node_ttl_s "
                "(a node must announce itself before its announcement expires)"
            )
        if self.node_stall_s <= self.node_ttl_s:
            raise ConfigError("node_stall_s must be longer than node_ttl_s")
        if min(self.handshake_concurrency, self.sync_concurrency) < 1 or self.handshake_queue < 0:
            raise ConfigError(
                "handshake_concurrency and sync_concurrency must be at least 1, "
                "handshake_queue 0 or more"
            )
        if self.listen_backlog < 1:
            raise ConfigError("listen_backlog must be at least 1")
        if self.handshake_wait_s <= 0 or self.database_queue_wait_s <= 0:
            raise ConfigError("handshake_wait_s and database_queue_wait_s must be positive")
        if self.database_queue < 0:
            raise ConfigError("database_queue must be 0 or more")
        if self.drain_timeout_s < 0:
            raise ConfigError("drain_timeout_s must be zero (no moving) or positive")
        if self.node_request_timeout_s <= 0 or self.cascade_edge_timeout_s <= 0:
            raise ConfigError("node_request_timeout_s and cascade_edge_timeout_s must be positive")
        if self.database_statement_timeout_s < 0:
            raise ConfigError("database_statement_timeout_s must be 0 (no limit) or positive")
        if self.placement_cpu_full <= 0:
            raise ConfigError("placement_cpu_full must be positive (a share of one core)")
        if self.cascade_node_streams < 1 or self.cascade_leg_reserve < 0:
            raise ConfigError(
                "cascade_node_streams must be at least 1 and cascade_leg_reserve 0 or more"
            )
        if self.follow_interval_s < 0:
            raise ConfigError("follow_interval_s must be 0 (off) or positive")
        if self.shutdown_timeout_s <= 0:
            raise ConfigError("shutdown_timeout_s must be positive")
        if self.poll_sweep_interval_s <= 0:
            raise ConfigError("poll_sweep_interval_s must be positive")
        if self.homework_due_sweep_s <= 0 or self.homework_due_notice_s <= 0:
            raise ConfigError("homework_due_sweep_s and homework_due_notice_s must be positive")
        if not 1 <= self.io_threads <= 256:
            raise ConfigError("io_threads must be between 1 and 256")
        if self.storage_backend not in ("directory", "s3"):
            raise ConfigError("storage_backend must be 'directory' or 's3'")
        if self.storage_backend == "s3" and not (self.s3_bucket and self.s3_access_key):
            raise ConfigError("the s3 storage backend needs s3_bucket and s3_access_key")
        try:
            ZoneInfo(self.school_time_zone)
        except (ZoneInfoNotFoundError, ValueError):
            raise ConfigError(
                f"school_time_zone {self.school_time_zone!r} is not a time zone (Asia/Shanghai)"
            ) from None
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
    def node(self) -> str:
        """This node's name among several: ``node_name``, or ``host:port`` of this machine."""
        return self.node_name or f"{socket.gethostname()}:{self.port}"

    @property
    def peer_networks(self) -> list[IPv4Network | IPv6Network]:
        """``media_peer_networks`` parsed (empty: media peers may be anywhere)."""
        return [
            ip_network(a.strip(), strict=False)
            for a in self.media_peer_networks.split(",")
            if a.strip()
        ]

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


_TRUE = ("1", "true", "yes", "on")
_FALSE = ("0", "false", "no", "off", "")


def _coerce(name: str, raw: Any, default: Any, source: str) -> Any:
    """The setting's value as its type; a value that is not one says which setting and why.

    ``source`` names where it came from (an environment variable or the TOML file).
    """
    where = f"{source} = {str(raw)[:60]!r}"
    if isinstance(default, bool):
        if isinstance(raw, bool):
            return raw
        word = str(raw).strip().lower()
        if word in _TRUE:
            return True
        if word in _FALSE:
            return False
        raise ConfigError(f"{where}: {name} is true or false (1/0, yes/no, on/off)")
    if isinstance(default, int):
        if isinstance(raw, bool | float):
            raise ConfigError(f"{where}: {name} is a whole number")
        try:
            return int(raw)
        except ValueError:
            raise ConfigError(f"{where}: {name} is a whole number") from None
    if isinstance(default, float):
        if isinstance(raw, bool):
            raise ConfigError(f"{where}: {name} is a number")
        try:
            return float(raw)
        except ValueError:
            raise ConfigError(f"{where}: {name} is a number") from None
    if isinstance(default, dict):
        if isinstance(raw, dict):
            return {str(k): str(v) for k, v in raw.items()}
        # "kid1=secret1,kid2=secret2"
        parts = [p.strip() for p in str(raw).split(",") if p.strip()]
        if any("=" not in p for p in parts):
            raise ConfigError(f"{source}: {name} is a list of key-id=secret, comma-separated")
        pairs = [p.split("=", 1) for p in parts]
        return {k.strip(): v.strip() for k, v in pairs}
    if not isinstance(raw, str):
        raise ConfigError(f"{where}: {name} is text")
    return raw


def load_settings(path: str | Path | None = None, **overrides: Any) -> Settings:
    """Build settings from defaults, an optional TOML file, the environment, then overrides."""
    values: dict[str, Any] = {}
    defaults = Settings()
    known = {f.name for f in fields(Settings)}
    path = path or os.environ.get("HOMEROOM_CONFIG")
    if path:
        try:
            with open(path, "rb") as fh:
                data = tomllib.load(fh)
        except OSError as exc:
            raise ConfigError(f"cannot read the settings file {path}: {exc.strerror}") from None
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"the settings file {path} is not valid TOML: {exc}") from None
        for key, raw in data.items():
            if key not in known:
                raise ConfigError(f"unknown setting {key!r} in {path}")
            values[key] = _coerce(key, raw, getattr(defaults, key), f"{key} in {path}")
    for key in known:
        var = "HOMEROOM_" + key.upper()
        env = os.environ.get(var)
        if env is not None:
            values[key] = _coerce(key, env, getattr(defaults, key), var)
    values.update(overrides)
    return Settings(**values)
