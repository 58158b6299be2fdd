"""The ``homeroom`` console command."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import getpass
import logging
import socket
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

from aiohttp import web
from sqlalchemy import select

from realtime import demo
from realtime.auth import TokenIssuer
from realtime.config import ConfigError, Settings, load_settings
from realtime.domain.roles import Role
from realtime.errors import HomeroomError
from realtime.store import Store, open_store
from realtime.store.db import inserted_id
from realtime.store.schema import classes, schools, users


def _settings(args: argparse.Namespace) -> Settings:
    overrides: dict[str, Any] = {}
    if getattr(args, "demo", False):
        overrides["demo"] = True
    if getattr(args, "host", None):
        overrides["host"] = args.host
    if getattr(args, "port", None):
        overrides["port"] = args.port
    return load_settings(args.config, **overrides)


async def _with_store(settings: Settings, work: Callable[[Store], Awaitable[int]]) -> int:
    store = open_store(settings.database_url)
    try:
        await store.migrate()
        return await work(store)
    finally:
        await store.close()


def cmd_serve(args: argparse.Namespace) -> int:
    from realtime.cluster import supervisor

    settings = _settings(args)
    settings.validate()
    workers = supervisor.worker_count(args.workers)
    supervisor.check_cluster(settings, workers)
    logging.basicConfig(
        level=settings.log_level, format="%(asctime)s %(levelname)s %(name)s %(message)s"
    )
    base = f"http://{settings.host}:{settings.port}"

    async def prepare(store: Store) -> int:
        if settings.demo and await demo.is_empty(store):
            info = await demo.seed(store)
            print(demo.sign_in_help(base, info["join_code"]), flush=True)
        elif settings.demo:
            print(demo.sign_in_help(base), flush=True)
        return 0

    use_uvloop()
    if not args.worker:  # a worker's supervisor did this once for all
        asyncio.run(_with_store(settings, prepare))
    if workers > 1:
        plan = supervisor.plan(settings, workers, socket.gethostname())
        ports = f"{plan[0].port}-{plan[-1].port}"
        print(f"Homeroom is serving: {workers} workers, {settings.host} ports {ports}", flush=True)
        global_args = ["--config", args.config] if args.config else []
        return supervisor.Supervisor(settings, plan, global_args, demo=settings.demo).run()
    print(f"Homeroom is serving on {base}/  (Ctrl-C to stop)", flush=True)
    run_serving(serving_app(settings), settings)
    print("Homeroom stopped", flush=True)
    return 0


def use_uvloop() -> None:
    """uvloop's event loop for what follows, when it is installed (``homeroom[fast]``)."""
    try:
        import uvloop

        uvloop.install()
    except ImportError:
        pass


def serving_app(settings: Settings) -> web.Application:
    """The app as ``homeroom serve`` runs it (bench/upload_server.py measures this one): short
    collector pauses, live sessions moved away on SIGTERM, a watchdog on the shutdown."""
    from realtime.app import create_app

    app = create_app(settings)
    app.cleanup_ctx.append(_collector_policy)
    app.on_startup.append(_drain_first(settings.drain_timeout_s))
    app.on_shutdown.insert(0, _exit_watchdog(settings.shutdown_timeout_s, settings.drain_timeout_s))
    return app


def run_serving(app: web.Application, settings: Settings) -> None:
    web.run_app(
        app,
        host=settings.host,
        port=settings.port,
        print=None,
        access_log=None,
        backlog=settings.listen_backlog,
        # SIGTERM and SIGINT: stop accepting, close every connection
        # (transport/sio_internals/shutdown.py), then wait at most this long for handlers
        # still running.
        shutdown_timeout=settings.shutdown_timeout_s,
    )


