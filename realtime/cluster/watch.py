"""The heartbeat: announce this node, read who else is alive, end the sessions of lost nodes.

Every ``node_heartbeat_s`` a node writes its announcement (name, address, load, CPU) to the
registry and reads everyone's. With a shared registry (Redis), a running session whose node is
no longer announced is ended by whichever node notices first: stored as ended with reason
``node_lost`` by a conditional UPDATE (realtime/actions/live.py :func:`end`), so its members are
told exactly once through the class streams and its open questions go to the boards, however
many nodes notice at once. A node that finds one of its own sessions ended in the store (it was
frozen longer than the TTL and the others gave it up) lets that session go too.

While the registry cannot be read (Redis down) nobody is declared lost: the heartbeat logs,
counts and tries again on the next beat.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import time
from typing import TYPE_CHECKING

from realtime.actions import live as actions
from realtime.cluster.redis_registry import Registry
from realtime.cluster.registry import Membership, NodeInfo, cpu_fraction, orphaned

if TYPE_CHECKING:
    from realtime.live.runtime import LiveRuntime
    from realtime.live.service import LiveService

log = logging.getLogger(__name__)

LOST = "node_lost"


class NodeWatch:
    def __init__(self, live: LiveService, registry: Registry, address: str) -> None:
        self.live = live
        self.hub = live.hub
        self.registry = registry
        self.address = address
        self.membership = Membership()
        self.started_at = time.time()
        self.failures = 0
        self.sessions_taken_over = 0
        self._cpu = (time.process_time(), time.monotonic())
        self._task: asyncio.Task[None] | None = None
        # Placement reads who is alive, with what load, from here.
        live.membership = self.membership

    @property
    def name(self) -> str:
        return self.live.node

    def info(self) -> NodeInfo:
        cpu_now, wall_now = time.process_time(), time.monotonic()
        cpu = cpu_fraction(self._cpu[0], cpu_now, self._cpu[1], wall_now)
        self._cpu = (cpu_now, wall_now)
        runtimes = [rt for rt in self.live.runtimes.values() if not rt.session.ended]
        return NodeInfo(
            name=self.name,
            address=self.address,
            pid=os.getpid(),
            started_at=self.started_at,
            at=time.time(),
            live_sessions=len(runtimes),
            published_tracks=sum(len(rt.router.tracks()) for rt in runtimes),
            subscribers=sum(len(rt.subscribers) for rt in runtimes),
            cpu=cpu,
        )

    async def start(self) -> None:
        await self.beat()  # announced before the node serves, so the others never miss it
        self._task = asyncio.get_running_loop().create_task(self._run(), name="node-watch")

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self.hub.settings.node_heartbeat_s)
            await self.beat()

    async def beat(self) -> None:
        # The order matters: the running sessions are read before the registry. A node
        # announces itself before it serves, so the node of every session read here, if alive,
        # is in the registry read after it (read the other way round, a node that came between
        # the two reads would look lost).
        mine = dict(self.live.runtimes)
        shared = self.registry.shared
        try:
            await self.registry.announce(self.info(), self.hub.settings.node_ttl_s)
            # Alone (no Redis), nobody else ends this node's sessions: nothing to read.
            running = await actions.running_nodes(self.hub) if shared else {}
            change = self.membership.observe(await self.registry.nodes())
        except Exception as exc:  # Redis or the store down: nobody is declared lost meanwhile
            self.failures += 1
            log.warning("node heartbeat failed (%s); trying again", exc)
            return
        for name in change.came:
            if name != self.name:
                log.info("node %s joined", name)
        for name in change.went:
            log.warning("node %s is gone from the registry", name)
            # Its connections to this node's sessions are gone (grace period, as a drop).
            try:
                await self.live.node_gone(name)
            except Exception:
                log.exception("letting node %s's connections go failed", name)
        if not shared:
            return  # alone: this node's own start-up ends what a previous run left
        try:
            await self.sweep(mine, running)
        except Exception:
            log.exception("ending the sessions of lost nodes failed; trying again next beat")

    async def sweep(self, mine: dict[int, LiveRuntime], running: dict[int, str]) -> None:
        # Own sessions (started before the store was read) that another node ended in the
        # store: let them go here too.
        for sid, rt in mine.items():
            if sid not in running and not rt.session.ended:
                await self.live.finish(rt, LOST)
        lost = orphaned(running, set(self.membership.nodes), self.name)
        if not lost:
            return
        for session in await actions.running(self.hub, lost):
            if await actions.end(self.hub, session, LOST):
                self.sessions_taken_over += 1
                log.warning(
                    "ended session %s: its node %s is lost", session.id, running[session.id]
                )

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        with contextlib.suppress(Exception):
            await self.registry.withdraw(self.name)
        await self.registry.close()
