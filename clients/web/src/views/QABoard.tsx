import { useEffect, useState } from "preact/hooks";
import { AttachmentList } from "./Attachments";
import { asApiError, type ApiError } from "../api/errors";
import type { Question } from "../api/types";
import { formatWhen, t } from "../i18n";
import { rolesIn } from "../state/me";
import { answer, answeredLive, ask, dismiss, loadQuestions, qaOf, reopen, sorted, vote, withdraw } from "../state/questions";
import { ready } from "../state/session";
import { toast } from "../state/toasts";
import { Empty, ErrorBox, Loading, PageHeader } from "./common";
import { AttachButtons, dropFiles, PendingFiles, pasteFiles, useUploads } from "./PendingFiles";
import { AnswerText, askerLabel, Votes } from "./questionParts";
import { describeError } from "../i18n/errors";

type Tab = "open" | "answered" | "dismissed";

/** The class Q&A board: it outlives lessons; students ask (maybe anonymously) and vote. */
export function QABoard(props: { classId: number }) {
  const { classId } = props;
  const roles = rolesIn(classId);
  const board = qaOf(classId);
  const [tab, setTab] = useState<Tab>("open");

  useEffect(() => {
    if (ready.value) void loadQuestions(classId);
  }, [classId, ready.value]);

  const lists: Record<Tab, Question[]> = {
    open: sorted(board, "open"),
    answered: sorted(board, "answered"),
    dismissed: sorted(board, "dismissed"),
  };

  return (
    <div class="page qa">
      <PageHeader title={t("qa.title")} subtitle={roles.staff ? t("qa.subtitleStaff") : t("qa.subtitle")} />
      {roles.student ? <AskForm classId={classId} /> : null}
      {board.state === "error" && board.error ? <ErrorBox error={board.error} /> : null}
      {board.state === "loading" || board.state === "none" ? <Loading /> : null}
      {board.state === "loaded" ? (
        <>
          <div class="tabs" role="tablist" aria-label={t("qa.filter")}>
            {(["open", "answered", "dismissed"] as Tab[]).map((x) => (
              <button
                type="button"
                role="tab"
                id={`qa-tab-${x}`}
                aria-selected={tab === x}
                aria-controls="qa-panel"
                class={`tab${tab === x ? " active" : ""}`}
                key={x}
                onClick={() => setTab(x)}
              >
                {t(`qa.tab.${x}`)} <span class="tab-count">{lists[x].length}</span>
              </button>
            ))}
          </div>
          <div id="qa-panel" role="tabpanel" aria-labelledby={`qa-tab-${tab}`}>
            {lists[tab].length === 0 ? <Empty>{t(`qa.empty.${tab}`)}</Empty> : null}
            <ul class="question-list">
              {lists[tab].map((q) => (
                <QuestionCard q={q} staff={roles.staff} student={roles.student} key={q.id} />
              ))}
            </ul>
          </div>
        </>
      ) : null}
    </div>
  );
}

function AskForm(props: { classId: number }) {
  const [body, setBody] = useState("");
  const [anonymous, setAnonymous] = useState(false);
  const [busy, setBusy] = useState(false);
  const [error, setError] = useState<ApiError | null>(null);
  const uploads = useUploads();
  const canAsk = !busy && !uploads.uploading && (!!body.trim() || uploads.ready.length > 0);

  async function submit(e: Event) {
    e.preventDefault();
    if (!canAsk) return;
    setBusy(true);
    setError(null);
    try {
      await ask(props.classId, body.trim(), anonymous, uploads.ready);
      setBody("");
      // Anonymity is chosen per question: the next one is asked by name unless ticked again.
      setAnonymous(false);
      uploads.clear();
      toast(t("qa.asked"), "success");
    } catch (err) {
      setError(asApiError(err));
    } finally {
      setBusy(false);
    }
  }

  return (
    <form class="card ask-form" onSubmit={submit} aria-label={t("qa.askTitle")} {...dropFiles(uploads)}>
      <label class="field">
        <span class="field-label">{t("qa.yourQuestion")}</span>
        <textarea
          name="question"
          rows={3}
          maxLength={1000}
          value={body}
          onInput={(e) => setBody(e.currentTarget.value)}
          onPaste={pasteFiles(uploads)}
        />
      </label>
      <PendingFiles uploads={uploads} />
      <div class="ask-row">
        <AttachButtons uploads={uploads} testId="question-files" />
        <label class="check">
          <input type="checkbox" name="anonymous" checked={anonymous} onChange={(e) => setAnonymous(e.currentTarget.checked)} />
          <span>{t("qa.anonymous")}</span>
        </label>
        <button type="submit" class="btn primary" disabled={!canAsk}>
          {t("qa.ask")}
        </button>
      </div>
      <p class="field-hint">{t("qa.anonymousHint")}</p>
      {error ? <ErrorBox error={error} /> : null}
    </form>
  );
}

