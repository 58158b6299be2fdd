"""Who may do what: every action is decided here from the actor's relationship to the class.

Each rule is a plain function of a :class:`ClassAccess` (and the thing acted on) so that the
authorization matrix can be tested without a server.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from realtime.domain import chat
from realtime.domain.roles import ClassAccess
from realtime.domain.streams import StreamKey, Visibility
from realtime.errors import forbidden


def stream_visibility(
    stream: StreamKey, access: ClassAccess | None, *, participants: frozenset[int] = frozenset()
) -> Visibility:
    """How much of ``stream`` this person may follow.

    ``access`` is the person's access to the stream's class (None for streams of no class);
    ``participants`` are the two people of a private conversation.
    """
    if stream.kind == "user":
        return (
            Visibility.MEMBER
            if access is not None and access.user_id == stream.id
            else (Visibility.NONE)
        )
    if stream.kind == "conv":
        if access is not None and access.user_id in participants:
            return Visibility.MEMBER
        return Visibility.NONE
    if access is None or stream.class_id != access.class_id:
        return Visibility.NONE
    if access.is_staff:
        return Visibility.STAFF
    if stream.kind == "staff":
        return Visibility.NONE
    if stream.kind in ("class", "notices"):
        if stream.part == "students" and access.is_student:
            return Visibility.MEMBER
        if stream.part == "guardians" and access.is_guardian:
            return Visibility.MEMBER
        return Visibility.NONE
    if stream.kind == "qa" and access.is_student:
        return Visibility.MEMBER
    return Visibility.NONE


def require(allowed: bool, message: str) -> None:
    if not allowed:
        raise forbidden(message)


# --- chat -------------------------------------------------------------------------------------


def may_post_chat(
    stream: StreamKey, access: ClassAccess | None, participants: frozenset[int]
) -> bool:
    if stream.kind == "conv":
        return stream_visibility(stream, access, participants=participants) > Visibility.NONE
    if stream.kind != "class":
        return False
    return stream_visibility(stream, access) > Visibility.NONE


def may_moderate_chat(access: ClassAccess | None) -> bool:
    """Delete anyone's message, mute a member: teachers and assistants of the class."""
    return access is not None and access.is_staff


def may_see_read_by(stream: StreamKey, access: ClassAccess | None) -> bool:
    """Who has read a message of the guardians' chat: the class's teachers and assistants."""
    return (
        stream.kind == "class"
        and stream.part == "guardians"
        and access is not None
        and access.is_staff
    )


def tells_read_by(stream: StreamKey, reader: ClassAccess | None) -> bool:
    """Whether moving this person's read position in ``stream`` tells the class's teachers
    (``chat.read_by`` in ``staff:{cid}``, which only they follow, as :func:`may_see_read_by`):
    a guardian reading the guardians' chat, whom "read by" counts."""
    return (
        stream.kind == "class"
        and stream.part == "guardians"
        and reader is not None
        and reader.is_guardian
        and not reader.is_staff
    )


def may_see_in_chat(seq: int, data: Mapping[str, Any] | None, history_floor: int) -> bool:
    """Whether someone who sees a chat stream only after ``history_floor`` (a guardian approved
    after the families' earlier conversation, realtime/actions/guardian_history.py; 0: they see
    it all) sees the message or event at ``seq`` in full.

    An event about an earlier message (an edit with its new text, a deletion; ``data`` names it,
    domain/chat.referred_message) goes only to those who see that message; the others receive
    its number alone (domain/streams.hidden_form). The same rule answers for a message itself
    (``data`` None): its files, its place in the history."""
    if seq <= history_floor:
        return False
    about = chat.referred_message(data)
    return about is None or about > history_floor


def may_open_conversation(initiator: ClassAccess, other: ClassAccess) -> bool:
    """Private talk is between a teacher and a guardian or student of the same class.

    Never student with student, guardian with guardian, or student with guardian.
    """
    if initiator.class_id != other.class_id:
        return False
    pair = (initiator, other)
    for teacher, peer in (pair, pair[::-1]):
        if teacher.is_staff and (peer.is_guardian or peer.is_student) and not peer.is_staff:
            return True
    return False


# --- notices ----------------------------------------------------------------------------------


def may_publish_notice(access: ClassAccess | None) -> bool:
    return access is not None and access.is_teacher


# --- live sessions ----------------------------------------------------------------------------


def may_start_session(access: ClassAccess | None) -> bool:
    """Lessons and parent meetings of a class are started by its teachers."""
    return access is not None and access.is_teacher


def may_link_classroom(access: ClassAccess | None) -> bool:
    """Linking a class into a dual-teacher lesson is its own teachers' decision, or a school
    admin's; a teacher of another class only asks."""
    return access is not None and (access.is_teacher or access.school_admin)


