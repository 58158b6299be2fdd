import { useEffect, useState } from "preact/hooks";
import { asApiError, type ApiError } from "../../api/errors";
import type { Attachment } from "../../api/types";
import { newClientId } from "../../api/ids";
import { download } from "../../api/rest";
import { locale, t } from "../../i18n";
import { describeError, formatWait } from "../../i18n/errors";
import { homeworkTick } from "../../state/classroom";
import { classInfo, rolesIn } from "../../state/me";
import { ready, request } from "../../state/session";
import { toast } from "../../state/toasts";
import { Empty, ErrorBox, Loading, PageHeader } from "../common";
import { AttachmentList } from "../Attachments";
import { useSubmit } from "../forms";
import { AttachButtons, dropFiles, PendingFiles, pasteFiles, useUploads } from "../PendingFiles";

export interface Submission {
  state: string;
  body?: string;
  attachments?: Attachment[];
  submitted_at?: number;
  times?: number;
  late?: boolean;
  comment?: string | null;
  score?: number | null;
  grade?: string | null;
}

export interface HomeworkItem {
  id: number;
  title: string;
  instructions: string;
  due_at: number;
  attachments?: Attachment[];
  submission?: Submission;
  counts?: Record<string, number>;
}

export const fmtTime = (s: number) => new Date(s * 1000).toLocaleString();

export function StateChip(props: { state: string }) {
  return (
    <span class={`chip hw-${props.state}`} data-state={props.state}>
      {t(`hw.state.${props.state}` as "hw.state.missing")}
    </span>
  );
}

/** Teachers assign and follow; students submit; a guardian sees their child's homework. */
export function HomeworkPage(props: { classId: number; homeworkId: number | null }) {
  const { classId } = props;
  const roles = rolesIn(classId);
  const children = classInfo(classId)?.children ?? [];
  const [child, setChild] = useState<number | null>(children[0]?.id ?? null);
  const [items, setItems] = useState<HomeworkItem[] | null>(null);
  const [error, setError] = useState<ApiError | null>(null);
  const guardianOnly = roles.guardian && !roles.staff && !roles.student;
  useEffect(() => {
    if (!ready.value) return;
    const payload: Record<string, unknown> = { class_id: classId };
    if (guardianOnly && child) payload.student_id = child;
    request<{ homework: HomeworkItem[] }>("homework.list", payload)
      .then((a) => setItems(a.homework))
      .catch((e) => setError(asApiError(e)));
  }, [classId, child, ready.value, homeworkTick.value]);
  if (roles.staff && props.homeworkId !== null) return <Rollup homeworkId={props.homeworkId} classId={classId} />;
  return (
    <div class="page">
      <PageHeader title={t("hw.title")} subtitle={roles.staff ? t("hw.subtitleStaff") : t("hw.subtitle")} />
      {guardianOnly && children.length > 1 ? <ChildPicker children={children} child={child} setChild={setChild} /> : null}
      {roles.teacher ? <Assign classId={classId} /> : null}
      {error ? <ErrorBox error={error} /> : null}
      {items === null && !error ? <Loading /> : null}
      {items && items.length === 0 ? <Empty>{t("hw.none")}</Empty> : null}
      {items?.map((h) => (
        <article class="card hw-card" key={h.id} data-homework-id={h.id}>
          <div class="card-head">
            <h2 class="card-title">{h.title}</h2>
            {h.submission ? <StateChip state={h.submission.state} /> : null}
          </div>
          <p class="muted">{t("hw.due", fmtTime(h.due_at))}</p>
          {h.instructions ? <p class="hw-instructions">{h.instructions}</p> : null}
          <AttachmentList items={h.attachments} />
          {h.counts ? (
            <p class="hw-counts">
              {t("hw.doneCount", h.counts.done, h.counts.students)} · {t("hw.state.missing")} {h.counts.missing} ·{" "}
              {t("hw.state.late")} {h.counts.late} · {t("hw.state.reviewed")} {h.counts.reviewed}{" "}
              <a class="btn small" href={`#/class/${classId}/homework/${h.id}`}>
                {t("hw.open")}
              </a>
            </p>
          ) : null}
          {h.submission ? <SubmissionView s={h.submission} /> : null}
          {roles.student && h.submission && !["reviewed"].includes(h.submission.state) ? (
            <Submit item={h} />
          ) : null}
        </article>
      ))}
    </div>
  );
}

