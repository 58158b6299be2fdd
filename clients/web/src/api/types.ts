// GENERATED from realtime/views.py by `python -m realtime.tools.gen_types`: do not edit.
// The Homeroom protocol as the browser sees it (acks, REST answers, stream events).


export type Role = "head_teacher" | "teacher" | "assistant_teacher" | "student" | "guardian";

export type NoticeKind = "info" | "read_required" | "confirm_required" | "reply_required";

export type Audience = "guardians" | "students" | "both";

export type ReceiptState = "none" | "sent" | "delivered" | "read" | "confirmed" | "replied";

/** The lists of a roll-up, each read one page at a time. */
export type RollupList = "receipts" | "covered" | "not_covered";

export type QuestionStatus = "open" | "answered" | "answered_live" | "dismissed" | "withdrawn";

export type SessionKind = "lesson" | "meeting" | "dual_lesson";

export type LiveRole = "host" | "teacher" | "local_teacher" | "student" | "guardian";

export type MediaSource = "camera" | "microphone" | "screen" | "screen_audio";

/** One numbered event of a stream (``data`` depends on ``type``). */
export interface StreamEvent<T = any> {
  stream: string;
  seq: number;
  type: string;
  at: number;
  data: T;
}

export interface StreamInfo {
  stream: string;
  visibility: "member" | "staff";
  last_seq: number;
  read_seq?: number;
  unread?: number;
}

export interface Person {
  id: number;
  name: string;
}

export interface Conversation {
  id: number;
  stream: string;
  class_id: number;
  people: Person[];
}

export interface SyncAck {
  streams: StreamInfo[];
  events: StreamEvent[];
  more: string[];
  conversations: Conversation[];
}

export interface Message {
  id: number;
  stream: string;
  seq: number;
  sender_id: number;
  sender_name: string;
  client_id: string;
  body: string;
  sent_at: number;
  edited_at: number | null;
  deleted: boolean;
  attachments?: Attachment[];
  mentions?: number[];
}

/** A file a message, notice, question or answer carries (docs/protocol.md §14.3). */
export interface Attachment {
  id: string;
  kind: "audio" | "document" | "image" | "video";
  mime: string;
  name: string;
  size: number;
  width: number | null;
  height: number | null;
  duration_s: number | null;
}

export interface Receipt {
  user_id: number;
  state: ReceiptState;
  delivered_at: number | null;
  read_at: number | null;
  confirmed_at: number | null;
  reply: string | null;
  replied_at: number | null;
}

/** A receipt in a roll-up, with the recipient's name. */
export interface NamedReceipt extends Receipt {
  name: string;
}

export interface NoticeCounts {
  students: number;
  covered: number;
  not_covered: number;
  recipients: number;
  states: Record<string, number>;
  replies?: Record<string, number>;
}

/** A notice; ``counts`` for teachers, ``receipt`` for recipients. */
export interface Notice {
  id: number;
  class_id: number;
  author_id: number;
  author_name: string;
  audience: Audience;
  kind: NoticeKind;
  title: string;
  body: string;
  choices: string[];
  deadline: number | null;
  created_at: number;
  attachments?: Attachment[];
  counts?: NoticeCounts;
  receipt?: Receipt | null;
}

export interface GuardianState {
  id: number;
  name: string;
  state: ReceiptState;
}

export interface StudentCoverage {
  student_id: number;
  name: string;
  guardians: GuardianState[];
}

/** A notice's roll-up; ``next``: per list, the ``after`` of its next page, or null when that was the last page. */
export interface Rollup {
  notice: Notice;
  counts: NoticeCounts;
  receipts: NamedReceipt[];
  covered: StudentCoverage[];
  not_covered: StudentCoverage[];
  next: Record<RollupList, number | null>;
  last_reminded_at: number | null;
  remind_again_at?: number | null;
}

/** notice.receipts with ``list``: the counts and one page of that list. */
export interface RollupPage {
  notice: Notice;
  counts: NoticeCounts;
  last_reminded_at: number | null;
  next: Partial<Record<RollupList, number | null>>;
  remind_again_at?: number | null;
  receipts?: NamedReceipt[];
  covered?: StudentCoverage[];
  not_covered?: StudentCoverage[];
}

