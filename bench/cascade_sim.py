"""How many nodes a lesson of 1,000 / 5,000 / 20,000 viewers needs: a simulation (issue #13).

    .venv/bin/python -m bench.cascade_sim                       # figures of docs/scaling.md
    .venv/bin/python -m bench.cascade_sim --bench cascade.json  # costs from bench/cascade.py
    .venv/bin/python -m bench.cascade_sim --layers 3            # the camera in three layers

This machine's 2 cores cannot hold enough viewers to fill one node, so capacity comes from a
model built on measured costs: the marginal CPU per forwarded 720p viewer (bench/sfu_fanout.py,
docs/performance.md), what a leg to an edge costs its upstream node and what a viewer costs an
edge (bench/cascade.py). The simulation places a lesson's viewers one at a time over simulated
machines of ``--cores`` workers (one node per core, as ``homeroom serve --workers auto`` runs)
with the cluster's own rule (realtime/cluster/cascade.py :func:`place_viewer`), then checks
what each node and machine would carry against its CPU and its uplink, with the measured leg
cost (not the rule's unit count). With ``--layers`` the teacher's camera is sent in layers,
each of which crosses every leg as a stream of its own (``leg_streams``): the rule counts a
leg as that many streams, its CPU is that many viewers' and its bytes ``LAYERED_LEG_BYTES``
viewers'. For each lesson size it finds the fewest machines on which
every viewer is placed and nothing is over its budget. The last line is one JSON object.
"""

from __future__ import annotations

import argparse
import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from realtime.cluster.cascade import (
    INGEST_COST,
    LEG_RESERVE,
    NoCapacityError,
    NodeLoad,
    Tree,
    apply,
    leg_streams,
    place_viewer,
)

# docs/performance.md, "Live video forwarding": Homeroom's marginal CPU per 720p subscriber.
CPU_PER_VIEWER_720P = 0.00688
# What a node spends with a session and no viewer: ingest of the teacher's tracks (the fitted
# intercept at 720p, ~0.03 of a core).
NODE_BASE_CPU = 0.03
# bench/cascade.py: a leg costs its upstream node about one viewer; an edge's viewer as much as
# an origin's. Overridden by --bench.
LEG_COST_RATIO = 1.0
EDGE_VIEWER_RATIO = 1.0
# What a worker may use of its core, and a machine of its uplink, before it counts as full.
CPU_BUDGET = 0.75
UPLINK_BUDGET = 0.8
# A 720p camera at ~2.5 Mbit/s plus Opus audio.
STREAM_MBIT = 2.55
# A leg carrying a camera in layers sends every layer: the web app's 100 + 300 + 800 kbit/s
# are 1.5 times the top layer's bytes (a viewer on a LAN receives the top layer).
LAYERED_LEG_BYTES = (100 + 300 + 800) / 800


@dataclass(frozen=True)
class Machine:
    cores: int
    nic_gbit: float


@dataclass(frozen=True)
class Costs:
    cpu_per_viewer: float
    leg_ratio: float
    edge_viewer_ratio: float
    # Streams per leg (``leg_streams``: 3 for a camera in three layers) and its bytes in
    # viewers' (``LAYERED_LEG_BYTES`` then).
    leg_streams: float = 1.0
    leg_bytes: float = 1.0

    @property
    def leg_cost(self) -> float:
        """A leg in the rule's streams: the measured ratio for each stream it carries."""
        return self.leg_ratio * self.leg_streams


def worker_capacity(machine: Machine, costs: Costs) -> int:
    """Streams one worker may carry: its CPU budget, and its share of the machine's uplink."""
    by_cpu = (CPU_BUDGET - NODE_BASE_CPU) / (costs.cpu_per_viewer * costs.edge_viewer_ratio)
    by_nic = machine.nic_gbit * 1000 * UPLINK_BUDGET / machine.cores / STREAM_MBIT
    return max(0, math.floor(min(by_cpu, by_nic)))


