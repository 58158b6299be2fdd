"""What the server sends: the shapes of acks, REST answers and stream events, as msgspec structs.

The web app's types (clients/web/src/api/types.ts) are generated from these
(``python -m realtime.tools.gen_types``); ``tests/test_views.py`` holds real answers of a real
server to them (unknown fields refused, required fields required) and the committed types.ts to
the generated text. Inbound payloads are in ``realtime/schemas.py``.

A field that may be absent has the default ``UNSET`` (TypeScript ``name?: T``); ``None`` is
``null``. ``ts`` (a class variable) gives a field's TypeScript type where TypeScript says more
than Python (a generic, a browser type).
"""

from __future__ import annotations

from typing import Any, ClassVar, Literal

import msgspec
from msgspec import UNSET, UnsetType

Role = Literal["head_teacher", "teacher", "assistant_teacher", "student", "guardian"]
Visibility = Literal["staff", "member"]
NoticeKind = Literal["info", "read_required", "confirm_required", "reply_required"]
Audience = Literal["guardians", "students", "both"]
ReceiptState = Literal["none", "sent", "delivered", "read", "confirmed", "replied"]
RollupList = Literal["receipts", "covered", "not_covered"]
QuestionStatus = Literal["open", "answered", "answered_live", "dismissed", "withdrawn"]
SessionKind = Literal["lesson", "meeting", "dual_lesson"]
LiveRole = Literal["host", "teacher", "local_teacher", "student", "guardian"]
MediaSource = Literal["camera", "microphone", "screen", "screen_audio"]
MediaKind = Literal["audio", "video"]

# Named in the generated TypeScript (in this order), with the comment above each.
ALIASES: dict[str, tuple[Any, str]] = {
    "Role": (Role, ""),
    "NoticeKind": (NoticeKind, ""),
    "Audience": (Audience, ""),
    "ReceiptState": (ReceiptState, ""),
    "RollupList": (RollupList, "The lists of a roll-up, each read one page at a time."),
    "QuestionStatus": (QuestionStatus, ""),
    "SessionKind": (SessionKind, ""),
    "LiveRole": (LiveRole, ""),
    "MediaSource": (MediaSource, ""),
}


class View(msgspec.Struct, forbid_unknown_fields=True, omit_defaults=True, kw_only=True):
    ts: ClassVar[dict[str, str]] = {}


class StreamEvent(View):
    """One numbered event of a stream (``data`` depends on ``type``)."""

    stream: str
    seq: int
    type: str
    at: float
    data: Any
    ts: ClassVar[dict[str, str]] = {"<>": "<T = any>", "data": "T"}


class StreamInfo(View):
    stream: str
    visibility: Visibility
    last_seq: int
    read_seq: int | UnsetType = UNSET
    unread: int | UnsetType = UNSET


class Person(View):
    id: int
    name: str


class Conversation(View):
    id: int
    stream: str
    class_id: int
    people: list[Person]


class SyncAck(View):
    streams: list[StreamInfo]
    events: list[StreamEvent]
    more: list[str]
    conversations: list[Conversation]


AttachmentKind = Literal["image", "document", "audio", "video"]


class Attachment(View):
    """A file a message, notice, question or answer carries (docs/protocol.md §14.3)."""

    id: str
    kind: AttachmentKind
    mime: str
    name: str
    size: int
    width: int | None
    height: int | None
    duration_s: float | None


class Message(View):
    id: int
    stream: str
    seq: int
    sender_id: int
    sender_name: str
    client_id: str
    body: str
    sent_at: float
    edited_at: float | None
    deleted: bool
    # Absent in events stored before attachments existed.
    attachments: list[Attachment] | UnsetType = UNSET
    # The people it @mentions; absent in events stored before mentions existed.
    mentions: list[int] | UnsetType = UNSET


class Receipt(View):
    user_id: int
    state: ReceiptState
    delivered_at: float | None
    read_at: float | None
    confirmed_at: float | None
    reply: str | None
    replied_at: float | None


class NamedReceipt(Receipt):
    """A receipt in a roll-up, with the recipient's name."""

    name: str


class NoticeCounts(View):
    students: int
    covered: int
    not_covered: int
    recipients: int
    states: dict[str, int]
    # Reply-required notices: how many chose each choice.
    replies: dict[str, int] | UnsetType = UNSET


class Notice(View):
    """A notice; ``counts`` for teachers, ``receipt`` for recipients."""

    id: int
    class_id: int
    author_id: int
    author_name: str
    audience: Audience
    kind: NoticeKind
    title: str
    body: str
    choices: list[str]
    deadline: float | None
    created_at: float
    attachments: list[Attachment] | UnsetType = UNSET
    counts: NoticeCounts | UnsetType = UNSET
    receipt: Receipt | UnsetType | None = UNSET


class GuardianState(View):
    id: int
    name: str
    state: ReceiptState


class StudentCoverage(View):
    student_id: int
    name: str
    guardians: list[GuardianState]


class Rollup(View):
    """A notice's roll-up; ``next``: per list, the ``after`` of its next page, or null when
    that was the last page."""

    notice: Notice
    counts: NoticeCounts
    receipts: list[NamedReceipt]
    covered: list[StudentCoverage]
    not_covered: list[StudentCoverage]
    next: dict[RollupList, int | None]
    last_reminded_at: float | None
    # When notice.remind is allowed again; null: now.
    remind_again_at: float | None = None


class RollupPage(View):
    """notice.receipts with ``list``: the counts and one page of that list."""

    notice: Notice
    counts: NoticeCounts
    last_reminded_at: float | None
    next: dict[RollupList, int | None]
    remind_again_at: float | None = None
    receipts: list[NamedReceipt] | UnsetType = UNSET
    covered: list[StudentCoverage] | UnsetType = UNSET
    not_covered: list[StudentCoverage] | UnsetType = UNSET
    ts: ClassVar[dict[str, str]] = {"next": "Partial<Record<RollupList, number | null>>"}