export function ChildPicker(props: { children: { id: number; name: string }[]; child: number | null; setChild: (id: number) => void }) {
  return (
    <label class="field child-picker">
      <span class="field-label">{t("rec.child")}</span>
      <select value={String(props.child ?? "")} onChange={(e) => props.setChild(Number(e.currentTarget.value))}>
        {props.children.map((c) => (
          <option value={c.id} key={c.id}>
            {c.name}
          </option>
        ))}
      </select>
    </label>
  );
}

function SubmissionView(props: { s: Submission }) {
  const s = props.s;
  if (!s.submitted_at) return null;
  return (
    <div class="hw-submission">
      <p class="muted">
        {t("hw.submittedAt", fmtTime(s.submitted_at))}
        {s.late ? ` · ${t("hw.state.late")}` : ""}
      </p>
      <AttachmentList items={s.attachments} />
      {s.comment || s.score != null || s.grade ? (
        <p class="hw-review" data-testid="hw-review">
          {t("hw.teacherSays")} {s.comment}
          {s.score != null ? ` · ${t("hw.score")} ${s.score}` : ""}
          {s.grade ? ` · ${t("hw.grade")} ${s.grade}` : ""}
        </p>
      ) : null}
    </div>
  );
}

function Submit(props: { item: HomeworkItem }) {
  const [body, setBody] = useState(props.item.submission?.body ?? "");
  // A resubmission says which files it has now: the ones kept, and new uploads.
  const [kept, setKept] = useState<Attachment[]>(props.item.submission?.attachments ?? []);
  const uploads = useUploads();
  const files = [...kept.map((a) => a.id), ...uploads.ready];
  const { busy, error, onSubmit } = useSubmit(async () => {
    await request("homework.submit", { homework_id: props.item.id, body, attachments: files });
    uploads.clear();
    homeworkTick.value += 1;
    toast(t("hw.submitted"), "success");
  });
  return (
    <form onSubmit={onSubmit} class="hw-submit" {...dropFiles(uploads)}>
      <label class="field">
        <span class="field-label">{t("hw.yourWork")}</span>
        <textarea rows={4} value={body} onInput={(e) => setBody(e.currentTarget.value)} onPaste={pasteFiles(uploads)} />
      </label>
      {kept.length ? (
        <ul class="pending-files" aria-label={t("hw.keptFiles")}>
          {kept.map((a) => (
            <li key={a.id} data-upload="kept">
              <span class="pending-name">{a.name}</span>
              <button type="button" class="link-button" onClick={() => setKept(kept.filter((k) => k.id !== a.id))} aria-label={t("hw.dropFile", a.name)}>
                ×
              </button>
            </li>
          ))}
        </ul>
      ) : null}
      <PendingFiles uploads={uploads} />
      {error ? <ErrorBox error={error} /> : null}
      <div class="form-actions hw-actions">
        <AttachButtons uploads={uploads} testId="hw-submit-files" />
        <button class="btn primary" type="submit" disabled={busy || uploads.uploading || (!body.trim() && !files.length)}>
          {props.item.submission?.submitted_at ? t("hw.resubmit") : t("hw.submit")}
        </button>
      </div>
    </form>
  );
}

