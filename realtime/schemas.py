"""Schemas of every inbound payload. Unknown fields are refused; sizes are bounded per field."""

from __future__ import annotations

from typing import Annotated, Any, Literal, TypeVar

import msgspec

from realtime.domain.attachments import Variant
from realtime.domain.attendance import AttendanceStatus
from realtime.domain.notices import Audience, NoticeKind, ReceiptList
from realtime.domain.polls import AnswerBy, PollAudience, PollKind
from realtime.domain.questions import QuestionStatus
from realtime.domain.records import Period
from realtime.errors import bad_request

T = TypeVar("T")

ClientId = Annotated[str, msgspec.Meta(min_length=1, max_length=64)]
StreamName = Annotated[str, msgspec.Meta(min_length=3, max_length=80)]
# Every integer that reaches the database is bounded here, well inside the 64-bit columns (and
# exact as a JavaScript number): a larger one is refused as bad_request, never sent to the store.
MAX_ID = 2**53
Id = Annotated[int, msgspec.Meta(ge=1, le=MAX_ID)]
Seq = Annotated[int, msgspec.Meta(ge=0, le=2**62)]
# A moment as Unix seconds: finite (NaN and Infinity fail both bounds), before the year 10000.
Timestamp = Annotated[float, msgspec.Meta(ge=0, le=253_402_300_800)]
# A title or name: some text that is not only whitespace (actions store it stripped).
Title = Annotated[str, msgspec.Meta(min_length=1, max_length=200, pattern=r"\S")]
Name = Annotated[str, msgspec.Meta(min_length=1, max_length=120, pattern=r"\S")]
# Text fields are bounded loosely here (the Engine.IO packet limit bounds them anyway); the
# domain enforces the configured limits and answers too_large.
Text = Annotated[str, msgspec.Meta(max_length=100_000)]
Short = Annotated[str, msgspec.Meta(max_length=200)]
UploadId = Annotated[str, msgspec.Meta(min_length=8, max_length=32, pattern=r"^[A-Za-z0-9_-]+$")]
# Files attached to one message, notice, question or answer (actions/attachments.py).
Attachments = Annotated[list[UploadId], msgspec.Meta(max_length=9)]


class Payload(msgspec.Struct, forbid_unknown_fields=True):
    pass


class Sync(Payload):
    cursors: dict[StreamName, Seq] = {}


class ChatSend(Payload):
    stream: StreamName
    client_id: ClientId
    body: Text = ""
    attachments: Attachments = []
    # People the message @mentions (each is told in their own stream): members of the chat.
    mentions: Annotated[list[Id], msgspec.Meta(max_length=20)] = []


class ChatEdit(Payload):
    message_id: Id
    body: Text


class MessageRef(Payload):
    message_id: Id


class ChatHistory(Payload):
    stream: StreamName
    before: Seq | None = None
    limit: Annotated[int, msgspec.Meta(ge=1, le=1000)] = 50


class ChatRead(Payload):
    stream: StreamName
    seq: Seq


class Typing(Payload):
    stream: StreamName


class Mute(Payload):
    class_id: Id
    user_id: Id
    minutes: Annotated[int, msgspec.Meta(ge=0, le=60 * 24 * 30)]


class OpenConversation(Payload):
    class_id: Id
    user_id: Id


class NoticePublish(Payload):
    class_id: Id
    client_id: ClientId
    audience: Audience
    kind: NoticeKind
    title: Title
    body: Text = ""
    choices: Annotated[
        list[Annotated[str, msgspec.Meta(max_length=100)]], msgspec.Meta(max_length=20)
    ] = []
    deadline: Timestamp | None = None
    attachments: Attachments = []


class NoticeRef(Payload):
    notice_id: Id


# A page of a notice's roll-up: at most 500 entries per list (about 150 bytes each).
RECEIPTS_PAGE_MAX = 500
RECEIPTS_PAGE_DEFAULT = 100


class NoticeReceipts(Payload):
    notice_id: Id
    # Which list to page through; none: the counts and the first page of every list.
    list: ReceiptList | None = None
    # The last user id (receipts) or student id (covered, not_covered) already shown: the
    # previous page's ``next``. Only with ``list``.
    after: Id | None = None
    limit: Annotated[int, msgspec.Meta(ge=1, le=RECEIPTS_PAGE_MAX)] = RECEIPTS_PAGE_DEFAULT

    def __post_init__(self) -> None:
        if self.after is not None and self.list is None:
            raise ValueError("after needs list")


