"""Attendance: a person's presence intervals in a live session, merged, and what they add up to.

The live layer reports snapshots of who is present, on stage and has a hand up;
:class:`ParticipationTracker` turns consecutive snapshots into changes to record. No I/O.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum

from realtime.errors import bad_request

# Arriving later than this after the lesson started counts as late.
LATE_AFTER_S = 300.0
# Intervals kept per person and session (a flaky connection rejoining all lesson long); past it
# the last interval is stretched instead of adding one. 16 bytes each as JSON pairs.
MAX_INTERVALS = 200
MAX_NOTE_CHARS = 500


class AttendanceStatus(StrEnum):
    PRESENT = "present"
    LATE = "late"
    ABSENT = "absent"
    EXCUSED = "excused"


CORRECTIONS = frozenset(
    {
        AttendanceStatus.EXCUSED,
        AttendanceStatus.LATE,
        AttendanceStatus.ABSENT,
        AttendanceStatus.PRESENT,
    }
)


def parse_correction(status: str, note: str) -> AttendanceStatus:
    try:
        value = AttendanceStatus(status)
    except ValueError:
        raise bad_request("status is present, late, absent or excused") from None
    if len(note) > MAX_NOTE_CHARS:
        raise bad_request(f"a note has at most {MAX_NOTE_CHARS} characters")
    return value


Interval = tuple[float, float | None]


def merge_intervals(
    intervals: Iterable[Sequence[float | None]], until: float
) -> list[tuple[float, float]]:
    """Overlapping or touching intervals merged; an open one ends at ``until``."""
    spans = sorted(
        (float(s), float(e if e is not None else until)) for s, e in intervals if s is not None
    )
    out: list[tuple[float, float]] = []
    for s, e in spans:
        if e < s:
            continue
        if out and s <= out[-1][1]:
            out[-1] = (out[-1][0], max(out[-1][1], e))
        else:
            out.append((s, e))
    return out


def present_seconds(intervals: Iterable[Sequence[float | None]], until: float) -> float:
    return sum(e - s for s, e in merge_intervals(intervals, until))


def total_seconds(closed_s: float, open_since: float | None, until: float) -> float:
    """Time present from the kept total of closed intervals and the open one, if any."""
    return closed_s + (max(0.0, until - open_since) if open_since is not None else 0.0)


def add_join(intervals: list[list[float | None]], now: float) -> list[list[float | None]]:
    if intervals and intervals[-1][1] is None:
        return intervals  # already present
    if len(intervals) >= MAX_INTERVALS:
        intervals[-1][1] = None
        return intervals
    return [*intervals, [now, None]]


def add_leave(intervals: list[list[float | None]], now: float) -> list[list[float | None]]:
    if intervals and intervals[-1][1] is None:
        intervals[-1][1] = now
    return intervals


def status_of(
    first_join: float | None, started_at: float, correction: str | None
) -> AttendanceStatus:
    if correction:
        return AttendanceStatus(correction)
    if first_join is None:
        return AttendanceStatus.ABSENT
    if first_join - started_at > LATE_AFTER_S:
        return AttendanceStatus.LATE
    return AttendanceStatus.PRESENT


@dataclass(frozen=True)
class Presence:
    """One participant in one snapshot of a live session."""

    class_id: int
    role: str
    present: bool
    on_stage: bool
    hand_up: bool


@dataclass(frozen=True)
class Change:
    user_id: int
    class_id: int
    role: str
    kind: str  # join | leave | hand | stage
    at: float
    seconds: float = 0.0  # stage: time spent on stage


@dataclass
class ParticipationTracker:
    """Diffs snapshots of one session. Memory: one small record per participant seen."""

    last: dict[int, Presence] = field(default_factory=dict)
    stage_since: dict[int, float] = field(default_factory=dict)

    def observe(self, now: float, snapshot: Mapping[int, Presence]) -> list[Change]:
        changes: list[Change] = []
        for uid in sorted(set(self.last) | set(snapshot)):
            before = self.last.get(uid)
            after = snapshot.get(uid)
            ref = after or before
            assert ref is not None
            was = before is not None and before.present
            now_in = after is not None and after.present
            if now_in and not was:
                changes.append(Change(uid, ref.class_id, ref.role, "join", now))
            if was and not now_in:
                changes.append(Change(uid, ref.class_id, ref.role, "leave", now))
            if after is not None and after.hand_up and not (before is not None and before.hand_up):
                changes.append(Change(uid, ref.class_id, ref.role, "hand", now))
            staged = after is not None and after.present and after.on_stage
            if staged and uid not in self.stage_since:
                self.stage_since[uid] = now
            elif not staged and uid in self.stage_since:
                since = self.stage_since.pop(uid)
                changes.append(Change(uid, ref.class_id, ref.role, "stage", now, now - since))
        self.last = dict(snapshot)
        return changes

    def end(self, now: float) -> list[Change]:
        """The session ended: everyone present leaves, stage time is counted."""
        return self.observe(now, {})
