"""The app factory: settings in, a ready aiohttp application out. No globals, no import-time I/O."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import weakref
from concurrent.futures import ThreadPoolExecutor
from importlib import resources
from pathlib import Path

from aiohttp import web

from media.ice import TCP_MUX, UDP_MUX, host_addresses, use_host_addresses, use_peer_networks
from media.internals import check_internals as check_aiortc_internals
from realtime import jsoncodec
from realtime.actions import homework_due, pending_photos, retention
from realtime.actions.poll_counts import counts as poll_counts
from realtime.actions.poll_deadlines import deadlines as poll_deadlines
from realtime.actions.uploads import Files
from realtime.auth import TokenIssuer
from realtime.bus import make_bus
from realtime.cluster.follower import Follower
from realtime.cluster.redis_registry import make_registry
from realtime.cluster.route import node_route
from realtime.cluster.watch import NodeWatch
from realtime.config import Settings
from realtime.hub import Hub
from realtime.live.service import LiveService
from realtime.metrics import Metrics
from realtime.push.dispatcher import PushDispatcher
from realtime.push.vapid import VapidKey
from realtime.store import open_store
from realtime.transport import admission, headers
from realtime.transport.admission import handshake_gate
from realtime.transport.clientaddr import ClientAddresses
from realtime.transport.rest import (
    ADDRESSES,
    HUB,
    LIVE,
    METRICS,
    NODES,
    add_routes,
    errors_middleware,
)
from realtime.transport.sio_internals import (
    IndexedManager,
    SocketServer,
    route_session_ids,
    shutdown,
)
from realtime.transport.sio_internals import check_internals as check_sio_internals
from realtime.transport.sio_internals.packets import StrictMsgPackPacket, StrictPacket
from realtime.transport.socket import Gateway
from realtime.transport.uploads import FILES

GATEWAY = web.AppKey("gateway", Gateway)


def web_dist() -> Path:
    """The built web app: package data of ``clients`` (clients/web/dist in a source tree, or in
    site-packages when installed from a wheel)."""
    return Path(str(resources.files("clients").joinpath("web", "dist")))


log = logging.getLogger(__name__)


# Loops whose default executor this module set (several apps may share one loop in tests).
_IO_LOOPS: weakref.WeakSet[asyncio.AbstractEventLoop] = weakref.WeakSet()


# The longest the start-up waits for the I/O threads to be running.
IO_THREADS_START_S = 10.0


def use_io_threads(n: int) -> None:
    """Give the running loop a default executor of ``n`` threads (``asyncio.to_thread``): file
    work waits on the disk, and uploads must not queue behind each other's fsyncs.

    All ``n`` are started now. A ThreadPoolExecutor starts a thread when a job finds none idle,
    and ``Thread.start()`` waits until the new thread runs: on a busy machine that wait was the
    event loop's, up to 45 ms in the middle of fifty uploads (bench/uploads.py)."""
    loop = asyncio.get_running_loop()
    if loop not in _IO_LOOPS:
        pool = ThreadPoolExecutor(n, thread_name_prefix="io")
        # Each job holds its thread until all n are there, so every submit starts a new one.
        started = threading.Barrier(n, timeout=IO_THREADS_START_S)
        for _ in range(n):
            pool.submit(started.wait)
        loop.set_default_executor(pool)
        _IO_LOOPS.add(loop)


