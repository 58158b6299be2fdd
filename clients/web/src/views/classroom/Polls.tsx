import { useEffect, useState } from "preact/hooks";
import { asApiError, type ApiError } from "../../api/errors";
import { t } from "../../i18n";
import {
  answerPoll,
  createPoll,
  finishPoll,
  loadPolls,
  pollsOf,
  refreshPoll,
  type AnswerBy,
  type Poll,
  type PollKind,
  type PollResults,
} from "../../state/classroom";
import { runningIn } from "../../state/lessons";
import { rolesIn } from "../../state/me";
import { ready } from "../../state/session";
import { toast } from "../../state/toasts";
import { Empty, ErrorBox, PageHeader } from "../common";
import { useSubmit } from "../forms";

const KINDS: PollKind[] = ["single", "multiple", "true_false", "text"];

/** The class's polls page; the lesson console shows the same panel for its session. */
export function PollsPage(props: { classId: number }) {
  const roles = rolesIn(props.classId);
  return (
    <div class="page">
      <PageHeader title={t("poll.title")} subtitle={roles.staff ? t("poll.subtitleStaff") : t("poll.subtitle")} />
      <PollsPanel classId={props.classId} />
    </div>
  );
}

/** How I take part in these polls: I run them ("host"), answer them ("participant"), or answer
 *  for my classroom in a dual lesson ("classroom": its local teacher). */
export type PollMode = "host" | "participant" | "classroom";

export function PollsPanel(props: {
  classId: number;
  sessionId?: number | null;
  compact?: boolean;
  mode?: PollMode;
  /** A dual lesson: the host chooses who answers; classrooms are shown by name. */
  dual?: boolean;
  classroomName?: (classId: number) => string;
}) {
  const { classId, sessionId } = props;
  const roles = rolesIn(classId);
  const mode: PollMode = props.mode ?? (roles.staff ? "host" : "participant");
  const [error, setError] = useState<ApiError | null>(null);
  useEffect(() => {
    if (ready.value) loadPolls(classId, sessionId).catch((e) => setError(asApiError(e)));
  }, [classId, sessionId, ready.value]);
  const list = pollsOf(classId, sessionId);
  return (
    <div class={`polls${props.compact ? " compact" : ""}`}>
      {mode === "host" ? <PollCompose classId={classId} sessionId={sessionId} dual={props.dual} /> : null}
      {error ? <ErrorBox error={error} /> : null}
      {list.length === 0 ? <Empty>{t("poll.none")}</Empty> : null}
      {list.map((p) =>
        mode === "host" ? (
          <HostPoll poll={p} key={p.id} classroomName={props.classroomName} />
        ) : (
          <AnswerPoll poll={p} key={p.id} forClassroom={mode === "classroom"} />
        ),
      )}
    </div>
  );
}

