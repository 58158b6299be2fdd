"""The rule that places a big lesson's viewers over nodes (realtime/cluster/cascade.py), and the
capacity model built on it (bench/cascade_sim.py)."""

from __future__ import annotations

from typing import Any, cast

import pytest

from bench.cascade_sim import Costs, Machine, simulate, worker_capacity
from media.ice import rtc_configuration
from media.router import MediaRouter
from realtime.cluster.cascade import (
    LEG_RESERVE,
    NoCapacityError,
    NodeLoad,
    Placement,
    Tree,
    apply,
    leg_streams,
    place_viewer,
)
from realtime.cluster.registry import NodeInfo
from realtime.errors import HomeroomError
from realtime.live.cascade import Cascade, place
from realtime.live.runtime import MediaOptions
from signaling import CodecPolicy, SubscribeOffer, SubscribeSession


def loads(**capacities: int) -> dict[str, NodeLoad]:
    return {name: NodeLoad(name, cap) for name, cap in capacities.items()}


def test_viewers_stay_on_the_origin_until_only_its_reserve_for_legs_is_left() -> None:
    nodes = loads(a=10, b=10)
    tree = Tree("a")
    for _ in range(10 - LEG_RESERVE):
        placement = place_viewer(tree, nodes)
        assert placement == Placement("a")
        apply(tree, nodes, placement)
    # The origin is down to its reserve: the next viewer opens an edge, fed by the origin.
    placement = place_viewer(tree, nodes)
    assert placement == Placement("b", new_edge=True, feed="a")
    apply(tree, nodes, placement)
    assert tree.upstream == {"b": "a"}
    assert nodes["a"].streams == 10 - LEG_RESERVE + 1  # its viewers and the leg
    assert nodes["b"].streams == 2  # the leg in, and the viewer
    # The edge's leg is up: the next viewers join there (the fastest join).
    assert place_viewer(tree, nodes) == Placement("b")


def test_a_leg_carrying_a_camera_in_layers_costs_a_stream_per_layer() -> None:
    assert leg_streams([]) == 1  # an empty leg still costs what a viewer does
    assert leg_streams([1, 1]) == 1  # camera and microphone: one viewer's bundle
    assert leg_streams([3, 1]) == 3  # a camera's three layers each cross the leg
    assert leg_streams([3, 2, 1]) == 4
    # Legs of three streams: the origin keeps its reserve of legs at three streams each and
    # gives up a viewer's place for an edge sooner, and the edge's leg is counted at three.
    nodes = loads(a=20, b=20)
    tree = Tree("a")
    while (placement := place_viewer(tree, nodes, leg_cost=3)) == Placement("a"):
        apply(tree, nodes, placement, leg_cost=3)
    assert tree.viewers["a"] == 20 - LEG_RESERVE * 3
    apply(tree, nodes, placement, leg_cost=3)
    assert placement == Placement("b", new_edge=True, feed="a")
    assert nodes["a"].streams == 20 - LEG_RESERVE * 3 + 3


def test_a_new_edge_is_the_emptiest_node_and_is_fed_nearest_the_origin() -> None:
    nodes = loads(a=6, b=6, c=20, d=9)
    nodes["c"].streams = 15  # busy with other lessons: 5 spare
    tree = Tree("a", upstream={"b": "a"})
    nodes["a"].streams = 6 - LEG_RESERVE + 1
    nodes["b"].streams = 6 - LEG_RESERVE
    placement = place_viewer(tree, nodes)
    # d has the most room (9 against c's 5); the origin still has a stream for a leg and is
    # nearer the origin than b.
    assert placement == Placement("d", new_edge=True, feed="a")


def test_the_node_holding_the_viewers_connection_is_preferred_when_it_has_room() -> None:
    nodes = loads(a=10, b=10, c=20)
    tree = Tree("a")
    for _ in range(10 - LEG_RESERVE):
        apply(tree, nodes, place_viewer(tree, nodes, near="b"))
    # The origin had room: the viewers connected to B stayed on it (no edge for them).
    assert tree.upstream == {}
    # Full: a new edge on the viewer's node, not on the emptiest (C).
    placement = place_viewer(tree, nodes, near="b")
    assert placement == Placement("b", new_edge=True, feed="a")
    apply(tree, nodes, placement)
    # Room in the tree comes before a new edge, even on the viewer's node (a leg costs).
    assert place_viewer(tree, nodes, near="c") == Placement("b")
    # In the tree, the viewer's node wins over one with more room.
    nodes["a"].streams -= 2
    assert place_viewer(tree, nodes) == Placement("b")
    assert place_viewer(tree, nodes, near="a") == Placement("a")


