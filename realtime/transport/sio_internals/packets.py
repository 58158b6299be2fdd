"""Socket.IO packets whose payload cannot be read still get an answer.

python-socketio decodes a packet's JSON after it has read the packet's ack id; when the JSON
cannot be read (nested deeper than the decoder goes, a lone surrogate, ``NaN``, not JSON at all)
or is not ``[event name, ...]``, it raises, and the client waits forever for an ack that never
comes. These packet classes keep the ack id and turn such a packet into the event
:class:`Unreadable`, which the gateway answers with ``bad_request``. Event names that
python-socketio reserves (``connect``, ``disconnect``...) are refused the same way, so a client
cannot call the server's connection handlers by sending an event of that name.

This touches python-socketio's ``Packet.decode`` (and the msgpack packet's): what it relies on
is checked by :func:`packet_problems`, part of ``checks.check_internals``. A msgpack packet is
read all at once, so
one that cannot be decoded at all has no readable ack id: it is dropped (python-socketio logs
it) and the connection stays.
"""

from __future__ import annotations

import contextlib
from typing import Any

from socketio import msgpack_packet, packet

from realtime.jsoncodec import contains_nul

RESERVED_EVENTS = frozenset({"connect", "connect_error", "disconnect", "message"})
MAX_EVENT_NAME = 80


class Unreadable(str):
    """The event name of a request that could not be read; ``reason`` says why."""

    reason: str

    def __new__(cls, reason: str) -> Unreadable:
        self = super().__new__(cls, "<unreadable>")
        self.reason = reason
        return self


def _checked(data: Any) -> Any:
    """An event's data as python-socketio expects it, or ``[Unreadable(why)]``."""
    if not isinstance(data, list) or not data:
        return [Unreadable("a request is a list: [event name, payload]")]
    name = data[0]
    if not isinstance(name, str) or not name or len(name) > MAX_EVENT_NAME:
        return [Unreadable("the event name must be a short string")]
    if name in RESERVED_EVENTS:
        return [Unreadable(f"{name!r} is not an event a client may send")]
    return data


class StrictPacket(packet.Packet):
    """A JSON Socket.IO packet that answers even when its payload cannot be read."""

    def decode(self, encoded_packet: Any) -> int:
        try:
            attachments = super().decode(encoded_packet)
        except (ValueError, RecursionError) as exc:
            # The type and the ack id are read before the JSON; without them there is
            # nobody to answer.
            if getattr(self, "packet_type", None) != packet.EVENT:
                raise
            self.data = [Unreadable(f"the payload is not valid JSON: {str(exc)[:120]}")]
            return 0
        if self.packet_type in (packet.EVENT, packet.BINARY_EVENT):
            self.data = _checked(self.data)
        return attachments


class StrictMsgPackPacket(msgpack_packet.MsgPackPacket):
    """The msgpack form of :class:`StrictPacket`."""

    def decode(self, encoded_packet: Any) -> None:
        super().decode(encoded_packet)
        if self.packet_type == packet.EVENT:
            data = _checked(getattr(self, "data", None))
            # msgpack carries NUL raw (JSON only escaped, which jsoncodec refuses).
            if not isinstance(data[0], Unreadable) and contains_nul(data):
                data = [Unreadable("text must not contain the NUL character")]
            self.data = data


def packet_problems() -> list[str]:
    """What changed, if python-socketio's packet no longer reads the type and the ack id before
    the JSON (checks.check_internals reports it with the rest)."""
    probe = packet.Packet.__new__(packet.Packet)
    with contextlib.suppress(ValueError):
        probe.decode('27["x", ')
    if getattr(probe, "packet_type", None) != packet.EVENT or getattr(probe, "id", None) != 7:
        return ["socketio.packet.Packet.decode no longer reads the type and ack id before the JSON"]
    return []