function PollCompose(props: { classId: number; sessionId?: number | null; dual?: boolean }) {
  const [question, setQuestion] = useState("");
  const [kind, setKind] = useState<PollKind>("single");
  const [options, setOptions] = useState("");
  const [correct, setCorrect] = useState<string[]>([]);
  const [textCorrect, setTextCorrect] = useState("");
  const [anonymous, setAnonymous] = useState(false);
  const [audience, setAudience] = useState<"students" | "guardians">("students");
  const [limit, setLimit] = useState("");
  const [answerBy, setAnswerBy] = useState<AnswerBy>("person");
  // A lesson of this class running now: the poll belongs to it unless the teacher says no.
  const lesson =
    props.sessionId == null
      ? runningIn(props.classId).find((x) => x.class_id === props.classId && x.kind !== "meeting" && !x.ended)
      : undefined;
  const [inLesson, setInLesson] = useState(true);
  const opts =
    kind === "true_false" ? ["true", "false"] : kind === "text" ? [] : options.split("\n").map((o) => o.trim()).filter(Boolean);
  const { busy, error, onSubmit } = useSubmit(async () => {
    await createPoll(
      props.classId,
      {
        question,
        kind,
        options: opts,
        correct: kind === "text" ? (textCorrect.trim() ? [textCorrect.trim()] : []) : correct.filter((c) => opts.includes(c)),
        anonymous,
        audience,
        time_limit_s: limit ? Number(limit) : null,
        answer_by: props.dual ? answerBy : undefined,
      },
      props.sessionId ?? (lesson && inLesson ? lesson.id : null),
    );
    setQuestion("");
    setOptions("");
    setCorrect([]);
    setTextCorrect("");
    toast(t("poll.opened"), "success");
  });
  const toggle = (o: string) =>
    setCorrect(kind === "multiple" ? (correct.includes(o) ? correct.filter((c) => c !== o) : [...correct, o]) : correct[0] === o ? [] : [o]);
  return (
    <form class="card poll-compose stack-form" onSubmit={onSubmit} aria-labelledby="poll-compose-title">
      <h2 id="poll-compose-title" class="card-title">
        {t("poll.new")}
      </h2>
      <label class="field">
        <span class="field-label">{t("poll.question")}</span>
        <input required maxLength={1000} value={question} onInput={(e) => setQuestion(e.currentTarget.value)} />
      </label>
      <div class="field-row">
        <label class="field">
          <span class="field-label">{t("poll.kind")}</span>
          <select value={kind} onChange={(e) => (setKind(e.currentTarget.value as PollKind), setCorrect([]))}>
            {KINDS.map((k) => (
              <option value={k} key={k}>
                {t(`poll.kind.${k}`)}
              </option>
            ))}
          </select>
        </label>
        {props.sessionId == null && !(lesson && inLesson) ? (
          <label class="field">
            <span class="field-label">{t("poll.audience")}</span>
            <select value={audience} onChange={(e) => setAudience(e.currentTarget.value as "students" | "guardians")}>
              <option value="students">{t("audience.students")}</option>
              <option value="guardians">{t("audience.guardians")}</option>
            </select>
          </label>
        ) : null}
        {props.dual ? (
          <label class="field">
            <span class="field-label">{t("poll.answerBy")}</span>
            <select value={answerBy} onChange={(e) => setAnswerBy(e.currentTarget.value as AnswerBy)}>
              <option value="person">{t("poll.answerBy.person")}</option>
              <option value="classroom">{t("poll.answerBy.classroom")}</option>
            </select>
          </label>
        ) : null}
        <label class="field">
          <span class="field-label">{t("poll.timeLimit")}</span>
          <input type="number" min={1} max={86400} value={limit} onInput={(e) => setLimit(e.currentTarget.value)} />
        </label>
      </div>
      {kind === "single" || kind === "multiple" ? (
        <label class="field">
          <span class="field-label">{t("poll.options")}</span>
          <textarea rows={4} value={options} onInput={(e) => setOptions(e.currentTarget.value)} />
          <span class="field-hint">{t("poll.optionsHint")}</span>
        </label>
      ) : null}
      {kind === "text" ? (
        <label class="field">
          <span class="field-label">{t("poll.correctText")}</span>
          <input maxLength={500} value={textCorrect} onInput={(e) => setTextCorrect(e.currentTarget.value)} />
        </label>
      ) : opts.length ? (
        <fieldset class="field">
          <legend class="field-label">{t("poll.correct")}</legend>
          <div class="choice-chips">
            {opts.map((o) => (
              <label class="check" key={o}>
                <input type="checkbox" checked={correct.includes(o)} onChange={() => toggle(o)} />
                <span>{optionLabel(kind, o)}</span>
              </label>
            ))}
          </div>
          <span class="field-hint">{t("poll.correctHint")}</span>
        </fieldset>
      ) : null}
      {lesson ? (
        <label class="check">
          <input type="checkbox" checked={inLesson} onChange={(e) => setInLesson(e.currentTarget.checked)} />
          <span>{t("poll.inLesson", lesson.title)}</span>
        </label>
      ) : null}
      <label class="check">
        <input type="checkbox" checked={anonymous} onChange={(e) => setAnonymous(e.currentTarget.checked)} />
        <span>{t("poll.anonymous")}</span>
      </label>
      {error ? <ErrorBox error={error} /> : null}
      <button class="btn primary" type="submit" disabled={busy || !question.trim()}>
        {t("poll.open")}
      </button>
    </form>
  );
}

function optionLabel(kind: PollKind, o: string): string {
  return kind === "true_false" ? t(o === "true" ? "poll.true" : "poll.false") : o;
}

function StatusChip(props: { poll: Poll }) {
  const p = props.poll;
  return (
    <>
      {p.status === "open" && p.closes_at != null ? <Countdown closesAt={p.closes_at} /> : null}
      <span class={`chip poll-status-${p.status}`}>{t(`poll.status.${p.status}`)}</span>
    </>
  );
}

