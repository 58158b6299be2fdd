"""Placement of a new live session (realtime/cluster/placement.py): the rule, without I/O."""

from __future__ import annotations

from realtime.cluster.placement import CPU_FULL, SESSION_WEIGHT, place
from realtime.cluster.registry import NodeInfo


def node(name: str, *, subscribers: int = 0, cpu: float = 0.1, draining: bool = False) -> NodeInfo:
    return NodeInfo(
        name=name,
        address=f"{name}:8080",
        pid=1,
        started_at=0.0,
        at=0.0,
        subscribers=subscribers,
        cpu=cpu,
        draining=draining,
    )


def test_the_least_loaded_node_wins_and_sessions_count_before_their_viewers() -> None:
    nodes = [node("a"), node("b")]
    # One session on A (no viewer yet): B, though A asked.
    assert place(nodes, {"a": 1}, "a") == "b"
    # A session weighs as many subscribers as a class brings.
    busy = [node("a", subscribers=SESSION_WEIGHT + 1), node("b")]
    assert place(busy, {"b": 1}, "a") == "b"
    assert place([node("a", subscribers=SESSION_WEIGHT - 1), node("b")], {"b": 1}, "b") == "a"


def test_four_starts_through_one_node_of_two_end_up_two_and_two() -> None:
    nodes = [node("a"), node("b", cpu=0.05)]
    running: dict[str, int] = {}
    for _ in range(4):
        chosen = place(nodes, running, "a")
        running[chosen] = running.get(chosen, 0) + 1
    assert running == {"a": 2, "b": 2}


def test_ties_go_to_the_asking_node_then_the_lower_cpu() -> None:
    assert place([node("a", cpu=0.5), node("b", cpu=0.1)], {}, "a") == "a"
    assert place([node("a", cpu=0.5), node("b", cpu=0.1), node("c", cpu=0.3)], {}, "x") == "b"


def test_draining_and_full_nodes_take_nothing_while_another_can() -> None:
    assert place([node("a", draining=True), node("b")], {"b": 5}, "a") == "b"
    assert place([node("a", cpu=CPU_FULL), node("b")], {"b": 3}, "a") == "b"
    # All full: the least loaded still takes it (refusing the lesson would be worse).
    assert place([node("a", cpu=1.5), node("b", cpu=CPU_FULL)], {"b": 1}, "b") == "a"
    # Nobody open (all draining) or no reading: the asking node.
    assert place([node("a", draining=True)], {}, "b") == "b"
    assert place([], {}, "b") == "b"
