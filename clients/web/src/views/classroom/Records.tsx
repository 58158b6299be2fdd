import { useEffect, useState } from "preact/hooks";
import { asApiError, type ApiError } from "../../api/errors";
import { t } from "../../i18n";
import { digestOf, homeworkTick } from "../../state/classroom";
import { classInfo, me, rolesIn } from "../../state/me";
import { ready, request } from "../../state/session";
import { Empty, ErrorBox, Loading, PageHeader } from "../common";
import { ChildPicker, fmtTime, StateChip, type HomeworkItem } from "./Homework";

export interface RecordFigures {
  student_id: number;
  lessons: number;
  attended: number;
  late: number;
  excused: number;
  missed: number;
  minutes_present: number;
  hands: number;
  stage_minutes: number;
  questions: number;
  polls: number;
  polls_answered: number;
  quiz_questions: number;
  quiz_correct: number;
  homework: Record<string, number>;
  notices: number;
  notices_confirmed: number;
  name?: string;
}

const PERIODS = ["week", "month", "term"] as const;
type Period = (typeof PERIODS)[number];

function PeriodPicker(props: { period: Period; setPeriod: (p: Period) => void }) {
  return (
    <div class="tabs period-tabs" role="group" aria-label={t("rec.period")}>
      {PERIODS.map((p) => (
        <button
          type="button"
          key={p}
          class={`tab${props.period === p ? " active" : ""}`}
          aria-pressed={props.period === p}
          onClick={() => props.setPeriod(p)}
        >
          {t(`rec.period.${p}`)}
        </button>
      ))}
    </div>
  );
}

/** Learning records: staff see the class; a student their own; a guardian their child's. With a
 *  student id in the route, that student's record (refused for anyone else's child). */
export function RecordsPage(props: { classId: number; studentId: number | null }) {
  const { classId } = props;
  const roles = rolesIn(classId);
  const [period, setPeriod] = useState<Period>("week");
  if (roles.staff && props.studentId === null) return <ClassRecords classId={classId} period={period} setPeriod={setPeriod} />;
  const children = classInfo(classId)?.children ?? [];
  const own = roles.student ? (me.value?.user.id ?? null) : (children[0]?.id ?? null);
  return (
    <StudentRecordPage
      classId={classId}
      initial={props.studentId ?? own}
      children={roles.guardian && !roles.staff ? children : []}
      period={period}
      setPeriod={setPeriod}
    />
  );
}

function StudentRecordPage(props: {
  classId: number;
  initial: number | null;
  children: { id: number; name: string }[];
  period: Period;
  setPeriod: (p: Period) => void;
}) {
  const { classId, period } = props;
  const [student, setStudent] = useState<number | null>(props.initial);
  const [data, setData] = useState<{ name: string; record: RecordFigures } | null>(null);
  const [homework, setHomework] = useState<HomeworkItem[] | null>(null);
  const [error, setError] = useState<ApiError | null>(null);
  useEffect(() => setStudent(props.initial), [props.initial]);
  useEffect(() => {
    if (!ready.value || student === null) return;
    setError(null);
    setData(null);
    request<{ name: string; record: RecordFigures }>("record.student", { class_id: classId, student_id: student, period })
      .then(setData)
      .catch((e) => setError(asApiError(e)));
    request<{ homework: HomeworkItem[] }>("homework.list", { class_id: classId, student_id: student })
      .then((a) => setHomework(a.homework))
      .catch(() => setHomework(null));
  }, [classId, student, period, ready.value, homeworkTick.value]);
  return (
    <div class="page">
      <PageHeader title={t("rec.title")} subtitle={data ? data.name : ""} />
      {props.children.length > 1 ? <ChildPicker children={props.children} child={student} setChild={setStudent} /> : null}
      <PeriodPicker period={period} setPeriod={props.setPeriod} />
      {error ? <ErrorBox error={error} /> : null}
      {!data && !error ? <Loading /> : null}
      {data ? <RecordCard r={data.record} /> : null}
      {student !== null ? <DigestCard classId={classId} studentId={student} /> : null}
      {data && homework ? (
        <section class="card" aria-labelledby="rec-hw">
          <h2 id="rec-hw" class="card-title">
            {t("rec.homework")}
          </h2>
          {homework.length === 0 ? <Empty>{t("hw.none")}</Empty> : null}
          <ul class="rec-hw-list">
            {homework.map((h) => (
              <li key={h.id} class="rec-hw-row">
                <span class="grow">{h.title}</span>
                <span class="muted">{fmtTime(h.due_at)}</span>
                {h.submission ? <StateChip state={h.submission.state} /> : null}
                {h.submission?.comment ? <span class="muted">“{h.submission.comment}”</span> : null}
              </li>
            ))}
          </ul>
        </section>
      ) : null}
    </div>
  );
}

function Figure(props: { label: string; value: string | number; testid?: string }) {
  return (
    <div class="figure" data-testid={props.testid}>
      <span class="figure-value">{props.value}</span>
      <span class="figure-label">{props.label}</span>
    </div>
  );
}

