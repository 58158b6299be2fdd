"""A live session's requests in, their effects out, as plain data and without I/O.

As websockets' protocol object turns bytes into events and bytes to send, this module turns a
request on a :class:`LiveSession` into an :class:`Outcome`: the reply to whoever asked, and the
effects that follow — who is told what, whose connection follows the session, when the media must
be made to match the rules again. Effects name a participant by user id within one session, never
a Socket.IO connection, and are msgspec structs: a request and its outcome can cross the bus
between nodes as msgpack (issue #12). The transport (``realtime/live/service.py``) carries them
out; the tests call these functions directly.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import msgspec

from realtime.domain.live import LiveRole, LiveSession, Participant
from realtime.domain.streams import qa_stream
from realtime.errors import bad_request, forbidden
from realtime.live import schemas as s


class Tell(msgspec.Struct, tag="tell", frozen=True):
    """Send ``event`` to one participant's connection (nothing if they have none)."""

    user_id: int
    event: str
    data: dict[str, Any]


class TellSession(msgspec.Struct, tag="tell_session", frozen=True):
    """Send ``event`` to everyone admitted to the session (not the lobby)."""

    event: str
    data: dict[str, Any]


class Follow(msgspec.Struct, tag="follow", frozen=True):
    """The participant's connection follows the session and these Q&A streams."""

    user_id: int
    qa_streams: list[str]


class Unfollow(msgspec.Struct, tag="unfollow", frozen=True):
    """The participant's connection stops following the session, and is forgotten."""

    user_id: int


class DropMedia(msgspec.Struct, tag="drop_media", frozen=True):
    """Close the participant's peer connections and end what they published."""

    user_id: int


class SyncMedia(msgspec.Struct, tag="sync_media", frozen=True):
    """Make the published tracks and every subscription match the rules again."""


Effect = Tell | TellSession | Follow | Unfollow | DropMedia | SyncMedia


class Outcome(msgspec.Struct, frozen=True):
    reply: dict[str, Any]
    effects: list[Effect]


class Track(msgspec.Struct, frozen=True):
    """A published track as the rules see it."""

    track_id: str
    publisher_id: int
    source: str
    paused: bool


class Unpublish(msgspec.Struct, frozen=True):
    """A track the rules no longer allow: it ends and its publisher is told why."""

    track_id: str
    user_id: int
    source: str
    reason: str


class MediaPlan(msgspec.Struct, frozen=True):
    """Which tracks go where: what the media must look like under the rules right now."""

    unpublish: list[Unpublish]
    pause: list[str]
    resume: list[str]
    receive: dict[int, list[str]]  # participant -> the track ids they receive, in order


def media_plan(session: LiveSession, tracks: list[Track], viewers: list[int]) -> MediaPlan:
    """Tracks refused now end, muted ones pause, and each viewer receives exactly the tracks
    whose publisher they are a receiver of (``LiveSession.receivers``)."""
    unpublish: list[Unpublish] = []
    pause: list[str] = []
    resume: list[str] = []
    kept: list[Track] = []
    for t in tracks:
        refusal = session.publish_refusal(t.publisher_id, t.source)
        if refusal is not None:
            unpublish.append(Unpublish(t.track_id, t.publisher_id, t.source, refusal))
            continue
        kept.append(t)
        paused = session.forwarding_paused(t.publisher_id, t.source)
        if paused and not t.paused:
            pause.append(t.track_id)
        elif not paused and t.paused:
            resume.append(t.track_id)
    receivers = {pub: session.receivers(pub) for pub in {t.publisher_id for t in kept}}
    receive = {v: [t.track_id for t in kept if v in receivers[t.publisher_id]] for v in viewers}
    return MediaPlan(unpublish, pause, resume, receive)


# --- views and helpers ------------------------------------------------------------------------


def state(session: LiveSession) -> list[Effect]:
    """Everyone admitted gets the session's state; people in the lobby get their own."""
    out: list[Effect] = [TellSession("session.state", session.view())]
    out += [
        Tell(uid, "session.lobby", {"session_id": session.id, "status": "waiting"})
        for uid in session.lobby()
    ]
    return out


def changed(session: LiveSession, **reply: Any) -> Outcome:
    """The usual answer to a change: media follows the rules, everyone sees the new state."""
    return Outcome({"session": session.view(), **reply}, [SyncMedia(), *state(session)])


