import { useEffect, useState } from "preact/hooks";
import { AttachmentList } from "../Attachments";
import { asApiError, type ApiError } from "../../api/errors";
import { formatDateTime, t } from "../../i18n";
import { classPath } from "../../router";
import { boardOf, confirm, loadNotices, markRead, reply } from "../../state/notices";
import { ready } from "../../state/session";
import { toast } from "../../state/toasts";
import { ErrorBox, Loading } from "../common";
import { Icon } from "../icons";
import { kindLabel, ReceiptTag } from "./labels";

/** A notice as its recipient sees it; showing it counts as reading it. */
export function NoticeDetail(props: { classId: number; noticeId: number }) {
  const { classId, noticeId } = props;
  const board = boardOf(classId);
  const n = board.list.find((x) => x.id === noticeId);
  const [busy, setBusy] = useState(false);
  const [error, setError] = useState<ApiError | null>(null);
  const [choice, setChoice] = useState("");

  useEffect(() => {
    void loadNotices(classId); // offline: the list as it was
  }, [classId, ready.value]);

  useEffect(() => {
    if (n && !n.receipt?.read_at) void markRead(n).catch(() => undefined);
  }, [n?.id, !!n?.receipt?.read_at]);

  useEffect(() => {
    if (n?.receipt?.reply) setChoice(n.receipt.reply);
  }, [n?.receipt?.reply]);

  if (!n) {
    if (board.state === "error" && board.error) return <ErrorBox error={board.error} />;
    if (board.state === "loaded") return <p class="empty">{t("notices.notFound")}</p>;
    return <Loading />;
  }

  async function act(f: () => Promise<void>, done: string) {
    setBusy(true);
    setError(null);
    try {
      await f();
      toast(done, "success");
    } catch (err) {
      setError(asApiError(err));
    } finally {
      setBusy(false);
    }
  }

  const r = n.receipt;
  const closed = !!(n.deadline && n.deadline < Date.now() / 1000 && r?.reply);
  return (
    <div class="page narrow">
      <a class="back-link" href={`#${classPath(classId, "notices")}`}>
        <Icon name="back" size={16} /> {t("notices.back")}
      </a>
      <article class="card notice-detail" aria-labelledby="notice-title">
        <div class="notice-card-top">
          <span class={`tag kind-${n.kind}`}>{kindLabel(n.kind)}</span>
          <ReceiptTag n={n} />
        </div>
        <h1 id="notice-title" class="notice-detail-title">
          {n.title}
        </h1>
        <p class="muted">
          {n.author_name} · {formatDateTime(n.created_at)}
        </p>
        {n.deadline ? (
          <p class="deadline">
            <Icon name="clock" size={16} /> {t("notices.deadline", formatDateTime(n.deadline))}
          </p>
        ) : null}
        {n.body ? <div class="notice-body">{n.body}</div> : null}
        <AttachmentList items={n.attachments} />
        {error ? <ErrorBox error={error} /> : null}
        {n.kind === "confirm_required" ? (
          <div class="notice-actions">
            {r?.confirmed_at ? (
              <p class="done-line" role="status">
                <Icon name="check" /> {t("notices.confirmedAt", formatDateTime(r.confirmed_at))}
              </p>
            ) : (
              <button type="button" class="btn primary large" disabled={busy} onClick={() => act(() => confirm(n), t("notices.confirmedToast"))}>
                <Icon name="check" /> {t("notices.confirm")}
              </button>
            )}
          </div>
        ) : null}
        {n.kind === "reply_required" ? (
          <form
            class="notice-actions"
            onSubmit={(e) => {
              e.preventDefault();
              if (choice) void act(() => reply(n, choice), t("notices.repliedToast"));
            }}
          >
            <fieldset class="reply-choices" disabled={busy || closed}>
              <legend class="field-label">{t("notices.yourReply")}</legend>
              {n.choices.map((c) => (
                <label class="radio" key={c}>
                  <input type="radio" name="reply" value={c} checked={choice === c} onChange={() => setChoice(c)} />
                  <span>{c}</span>
                </label>
              ))}
            </fieldset>
            {r?.reply ? (
              <p class="done-line" role="status">
                <Icon name="check" /> {t("notices.repliedAt", r.reply, formatDateTime(r.replied_at ?? 0))}
              </p>
            ) : null}
            {!closed ? (
              <button type="submit" class="btn primary" disabled={busy || !choice || choice === r?.reply}>
                {r?.reply ? t("notices.changeReply") : t("notices.sendReply")}
              </button>
            ) : (
              <p class="muted">{t("notices.replyFinal")}</p>
            )}
          </form>
        ) : null}
      </article>
    </div>
  );
}