def _drain_first(timeout: float) -> Callable[[web.Application], Awaitable[None]]:
    """SIGTERM / SIGINT: first move this node's live sessions to the other nodes while it still
    serves fully (its clients re-join through it), then the usual shutdown. aiohttp's shutdown
    stops reading from every connection at once, so a drain inside it could tell its clients
    of the move but not hear them re-join. Installed at start-up, after aiohttp's handlers,
    which it replaces; a second signal during the drain stops at once."""

    async def install(app: web.Application) -> None:
        import signal

        from realtime.transport.rest import NODES

        loop = asyncio.get_running_loop()
        draining: list[asyncio.Task[None]] = []

        def stop() -> None:
            raise web.GracefulExit()

        async def drain_then_stop() -> None:
            try:
                if timeout > 0:
                    await app[NODES].drain(timeout)
            except Exception:
                logging.getLogger(__name__).exception("draining failed; stopping anyway")
            finally:
                loop.call_soon(stop)

        def on_signal() -> None:
            if draining:
                stop()
            draining.append(loop.create_task(drain_then_stop()))

        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, on_signal)

    return install


# Past the shutdown timeout, the watchdog gives the rest of the shutdown (handlers cancelled,
# the store closed) this long before it ends the process itself.
WATCHDOG_GRACE_S = 5.0


def _exit_watchdog(
    timeout: float, drain: float = 0.0
) -> Callable[[web.Application], Awaitable[None]]:
    """A bound on shutdown whatever hangs: exit(70) if the process is still alive after
    ``drain + 2 * timeout + WATCHDOG_GRACE_S`` seconds (live sessions moving away get
    ``drain``, connections ``timeout``, handlers ``timeout``)."""

    async def arm(_app: web.Application) -> None:
        import os
        import threading

        def expire() -> None:
            print("homeroom: shutdown took too long; exiting now", file=sys.stderr, flush=True)
            os._exit(70)

        timer = threading.Timer(drain + 2 * timeout + WATCHDOG_GRACE_S, expire)
        timer.daemon = True
        timer.start()

    return arm


async def _collector_policy(app: web.Application) -> AsyncIterator[None]:
    """Short garbage-collector pauses for the serving process (realtime/collector.py): what
    start-up loaded is frozen (a full collection walked ~125,000 such objects, ~80 ms), then
    the survivors of each full collection, with maintenance passes when the node is quiet."""
    from realtime.app import GATEWAY
    from realtime.collector import CollectorPolicy
    from realtime.transport.rest import LIVE

    gateway, live = app[GATEWAY], app[LIVE]

    def last_activity() -> float:
        # Media flows on the event loop: while a live session runs here, the node is never
        # quiet enough for a pass that walks every object.
        return time.monotonic() if live.runtimes else gateway.last_event_at

    policy = CollectorPolicy(last_activity)
    policy.install()
    task = asyncio.create_task(policy.run())
    yield
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task
    policy.uninstall()


def cmd_migrate(args: argparse.Namespace) -> int:
    async def nothing(_store: Store) -> int:
        print("database is up to date")
        return 0

    return asyncio.run(_with_store(_settings(args), nothing))


def cmd_demo(args: argparse.Namespace) -> int:
    async def work(store: Store) -> int:
        if not await demo.is_empty(store):
            print("the database is not empty; the demo school was not added")
            return 1
        info = await demo.seed(store)
        print(demo.sign_in_help("http://HOST:PORT", info["join_code"]))
        return 0

    return asyncio.run(_with_store(_settings(args), work))


def cmd_import_roster(args: argparse.Namespace) -> int:
    from realtime.actions import roster_import
    from realtime.bus import LocalBus
    from realtime.hub import Hub

    settings = _settings(args)
    with open(args.file, encoding="utf-8") as fh:
        text = fh.read()

    async def work(store: Store) -> int:
        hub = Hub(
            settings,
            store,
            LocalBus(),
            TokenIssuer(settings.signing_keys, settings.secret_key_id, 60),
        )
        try:
            result = await roster_import.import_roster(hub, None, args.class_id, text)
        except roster_import.RosterRejected as exc:
            print(
                "The roster was NOT imported; nothing was changed. Rejected rows:", file=sys.stderr
            )
            for row in roster_import.rejection_report(exc):
                print(f"  line {row['line']}: {row['reason']}", file=sys.stderr)
            return 1
        except HomeroomError as exc:
            print(f"error ({exc.code}): {exc.message}", file=sys.stderr)
            return 1
        finally:
            hub.passwords.close()
        print(f"imported {result['rows']} rows")
        if result["created"]:
            print("new accounts (give each person their first password):")
            for c in result["created"]:
                print(f"  {c['username']:<24} {c['display_name']:<30} {c['password']}")
        return 0

    return asyncio.run(_with_store(settings, work))


