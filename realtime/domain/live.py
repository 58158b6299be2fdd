"""Live sessions: lessons, parent meetings and dual-teacher lessons, as plain state and rules.

No I/O: the live-session manager keeps one :class:`LiveSession` per running session, asks it
what is allowed and who receives which track, and turns the answers into media routing and
messages.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from media.router import SOURCES
from realtime.errors import HomeroomError, conflict, forbidden, not_found

DEFAULT_STAGE_PLACES = 6
MAX_STAGE_PLACES = 16
# What each source carries: media's table (media/router.py), the one place it is written.
SOURCE_KIND = SOURCES
# The version of what a move keeps (:meth:`LiveSession.kept`), stored with the session.
KEPT_VERSION = 1


class SessionKind(StrEnum):
    LESSON = "lesson"
    MEETING = "meeting"
    DUAL_LESSON = "dual_lesson"


class LiveRole(StrEnum):
    HOST = "host"  # the teacher running the session (the master teacher of a dual lesson)
    TEACHER = "teacher"  # another teacher of the host class
    LOCAL_TEACHER = "local_teacher"  # runs one linked classroom of a dual lesson
    STUDENT = "student"
    GUARDIAN = "guardian"


@dataclass
class Participant:
    user_id: int
    name: str
    role: LiveRole
    class_id: int  # the classroom this person belongs to
    in_lobby: bool = False
    on_stage: bool = False
    invited: bool = False
    connected: bool = True
    publishing: set[str] = field(default_factory=set)  # sources
    muted_by_host: set[str] = field(default_factory=set)  # "audio" / "video"
    self_muted: set[str] = field(default_factory=set)

    @property
    def is_teacher(self) -> bool:
        return self.role in (LiveRole.HOST, LiveRole.TEACHER, LiveRole.LOCAL_TEACHER)

    def view(self) -> dict[str, object]:
        return {
            "user_id": self.user_id,
            "name": self.name,
            "role": self.role.value,
            "class_id": self.class_id,
            "in_lobby": self.in_lobby,
            "on_stage": self.on_stage,
            "invited": self.invited,
            "connected": self.connected,
            "publishing": sorted(self.publishing),
            "muted_by_host": sorted(self.muted_by_host),
            "self_muted": sorted(self.self_muted),
        }


MUTE_KINDS = frozenset({"audio", "video"})
_NONE: frozenset[str] = frozenset()


@dataclass
class Saved:
    """The rules' state of a session at one moment (:meth:`LiveSession.save`)."""

    # user id -> (the person, role, in lobby, on stage, invited, host mutes, own mutes)
    participants: dict[
        int, tuple[Participant, LiveRole, bool, bool, bool, frozenset[str], frozenset[str]]
    ]
    hands: list[str]
    stage_places: int
    stage_classroom: int | None
    locked: bool
    unmute_locked: bool


def _hand_known(key: str, people: Mapping[int, Participant], classrooms: Mapping[int, str]) -> bool:
    kind, _, ident = key.partition(":")
    if not ident.isdigit():
        return False
    return (
        int(ident) in people if kind == "user" else kind == "classroom" and int(ident) in classrooms
    )