def test_a_draining_node_takes_nothing_new() -> None:
    nodes = loads(a=10, b=10, c=10)
    nodes["b"].accepting = False
    tree = Tree("a", upstream={"b": "a"})
    nodes["a"].streams = 10 - LEG_RESERVE
    placement = place_viewer(tree, nodes)
    assert placement == Placement("c", new_edge=True, feed="a")


def test_no_room_anywhere_is_an_error_not_an_overload() -> None:
    nodes = loads(a=5)
    tree = Tree("a")
    nodes["a"].streams = 5
    with pytest.raises(NoCapacityError):
        place_viewer(tree, nodes)


def test_nodes_never_carry_more_than_their_capacity() -> None:
    nodes = {f"n{i}": NodeLoad(f"n{i}", 12) for i in range(30)}
    tree = Tree("n0")
    placed = 0
    with pytest.raises(NoCapacityError):
        for _ in range(10_000):
            apply(tree, nodes, place_viewer(tree, nodes))
            placed += 1
    assert all(load.streams <= load.capacity for load in nodes.values())
    assert set(tree.nodes()) == set(nodes)  # it used every node before giving up
    # Every stream a node carries is a viewer of it, a leg it feeds, or the leg it receives.
    for name, load in nodes.items():
        expected = tree.viewers.get(name, 0) + tree.legs(name) + (name != "n0") * 1.0
        assert load.streams == expected
    assert placed == sum(tree.viewers.values())


def test_the_model_places_a_district_lesson_within_every_budget() -> None:
    machine = Machine(cores=16, nic_gbit=10.0)
    costs = Costs(cpu_per_viewer=0.00688, leg_ratio=1.5, edge_viewer_ratio=1.1)
    result = simulate(5000, 5, machine, costs)
    assert result["placed"] == 5000
    assert result["holds"], result
    assert result["max_node_viewers"] <= worker_capacity(machine, costs)
    # Too few machines: it says so instead of overloading a node.
    short = simulate(5000, 2, machine, costs)
    assert short["placed"] < 5000
    assert not short["holds"]


def test_the_origin_places_from_the_registry_and_refuses_a_deeper_tree() -> None:
    def info(name: str, *, cpu: float = 0.0, draining: bool = False) -> NodeInfo:
        return NodeInfo(name, "", 1, 0.0, 0.0, capacity=4, cpu=cpu, draining=draining)

    async def never(_node: str, _body: dict[str, Any]) -> dict[str, Any]:
        raise AssertionError("placing asks nobody")

    async def tell(_user: int, _offer: SubscribeOffer) -> None:
        raise AssertionError("placing tells nobody")

    media = MediaOptions(CodecPolicy(), rtc_configuration, None)
    cascade = Cascade(1, MediaRouter(), media, never, tell)
    busy, draining = info("c", cpu=2.0), info("d", draining=True)
    nodes = {n.name: n for n in (info("a"), info("b"), busy, draining)}
    settings: dict[str, Any] = {"capacity": 4, "leg_reserve": 2, "cpu_full": 0.9}
    # Room on the origin (4 less 2 kept for legs): here.
    assert place(cascade, "a", nodes, here=1, local_viewers=1, near="b", **settings) is None
    # Full: the viewer's node, if it may take anything (C is busy, D draining).
    assert place(cascade, "a", nodes, here=2, local_viewers=2, near="b", **settings) == "b"
    assert place(cascade, "a", nodes, here=2, local_viewers=2, near="c", **settings) == "b"
    # B serves two viewers of this session (its announcement does not say so yet): counted,
    # so B is full. E has room, but the origin has no stream left for a leg: only B could feed
    # E, a tree two hops deep, which is not built: the lesson is full.
    cascade.legs["b"] = cast(SubscribeSession, None)
    cascade.viewers.update({10: "b", 11: "b"})
    nodes["e"] = info("e")
    with pytest.raises(HomeroomError) as err:
        place(cascade, "a", nodes, here=4, local_viewers=2, near=None, **settings)
    assert err.value.code == "unavailable"