function Assign(props: { classId: number }) {
  const [title, setTitle] = useState("");
  const [instructions, setInstructions] = useState("");
  const [due, setDue] = useState("");
  const uploads = useUploads();
  const { busy, error, onSubmit } = useSubmit(async () => {
    const dueAt = new Date(due).getTime() / 1000;
    await request("homework.assign", {
      class_id: props.classId,
      client_id: newClientId(),
      title,
      instructions,
      due_at: dueAt,
      attachments: uploads.ready,
    });
    setTitle("");
    setInstructions("");
    uploads.clear();
    homeworkTick.value += 1;
    toast(t("hw.assigned"), "success");
  });
  return (
    <form class="card stack-form" onSubmit={onSubmit} aria-labelledby="hw-assign-title" {...dropFiles(uploads)}>
      <h2 id="hw-assign-title" class="card-title">
        {t("hw.assign")}
      </h2>
      <label class="field">
        <span class="field-label">{t("hw.titleLabel")}</span>
        <input required maxLength={200} value={title} onInput={(e) => setTitle(e.currentTarget.value)} />
      </label>
      <label class="field">
        <span class="field-label">{t("hw.instructions")}</span>
        <textarea rows={3} value={instructions} onInput={(e) => setInstructions(e.currentTarget.value)} onPaste={pasteFiles(uploads)} />
      </label>
      <PendingFiles uploads={uploads} />
      <div class="form-actions hw-actions">
        <AttachButtons uploads={uploads} testId="hw-assign-files" />
      </div>
      <label class="field">
        <span class="field-label">{t("hw.dueLabel")}</span>
        <input type="datetime-local" required value={due} onInput={(e) => setDue(e.currentTarget.value)} />
      </label>
      {error ? <ErrorBox error={error} /> : null}
      <button class="btn primary" type="submit" disabled={busy || uploads.uploading || !title.trim() || !due}>
        {t("hw.assign")}
      </button>
    </form>
  );
}

interface RollupData {
  homework: HomeworkItem;
  counts: Record<string, number>;
  students: ({ student_id: number; name: string } & Submission)[];
  /** Whom a reminder would tell (students pending, missing or to redo). */
  to_remind: number;
  last_reminded_at: number | null;
  /** When homework.remind is allowed again; null: now. */
  remind_again_at: number | null;
}

function Rollup(props: { classId: number; homeworkId: number }) {
  const [data, setData] = useState<RollupData | null>(null);
  const [error, setError] = useState<ApiError | null>(null);
  const load = () =>
    request<RollupData>("homework.rollup", { homework_id: props.homeworkId })
      .then(setData)
      .catch((e) => setError(asApiError(e)));
  useEffect(() => {
    if (ready.value) void load();
  }, [props.homeworkId, ready.value, homeworkTick.value]);
  async function act(fn: () => Promise<unknown>, done: string) {
    try {
      await fn();
      toast(done, "success");
      await load();
    } catch (e) {
      setError(asApiError(e));
    }
  }
  if (!data) return error ? <ErrorBox error={error} /> : <Loading />;
  const hid = props.homeworkId;
  async function remind() {
    try {
      const ack = await request<{ reminded: number[] }>("homework.remind", { homework_id: hid });
      toast(t("hw.reminded", ack.reminded.length), "success");
      await load();
    } catch (err) {
      const e = asApiError(err);
      toast(`${t("receipts.remindFailed")} ${describeError(e)}`, "error", 8000);
      await load();
    }
  }
  return (
    <div class="page">
      <PageHeader title={data.homework.title} subtitle={t("hw.due", fmtTime(data.homework.due_at))}>
        <RemindButton count={data.to_remind} againAt={data.remind_again_at} onRemind={remind} />
        <button type="button" class="btn" onClick={() => void download(`/api/v1/homework/${hid}/submissions.csv?lang=${encodeURIComponent(locale.value)}`, `homework-${hid}.csv`)}>
          {t("hw.csv")}
        </button>
      </PageHeader>
      {error ? <ErrorBox error={error} /> : null}
      <p class="hw-counts" data-testid="hw-counts">
        {t("hw.doneCount", data.counts.done, data.counts.students)} · {t("hw.state.missing")} {data.counts.missing} ·{" "}
        {t("hw.state.late")} {data.counts.late} · {t("hw.state.reviewed")} {data.counts.reviewed}
      </p>
      <ul class="hw-students">
        {data.students.map((s) => (
          <li class="card hw-student" key={s.student_id}>
            <div class="card-head">
              <strong>{s.name}</strong>
              <StateChip state={s.state} />
            </div>
            {s.body ? <p class="hw-body">{s.body}</p> : null}
            <AttachmentList items={s.attachments} />
            {s.submitted_at && s.state !== "reviewed" ? (
              <Review onReview={(comment, score, grade, redo) =>
                void act(
                  () =>
                    request("homework.review", {
                      homework_id: hid,
                      student_id: s.student_id,
                      comment,
                      redo,
                      ...(score ? { score: Number(score) } : {}),
                      ...(grade.trim() ? { grade: grade.trim() } : {}),
                    }),
                  redo ? t("hw.returned") : t("hw.reviewedToast"),
                )
              } />
            ) : null}
            {s.comment ? <p class="muted">{s.comment}</p> : null}
          </li>
        ))}
      </ul>
    </div>
  );
}