function QuestionCard(props: { q: Question; staff: boolean; student: boolean }) {
  const { q, staff, student } = props;
  const [answering, setAnswering] = useState(false);
  const [text, setText] = useState(q.answer ?? "");
  const [busy, setBusy] = useState(false);
  const uploads = useUploads();
  // An answer's files are given once (the server refuses more for an answer that has them).
  const canAttach = !q.answer_attachments?.length;
  const canAnswer = !busy && !uploads.uploading && (!!text.trim() || uploads.ready.length > 0);

  async function run(f: () => Promise<void>) {
    setBusy(true);
    try {
      await f();
    } catch (err) {
      const e = asApiError(err);
      toast(describeError(e), "error");
    } finally {
      setBusy(false);
    }
  }

  const canVote = student && !q.mine && q.status !== "dismissed";

  return (
    <li class={`question status-${q.status}`} data-question-id={q.id}>
      <Votes q={q} canVote={canVote} busy={busy} size={18} onVote={() => run(() => vote(q, !q.voted))} />
      <div class="question-main">
        <p class="question-body">{q.body}</p>
        <AttachmentList items={q.attachments} />
        <p class="question-meta">
          <span class={`asker${q.anonymous ? " anon" : ""}`}>{askerLabel(q, staff)}</span>
          <span> · {formatWhen(q.created_at)}</span>
          {q.mine ? <span class="tag tag-new">{t("qa.mine")}</span> : null}
          {q.status === "answered_live" ? <span class="tag tag-ok">{t("qa.answeredLive")}</span> : null}
          {q.status === "dismissed" ? <span class="tag tag-muted">{t("qa.dismissed")}</span> : null}
        </p>
        {q.answer ? <AnswerText q={q} /> : null}
        {staff && answering ? (
          <form
            class="answer-form"
            {...(canAttach ? dropFiles(uploads) : {})}
            onSubmit={(e) => {
              e.preventDefault();
              if (!canAnswer) return;
              void run(async () => {
                await answer(q, text.trim(), canAttach ? uploads.ready : []);
                uploads.clear();
                setAnswering(false);
              });
            }}
          >
            <label class="field">
              <span class="field-label">{t("qa.answerLabel")}</span>
              <textarea
                rows={3}
                maxLength={2000}
                value={text}
                onInput={(e) => setText(e.currentTarget.value)}
                onPaste={canAttach ? pasteFiles(uploads) : undefined}
              />
            </label>
            {canAttach ? <PendingFiles uploads={uploads} /> : null}
            <div class="form-actions">
              {canAttach ? <AttachButtons uploads={uploads} testId="answer-files" /> : null}
              <button type="button" class="btn ghost" onClick={() => setAnswering(false)}>
                {t("common.cancel")}
              </button>
              <button type="submit" class="btn primary" disabled={!canAnswer}>
                {t("qa.sendAnswer")}
              </button>
            </div>
          </form>
        ) : null}
        <div class="question-actions">
          {staff && q.status === "open" && !answering ? (
            <>
              <button type="button" class="btn small primary" onClick={() => setAnswering(true)}>
                {t("qa.answer")}
              </button>
              <button type="button" class="btn small" disabled={busy} onClick={() => run(() => answeredLive(q))}>
                {t("qa.markLive")}
              </button>
              <button type="button" class="btn small ghost" disabled={busy} onClick={() => run(() => dismiss(q))}>
                {t("qa.dismiss")}
              </button>
            </>
          ) : null}
          {staff && (q.status === "answered" || q.status === "answered_live") && !answering ? (
            <button type="button" class="btn small" onClick={() => setAnswering(true)}>
              {t("qa.editAnswer")}
            </button>
          ) : null}
          {staff && q.status !== "open" ? (
            <button type="button" class="btn small ghost" disabled={busy} onClick={() => run(() => reopen(q))}>
              {t("qa.reopen")}
            </button>
          ) : null}
          {q.mine && q.status === "open" ? (
            <button type="button" class="btn small ghost" disabled={busy} onClick={() => run(() => withdraw(q))}>
              {t("qa.withdraw")}
            </button>
          ) : null}
        </div>
      </div>
    </li>
  );
}
