import { useEffect, useState } from "preact/hooks";
import { asApiError, type ApiError } from "../../api/errors";
import { download } from "../../api/rest";
import { locale, t } from "../../i18n";
import { ready, request } from "../../state/session";
import { toast } from "../../state/toasts";
import { ErrorBox, Loading, PageHeader } from "../common";
import { fmtTime } from "./Homework";

interface Row {
  student_id: number;
  name: string;
  status: string;
  came: boolean;
  minutes: number;
  joins: number;
  hands: number;
  stage_minutes: number;
  questions: number;
  polls_answered: number;
  polls: number;
  quiz_correct: number;
  quizzes: number;
  note: string;
}

interface Report {
  lesson: { session_id: number; title: string; started_at: number; ended_at: number | null };
  counts: Record<string, number>;
  students: Row[];
}

const STATUSES = ["present", "late", "absent", "excused"];

/** A lesson's attendance for its teachers: every student, who never came, CSV, corrections. */
export function AttendancePage(props: { classId: number; sessionId: number | null }) {
  const [data, setData] = useState<Report | null>(null);
  const [error, setError] = useState<ApiError | null>(null);
  const sid = props.sessionId;
  const load = () =>
    request<Report>("attendance.report", { session_id: sid })
      .then(setData)
      .catch((e) => setError(asApiError(e)));
  useEffect(() => {
    if (ready.value && sid !== null) void load();
  }, [sid, ready.value]);
  if (sid === null) return null;
  async function correct(row: Row, status: string) {
    try {
      await request("attendance.correct", { session_id: sid, student_id: row.student_id, status, note: row.note });
      toast(t("att.corrected"), "success");
      await load();
    } catch (e) {
      setError(asApiError(e));
    }
  }
  if (!data) return <div class="page">{error ? <ErrorBox error={error} /> : <Loading />}</div>;
  return (
    <div class="page">
      <PageHeader title={t("att.title", data.lesson.title)} subtitle={fmtTime(data.lesson.started_at)}>
        <button type="button" class="btn" onClick={() => void download(`/api/v1/lessons/${sid}/attendance.csv?lang=${encodeURIComponent(locale.value)}`, `lesson-${sid}-attendance.csv`)}>
          {t("att.csv")}
        </button>
      </PageHeader>
      {error ? <ErrorBox error={error} /> : null}
      <p class="att-counts" data-testid="att-counts">
        {STATUSES.map((s) => `${t(`att.status.${s}` as "att.status.present")} ${data.counts[s] ?? 0}`).join(" · ")}
      </p>
      <div class="card table-wrap">
        <table class="table" data-testid="att-table">
          <thead>
            <tr>
              <th>{t("rec.student")}</th>
              <th>{t("att.status")}</th>
              <th>{t("att.minutes")}</th>
              <th>{t("att.joins")}</th>
              <th>{t("rec.hands")}</th>
              <th>{t("att.stage")}</th>
              <th>{t("rec.questions")}</th>
              <th>{t("rec.quiz")}</th>
            </tr>
          </thead>
          <tbody>
            {data.students.map((r) => (
              <tr key={r.student_id} class={r.came ? "" : "never-came"} data-student={r.name}>
                <td>{r.name}</td>
                <td>
                  <select
                    aria-label={t("att.statusOf", r.name)}
                    value={r.status}
                    onChange={(e) => void correct(r, e.currentTarget.value)}
                  >
                    {STATUSES.map((s) => (
                      <option value={s} key={s}>
                        {t(`att.status.${s}` as "att.status.present")}
                      </option>
                    ))}
                  </select>
                </td>
                <td>{r.minutes}</td>
                <td>{r.joins}</td>
                <td>{r.hands}</td>
                <td>{r.stage_minutes}</td>
                <td>{r.questions}</td>
                <td>
                  {r.quiz_correct}/{r.quizzes}
                </td>
              </tr>
            ))}
          </tbody>
        </table>
      </div>
    </div>
  );
}