function Review(props: { onReview: (comment: string, score: string, grade: string, redo: boolean) => void }) {
  const [comment, setComment] = useState("");
  const [score, setScore] = useState("");
  const [grade, setGrade] = useState("");
  return (
    <div class="hw-review-form">
      <input aria-label={t("hw.comment")} placeholder={t("hw.comment")} value={comment} onInput={(e) => setComment(e.currentTarget.value)} />
      <input aria-label={t("hw.score")} type="number" min={0} max={1000} placeholder={t("hw.score")} value={score} onInput={(e) => setScore(e.currentTarget.value)} />
      <input aria-label={t("hw.grade")} maxLength={20} placeholder={t("hw.gradeHint")} value={grade} onInput={(e) => setGrade(e.currentTarget.value)} />
      <button type="button" class="btn small primary" onClick={() => props.onReview(comment, score, grade, false)}>
        {t("hw.markReviewed")}
      </button>
      <button type="button" class="btn small" onClick={() => props.onReview(comment, score, grade, true)}>
        {t("hw.returnRedo")}
      </button>
    </div>
  );
}

/** A reminder to N families, confirmed first; during the cool-down the button waits, saying how
 * long (the same as a notice's reminder). */
function RemindButton(props: { count: number; againAt: number | null; onRemind: () => Promise<void> }) {
  const [confirming, setConfirming] = useState(false);
  const [busy, setBusy] = useState(false);
  const [now, setNow] = useState(() => Date.now() / 1000);
  const until = props.againAt ?? 0;
  const coolDown = Math.max(0, Math.ceil(until - now));
  useEffect(() => {
    setNow(Date.now() / 1000);
    if (until <= Date.now() / 1000) return;
    const timer = setInterval(() => setNow(Date.now() / 1000), 1000);
    return () => clearInterval(timer);
  }, [until]);
  async function send() {
    setConfirming(false);
    setBusy(true);
    try {
      await props.onRemind();
    } finally {
      setBusy(false);
    }
  }
  return (
    <span class="receipts-actions">
      {confirming ? (
        <span class="remind-confirm" role="group" aria-label={t("hw.remindConfirm", props.count)}>
          <span>{t("hw.remindConfirm", props.count)}</span>
          <button type="button" class="btn primary" onClick={() => void send()} disabled={busy}>
            {t("receipts.remindSend")}
          </button>
          <button type="button" class="btn ghost" onClick={() => setConfirming(false)}>
            {t("common.cancel")}
          </button>
        </span>
      ) : (
        <button type="button" class="btn" onClick={() => setConfirming(true)} disabled={busy || props.count === 0 || coolDown > 0}>
          {t("hw.remind", props.count)}
        </button>
      )}
      {coolDown > 0 ? (
        <span class="muted" data-testid="hw-remind-wait">
          {t("receipts.remindWait", formatWait(coolDown))}
        </span>
      ) : null}
    </span>
  );
}