class NoticeList(Payload):
    class_id: Id


class NoticesDelivered(Payload):
    notice_ids: Annotated[list[Id], msgspec.Meta(min_length=1, max_length=500)]


class NoticeReply(Payload):
    notice_id: Id
    reply: Annotated[str, msgspec.Meta(min_length=1, max_length=100)]


class QuestionAsk(Payload):
    class_id: Id
    client_id: ClientId
    body: Text
    anonymous: bool = False
    session_id: Id | None = None
    attachments: Attachments = []


class QuestionRef(Payload):
    question_id: Id


class QuestionEdit(Payload):
    question_id: Id
    body: Text


class QuestionVote(Payload):
    question_id: Id
    up: bool = True


class QuestionAnswer(Payload):
    question_id: Id
    answer: Text = ""
    live: bool = False
    attachments: Attachments = []


class QuestionList(Payload):
    class_id: Id
    session_id: Id | None = None
    status: QuestionStatus | None = None


# --- polls, attendance, homework, learning records ---

PollOption = Annotated[str, msgspec.Meta(max_length=500)]
Options = Annotated[list[PollOption], msgspec.Meta(max_length=20)]


class PollCreate(Payload):
    class_id: Id
    client_id: ClientId
    kind: PollKind
    question: Annotated[str, msgspec.Meta(min_length=1, max_length=1000)]
    options: Options = []
    # Correct answer(s): a quiz. Empty: a poll.
    correct: Options = []
    anonymous: bool = False
    # Outside a session: who answers (a class poll for guardians, e.g. a meeting date).
    audience: PollAudience = PollAudience.STUDENTS
    session_id: Id | None = None
    # A dual-teacher lesson: each student answers, or each classroom once (its local teacher).
    answer_by: AnswerBy = AnswerBy.PERSON
    time_limit_s: Annotated[int, msgspec.Meta(ge=1, le=86_400)] | None = None


class PollRef(Payload):
    poll_id: Id


class PollAnswer(Payload):
    poll_id: Id
    answer: Annotated[list[PollOption], msgspec.Meta(min_length=1, max_length=20)]


class PollList(Payload):
    class_id: Id
    session_id: Id | None = None


class LessonRef(Payload):
    session_id: Id


class AttendanceCorrect(Payload):
    session_id: Id
    student_id: Id
    status: AttendanceStatus
    note: Annotated[str, msgspec.Meta(max_length=500)] = ""


class StudentRecordQuery(Payload):
    class_id: Id
    student_id: Id
    period: Period = Period.WEEK
    since: float | None = None
    until: float | None = None


class ClassRecordQuery(Payload):
    class_id: Id
    period: Period = Period.WEEK
    since: float | None = None
    until: float | None = None


class ClassRef(Payload):
    class_id: Id


class HomeworkAssign(Payload):
    class_id: Id
    client_id: ClientId
    title: Annotated[str, msgspec.Meta(min_length=1, max_length=200)]
    due_at: float
    instructions: Text = ""
    # Worksheets, pictures: uploads of the teacher's own (docs/protocol.md §14).
    attachments: Attachments = []


class HomeworkRef(Payload):
    homework_id: Id


class HomeworkSubmit(Payload):
    homework_id: Id
    body: Text = ""
    # The submission's files now: a resubmission lists the files it keeps and new uploads; the
    # files of the previous submission it does not list are deleted.
    attachments: Attachments = []


class HomeworkReview(Payload):
    homework_id: Id
    student_id: Id
    comment: Annotated[str, msgspec.Meta(max_length=2000)] = ""
    score: Annotated[float, msgspec.Meta(ge=0, le=1000)] | None = None
    grade: Annotated[str, msgspec.Meta(max_length=20)] | None = None
    # True: returned for redo (the student submits again); false: reviewed, final.
    redo: bool = False


class HomeworkList(Payload):
    class_id: Id
    # A guardian or staff member asking about one student; a student gets their own.
    student_id: Id | None = None


# --- REST bodies ---