def qa_streams(session: LiveSession, user_id: int) -> list[str]:
    p = session.participants[user_id]
    if p.role in (LiveRole.HOST, LiveRole.TEACHER):
        return [str(qa_stream(cid, session.id)) for cid in session.classrooms]
    if p.role in (LiveRole.STUDENT, LiveRole.LOCAL_TEACHER):
        return [str(qa_stream(p.class_id, session.id))]
    return []  # guardians in a parent meeting have no Q&A


def admitted(session: LiveSession, user_id: int) -> Participant:
    """The participant, who must be past the lobby (signalling, hands, stage, self-mute)."""
    p = session.get(user_id)
    if p.in_lobby:
        raise forbidden("you are waiting in the lobby")
    return p


# --- joining and leaving ----------------------------------------------------------------------


def join(
    session: LiveSession,
    user_id: int,
    name: str,
    roles: dict[int, set[str]],
    *,
    new_connection: bool,
) -> Outcome:
    """``roles``: the person's roles in the session's classrooms; ``new_connection``: they were
    in the session from another connection, whose media is dropped (a rejoin starts fresh)."""
    p = session.admit_role(user_id, name, roles)
    effects: list[Effect] = [DropMedia(user_id)] if new_connection else []
    streams = [] if p.in_lobby else qa_streams(session, user_id)
    if not p.in_lobby:
        effects.append(Follow(user_id, streams))
    reply = {
        "session": session.summary() if p.in_lobby else session.view(),
        "you": p.view(),
        "qa_streams": streams,
    }
    return Outcome(reply, [*effects, *state(session)])


def linked(session: LiveSession) -> Outcome:
    """A classroom's teacher answered the request to link it (already in the session's state):
    the master teachers also follow the new classroom's questions; everyone sees the change."""
    follow: list[Effect] = []
    for uid, x in session.participants.items():
        if x.role in (LiveRole.HOST, LiveRole.TEACHER):
            streams = qa_streams(session, uid)
            data = {"session_id": session.id, "qa_streams": streams}
            follow += [Follow(uid, streams), Tell(uid, "session.qa_streams", data)]
    done = changed(session)
    return Outcome({"session": session.summary()}, [*follow, *done.effects])


def leave(session: LiveSession, user_id: int) -> Outcome:
    session.leave(user_id)
    return _gone(session, user_id, {})


def _gone(session: LiveSession, user_id: int, reply: dict[str, Any]) -> Outcome:
    """Effects of a person no longer in the session (already taken out of its state)."""
    done = changed(session)
    return Outcome(reply, [DropMedia(user_id), Unfollow(user_id), *done.effects])


def disconnected(session: LiveSession, user_id: int) -> Outcome:
    """Their Socket.IO connection dropped: they stay listed as away for the grace period. Their
    media goes on meanwhile (it never passed through that connection): coming back, they
    resume with the same peer connections (``join(..., resume=True)``); not coming back, they
    leave when the grace period ends, and their media with them."""
    p = session.participants.get(user_id)
    if p is None:
        return Outcome({}, [DropMedia(user_id)])
    p.connected = False
    return changed(session)


def ended(session: LiveSession, reason: str) -> Outcome:
    """The session is over (already stored as ended): everyone is told and let go."""
    session.ended = True
    data = {"session_id": session.id, "reason": reason}
    effects: list[Effect] = [TellSession("session.ended", data)]
    effects += [Tell(uid, "session.ended", data) for uid in session.lobby()]
    effects += [Unfollow(uid) for uid in session.participants]
    return Outcome({}, effects)


# --- hands, stage, lobby, moderation ----------------------------------------------------------


def raise_hand(session: LiveSession, actor: int, req: s.Hand) -> Outcome:
    admitted(session, actor)
    session.raise_hand(session.hand_key(actor, req.classroom))
    return changed(session)


def lower_hand(session: LiveSession, actor: int, req: s.LowerHand) -> Outcome:
    admitted(session, actor)
    session.lower_hand(actor, req.hand or f"user:{actor}")
    return changed(session)


def invite(session: LiveSession, actor: int, req: s.Person) -> Outcome:
    session.invite(actor, req.user_id)
    done = changed(session)
    tell = Tell(req.user_id, "stage.invited", {"session_id": session.id})
    return Outcome(done.reply, [tell, *done.effects])


def accept(session: LiveSession, actor: int, req: s.SessionRef) -> Outcome:
    admitted(session, actor)
    session.accept(actor)
    return changed(session)


