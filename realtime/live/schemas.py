"""Schemas of the live-session requests."""

from __future__ import annotations

from typing import Annotated

import msgspec

from media.router import SOURCES
from realtime.domain.live import SessionKind
from realtime.schemas import Id, Payload, Title

Sdp = Annotated[str, msgspec.Meta(min_length=10, max_length=60_000)]
# The sources a client may name, from media's one table of them (and the kind each carries).
Source = Annotated[str, msgspec.Meta(pattern="^(" + "|".join(SOURCES) + ")$")]


class SessionStart(Payload):
    class_id: Id
    kind: SessionKind
    title: Title
    linked_class_ids: Annotated[list[Id], msgspec.Meta(max_length=12)] = []
    stage_places: Annotated[int, msgspec.Meta(ge=0, le=16)] = 6


class SessionRef(Payload):
    session_id: Id


class Join(Payload):
    """``resume``: the client still has its peer connections of this session (its Socket.IO
    connection came back): keep them if the server still has them too."""

    session_id: Id
    resume: bool = False


class LinkClassroom(Payload):
    """A teacher of a classroom a dual lesson asked to link answers the request."""

    session_id: Id
    class_id: Id
    accept: bool


class SessionList(Payload):
    class_id: Id


class Publish(Payload):
    session_id: Id
    sdp: Sdp
    # The client's mid (or track id) -> what it is.
    sources: dict[Annotated[str, msgspec.Meta(max_length=64)], Source] = {}
    # The client's mid -> layer index (0 = lowest): the video m-lines of one source sent as
    # the same camera or screen in 2-3 qualities (docs/media.md, "Layers per viewer").
    layers: Annotated[
        dict[Annotated[str, msgspec.Meta(max_length=64)], Annotated[int, msgspec.Meta(ge=0, le=2)]],
        msgspec.Meta(max_length=16),
    ] = {}


class Answer(Payload):
    session_id: Id
    sdp: Sdp


class IceCandidate(Payload):
    """``RTCIceCandidate.toJSON()``; an empty ``candidate`` marks the end of candidates."""

    candidate: Annotated[str, msgspec.Meta(max_length=1000)] = ""
    sdpMid: Annotated[str, msgspec.Meta(max_length=64)] | None = None
    sdpMLineIndex: Annotated[int, msgspec.Meta(ge=0, le=1024)] | None = None
    usernameFragment: Annotated[str, msgspec.Meta(max_length=256)] | None = None


class Ice(Payload):
    session_id: Id
    leg: Annotated[str, msgspec.Meta(pattern="^(publish|subscribe)$")]
    candidate: IceCandidate | None = None


class Hand(Payload):
    session_id: Id
    classroom: bool = False  # a local teacher raising the classroom's hand


class LowerHand(Payload):
    session_id: Id
    hand: Annotated[str, msgspec.Meta(max_length=40)] | None = None  # "user:ID" / "classroom:ID"


class Person(Payload):
    session_id: Id
    user_id: Id


class StagePlaces(Payload):
    session_id: Id
    places: Annotated[int, msgspec.Meta(ge=0, le=16)]


class ClassroomStage(Payload):
    session_id: Id
    class_id: Id | None = None


class Admit(Payload):
    session_id: Id
    user_ids: Annotated[list[Id], msgspec.Meta(max_length=500)] | None = None  # None: everyone


class Decline(Payload):
    session_id: Id
    user_ids: Annotated[list[Id], msgspec.Meta(min_length=1, max_length=500)]


class Mute(Payload):
    session_id: Id
    user_id: Id
    audio: bool | None = None
    video: bool | None = None


class SelfMute(Payload):
    session_id: Id
    audio: bool | None = None
    video: bool | None = None


class Lock(Payload):
    session_id: Id
    locked: bool | None = None
    unmute_locked: bool | None = None