class Question(View):
    id: int
    class_id: int
    session_id: int | None
    stream: str
    body: str
    anonymous: bool
    asker_id: int | None
    asker_name: str
    status: QuestionStatus
    answer: str | None
    answered_by: int | None
    answered_by_name: str | None
    votes: int
    created_at: float
    updated_at: float
    attachments: list[Attachment] | UnsetType = UNSET
    answer_attachments: list[Attachment] | UnsetType = UNSET
    voted: bool | UnsetType = UNSET
    mine: bool | UnsetType = UNSET


class ClassInfo(View):
    id: int
    name: str
    roles: list[Role]
    children: list[Person]


class PendingLink(View):
    link_id: int
    class_id: int
    child: Person


class MeUser(View):
    id: int
    username: str
    display_name: str
    school_admin: bool


class Me(View):
    user: MeUser
    classes: list[ClassInfo]
    pending_links: list[PendingLink]


class Member(View):
    id: int
    name: str
    role: Role
    phone: str | UnsetType | None = UNSET
    children: list[int] | UnsetType = UNSET


class MembersClass(View):
    id: int
    name: str
    join_code: str | UnsetType = UNSET


class Members(View):
    class_: MembersClass = msgspec.field(name="class")
    members: list[Member]


class LinkRequest(View):
    id: int
    guardian_id: int
    guardian_name: str
    student_id: int
    student_name: str
    relationship: str
    requested_at: float
    # The phone the guardian gave, and whether an approved guardian of the child has it.
    phone: str | None = None
    on_roster: bool = False


class TokenUser(View):
    id: int
    username: str
    display_name: str


class Tokens(View):
    access_token: str
    refresh_token: str
    expires_in: int
    user: TokenUser
    # A sign-in's answer only: this client's device token (docs/security.md), kept by the client
    # and sent with its next sign-in so that the owner is never locked out by someone guessing.
    device_token: str | UnsetType = UNSET


# --- live sessions (realtime/live/, docs/protocol.md §9) ---


class Classroom(View):
    class_id: int
    name: str


class SessionSummary(View):
    id: int
    kind: SessionKind
    class_id: int
    host_id: int
    title: str
    classrooms: list[Classroom]
    # Classrooms a dual lesson asked to link whose teachers have not accepted yet.
    pending_classrooms: list[Classroom]
    ended: bool
    reason: str | UnsetType = UNSET


class LiveParticipant(View):
    user_id: int
    name: str
    role: LiveRole
    class_id: int
    in_lobby: bool
    on_stage: bool
    invited: bool
    connected: bool
    publishing: list[MediaSource]
    muted_by_host: list[MediaKind]
    self_muted: list[MediaKind]


class SessionView(SessionSummary, kw_only=True):
    stage_places: int
    stage_classroom: int | None
    locked: bool
    unmute_locked: bool
    hands: list[str]
    participants: list[LiveParticipant]
    lobby: list[LiveParticipant]


class OfferTrack(View):
    track_id: str
    mid: str
    publisher_id: int
    source: MediaSource
    kind: MediaKind


class SubscribeOffer(View):
    session_id: int
    sdp: str
    tracks: list[OfferTrack]


class JoinAck(View):
    # A SessionView, or a SessionSummary for whom waits in the lobby (msgspec takes no union of
    # untagged structs: tests/test_views.py checks it as one or the other).
    session: dict[str, Any]
    you: LiveParticipant
    ice_servers: list[dict[str, Any]]
    qa_streams: list[str]
    # Joined with ``resume`` and the server still had the client's peer connections: they go on.
    resumed: bool = False
    ts: ClassVar[dict[str, str]] = {
        "session": "SessionView | SessionSummary",
        "ice_servers": "RTCIceServer[]",
    }


class PublishedTrack(View):
    mid: str
    kind: str
    source: MediaSource
    track_id: str


class RejectedTrack(View):
    mid: str
    kind: str
    source: MediaSource
    reason: str


class PublishAck(View):
    sdp: str
    published: list[PublishedTrack]
    rejected: list[RejectedTrack]


class SchoolClass(View):
    id: int
    name: str
    teachers: list[str]
    mine: bool


class PushKey(View):
    """``GET /api/v1/push/key``: the VAPID public key (base64url), null when push is off."""

    enabled: bool
    public_key: str | None


class QuietHours(View):
    start: str  # "HH:MM", school time
    end: str


class PushSettings(View):
    """``GET``/``PUT /api/v1/push/settings``."""

    kinds: list[str]
    quiet_hours: QuietHours | None
    devices: int
    time_zone: str
    available: list[str]


# In the generated TypeScript, in this order.
VIEWS: tuple[type[View], ...] = (
    StreamEvent,
    StreamInfo,
    Person,
    Conversation,
    SyncAck,
    Message,
    Attachment,
    Receipt,
    NamedReceipt,
    NoticeCounts,
    Notice,
    GuardianState,
    StudentCoverage,
    Rollup,
    RollupPage,
    Question,
    ClassInfo,
    PendingLink,
    MeUser,
    Me,
    Member,
    MembersClass,
    Members,
    LinkRequest,
    TokenUser,
    Tokens,
    Classroom,
    SessionSummary,
    LiveParticipant,
    SessionView,
    OfferTrack,
    SubscribeOffer,
    JoinAck,
    PublishedTrack,
    RejectedTrack,
    PublishAck,
    SchoolClass,
    PushKey,
    QuietHours,
    PushSettings,
)