@dataclass
class LiveSession:
    id: int
    kind: SessionKind
    class_id: int
    host_id: int
    title: str
    classrooms: dict[int, str]  # class id -> name; the host class first
    # Classrooms a dual lesson asked to link that no teacher of theirs has accepted yet: they are
    # not part of the lesson (their students cannot join, their stream is not told).
    pending_links: dict[int, str] = field(default_factory=dict)
    stage_places: int = DEFAULT_STAGE_PLACES
    participants: dict[int, Participant] = field(default_factory=dict)
    hands: list[str] = field(default_factory=list)  # "user:{id}" or "classroom:{cid}", in order
    stage_classroom: int | None = None
    locked: bool = False
    unmute_locked: bool = False
    ended: bool = False

    # --- joining --------------------------------------------------------------------------

    def admit_role(
        self, user_id: int, name: str, roles_by_class: dict[int, set[str]]
    ) -> Participant:
        """Who this person is in the session, from their roles in its classrooms."""
        if self.ended:
            raise conflict("this session has ended")
        existing = self.participants.get(user_id)
        if existing is not None:
            existing.connected = True
            return existing
        p = self._role_for(user_id, name, roles_by_class)
        if self.kind is SessionKind.MEETING and p.role is LiveRole.GUARDIAN:
            if self.locked:
                raise HomeroomError("forbidden", "the meeting is locked", reason="meeting_locked")
            p.in_lobby = True
        self.participants[user_id] = p
        return p

    def _role_for(self, user_id: int, name: str, roles: dict[int, set[str]]) -> Participant:
        staff = {"head_teacher", "teacher", "assistant_teacher"}
        if user_id == self.host_id:
            return Participant(user_id, name, LiveRole.HOST, self.class_id)
        host_roles = roles.get(self.class_id, set())
        if host_roles & staff:
            return Participant(user_id, name, LiveRole.TEACHER, self.class_id)
        if self.kind is SessionKind.MEETING:
            if "guardian" in host_roles:
                return Participant(user_id, name, LiveRole.GUARDIAN, self.class_id)
            raise forbidden("parent meetings are for the class's teachers and guardians")
        for cid in self.classrooms:
            r = roles.get(cid, set())
            if self.kind is SessionKind.DUAL_LESSON and cid != self.class_id and r & staff:
                return Participant(user_id, name, LiveRole.LOCAL_TEACHER, cid)
            if "student" in r:
                return Participant(user_id, name, LiveRole.STUDENT, cid)
        raise forbidden("this lesson is for the students and teachers of its classes")

    def get(self, user_id: int) -> Participant:
        p = self.participants.get(user_id)
        if p is None:
            raise not_found("that person is not in this session")
        return p

    def leave(self, user_id: int) -> None:
        self.participants.pop(user_id, None)
        self.hands = [h for h in self.hands if h != f"user:{user_id}"]

    # --- linked classrooms (dual-teacher lessons) -------------------------------------------

    def require_pending_link(self, class_id: int) -> str:
        """The name of a classroom this lesson has asked to link and that has not answered."""
        if self.ended:
            raise conflict("this session has ended")
        if class_id in self.classrooms:
            raise conflict("this classroom is already linked to the lesson")
        name = self.pending_links.get(class_id)
        if name is None:
            raise not_found("this lesson has not asked to link that classroom")
        return name

    def accept_link(self, class_id: int) -> None:
        """A teacher of the classroom (or a school admin) accepted: it joins the lesson."""
        self.classrooms[class_id] = self.require_pending_link(class_id)
        del self.pending_links[class_id]

    def decline_link(self, class_id: int) -> None:
        self.require_pending_link(class_id)
        del self.pending_links[class_id]

    # --- who may do what ------------------------------------------------------------------

    def require_host(self, user_id: int) -> None:
        if user_id != self.host_id:
            raise forbidden("only the host can do that")

    def require_moderator_of(self, actor_id: int, target: Participant) -> None:
        """The host moderates everyone; a local teacher only their own classroom."""
        if actor_id == self.host_id:
            return
        actor = self.participants.get(actor_id)
        if actor is not None and actor.role is LiveRole.TEACHER:
            return
        if (
            actor is not None
            and actor.role is LiveRole.LOCAL_TEACHER
            and target.class_id == actor.class_id
            and target.role is LiveRole.STUDENT
        ):
            return
        raise forbidden("you cannot moderate this person")

    def publish_refusal(self, user_id: int, source: str) -> str | None:
        """None if this person may publish ``source`` now, else the reason they may not."""
        p = self.participants.get(user_id)
        if p is None or self.ended:
            return "you are not in this session"
        if p.in_lobby:
            return "you are waiting in the lobby"
        if p.role in (LiveRole.HOST, LiveRole.TEACHER):
            return None
        if source not in ("camera", "microphone"):
            return "only teachers share their screen"
        if p.role is LiveRole.LOCAL_TEACHER:
            return None  # the classroom camera and microphone
        if self.kind is SessionKind.MEETING:
            return None
        if p.role is LiveRole.STUDENT and p.on_stage:
            return None
        return "students publish only when invited on stage"

    def forwarding_paused(self, user_id: int, source: str) -> bool:
        p = self.participants.get(user_id)
        if p is None:
            return True
        kind = SOURCE_KIND.get(source, "video")
        return kind in p.muted_by_host or kind in p.self_muted

    def receivers(self, publisher_id: int) -> set[int]:
        """Everyone who receives what this participant publishes."""
        pub = self.participants.get(publisher_id)
        if pub is None:
            return set()
        # Away (connection dropped, within the grace period) still receives: their media goes
        # on, so that coming back they resume without a new negotiation.
        present = {u for u, p in self.participants.items() if not p.in_lobby}
        present.discard(publisher_id)
        if pub.role in (LiveRole.HOST, LiveRole.TEACHER) or self.kind is SessionKind.MEETING:
            return present
        if pub.role is LiveRole.LOCAL_TEACHER:
            if self.stage_classroom == pub.class_id:
                return present
            # A classroom's camera goes up to the master teacher(s) only.
            return {
                u for u in present if self.participants[u].role in (LiveRole.HOST, LiveRole.TEACHER)
            }
        if pub.on_stage:
            return present
        return set()

    # --- hands and stage ------------------------------------------------------------------

    def hand_key(self, user_id: int, as_classroom: bool) -> str:
        p = self.get(user_id)
        if as_classroom:
            if p.role is not LiveRole.LOCAL_TEACHER:
                raise forbidden("only a classroom's local teacher raises the classroom's hand")
            return f"classroom:{p.class_id}"
        if p.role is not LiveRole.STUDENT and self.kind is not SessionKind.MEETING:
            raise forbidden("students raise hands")
        return f"user:{user_id}"

    def raise_hand(self, key: str) -> None:
        if key not in self.hands:
            self.hands.append(key)

    def lower_hand(self, actor_id: int, key: str) -> None:
        if key not in self.hands:
            return
        kind, _, ident = key.partition(":")
        if kind == "user" and int(ident) != actor_id:
            self.require_moderator_of(actor_id, self.get(int(ident)))
        if kind == "classroom":
            actor = self.get(actor_id)
            own = actor.role is LiveRole.LOCAL_TEACHER and actor.class_id == int(ident)
            if not own and actor.role not in (LiveRole.HOST, LiveRole.TEACHER):
                raise forbidden("you cannot lower this classroom's hand")
        self.hands.remove(key)

    def on_stage(self) -> list[int]:
        return [u for u, p in self.participants.items() if p.on_stage]

    def invite(self, actor_id: int, user_id: int) -> None:
        self.require_host(actor_id)
        if self.kind is not SessionKind.LESSON and self.kind is not SessionKind.DUAL_LESSON:
            raise conflict("there is no stage in a meeting")
        p = self.get(user_id)
        if p.role is not LiveRole.STUDENT:
            raise conflict("only students are invited on stage")
        if p.on_stage:
            return
        if len(self.on_stage()) >= self.stage_places:
            raise conflict(f"all {self.stage_places} stage places are taken")
        p.invited = True

    def accept(self, user_id: int) -> None:
        p = self.get(user_id)
        if not p.invited:
            raise conflict("you have not been invited on stage")
        if len(self.on_stage()) >= self.stage_places:
            p.invited = False
            raise conflict("the stage is full")
        p.invited = False
        p.on_stage = True
        key = f"user:{user_id}"
        if key in self.hands:
            self.hands.remove(key)

    def decline(self, user_id: int) -> None:
        self.get(user_id).invited = False

    def leave_stage(self, actor_id: int, user_id: int) -> None:
        if actor_id != user_id:
            self.require_host(actor_id)
        p = self.get(user_id)
        p.on_stage = False
        p.invited = False

    def set_stage_places(self, actor_id: int, places: int) -> None:
        self.require_host(actor_id)
        if not 0 <= places <= MAX_STAGE_PLACES:
            raise HomeroomError("bad_request", f"stage places are 0 to {MAX_STAGE_PLACES}")
        self.stage_places = places

    def put_classroom_on_stage(self, actor_id: int, class_id: int | None) -> None:
        self.require_host(actor_id)
        if self.kind is not SessionKind.DUAL_LESSON:
            raise conflict("only dual-teacher lessons have classrooms")
        if class_id is not None and (class_id not in self.classrooms or class_id == self.class_id):
            raise not_found("no such classroom in this lesson")
        self.stage_classroom = class_id
        if class_id is not None and f"classroom:{class_id}" in self.hands:
            self.hands.remove(f"classroom:{class_id}")

    # --- lobby and moderation ---------------------------------------------------------------

    def lobby(self) -> list[int]:
        return [u for u, p in self.participants.items() if p.in_lobby]

    def admit(self, actor_id: int, user_ids: list[int] | None) -> list[int]:
        self.require_host(actor_id)
        waiting = self.lobby()
        chosen = waiting if user_ids is None else [u for u in user_ids if u in waiting]
        for u in chosen:
            self.participants[u].in_lobby = False
        return chosen

    def decline_lobby(self, actor_id: int, user_ids: list[int]) -> list[int]:
        self.require_host(actor_id)
        out = [u for u in user_ids if u in self.lobby()]
        for u in out:
            del self.participants[u]
        return out

    def host_mute(self, actor_id: int, user_id: int, kinds: set[str], muted: bool) -> None:
        target = self.get(user_id)
        self.require_moderator_of(actor_id, target)
        if user_id == self.host_id:
            raise conflict("the host cannot be muted")
        if muted:
            target.muted_by_host |= kinds
        else:
            target.muted_by_host -= kinds

    def mute_all(self, actor_id: int) -> list[int]:
        self.require_host(actor_id)
        out = []
        for u, p in self.participants.items():
            if u != self.host_id and p.role is not LiveRole.TEACHER:
                p.muted_by_host.add("audio")
                out.append(u)
        return out

    def self_mute(self, user_id: int, kinds: set[str], muted: bool) -> None:
        p = self.get(user_id)
        if muted:
            p.self_muted |= kinds
            return
        if kinds & p.muted_by_host:
            if self.unmute_locked:
                raise HomeroomError(
                    "forbidden",
                    "the host has muted you and locked unmuting",
                    reason="unmute_locked",
                )
            p.muted_by_host -= kinds
        p.self_muted -= kinds

    def set_lock(self, actor_id: int, locked: bool | None, unmute_locked: bool | None) -> None:
        self.require_host(actor_id)
        if locked is not None:
            self.locked = locked
        if unmute_locked is not None:
            self.unmute_locked = unmute_locked

    def remove(self, actor_id: int, user_id: int) -> None:
        target = self.get(user_id)
        self.require_moderator_of(actor_id, target)
        if user_id == self.host_id:
            raise conflict("the host cannot be removed")
        self.leave(user_id)  # the only place a removed person leaves the session's state

    def transfer_host(self, actor_id: int, user_id: int) -> None:
        self.require_host(actor_id)
        target = self.get(user_id)
        if target.role is not LiveRole.TEACHER:
            raise conflict("host rights go to another teacher of the class")
        self.participants[actor_id].role = LiveRole.TEACHER
        target.role = LiveRole.HOST
        self.host_id = user_id

    # --- what a move keeps ------------------------------------------------------------------

    def _kept_people(self) -> list[tuple[int, Participant]]:
        """The people whose place is more than "joined": a move must keep it."""
        hands = {int(h[5:]) for h in self.hands if h.startswith("user:")}
        meeting = self.kind is SessionKind.MEETING
        return [
            (uid, p)
            for uid, p in self.participants.items()
            if p.in_lobby
            or p.on_stage
            or p.invited
            or p.muted_by_host
            or p.self_muted
            or uid in hands
            or (meeting and p.role is LiveRole.GUARDIAN)  # admitted
        ]

    def kept(self) -> dict[str, Any]:
        """The state that matters to people, as plain JSON: what a moved session keeps.

        The hand queue in order, the stage (who is on it, who is invited, its places, the
        classroom on it), the lobby (who waits; in a meeting, which guardians were admitted),
        mutes (the host's and each person's own) and the locks. People whose place is only
        "joined" are not in it (they are back when they join again), so it grows with the
        people who raised a hand, are on stage, wait or were admitted, or are muted: at most
        the members of the session's classrooms, each once. Media (what is published) is not
        kept: each client publishes again (clients/live.py, the web app).
        """
        people = [
            [
                uid,
                p.name,
                p.role.value,
                p.class_id,
                int(p.in_lobby) | int(p.on_stage) << 1 | int(p.invited) << 2,
                sorted(p.muted_by_host),
                sorted(p.self_muted),
            ]
            for uid, p in self._kept_people()
        ]
        return {
            "v": KEPT_VERSION,
            "hands": list(self.hands),
            "people": people,
            "stage_places": self.stage_places,
            "stage_classroom": self.stage_classroom,
            "locked": self.locked,
            "unmute_locked": self.unmute_locked,
        }

    def restore(self, kept: Mapping[str, Any] | None) -> list[int]:
        """Take back what a move kept (:meth:`kept`, as stored by the session's previous node).

        The people in it are listed as away (not connected) until they join again; the caller
        gives them the grace period of a dropped connection. Returns their ids. An unknown
        version (a newer node's) or nothing stored restores nothing: the session starts as
        rebuilt from its row, as before this was kept.
        """
        if not kept or kept.get("v") != KEPT_VERSION:
            return []
        roles = {r.value for r in LiveRole}
        for uid, name, role, class_id, flags, muted, self_muted in kept.get("people", []):
            if role not in roles or int(uid) in self.participants:
                continue
            self.participants[int(uid)] = Participant(
                int(uid),
                str(name),
                LiveRole(role),
                int(class_id),
                in_lobby=bool(flags & 1),
                on_stage=bool(flags & 2),
                invited=bool(flags & 4),
                connected=False,
                muted_by_host=set(muted) & MUTE_KINDS,
                self_muted=set(self_muted) & MUTE_KINDS,
            )
        # The host is the row's (a transfer is stored there), whatever the kept roles say.
        for uid, p in self.participants.items():
            if p.role is LiveRole.HOST and uid != self.host_id:
                p.role = LiveRole.TEACHER
            elif uid == self.host_id:
                p.role = LiveRole.HOST
        self.hands = [
            h
            for h in dict.fromkeys(str(h) for h in kept.get("hands", []))
            if _hand_known(h, self.participants, self.classrooms)
        ]
        places = int(kept.get("stage_places", self.stage_places))
        self.stage_places = min(max(places, 0), MAX_STAGE_PLACES)
        classroom = kept.get("stage_classroom")
        self.stage_classroom = int(classroom) if classroom in self.classrooms else None
        self.locked = bool(kept.get("locked"))
        self.unmute_locked = bool(kept.get("unmute_locked"))
        return [uid for uid, p in self.participants.items() if not p.connected]

    def save(self) -> Saved:
        """The rules' state now, to :meth:`undo` a change that could not be stored (cheap: it
        is taken before every change; a person's copy is a tuple of their rules' fields)."""
        return Saved(
            {
                u: (
                    p,
                    p.role,
                    p.in_lobby,
                    p.on_stage,
                    p.invited,
                    frozenset(p.muted_by_host) if p.muted_by_host else _NONE,
                    frozenset(p.self_muted) if p.self_muted else _NONE,
                )
                for u, p in self.participants.items()
            },
            list(self.hands),
            self.stage_places,
            self.stage_classroom,
            self.locked,
            self.unmute_locked,
        )

    def undo(self, saved: Saved) -> None:
        """Back to ``saved``: a change is undone whole when storing it failed. Each person's
        connection and media stay as they are now (those are not the change's)."""
        self.participants = {}
        for uid, (p, role, lobby, stage, invited, muted, own) in saved.participants.items():
            p.role, p.in_lobby, p.on_stage, p.invited = role, lobby, stage, invited
            p.muted_by_host, p.self_muted = set(muted), set(own)
            self.participants[uid] = p
        self.hands = saved.hands
        self.stage_places = saved.stage_places
        self.stage_classroom = saved.stage_classroom
        self.locked = saved.locked
        self.unmute_locked = saved.unmute_locked

    # --- views ----------------------------------------------------------------------------

    def summary(self) -> dict[str, object]:
        return {
            "id": self.id,
            "kind": self.kind.value,
            "class_id": self.class_id,
            "host_id": self.host_id,
            "title": self.title,
            "classrooms": [{"class_id": c, "name": n} for c, n in self.classrooms.items()],
            "pending_classrooms": [
                {"class_id": c, "name": n} for c, n in self.pending_links.items()
            ],
            "ended": self.ended,
        }

    def view(self) -> dict[str, object]:
        return {
            **self.summary(),
            "stage_places": self.stage_places,
            "stage_classroom": self.stage_classroom,
            "locked": self.locked,
            "unmute_locked": self.unmute_locked,
            "hands": list(self.hands),
            "participants": [p.view() for p in self.participants.values() if not p.in_lobby],
            "lobby": [p.view() for p in self.participants.values() if p.in_lobby],
        }