def cmd_create_user(args: argparse.Namespace) -> int:
    from realtime.actions.accounts import create_user
    from realtime.actions.roster import add_member

    password = args.password or getpass.getpass("password: ")

    async def work(store: Store) -> int:
        import time

        async with store.transaction() as conn:
            school = (await conn.execute(select(schools.c.id).order_by(schools.c.id))).first()
            if school is None:
                school_id = inserted_id(
                    await conn.execute(schools.insert().values(name=args.school or "School"))
                )
            else:
                school_id = school.id
            try:
                uid = await create_user(
                    conn,
                    school_id,
                    args.username,
                    args.name or args.username,
                    password,
                    school_admin=args.school_admin,
                    now=time.time(),
                )
            except HomeroomError as exc:
                print(f"error ({exc.code}): {exc.message}", file=sys.stderr)
                return 1
            if args.class_id:
                exists = (
                    await conn.execute(select(classes.c.id).where(classes.c.id == args.class_id))
                ).first()
                if exists is None:
                    print(f"error: no class {args.class_id}", file=sys.stderr)
                    raise SystemExit(1)
                await add_member(conn, args.class_id, uid, Role(args.role))
        print(f"created user {args.username} (id {uid})")
        return 0

    return asyncio.run(_with_store(_settings(args), work))


def cmd_token(args: argparse.Namespace) -> int:
    settings = _settings(args)

    async def work(store: Store) -> int:
        async with store.read() as conn:
            user = (
                await conn.execute(
                    select(users.c.id, users.c.school_id).where(users.c.username == args.user)
                )
            ).first()
        if user is None:
            print(f"error: no user {args.user}", file=sys.stderr)
            return 1
        issuer = TokenIssuer(
            settings.signing_keys, settings.secret_key_id, args.ttl or settings.access_token_ttl_s
        )
        print(issuer.issue(user.id, user.school_id))
        return 0

    return asyncio.run(_with_store(settings, work))


def cmd_digest(args: argparse.Namespace) -> int:
    """The guardians' weekly digest, for cron: stored in their streams (clients catch up on
    their next sync), and pushed live through Redis when the server runs with it."""
    from realtime.actions.records import digest_all
    from realtime.bus import make_bus
    from realtime.hub import Hub

    settings = _settings(args)

    async def work(store: Store) -> int:
        async with store.read() as conn:
            ids = [r.id for r in await conn.execute(select(classes.c.id).order_by(classes.c.id))]
        if args.class_id is not None:
            if args.class_id not in ids:
                print(f"error: no class {args.class_id}", file=sys.stderr)
                return 1
            ids = [args.class_id]
        bus = make_bus(settings.redis_url, settings.bus_channel)
        tokens = TokenIssuer(
            settings.signing_keys, settings.secret_key_id, settings.access_token_ttl_s
        )
        try:
            sent = await digest_all(Hub(settings, store, bus, tokens), ids)
        finally:
            await bus.close()
        print(f"weekly digest: {sent} digests to guardians of {len(ids)} classes")
        return 0

    return asyncio.run(_with_store(settings, work))