/** The time left of a time-limited poll, every second; the server closes it at zero. */
function Countdown(props: { closesAt: number }) {
  const [now, setNow] = useState(Date.now());
  useEffect(() => {
    const timer = setInterval(() => setNow(Date.now()), 1000);
    return () => clearInterval(timer);
  }, []);
  const left = Math.max(0, Math.ceil(props.closesAt - now / 1000));
  const text = left ? t("poll.closesIn", `${Math.floor(left / 60)}:${String(left % 60).padStart(2, "0")}`) : t("poll.timeUp");
  return (
    <span class="chip poll-countdown" role="timer" data-testid="poll-countdown">
      {text}
    </span>
  );
}

/** Counts as horizontal bars; the correct option(s) marked, mine marked. */
export function Bars(props: { poll: Poll; results: PollResults; mine?: string[] | null }) {
  const { poll, results } = props;
  const entries = Object.entries(results.counts);
  const max = Math.max(1, results.answered);
  return (
    <div class="bars" data-testid="poll-bars">
      <ul>
        {entries.map(([o, n]) => {
          const right = poll.correct?.includes(o) || (poll.kind === "text" && poll.correct?.includes(o.toLowerCase()));
          return (
            <li class={`bar-row${right ? " correct" : ""}${props.mine?.includes(o) ? " mine" : ""}`} key={o}>
              <span class="bar-label">
                {optionLabel(poll.kind, o)}
                {right ? <span class="bar-tag">{t("poll.correctTag")}</span> : null}
                {props.mine?.includes(o) ? <span class="bar-tag">{t("poll.mineTag")}</span> : null}
              </span>
              <span class="bar-track" aria-hidden="true">
                <span class="bar-fill" style={{ width: `${(100 * n) / max}%` }} />
              </span>
              <span class="bar-count" data-option={o}>
                {n}
              </span>
            </li>
          );
        })}
      </ul>
      <p class="muted" data-testid="poll-answered">
        {t("poll.answered", results.answered)}
        {results.correct_count != null ? ` · ${t("poll.rightCount", results.correct_count)}` : ""}
      </p>
    </div>
  );
}

function HostPoll(props: { poll: Poll; classroomName?: (classId: number) => string }) {
  const p = props.poll;
  const byClassroom = p.answer_by === "classroom";
  const [error, setError] = useState<ApiError | null>(null);
  useEffect(() => {
    refreshPoll(p.class_id, p.id).catch((e) => setError(asApiError(e)));
  }, [p.id, p.results?.answered]);
  async function finish(publish: boolean) {
    try {
      await finishPoll(p, publish);
    } catch (e) {
      setError(asApiError(e));
    }
  }
  return (
    <article class="card poll-card" data-poll-id={p.id}>
      <div class="card-head">
        <h3 class="card-title">{p.question}</h3>
        <StatusChip poll={p} />
      </div>
      <p class="muted">
        {t(`poll.kind.${p.kind}`)}
        {p.quiz ? ` · ${t("poll.quiz")}` : ""}
        {p.anonymous ? ` · ${t("poll.anonymous")}` : ""}
        {byClassroom ? ` · ${t("poll.byClassroom")}` : ""}
      </p>
      {p.results ? <Bars poll={p} results={p.results} /> : null}
      {byClassroom && p.answers ? <ClassroomAnswers poll={p} classroomName={props.classroomName} /> : null}
      {!byClassroom && p.answers && p.answers.length ? (
        <details class="named-answers">
          <summary>{t("poll.namedAnswers", p.answers.length)}</summary>
          <ul>
            {p.answers.map((a) => (
              <li key={a.user_id}>
                {a.name}: {a.answer.map((o) => optionLabel(p.kind, o)).join(", ")}
                {a.correct === true ? " ✓" : a.correct === false ? " ✗" : ""}
              </li>
            ))}
          </ul>
        </details>
      ) : null}
      {error ? <ErrorBox error={error} /> : null}
      <div class="card-actions">
        {p.status === "open" ? (
          <button type="button" class="btn" onClick={() => void finish(false)}>
            {t("poll.close")}
          </button>
        ) : null}
        {p.status !== "published" ? (
          <button type="button" class="btn primary" onClick={() => void finish(true)}>
            {t("poll.publish")}
          </button>
        ) : null}
      </div>
    </article>
  );
}