export interface Question {
  id: number;
  class_id: number;
  session_id: number | null;
  stream: string;
  body: string;
  anonymous: boolean;
  asker_id: number | null;
  asker_name: string;
  status: QuestionStatus;
  answer: string | null;
  answered_by: number | null;
  answered_by_name: string | null;
  votes: number;
  created_at: number;
  updated_at: number;
  attachments?: Attachment[];
  answer_attachments?: Attachment[];
  voted?: boolean;
  mine?: boolean;
}

export interface ClassInfo {
  id: number;
  name: string;
  roles: Role[];
  children: Person[];
}

export interface PendingLink {
  link_id: number;
  class_id: number;
  child: Person;
}

export interface MeUser {
  id: number;
  username: string;
  display_name: string;
  school_admin: boolean;
}

export interface Me {
  user: MeUser;
  classes: ClassInfo[];
  pending_links: PendingLink[];
}

export interface Member {
  id: number;
  name: string;
  role: Role;
  phone?: string | null;
  children?: number[];
}

export interface MembersClass {
  id: number;
  name: string;
  join_code?: string;
}

export interface Members {
  class: MembersClass;
  members: Member[];
}

export interface LinkRequest {
  id: number;
  guardian_id: number;
  guardian_name: string;
  student_id: number;
  student_name: string;
  relationship: string;
  requested_at: number;
  phone?: string | null;
  on_roster?: boolean;
}

export interface TokenUser {
  id: number;
  username: string;
  display_name: string;
}

export interface Tokens {
  access_token: string;
  refresh_token: string;
  expires_in: number;
  user: TokenUser;
  device_token?: string;
}

export interface Classroom {
  class_id: number;
  name: string;
}

export interface SessionSummary {
  id: number;
  kind: SessionKind;
  class_id: number;
  host_id: number;
  title: string;
  classrooms: Classroom[];
  pending_classrooms: Classroom[];
  ended: boolean;
  reason?: string;
}

export interface LiveParticipant {
  user_id: number;
  name: string;
  role: LiveRole;
  class_id: number;
  in_lobby: boolean;
  on_stage: boolean;
  invited: boolean;
  connected: boolean;
  publishing: MediaSource[];
  muted_by_host: ("audio" | "video")[];
  self_muted: ("audio" | "video")[];
}

export interface SessionView extends SessionSummary {
  stage_places: number;
  stage_classroom: number | null;
  locked: boolean;
  unmute_locked: boolean;
  hands: string[];
  participants: LiveParticipant[];
  lobby: LiveParticipant[];
}

export interface OfferTrack {
  track_id: string;
  mid: string;
  publisher_id: number;
  source: MediaSource;
  kind: "audio" | "video";
}

export interface SubscribeOffer {
  session_id: number;
  sdp: string;
  tracks: OfferTrack[];
}

export interface JoinAck {
  session: SessionView | SessionSummary;
  you: LiveParticipant;
  ice_servers: RTCIceServer[];
  qa_streams: string[];
  resumed?: boolean;
}

export interface PublishedTrack {
  mid: string;
  kind: string;
  source: MediaSource;
  track_id: string;
}

export interface RejectedTrack {
  mid: string;
  kind: string;
  source: MediaSource;
  reason: string;
}

export interface PublishAck {
  sdp: string;
  published: PublishedTrack[];
  rejected: RejectedTrack[];
}

export interface SchoolClass {
  id: number;
  name: string;
  teachers: string[];
  mine: boolean;
}

/** ``GET /api/v1/push/key``: the VAPID public key (base64url), null when push is off. */
export interface PushKey {
  enabled: boolean;
  public_key: string | null;
}

export interface QuietHours {
  start: string;
  end: string;
}

/** ``GET``/``PUT /api/v1/push/settings``. */
export interface PushSettings {
  kinds: string[];
  quiet_hours: QuietHours | null;
  devices: number;
  time_zone: string;
  available: string[];
}