def cmd_nginx_config(args: argparse.Namespace) -> int:
    """Print the nginx configuration for the given nodes, or for this config's workers."""
    from realtime.cluster import nginx, supervisor

    try:
        if args.node:
            nodes = [nginx.parse_node(n) for n in args.node]
        else:
            settings = _settings(args)
            workers = supervisor.worker_count(args.workers)
            # Where nginx reaches the workers: their own address, loopback if they listen on all.
            host = "127.0.0.1" if settings.host in ("0.0.0.0", "") else settings.host
            host = "[::1]" if host == "::" else host
            plan = supervisor.plan(settings, workers, socket.gethostname())
            if workers == 1:  # one node: named as LiveService names it (serve without --workers)
                plan[0].name = settings.node_name or f"{socket.gethostname()}:{settings.port}"
            nodes = [nginx.Node(w.name, f"{host}:{w.port}") for w in plan]
        print(nginx.render(nodes, listen=args.listen, server_name=args.server_name), end="")
    except ValueError as exc:
        raise ConfigError(f"nginx-config: {exc}") from None
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="homeroom", description="Homeroom classroom server")
    parser.add_argument("--config", help="TOML settings file (default: $HOMEROOM_CONFIG)")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("serve", help="run the server")
    p.add_argument(
        "--demo",
        action="store_true",
        help="demo mode: built-in secret allowed, demo school seeded if empty",
    )
    p.add_argument("--host")
    p.add_argument("--port", type=int)
    p.add_argument(
        "--workers",
        default="1",
        help="node processes on this machine, each on its own port (port, port+1, ...), or "
        "'auto' for one per core; more than 1 needs PostgreSQL and Redis (docs/operations.md)",
    )
    # Set by the supervisor for the processes it starts: it migrated and seeded already.
    p.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    p.set_defaults(func=cmd_serve)

    p = sub.add_parser("migrate", help="create or upgrade the database schema")
    p.set_defaults(func=cmd_migrate)

    p = sub.add_parser("demo", help="add the demo school to an empty database")
    p.set_defaults(func=cmd_demo)

    p = sub.add_parser("import-roster", help="import students and guardians from a CSV file")
    p.add_argument(
        "file",
        help="CSV with columns student,student_username,guardian,"
        "guardian_username,relationship,phone",
    )
    p.add_argument("--class", dest="class_id", type=int, required=True, help="class id")
    p.set_defaults(func=cmd_import_roster)

    p = sub.add_parser("create-user", help="create an account")
    p.add_argument("username")
    p.add_argument("--name", help="display name")
    p.add_argument("--password", help="password (asked for if not given)")
    p.add_argument("--school-admin", action="store_true")
    p.add_argument("--school", help="school name, if no school exists yet")
    p.add_argument("--class", dest="class_id", type=int, help="add to this class")
    p.add_argument("--role", default="teacher", choices=[r.value for r in Role])
    p.set_defaults(func=cmd_create_user)

    p = sub.add_parser("token", help="print an access token for a user (for scripts)")
    p.add_argument("user", help="username")
    p.add_argument("--ttl", type=int, help="lifetime in seconds")
    p.set_defaults(func=cmd_token)

    p = sub.add_parser(
        "digest", help="send guardians the weekly digest of their children's records"
    )
    p.add_argument("--class", dest="class_id", type=int, help="only this class")
    p.set_defaults(func=cmd_digest)
    p = sub.add_parser(
        "nginx-config",
        help="print the nginx load balancer configuration for the nodes (docs/operations.md)",
    )
    p.add_argument(
        "--node",
        action="append",
        metavar="NAME=HOST:PORT",
        help="a node: its node_name and where nginx reaches it (repeat for each node); "
        "without it, the workers of this configuration (--workers)",
    )
    p.add_argument("--workers", default="1", help="as for serve: N, or 'auto'")
    p.add_argument("--listen", default="80", help="nginx's listen parameters (default 80)")
    p.add_argument("--server-name", default="_", help="nginx's server_name (default _)")
    p.set_defaults(func=cmd_nginx_config)
    from realtime import cli_school

    cli_school.add_parser(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args))
    except ConfigError as exc:
        print(f"homeroom: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    raise SystemExit(main())
