"""The heartbeat: announce this node, read who else is alive, move the sessions of lost nodes.

Every ``node_heartbeat_s`` a node writes its announcement (name, address, load, CPU, whether it
is draining) to the registry and reads everyone's. With a shared registry (Redis), a running
session whose node is no longer announced is *moved* by whichever node notices first: it
rebuilds the session from the store and stores the move by a conditional UPDATE of the row's
``node`` (realtime/actions/live.py :func:`move`), so exactly one node runs it and its members
are told once, through a ``session.moved`` event in the class streams, however many nodes
notice at once; they join it again on its new node (``LiveService.adopt``). A node that finds
one of its own sessions moved or ended in the store (it was frozen longer than the TTL and the
others took it over) lets that session go. A draining node (SIGTERM) hands its sessions over
itself (:meth:`NodeWatch.drain`) and takes none.

While the registry cannot be read (Redis down) nobody is declared lost: the heartbeat logs,
counts and tries again on the next beat.

With Redis the announcement itself is written by a thread of its own (realtime/cluster/beacon.py)
from the latest reading of each beat, so a node whose loop is late (a storm of connections) is
not taken for lost; only a loop stuck for ``node_stall_s`` stops it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import os
import time
from typing import TYPE_CHECKING

from realtime.actions import live as actions
from realtime.cluster.beacon import Beacon
from realtime.cluster.redis_registry import Registry
from realtime.cluster.registry import Membership, NodeInfo, cpu_fraction, orphaned

if TYPE_CHECKING:
    from realtime.live.runtime import LiveRuntime
    from realtime.live.service import LiveService

log = logging.getLogger(__name__)

LOST = "node_lost"
# A CPU reading over less than this is noise (a node's first reading; a drain's extra beat).
MIN_CPU_WINDOW_S = 0.2


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
        self._cpu_last = 0.0
        self._task: asyncio.Task[None] | None = None
        self.beacon: Beacon | None = None
        # Placement reads who is alive, with what load, from here.
        live.membership = self.membership

    @property
    def name(self) -> str:
        return self.live.node

    def info(self) -> NodeInfo:
        cpu_now, wall_now = time.process_time(), time.monotonic()
        if wall_now - self._cpu[1] >= MIN_CPU_WINDOW_S:
            self._cpu_last = cpu_fraction(self._cpu[0], cpu_now, self._cpu[1], wall_now)
            self._cpu = (cpu_now, wall_now)
        cpu = self._cpu_last  # a window of a few milliseconds says nothing: the last reading
        runtimes = [rt for rt in self.live.runtimes.values() if not rt.session.ended]
        return NodeInfo(
            name=self.name,
            address=self.address,
            pid=os.getpid(),
            started_at=self.started_at,
            at=time.time(),
            live_sessions=len(runtimes),
            published_tracks=sum(len(rt.router.tracks()) for rt in runtimes),
            subscribers=sum(len(rt.subscribers) for rt in runtimes) + self.live.edges.viewers(),
            relay_legs=math.ceil(
                sum(rt.cascade.streams() for rt in runtimes if rt.cascade is not None)
                + sum(edge.relay_streams() for edge in self.live.edges.sessions.values())
            ),
            capacity=self.hub.settings.cascade_node_streams,
            cpu=cpu,
            draining=self.live.draining,
        )

    async def start(self) -> None:
        # The CPU of the first reading is measured from here: the start-up's own work (imports,
        # migrations, seeding) would make a node that just started look full to placement.
        self._cpu = (time.process_time(), time.monotonic())
        await self.beat()  # announced before the node serves, so the others never miss it
        s = self.hub.settings
        # From now on the announcement is written by a thread of its own (cluster/beacon.py):
        # a loop slowed by a storm of connections does not make the node look lost.
        self.beacon = self.registry.beacon(
            self.name, s.node_ttl_s, s.node_heartbeat_s, s.node_stall_s
        )
        if self.beacon is not None:
            # It keeps the first reading announced until the next beat's: a loop that is late
            # for its second beat (a loaded machine) must not let the first one expire.
            # (A reading this soon after the first repeats its CPU: MIN_CPU_WINDOW_S.)
            self.beacon.update(self.info())
            self.beacon.start()
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
            if self.beacon is not None:
                # Written by the beacon's thread; at once when draining (no placement here).
                self.beacon.update(self.info(), now=self.live.draining)
            else:
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
        # Own sessions (started before the store was read) that another node ended or moved
        # while this one was frozen: let them go here too.
        for sid, rt in mine.items():
            if rt.session.ended:
                continue
            if sid not in running:
                await self.live.finish(rt, LOST)
            elif running[sid] != self.name and not await self._adopted(sid):
                await self.live.let_go(rt)
        lost = orphaned(running, set(self.membership.nodes), self.name)
        if not lost or self.live.draining:
            return
        for sid in lost:
            # Whichever node's conditional UPDATE wins runs it; the others find it moved.
            if await self.live.adopt(sid, running[sid], LOST):
                self.sessions_taken_over += 1

    async def _adopted(self, session_id: int) -> bool:
        """Whether this node is moving that session here now, or has since ``running`` was
        read: its runtime exists before the move is stored, so the store read at the start of
        the beat still names the old node (letting it go would leave it running nowhere)."""
        if session_id in self.live.adopting:
            return True
        return await actions.node_of(self.hub, session_id) == self.name

    async def drain(self, timeout: float) -> int:
        """SIGTERM: say so in the registry at once (no session is placed here any more), then
        move this node's sessions to the others (``LiveService.move_all``)."""
        self.live.draining = True
        await self.beat()
        return await self.live.move_all(timeout)

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        if self.beacon is not None:
            # Stopped before the key is withdrawn, or it would write it again.
            await asyncio.to_thread(self.beacon.stop)
        with contextlib.suppress(Exception):
            await self.registry.withdraw(self.name)
        await self.registry.close()