def may_view_receipts(access: ClassAccess | None) -> bool:
    return access is not None and access.is_staff


def may_receive_notice(access: ClassAccess | None, audience: str) -> bool:
    if access is None:
        return False
    if audience in ("guardians", "both") and access.is_guardian:
        return True
    return audience in ("students", "both") and access.is_student


# --- questions --------------------------------------------------------------------------------


def may_ask(access: ClassAccess | None) -> bool:
    return access is not None and access.is_student


def may_vote(access: ClassAccess | None) -> bool:
    return access is not None and access.is_student


def may_moderate_questions(access: ClassAccess | None) -> bool:
    """Answer, mark answered live, dismiss, reopen."""
    return access is not None and access.is_staff


# --- attachments ------------------------------------------------------------------------------


def may_fetch_attachment(actor_id: int, owner_id: int, carrier: Visibility) -> bool:
    """A file: its uploader, and whoever may see the message, notice or question carrying it
    (``carrier``: the actor's visibility of that carrier; NONE when it is deleted or absent)."""
    return actor_id == owner_id or carrier > Visibility.NONE


def may_manage_school_storage(school_admin: bool) -> bool:
    """Set a school's storage quota and how long its attachments are kept."""
    return school_admin


# --- roster -----------------------------------------------------------------------------------


def may_manage_roster(access: ClassAccess | None) -> bool:
    """Import rosters, add members, approve or reject guardian links."""
    return access is not None and (access.is_teacher or access.school_admin)


def may_view_roster(access: ClassAccess | None) -> bool:
    return access is not None and (access.is_staff or access.school_admin)


def may_enrol_by_import(*, created_now: bool, already_there: bool, school_admin: bool) -> bool:
    """A roster import enrols a student or links a guardian only if the import itself created
    the account, the account is already there (a re-import changes nothing), or a school admin
    (or the console) imports. An existing account is otherwise joined by its own request and the
    teacher's approval: a teacher cannot pull a person (and their phone number) into a class."""
    return created_now or already_there or school_admin


# --- audit ------------------------------------------------------------------------------------


def may_read_audit(school_admin: bool) -> bool:
    """The audit log of a school: its school admins only."""
    return school_admin


# --- polls, attendance, homework, learning records ---------------------------------------------


def may_run_poll(access: ClassAccess | None) -> bool:
    """Open, close and publish polls, see live results and named answers: the class's staff."""
    return access is not None and access.is_staff


def may_answer_poll(access: ClassAccess | None, audience: str, answer_by: str) -> bool:
    """Students answer students' polls (a classroom's staff answer for it when the master teacher
    chose classroom answers); guardians answer guardians' polls."""
    if access is None:
        return False
    if answer_by == "classroom":
        return access.is_staff
    if audience == "guardians":
        return access.is_guardian
    return access.is_student


def may_see_poll(access: ClassAccess | None, audience: str) -> bool:
    if access is None:
        return False
    if access.is_staff:
        return True
    return access.is_guardian if audience == "guardians" else access.is_student


def may_view_attendance(access: ClassAccess | None) -> bool:
    """Lesson reports, corrections, class summaries, digests: the class's staff."""
    return access is not None and access.is_staff


def may_correct_attendance(access: ClassAccess | None) -> bool:
    return access is not None and access.is_staff


def may_view_student(access: ClassAccess | None, student_id: int) -> bool:
    """A student's record and homework: the student, their approved guardians, class staff.

    A guardian sees only the children approved for them in this class, never another child."""
    if access is None:
        return False
    if access.is_staff:
        return True
    if access.is_student and access.user_id == student_id:
        return True
    return access.is_guardian and student_id in access.children


def may_assign_homework(access: ClassAccess | None) -> bool:
    return access is not None and access.is_teacher


def may_review_homework(access: ClassAccess | None) -> bool:
    return access is not None and access.is_staff


def may_submit_homework(access: ClassAccess | None) -> bool:
    return access is not None and access.is_student


def may_see_homework(access: ClassAccess | None, student_id: int | None = None) -> bool:
    """A homework (and its files): every member of its class; one student's submission (and its
    files): as :func:`may_view_student`."""
    if student_id is not None:
        return may_view_student(access, student_id)
    return access is not None and (access.is_member or access.is_staff)


# --- a school that sets itself up -------------------------------------------------------------


def may_administer_school(school_admin: bool) -> bool:
    """Classes, school years, teachers, moving students, the school's settings and every
    pending link request: the school's admins only (a class's teachers run their own roster)."""
    return school_admin


def may_share_join_code(access: ClassAccess | None) -> bool:
    """The class's join code (and its QR code): who may hand it to families."""
    return access is not None and (access.is_teacher or access.school_admin)
