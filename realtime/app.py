"""The app factory: settings in, a ready aiohttp application out. No globals, no import-time I/O."""

from __future__ import annotations

import logging
from importlib import resources
from pathlib import Path

from aiohttp import web

from media.ice import host_addresses, release_udp_mux, use_host_addresses, use_udp_mux
from media.internals import check_internals as check_aiortc_internals
from realtime import jsoncodec
from realtime.auth import TokenIssuer
from realtime.bus import make_bus
from realtime.config import Settings
from realtime.hub import Hub
from realtime.live.actions import LiveService
from realtime.metrics import Metrics
from realtime.store import open_store
from realtime.transport.clientaddr import ClientAddresses
from realtime.transport.rest import (
    ADDRESSES,
    HUB,
    LIVE,
    METRICS,
    add_routes,
    errors_middleware,
)
from realtime.transport.sio_internals import IndexedManager, SocketServer
from realtime.transport.sio_internals import check_internals as check_sio_internals
from realtime.transport.socket import Gateway

GATEWAY = web.AppKey("gateway", Gateway)


def web_dist() -> Path:
    """The built web app: package data of ``clients`` (clients/web/dist in a source tree, or in
    site-packages when installed from a wheel)."""
    return Path(str(resources.files("clients").joinpath("web", "dist")))


log = logging.getLogger(__name__)


def create_app(settings: Settings, *, migrate: bool = True) -> web.Application:
    settings.validate()
    # The private internals of other libraries this server relies on: checked once a process.
    check_sio_internals()
    check_aiortc_internals()
    ice_hosts = [a.strip() for a in settings.ice_host_addresses.split(",") if a.strip()]
    store = open_store(settings.database_url)
    bus = make_bus(settings.redis_url, settings.bus_channel)
    tokens = TokenIssuer(settings.signing_keys, settings.secret_key_id, settings.access_token_ttl_s)
    hub = Hub(settings, store, bus, tokens)
    metrics = Metrics()
    sio = SocketServer(
        async_mode="aiohttp",
        client_manager=IndexedManager(),
        serializer="msgpack" if settings.serializer == "msgpack" else "default",
        json=jsoncodec,
        max_http_buffer_size=settings.max_packet_bytes,
        # Engine.IO already runs each incoming message in a task of its own; a second task per
        # Socket.IO event (the default) only added a hop of the event loop to every request.
        async_handlers=False,
        logger=False,
        engineio_logger=False,
    )
    app = web.Application(middlewares=[errors_middleware], client_max_size=4 * 1024 * 1024)
    app[HUB] = hub
    app[METRICS] = metrics
    app[ADDRESSES] = ClientAddresses(settings.trusted_proxies)
    metrics.watch_signin(hub.signin)
    gateway = Gateway(hub, sio, metrics)
    app[GATEWAY] = gateway
    live = LiveService(hub, gateway)
    app[LIVE] = live
    metrics.watch_media(lambda: {sid: rt.stats() for sid, rt in live.runtimes.items()})
    sio.attach(app, socketio_path="socket.io")
    add_routes(app)
    _add_web_app(app, settings.serializer)

    async def start(_app: web.Application) -> None:
        if ice_hosts:
            use_host_addresses(ice_hosts)  # process-wide (aioice): explicitly, at start-up
        if settings.media_udp_port:
            await use_udp_mux(settings.media_udp_port, ice_hosts or host_addresses())
        if migrate:
            await store.migrate()
        await bus.start(gateway.on_bus)
        await live.recover()

    async def stop(_app: web.Application) -> None:
        await live.close()
        if settings.media_udp_port:
            release_udp_mux()
        await bus.close()
        await store.close()
        hub.passwords.close()

    app.on_startup.append(start)
    app.on_cleanup.append(stop)
    return app


def _add_web_app(app: web.Application, serializer: str) -> None:
    dist = web_dist()
    index = dist / "index.html"
    # The page learns the Socket.IO wire encoding from the server that serves it.
    meta = f'<meta name="homeroom-serializer" content="{serializer}">'

    async def page(_request: web.Request) -> web.StreamResponse:
        if index.exists():
            html = index.read_text(encoding="utf-8").replace("</head>", meta + "</head>", 1)
            return web.Response(
                text=html, content_type="text/html", headers={"Cache-Control": "no-cache"}
            )
        return web.Response(
            text="<!doctype html><meta charset=utf-8><title>Homeroom</title>"
            "<p>Homeroom is running. The web app has not been built: run <code>make run</code>."
            "<p>Homeroom 已启动，网页应用尚未构建：请运行 <code>make run</code>。",
            content_type="text/html",
        )

    app.router.add_get("/", page)
    if (dist / "assets").is_dir():
        app.router.add_static("/assets", dist / "assets")
