"""Where a new live session runs: the least loaded node of the deployment, without I/O.

``session.start`` may arrive on any node; the session is placed on the node that will carry
its media best by what the registry says (realtime/cluster/registry.py) and what the store
says runs where (exact, and never older than the request: a node's announcement is up to a
heartbeat old, so four lessons started in one second through one node would otherwise all
land on whichever node announced the least load last).

The rule, in order: nodes that are draining (SIGTERM) take nothing; nodes whose CPU is at or
above ``CPU_FULL`` of a core take nothing while another does not; then the lowest load wins,
a session counting as ``SESSION_WEIGHT`` subscribers (a lesson that just started is about to
gain its viewers) plus the subscribers the node forwards to; ties go to the node that received the
request (no hop), then to the lower CPU, then by name. With no registry reading yet (or
alone), the session runs on the node that received the request.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from realtime.cluster.registry import NodeInfo

# A lesson's expected viewers when it starts (a class: 30-45 students).
SESSION_WEIGHT = 30
# The share of one core above which a node is full while another is not.
CPU_FULL = 0.9


def load(node: NodeInfo, sessions: int) -> int:
    return sessions * SESSION_WEIGHT + node.subscribers


def place(
    nodes: Sequence[NodeInfo], sessions: Mapping[str, int], me: str, cpu_full: float = CPU_FULL
) -> str:
    """The name of the node a new session should run on.

    ``nodes``: the registry's latest reading; ``sessions``: running sessions per node, from the
    store; ``me``: the node asking; ``cpu_full``: the setting ``placement_cpu_full``.
    """
    open_ = [n for n in nodes if not n.draining]
    if not open_:
        return me
    roomy = [n for n in open_ if n.cpu < cpu_full] or open_
    best = min(
        roomy,
        key=lambda n: (load(n, sessions.get(n.name, 0)), n.name != me, n.cpu, n.name),
    )
    return best.name