def simulate(viewers: int, machines: int, machine: Machine, costs: Costs) -> dict[str, Any]:
    """Place ``viewers`` over ``machines``; what each node and machine carries, or why not."""
    capacity = worker_capacity(machine, costs)
    loads = {
        f"m{m}w{w}": NodeLoad(f"m{m}w{w}", capacity)
        for m in range(machines)
        for w in range(machine.cores)
    }
    tree = Tree(origin="m0w0")
    loads["m0w0"].streams += INGEST_COST  # the publishers' tracks arrive at the origin
    placed = 0
    try:
        for _ in range(viewers):
            placement = place_viewer(tree, loads, leg_cost=costs.leg_cost)
            apply(tree, loads, placement, leg_cost=costs.leg_cost)
            placed += 1
    except NoCapacityError:
        pass
    # What each node really spends, with the measured costs rather than the rule's units.
    cpu: dict[str, float] = {}
    for name in tree.nodes():
        legs = tree.legs(name)
        local = tree.viewers.get(name, 0)
        ratio = 1.0 if name == tree.origin else costs.edge_viewer_ratio
        cpu[name] = (
            NODE_BASE_CPU
            + local * costs.cpu_per_viewer * ratio
            + legs * costs.cpu_per_viewer * costs.leg_cost
        )
    uplink: dict[str, float] = {}
    for name in tree.nodes():
        out = tree.viewers.get(name, 0) + tree.legs(name) * costs.leg_bytes
        host = name.split("w")[0]
        uplink[host] = uplink.get(host, 0.0) + out * STREAM_MBIT / 1000
    used_machines = sorted(uplink)
    return {
        "viewers": viewers,
        "placed": placed,
        "machines": machines,
        "machines_used": len(used_machines),
        "nodes_used": len(tree.nodes()),
        "edges": len(tree.upstream),
        "depth": max(tree.depth(n) for n in tree.nodes()),
        "origin_legs": tree.legs(tree.origin),
        "origin_viewers": tree.viewers.get(tree.origin, 0),
        "worker_capacity_streams": capacity,
        "max_node_cpu": round(max(cpu.values()), 3),
        "max_node_viewers": max(tree.viewers.values()),
        "max_machine_uplink_gbit": round(max(uplink.values()), 2),
        "holds": placed == viewers
        and max(cpu.values()) <= CPU_BUDGET + 1e-9
        and max(uplink.values()) <= machine.nic_gbit * UPLINK_BUDGET + 1e-9,
    }


def fewest_machines(
    viewers: int, machine: Machine, costs: Costs, limit: int = 400
) -> dict[str, Any]:
    """The fewest machines on which the lesson holds: from the bound no tree can beat, upward."""
    per_node = max(1.0, worker_capacity(machine, costs) - LEG_RESERVE * costs.leg_cost)
    machines = max(1, math.ceil(viewers / per_node / machine.cores))
    result = simulate(viewers, machines, machine, costs)
    while not result["holds"] and machines < limit:
        machines += 1
        result = simulate(viewers, machines, machine, costs)
    return result


def costs_from(path: Path | None, layers: int = 1) -> Costs:
    streams = leg_streams([layers])
    leg_bytes = LAYERED_LEG_BYTES if layers > 1 else 1.0
    if path is None:
        return Costs(CPU_PER_VIEWER_720P, LEG_COST_RATIO, EDGE_VIEWER_RATIO, streams, leg_bytes)
    data = json.loads(path.read_text().strip().splitlines()[-1])
    return Costs(
        CPU_PER_VIEWER_720P,
        max(LEG_COST_RATIO, data.get("edge_leg_cost_ratio") or LEG_COST_RATIO),
        max(EDGE_VIEWER_RATIO, data.get("edge_viewer_cost_ratio") or EDGE_VIEWER_RATIO),
        streams,
        leg_bytes,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--bench", type=Path, help="bench/cascade.py's output (last line JSON)")
    parser.add_argument("--cores", type=int, default=16)
    parser.add_argument("--viewers", type=int, nargs="+", default=[1000, 5000, 20000])
    parser.add_argument(
        "--layers", type=int, default=1, help="the camera's layers (each crosses a leg)"
    )
    args = parser.parse_args()
    costs = costs_from(args.bench, args.layers)
    out: dict[str, Any] = {"costs": costs.__dict__, "cores": args.cores, "lessons": {}}
    for nic in (1.0, 10.0):
        machine = Machine(args.cores, nic)
        for viewers in args.viewers:
            result = fewest_machines(viewers, machine, costs)
            out["lessons"][f"{viewers}@{nic:g}G"] = result
            print(
                f"{viewers:6d} viewers, {args.cores}-core machines with {nic:g} Gbit/s: "
                f"{result['machines_used']} machines, {result['nodes_used']} nodes "
                f"({result['edges']} edges, depth {result['depth']}), a node at most "
                f"{result['max_node_cpu']} core and {result['max_node_viewers']} viewers, a "
                f"machine at most {result['max_machine_uplink_gbit']} Gbit/s out"
                f"{'' if result['holds'] else '  DOES NOT HOLD'}",
                flush=True,
            )
    print(json.dumps(out), flush=True)


if __name__ == "__main__":
    main()