/** A classroom-answer poll, as its host sees it: each linked classroom's answer, or not yet. */
function ClassroomAnswers(props: { poll: Poll; classroomName?: (classId: number) => string }) {
  const p = props.poll;
  const rooms = p.classrooms.filter((c) => c !== p.class_id);
  const byRoom = new Map((p.answers ?? []).map((a) => [a.class_id, a]));
  return (
    <div class="classroom-answers" data-testid="classroom-answers">
      <p class="muted">{t("poll.classroomsAnswered", byRoom.size, rooms.length)}</p>
      <ul>
        {rooms.map((cid) => {
          const a = byRoom.get(cid);
          const name = props.classroomName?.(cid) || a?.name || `#${cid}`;
          return (
            <li key={cid} data-class-id={cid} class={a ? "answered" : "waiting"}>
              <span class="classroom-name">{name}</span>
              {": "}
              {a ? a.answer.map((o) => optionLabel(p.kind, o)).join(", ") : t("poll.notYet")}
              {a?.correct === true ? " ✓" : a?.correct === false ? " ✗" : ""}
            </li>
          );
        })}
      </ul>
    </div>
  );
}

function AnswerPoll(props: { poll: Poll; forClassroom?: boolean }) {
  const p = props.poll;
  // A classroom-answer poll is answered by the classroom's teacher; a person-answer poll by
  // every student (its local teacher only follows it).
  const answersHere = p.answer_by === "classroom" ? !!props.forClassroom : !props.forClassroom;
  const [chosen, setChosen] = useState<string[]>(p.mine ?? []);
  const [text, setText] = useState(p.kind === "text" ? (p.mine?.[0] ?? "") : "");
  useEffect(() => {
    if (p.status === "published" && !p.results) void refreshPoll(p.class_id, p.id).catch(() => undefined);
  }, [p.status]);
  const { busy, error, onSubmit } = useSubmit(async () => {
    await answerPoll(p, p.kind === "text" ? [text] : chosen);
    toast(t("poll.answerSaved"), "success");
  });
  const open = p.status === "open";
  const options = p.options;
  const mineLabel = props.forClassroom ? "poll.ourAnswerIs" : "poll.yourAnswerIs";
  const pick = (o: string) =>
    setChosen(p.kind === "multiple" ? (chosen.includes(o) ? chosen.filter((c) => c !== o) : [...chosen, o]) : [o]);
  return (
    <article class="card poll-card" data-poll-id={p.id}>
      <div class="card-head">
        <h3 class="card-title">{p.question}</h3>
        <StatusChip poll={p} />
      </div>
      {open && !answersHere ? (
        <p class="muted" data-testid="poll-answered-by-others">
          {t(props.forClassroom ? "poll.studentsAnswer" : "poll.teacherAnswers")}
        </p>
      ) : open ? (
        <form onSubmit={onSubmit} class="poll-answer">
          {props.forClassroom ? <p class="poll-for-classroom">{t("poll.answerForClassroom")}</p> : null}
          {p.kind === "text" ? (
            <label class="field">
              <span class="field-label">{t("poll.yourAnswer")}</span>
              <input maxLength={500} value={text} onInput={(e) => setText(e.currentTarget.value)} />
            </label>
          ) : (
            <fieldset class="choice-chips">
              <legend class="sr-only">{p.question}</legend>
              {options.map((o) => (
                <label class="check option" key={o}>
                  <input
                    type={p.kind === "multiple" ? "checkbox" : "radio"}
                    name={`poll-${p.id}`}
                    checked={chosen.includes(o)}
                    onChange={() => pick(o)}
                  />
                  <span>{optionLabel(p.kind, o)}</span>
                </label>
              ))}
            </fieldset>
          )}
          {error ? <ErrorBox error={error} /> : null}
          <button class="btn primary" type="submit" disabled={busy || (p.kind === "text" ? !text.trim() : !chosen.length)}>
            {p.mine ? t("poll.changeAnswer") : t("poll.submitAnswer")}
          </button>
          {p.mine ? <p class="muted">{t(mineLabel, p.mine.map((o) => optionLabel(p.kind, o)).join(", "))}</p> : null}
        </form>
      ) : p.status === "published" && p.results ? (
        <Bars poll={p} results={p.results} mine={p.mine} />
      ) : (
        <p class="muted">{t("poll.waitResults")}</p>
      )}
    </article>
  );
}