def create_app(settings: Settings, *, migrate: bool = True) -> web.Application:
    settings.validate()
    # The private internals of other libraries this server relies on: checked once a process.
    check_sio_internals()
    check_aiortc_internals()
    ice_hosts = [a.strip() for a in settings.ice_host_addresses.split(",") if a.strip()]
    store = open_store(
        settings.database_url,
        sqlite_synchronous=settings.sqlite_synchronous,
        statement_timeout_s=settings.database_statement_timeout_s,
        queue=settings.database_queue,
        queue_wait_s=settings.database_queue_wait_s,
    )
    bus = make_bus(settings.redis_url, settings.bus_channel, settings.node)
    tokens = TokenIssuer(settings.signing_keys, settings.secret_key_id, settings.access_token_ttl_s)
    hub = Hub(settings, store, bus, tokens)
    files = Files(settings)
    hub.files = files
    metrics = Metrics()
    sio = SocketServer(
        async_mode="aiohttp",
        client_manager=IndexedManager(),
        # Packets that cannot be read are still answered (bad_request), never left unacked.
        serializer=StrictMsgPackPacket if settings.serializer == "msgpack" else StrictPacket,
        json=jsoncodec,
        max_http_buffer_size=settings.max_packet_bytes,
        # python-socketio then handles a connection's events one at a time, in order (it turns
        # Engine.IO's tasks off too); SocketServer runs each in a task of its own and reads the
        # next once the current one only waits for the store or the disk (group commit).
        async_handlers=False,
        logger=False,
        engineio_logger=False,
    )
    # New connections are admitted a bounded number at a time (a reconnection storm).
    handshakes = handshake_gate(
        settings.handshake_concurrency, settings.handshake_queue, settings.handshake_wait_s
    )
    app = web.Application(
        middlewares=[errors_middleware, admission.middleware(handshakes)],
        client_max_size=4 * 1024 * 1024,
    )
    app[HUB] = hub
    app[admission.HANDSHAKES] = handshakes
    app[METRICS] = metrics
    app[ADDRESSES] = ClientAddresses(settings.trusted_proxies)
    metrics.watch_signin(hub.signin)
    app[FILES] = files
    metrics.watch_push(lambda: hub.pusher.counts() if hub.pusher is not None else None)
    gateway = Gateway(hub, sio, metrics)
    app[GATEWAY] = gateway
    follower = None
    if settings.follow_interval_s > 0 and bus.health.kind != "local":
        follower = Follower(
            store,
            gateway.positions,
            gateway.deliver,
            interval_s=settings.follow_interval_s,
            page=settings.catchup_page_max,
        )
    metrics.watch_follower(gateway.positions, follower)
    live = LiveService(hub, gateway)
    app[LIVE] = live
    # Session ids name this node: the load balancer routes long-polling by them.
    route_session_ids(sio.eio, node_route(live.node))
    watch = NodeWatch(
        live, make_registry(settings.redis_url, settings.bus_channel), _address(settings)
    )
    app[NODES] = watch
    metrics.watch_nodes(watch)
    metrics.watch_bus(bus.health)
    metrics.watch_store(store.health)
    metrics.watch_gate("homeroom_handshakes", "New connections in their handshake", handshakes)
    metrics.watch_gate("homeroom_syncs", "Catch-ups (sync)", gateway.syncs)
    if store.gate is not None:
        metrics.watch_gate(
            "homeroom_store_pool", "Transactions and reads holding or awaiting", store.gate
        )
    metrics.watch_media(lambda: {sid: rt.stats() for sid, rt in live.runtimes.items()})
    sio.attach(app, socketio_path="socket.io")
    add_routes(app)
    headers.install(app)
    _add_web_app(app, settings.serializer)

    async def start(_app: web.Application) -> None:
        use_io_threads(settings.io_threads)
        if ice_hosts:
            use_host_addresses(ice_hosts)  # process-wide (aioice): explicitly, at start-up
        use_peer_networks(settings.peer_networks)  # the same
        if settings.media_udp_port:
            await UDP_MUX.use(settings.media_udp_port, ice_hosts or host_addresses())
        if settings.media_tcp_port:
            await TCP_MUX.use(settings.media_tcp_port, ice_hosts or host_addresses())
        if migrate:
            await store.migrate()
        if settings.push_enabled:
            vapid = VapidKey.load_or_create(
                settings.push_vapid_key_file, settings.push_vapid_subject
            )
            hub.pusher = PushDispatcher(store, settings, vapid)
            await hub.pusher.start()
        await bus.start(gateway.on_bus)
        if follower is not None:
            follower.start()
        # With other nodes (Redis), what this node ran before a crash moves rather than ends.
        await live.recover(move=bool(settings.redis_url))
        # Announced before the node serves (the others must never take its sessions for lost).
        await watch.start()
        if settings.media_warm_start:
            files.workers.warm()
        await pending_photos.resume_pending(hub, files)
        loop = asyncio.get_running_loop()
        sweeper.append(loop.create_task(_sweep_forever()))
        sweeper.append(loop.create_task(_homework_due_forever()))
        poll_deadlines(hub).start()

    async def _sweep_forever() -> None:
        while True:
            await asyncio.sleep(settings.sweep_interval_s)
            try:
                await retention.sweep(hub, files)
            except Exception:
                log.exception("the attachments sweep failed")

    async def _homework_due_forever() -> None:
        while True:
            await asyncio.sleep(settings.homework_due_sweep_s)
            try:
                await homework_due.sweep(hub)
            except Exception:
                log.exception("the homework due sweep failed")

    sweeper: list[asyncio.Task[None]] = []

    async def drain(_app: web.Application) -> None:
        # Before the connections close: this node's live sessions move to the other nodes
        # (members told through the class streams, re-joining there), bounded.
        if settings.drain_timeout_s > 0:
            try:
                await watch.drain(settings.drain_timeout_s)
            except Exception:
                log.exception("moving live sessions away failed; they end with this node")

    async def close_connections(_app: web.Application) -> None:
        gateway.closing = True
        await shutdown.close_connections(sio, settings.shutdown_timeout_s)

    async def stop(_app: web.Application) -> None:
        for task in sweeper:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        await poll_deadlines(hub).close()
        await poll_counts(hub).close()
        await files.close()
        await watch.close()
        if follower is not None:
            await follower.close()
        await live.close()
        if settings.media_udp_port:
            UDP_MUX.release()
        if settings.media_tcp_port:
            TCP_MUX.release()
        await bus.close()
        if hub.pusher is not None:
            await hub.pusher.close()
        await store.close()
        hub.passwords.close()

    app.on_startup.append(start)
    app.on_shutdown.append(drain)
    app.on_shutdown.append(close_connections)
    app.on_cleanup.append(stop)
    return app


