"""The bus: how an event written on one node reaches the connections on every node.

Whatever crosses it is msgpack-encoded bytes, never pickle.
"""

from realtime.bus.base import Bus, BusHandler, BusHealth
from realtime.bus.local import LocalBus

__all__ = ["Bus", "BusHandler", "BusHealth", "LocalBus", "make_bus"]


def make_bus(redis_url: str, channel: str = "homeroom", node: str = "") -> Bus:
    """``node``: this node's name, which messages addressed to it (:meth:`Bus.send`) carry."""
    if redis_url:
        from realtime.bus.redis import RedisBus

        return RedisBus(redis_url, channel, name=node)
    return LocalBus()
