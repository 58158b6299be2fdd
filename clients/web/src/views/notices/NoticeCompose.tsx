import { useState } from "preact/hooks";
import { asApiError, type ApiError } from "../../api/errors";
import { newClientId } from "../../api/ids";
import type { Audience, NoticeKind } from "../../api/types";
import { t } from "../../i18n";
import { classPath, navigate } from "../../router";
import { publish } from "../../state/notices";
import { ErrorBox, PageHeader } from "../common";
import { Icon } from "../icons";
import { FileField, useUploads } from "../PendingFiles";

const KINDS: NoticeKind[] = ["info", "read_required", "confirm_required", "reply_required"];
const AUDIENCES: Audience[] = ["guardians", "students", "both"];

export function NoticeCompose(props: { classId: number }) {
  const { classId } = props;
  const [clientId] = useState(newClientId);
  const [audience, setAudience] = useState<Audience>("guardians");
  const [kind, setKind] = useState<NoticeKind>("confirm_required");
  const [title, setTitle] = useState("");
  const [body, setBody] = useState("");
  const [choices, setChoices] = useState<string[]>(["", ""]);
  const [deadline, setDeadline] = useState("");
  const [busy, setBusy] = useState(false);
  const [error, setError] = useState<ApiError | null>(null);
  const uploads = useUploads();

  async function submit(e: Event) {
    e.preventDefault();
    setBusy(true);
    setError(null);
    try {
      const n = await publish(
        classId,
        {
          audience,
          kind,
          title: title.trim(),
          body: body.trim(),
          choices: kind === "reply_required" ? choices.map((c) => c.trim()).filter(Boolean) : [],
          deadline: deadline ? new Date(deadline).getTime() / 1000 : null,
          attachments: uploads.ready,
        },
        clientId,
      );
      navigate(classPath(classId, "notices", n.id));
    } catch (err) {
      setError(asApiError(err));
    } finally {
      setBusy(false);
    }
  }

  return (
    <div class="page">
      <PageHeader title={t("compose.title")} subtitle={t("compose.subtitle")} />
      <form class="form card compose" onSubmit={submit} aria-label={t("compose.title")}>
        <div class="form-row">
          <label class="field">
            <span class="field-label">{t("compose.audience")}</span>
            <select name="audience" value={audience} onChange={(e) => setAudience(e.currentTarget.value as Audience)}>
              {AUDIENCES.map((a) => (
                <option value={a} key={a}>
                  {t(`audience.${a}`)}
                </option>
              ))}
            </select>
          </label>
          <label class="field">
            <span class="field-label">{t("compose.kind")}</span>
            <select name="kind" value={kind} onChange={(e) => setKind(e.currentTarget.value as NoticeKind)}>
              {KINDS.map((k) => (
                <option value={k} key={k}>
                  {t(`kind.${k}`)}
                </option>
              ))}
            </select>
            <span class="field-hint">{t(`kindHint.${kind}`)}</span>
          </label>
        </div>
        <label class="field">
          <span class="field-label">{t("compose.noticeTitle")}</span>
          <input name="title" required maxLength={200} value={title} onInput={(e) => setTitle(e.currentTarget.value)} />
        </label>
        <label class="field">
          <span class="field-label">{t("compose.body")}</span>
          <textarea name="body" rows={6} maxLength={10000} value={body} onInput={(e) => setBody(e.currentTarget.value)} />
        </label>
        {kind === "reply_required" ? (
          <fieldset class="field choices">
            <legend class="field-label">{t("compose.choices")}</legend>
            {choices.map((c, i) => (
              <div class="choice-row" key={i}>
                <input
                  aria-label={t("compose.choiceN", i + 1)}
                  required={i < 2}
                  maxLength={100}
                  value={c}
                  onInput={(e) => {
                    const next = choices.slice();
                    next[i] = e.currentTarget.value;
                    setChoices(next);
                  }}
                />
                {choices.length > 2 ? (
                  <button
                    type="button"
                    class="btn small ghost"
                    aria-label={t("compose.removeChoice", i + 1)}
                    onClick={() => setChoices(choices.filter((_, j) => j !== i))}
                  >
                    ×
                  </button>
                ) : null}
              </div>
            ))}
            {choices.length < 6 ? (
              <button type="button" class="btn small" onClick={() => setChoices([...choices, ""])}>
                <Icon name="plus" size={16} /> {t("compose.addChoice")}
              </button>
            ) : null}
          </fieldset>
        ) : null}
        <label class="field">
          <span class="field-label">{t("compose.deadline")}</span>
          <input name="deadline" type="datetime-local" value={deadline} onInput={(e) => setDeadline(e.currentTarget.value)} />
          <span class="field-hint">{t("compose.deadlineHint")}</span>
        </label>
        <FileField uploads={uploads} testId="notice-files" />
        {error ? <ErrorBox error={error} /> : null}
        <div class="form-actions">
          <a class="btn ghost" href={`#${classPath(classId, "notices")}`}>
            {t("common.cancel")}
          </a>
          <button class="btn primary" type="submit" disabled={busy || !title.trim() || uploads.uploading}>
            {t("compose.publish")}
          </button>
        </div>
      </form>
    </div>
  );
}