class Login(Payload):
    username: Annotated[str, msgspec.Meta(min_length=1, max_length=80)]
    password: Annotated[str, msgspec.Meta(min_length=1, max_length=200)]
    # From an earlier sign-in on this client (clients without cookies send it here).
    device_token: Annotated[str, msgspec.Meta(max_length=300)] | None = None


class RefreshBody(Payload):
    refresh_token: Annotated[str, msgspec.Meta(min_length=1, max_length=200)]


class Register(Payload):
    username: Annotated[
        str, msgspec.Meta(min_length=3, max_length=80, pattern=r"^[A-Za-z0-9_.@-]+$")
    ]
    password: Annotated[str, msgspec.Meta(min_length=8, max_length=200)]
    display_name: Name
    join_code: Annotated[str, msgspec.Meta(min_length=4, max_length=20)]


class AuditQuery(Payload):
    before: Id | None = None
    limit: Annotated[int, msgspec.Meta(ge=1, le=1000)] = 50


class JoinClass(Payload):
    join_code: Annotated[str, msgspec.Meta(min_length=4, max_length=20)]
    child_name: Name
    relationship: Annotated[str, msgspec.Meta(max_length=40)] = ""
    # The guardian's phone, for the teacher to vet the request (digits, spaces, -, a leading +).
    phone: Annotated[str, msgspec.Meta(max_length=40, pattern=r"^(\+?[0-9][0-9 -]{4,30})?$")] = ""


class UploadCreate(Payload):
    name: Annotated[str, msgspec.Meta(min_length=1, max_length=255)]
    size: Annotated[int, msgspec.Meta(ge=1, le=2**40)]


class UploadLinks(Payload):
    ids: Annotated[list[UploadId], msgspec.Meta(min_length=1, max_length=50)]
    variant: Variant = Variant.ORIGINAL


class SchoolStorage(Payload):
    quota_bytes: Annotated[int, msgspec.Meta(ge=0, le=2**50)] | None = None
    # 0: keep attachments for ever.
    retention_days: Annotated[int, msgspec.Meta(ge=0, le=36500)] | None = None


class PushKeys(Payload):
    p256dh: Annotated[str, msgspec.Meta(min_length=1, max_length=200)]
    auth: Annotated[str, msgspec.Meta(min_length=1, max_length=100)]


class PushSubscribe(Payload):
    """A browser's PushSubscription as ``toJSON()`` gives it (expirationTime is ignored)."""

    endpoint: Annotated[str, msgspec.Meta(min_length=8, max_length=1000)]
    keys: PushKeys
    expirationTime: float | None = None  # the browser's name for it


class PushUnsubscribe(Payload):
    endpoint: Annotated[str, msgspec.Meta(min_length=8, max_length=1000)]


class QuietHours(Payload):
    start: Annotated[str, msgspec.Meta(min_length=5, max_length=5)]  # "HH:MM", school time
    end: Annotated[str, msgspec.Meta(min_length=5, max_length=5)]


class PushSettings(Payload):
    kinds: Annotated[list[Short], msgspec.Meta(max_length=20)]
    quiet_hours: QuietHours | None = None


def parse(kind: type[T], payload: Any) -> T:
    """Validate a decoded payload against its schema, or refuse it as bad_request."""
    if payload is None:
        payload = {}
    if not isinstance(payload, dict):
        raise bad_request("the payload must be an object")
    try:
        return msgspec.convert(payload, kind)
    except msgspec.ValidationError as exc:
        raise bad_request(f"invalid payload: {exc}") from None


# --- a school that sets itself up (school admins) ---------------------------------------------


class SchoolYearCreate(Payload):
    name: Annotated[str, msgspec.Meta(min_length=1, max_length=40)]


class ClassCreate(Payload):
    name: Annotated[str, msgspec.Meta(min_length=1, max_length=200)]
    school_year_id: Id | None = None


class TeacherAssign(Payload):
    user_id: Id
    role: Literal["head_teacher", "teacher", "assistant_teacher"]
    # True: take the role away instead.
    remove: bool = False


class StudentMove(Payload):
    student_id: Id
    to_class_id: Id


class SchoolSettings(Payload):
    """What is given changes; what is left out stays."""

    time_zone: Annotated[str, msgspec.Meta(min_length=1, max_length=64)] | None = None
    # Whether a newly approved guardian sees the guardians' chat from before their approval.
    guardian_chat_history: bool | None = None
