// Answers of the school set-up routes (/api/v1/school, realtime/actions/school_admin.py).
// --- a school that sets itself up (school admins; /api/v1/school) -----------------------------

export interface SchoolOverview {
  school: { id: number; name: string; time_zone: string; guardian_chat_history: boolean };
  years: { id: number; name: string; archived: boolean }[];
  classes: {
    id: number;
    name: string;
    join_code: string;
    school_year_id: number | null;
    archived: boolean;
    teachers: { user_id: number; name: string; role: string }[];
    students: number;
  }[];
  staff: { id: number; username: string; name: string }[];
}

export interface SchoolLink {
  id: number;
  class_id: number;
  class_name: string;
  guardian: { id: number; name: string; phone: string | null };
  student: { id: number; name: string };
  relationship: string;
  requested_at: number;
}

export interface RosterResult {
  rows: number;
  created: { username: string; display_name: string; password: string }[];
  pending: { line: number; username: string; reason: string }[];
}

/** GET/PUT /api/v1/school/storage (realtime/actions/retention.py storage_view). */
export interface SchoolStorage {
  used_bytes: number;
  quota_bytes: number;
  /** Files attached longer ago than this are removed; 0: kept for ever. */
  retention_days: number;
}