def decline(session: LiveSession, actor: int, req: s.SessionRef) -> Outcome:
    admitted(session, actor)
    session.decline(actor)
    return changed(session)


def leave_stage(session: LiveSession, actor: int, req: s.Person) -> Outcome:
    admitted(session, actor)
    session.leave_stage(actor, req.user_id)
    return changed(session)


def stage_places(session: LiveSession, actor: int, req: s.StagePlaces) -> Outcome:
    session.set_stage_places(actor, req.places)
    return changed(session)


def classroom_stage(session: LiveSession, actor: int, req: s.ClassroomStage) -> Outcome:
    session.put_classroom_on_stage(actor, req.class_id)
    return changed(session)


def admit(session: LiveSession, actor: int, req: s.Admit) -> Outcome:
    chosen = session.admit(actor, req.user_ids)
    effects: list[Effect] = []
    for uid in chosen:
        effects.append(Follow(uid, qa_streams(session, uid)))
        data = {
            "session_id": session.id,
            "status": "admitted",
            "session": session.view(),
            "you": session.get(uid).view(),
        }
        effects.append(Tell(uid, "session.lobby", data))
    done = changed(session, admitted=chosen)
    return Outcome(done.reply, [*effects, *done.effects])


def decline_lobby(session: LiveSession, actor: int, req: s.Decline) -> Outcome:
    declined = session.decline_lobby(actor, req.user_ids)
    effects: list[Effect] = []
    for uid in declined:
        data = {"session_id": session.id, "status": "declined"}
        effects += [Tell(uid, "session.lobby", data), Unfollow(uid)]
    done = changed(session, declined=declined)
    return Outcome(done.reply, [*effects, *done.effects])


def _muted(session: LiveSession, actor: int, uid: int) -> Tell:
    data = {
        "session_id": session.id,
        "by": actor,
        "muted_by_host": sorted(session.get(uid).muted_by_host),
    }
    return Tell(uid, "media.muted", data)


def mute(session: LiveSession, actor: int, req: s.Mute) -> Outcome:
    if req.audio is None and req.video is None:
        raise bad_request("say what to mute: audio, video or both")
    for kind, value in (("audio", req.audio), ("video", req.video)):
        if value is not None:
            session.host_mute(actor, req.user_id, {kind}, value)
    done = changed(session)
    return Outcome(done.reply, [_muted(session, actor, req.user_id), *done.effects])


def mute_all(session: LiveSession, actor: int, req: s.SessionRef) -> Outcome:
    muted = session.mute_all(actor)
    done = changed(session)
    return Outcome(done.reply, [*(_muted(session, actor, u) for u in muted), *done.effects])


def lock(session: LiveSession, actor: int, req: s.Lock) -> Outcome:
    session.set_lock(actor, req.locked, req.unmute_locked)
    return changed(session)


def remove(session: LiveSession, actor: int, req: s.Person) -> Outcome:
    session.remove(actor, req.user_id)
    gone = _gone(session, req.user_id, {"session": session.view()})
    tell = Tell(req.user_id, "session.removed", {"session_id": session.id})
    return Outcome(gone.reply, [tell, *gone.effects])


def mute_self(session: LiveSession, actor: int, req: s.SelfMute) -> Outcome:
    admitted(session, actor)
    for kind, value in (("audio", req.audio), ("video", req.video)):
        if value is not None:
            session.self_mute(actor, {kind}, value)
    return changed(session)


Rule = Callable[[LiveSession, int, Any], Outcome]

# Requests decided by the rules alone (no store, no media): event -> (schema, rule).
RULES: dict[str, tuple[type[Any], Rule]] = {
    "hand.raise": (s.Hand, raise_hand),
    "hand.lower": (s.LowerHand, lower_hand),
    "stage.invite": (s.Person, invite),
    "stage.accept": (s.SessionRef, accept),
    "stage.decline": (s.SessionRef, decline),
    "stage.remove": (s.Person, leave_stage),
    "stage.places": (s.StagePlaces, stage_places),
    "classroom.stage": (s.ClassroomStage, classroom_stage),
    "lobby.admit": (s.Admit, admit),
    "lobby.decline": (s.Decline, decline_lobby),
    "moderate.mute": (s.Mute, mute),
    "moderate.mute_all": (s.SessionRef, mute_all),
    "moderate.lock": (s.Lock, lock),
    "moderate.remove": (s.Person, remove),
    "media.mute_self": (s.SelfMute, mute_self),
}