def _address(settings: Settings) -> str:
    """Where this node answers, as the others would reach it."""
    host = settings.ice_public_address or settings.host
    return f"{host}:{settings.port}"


def _add_web_app(app: web.Application, serializer: str) -> None:
    dist = web_dist()
    index = dist / "index.html"
    # The page learns the Socket.IO wire encoding from the server that serves it.
    meta = f'<meta name="homeroom-serializer" content="{serializer}">'

    async def page(_request: web.Request) -> web.StreamResponse:
        if index.exists():
            html = index.read_text(encoding="utf-8").replace("</head>", meta + "</head>", 1)
            return web.Response(
                text=html,
                content_type="text/html",
                headers={"Cache-Control": "no-cache", **headers.page_headers()},
            )
        return web.Response(
            text="<!doctype html><meta charset=utf-8><title>Homeroom</title>"
            "<p>Homeroom is running. The web app has not been built: run <code>make run</code>."
            "<p>Homeroom 已启动，网页应用尚未构建：请运行 <code>make run</code>。",
            content_type="text/html",
            headers=headers.page_headers(),
        )

    app.router.add_get("/", page)
    if (dist / "assets").is_dir():
        app.router.add_static("/assets", dist / "assets")
    _add_installable(app, dist)


# The installable app (clients/web/public, copied into dist by the build): the service worker
# must be served from "/" to control the whole app, and never cached by HTTP (a new build is
# picked up on the next visit).
_ROOT_FILES = {
    "sw.js": ("application/javascript", "no-cache"),
    "manifest.webmanifest": ("application/manifest+json", "no-cache"),
}


def _add_installable(app: web.Application, dist: Path) -> None:
    for name, (content_type, cache) in _ROOT_FILES.items():
        path = dist / name
        if not path.exists():
            continue
        body = path.read_bytes()  # small, read once at start-up

        async def serve(
            _request: web.Request, body: bytes = body, ct: str = content_type, cc: str = cache
        ) -> web.StreamResponse:
            # The service worker runs under the policy of its own script's response: the
            # page's (it fetches the app shell from this server), not "default-src 'none'".
            return web.Response(
                body=body, content_type=ct, headers={"Cache-Control": cc, **headers.page_headers()}
            )

        app.router.add_get(f"/{name}", serve)
    if (dist / "icons").is_dir():
        app.router.add_static("/icons", dist / "icons")