/** The latest weekly digest received for this child (guardians; nothing for others). */
function DigestCard(props: { classId: number; studentId: number }) {
  const d = digestOf(props.classId, props.studentId);
  if (!d) return null;
  const day = (s: number) => new Date(s * 1000).toLocaleDateString();
  return (
    <section class="digest" aria-labelledby="digest-title">
      <h2 id="digest-title" class="section-title small">
        {t("rec.digestTitle", day(d.since), day(d.until - 1))}
      </h2>
      <RecordCard r={d.record as unknown as RecordFigures} label={t("rec.digestTitle", day(d.since), day(d.until - 1))} testId="digest" />
    </section>
  );
}

export function RecordCard(props: { r: RecordFigures; label?: string; testId?: string }) {
  const r = props.r;
  const mark = (id: string) => (props.testId ? undefined : id); // the test ids of the live record only
  return (
    <section class="card record-card" aria-label={props.label ?? t("rec.title")} data-testid={props.testId ?? "record"}>
      <div class="figures">
        <Figure label={t("rec.attended")} value={`${r.attended}/${r.lessons}`} testid={mark("rec-attended")} />
        <Figure label={t("rec.missed")} value={r.missed} />
        <Figure label={t("rec.minutes")} value={Math.round(r.minutes_present)} />
        <Figure label={t("rec.hands")} value={r.hands} testid={mark("rec-hands")} />
        <Figure label={t("rec.questions")} value={r.questions} />
        <Figure label={t("rec.polls")} value={`${r.polls_answered}/${r.polls}`} />
        <Figure label={t("rec.quiz")} value={`${r.quiz_correct}/${r.quiz_questions}`} testid={mark("rec-quiz")} />
        <Figure
          label={t("rec.homeworkDone")}
          value={`${r.homework.submitted + r.homework.late + r.homework.reviewed}/${Object.values(r.homework).reduce((a, b) => a + b, 0)}`}
        />
        <Figure label={t("rec.notices")} value={`${r.notices_confirmed}/${r.notices}`} />
      </div>
    </section>
  );
}

interface ClassData {
  summary: { students: number; attendance_rate: number | null; quiz_correct_rate: number | null; homework_done_rate: number | null };
  students: RecordFigures[];
  lessons: { session_id: number; title: string; started_at: number; ended_at: number | null }[];
}

const pctOf = (x: number | null) => (x == null ? "–" : `${Math.round(x * 100)}%`);

function ClassRecords(props: { classId: number; period: Period; setPeriod: (p: Period) => void }) {
  const { classId, period } = props;
  const [data, setData] = useState<ClassData | null>(null);
  const [error, setError] = useState<ApiError | null>(null);
  useEffect(() => {
    if (!ready.value) return;
    request<ClassData>("record.class", { class_id: classId, period })
      .then(setData)
      .catch((e) => setError(asApiError(e)));
  }, [classId, period, ready.value]);
  return (
    <div class="page">
      <PageHeader title={t("rec.classTitle")} subtitle={t("rec.classSubtitle")} />
      <PeriodPicker period={period} setPeriod={props.setPeriod} />
      {error ? <ErrorBox error={error} /> : null}
      {!data && !error ? <Loading /> : null}
      {data ? (
        <>
          <section class="card">
            <div class="figures">
              <Figure label={t("rec.attendanceRate")} value={pctOf(data.summary.attendance_rate)} />
              <Figure label={t("rec.quizRate")} value={pctOf(data.summary.quiz_correct_rate)} />
              <Figure label={t("rec.homeworkRate")} value={pctOf(data.summary.homework_done_rate)} />
            </div>
          </section>
          <section class="card" aria-labelledby="rec-lessons">
            <h2 id="rec-lessons" class="card-title">
              {t("rec.lessons")}
            </h2>
            {data.lessons.length === 0 ? <Empty>{t("rec.noLessons")}</Empty> : null}
            <ul class="rec-lessons">
              {data.lessons.map((l) => (
                <li key={l.session_id}>
                  <a href={`#/class/${classId}/attendance/${l.session_id}`}>
                    {l.title} · {fmtTime(l.started_at)}
                  </a>
                </li>
              ))}
            </ul>
          </section>
          <section class="card table-wrap" aria-label={t("rec.students")}>
            <table class="table">
              <thead>
                <tr>
                  <th>{t("rec.student")}</th>
                  <th>{t("rec.attended")}</th>
                  <th>{t("rec.hands")}</th>
                  <th>{t("rec.quiz")}</th>
                  <th>{t("rec.homeworkDone")}</th>
                </tr>
              </thead>
              <tbody>
                {data.students.map((r) => (
                  <tr key={r.student_id}>
                    <td>
                      <a href={`#/class/${classId}/records/${r.student_id}`}>{r.name}</a>
                    </td>
                    <td>
                      <span class="mini-bar" aria-hidden="true">
                        <span style={{ width: `${r.lessons ? (100 * r.attended) / r.lessons : 0}%` }} />
                      </span>
                      {r.attended}/{r.lessons}
                    </td>
                    <td>{r.hands}</td>
                    <td>
                      {r.quiz_correct}/{r.quiz_questions}
                    </td>
                    <td>{r.homework.submitted + r.homework.late + r.homework.reviewed}</td>
                  </tr>
                ))}
              </tbody>
            </table>
          </section>
        </>
      ) : null}
    </div>
  );
}
