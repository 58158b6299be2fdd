import { useEffect, useState } from "preact/hooks";
import { asApiError, type ApiError } from "../api/errors";
import { api } from "../api/rest";
import type { LinkRequest } from "../api/types";
import { formatDateTime, t, tMaybe } from "../i18n";
import { classes, loadClass } from "../state/classes";
import { onStream } from "../state/session";
import { toast } from "../state/toasts";
import { Avatar, Empty, ErrorBox, Loading, PageHeader } from "./common";
import { Icon } from "./icons";
import { describeError } from "../i18n/errors";
import { JoinQr } from "./JoinQr";

/** Guardians asking to be linked to a child: a teacher of the class approves or rejects. */
export function Links(props: { classId: number }) {
  const { classId } = props;
  const [links, setLinks] = useState<LinkRequest[] | null>(null);
  const [error, setError] = useState<ApiError | null>(null);
  const [busy, setBusy] = useState<number | null>(null);
  const joinCode = classes.value[classId]?.data?.class.join_code;

  async function load() {
    try {
      setLinks((await api.links(classId)).links);
      setError(null);
    } catch (err) {
      setError(asApiError(err));
    }
  }

  useEffect(() => {
    void load();
  }, [classId]);

  // A guardian asked, a colleague decided, or a roster was imported: the list changed.
  useEffect(
    () =>
      onStream("staff", (ev) => {
        const changed = ["link.requested", "link.decided", "roster.imported"].includes(ev.type);
        if (changed && ev.stream === `staff:${classId}`) void load();
      }),
    [classId],
  );

  async function decide(l: LinkRequest, approve: boolean) {
    setBusy(l.id);
    try {
      await (approve ? api.approveLink(l.id) : api.rejectLink(l.id));
      toast(approve ? t("links.approved", l.guardian_name, l.student_name) : t("links.rejected", l.guardian_name), "success");
      await Promise.all([load(), loadClass(classId, true)]);
    } catch (err) {
      const e = asApiError(err);
      toast(describeError(e), "error");
    } finally {
      setBusy(null);
    }
  }

  return (
    <div class="page">
      <PageHeader title={t("links.title")} subtitle={t("links.subtitle")}>
        <button type="button" class="btn" onClick={() => load()}>
          {t("common.refresh")}
        </button>
      </PageHeader>
      {joinCode ? (
        <p class="card join-code">
          {t("links.joinCode")} <code class="code-big">{joinCode}</code>
          <span class="muted"> {t("links.joinCodeHint")}</span>{" "}
          <JoinQr classId={classId} className={classes.value[classId]?.data?.class.name ?? ""} code={joinCode} />
        </p>
      ) : null}
      {error ? <ErrorBox error={error} /> : null}
      {links === null && !error ? <Loading /> : null}
      {links && links.length === 0 ? <Empty>{t("links.none")}</Empty> : null}
      {links && links.length ? (
        <ul class="link-list">
          {links.map((l) => (
            <li class="card link-item" key={l.id}>
              <Avatar name={l.guardian_name} />
              <div class="grow">
                <p class="link-who">{t("links.request", l.guardian_name, l.student_name)}</p>
                <p class="muted">
                  {l.relationship ? `${tMaybe(`relationship.${l.relationship}`, l.relationship)} · ` : ""}
                  {l.phone ? `${t("links.phone", l.phone)} · ` : ""}
                  {formatDateTime(l.requested_at)}
                </p>
                <p>
                  <span class={`tag ${l.on_roster ? "" : "tag-warn"}`}>
                    {l.on_roster ? t("links.onRoster") : t("links.notOnRoster")}
                  </span>
                </p>
              </div>
              <div class="link-actions">
                <button
                  type="button"
                  class="btn primary small"
                  disabled={busy === l.id}
                  aria-label={t("links.approveAria", l.guardian_name, l.student_name)}
                  onClick={() => decide(l, true)}
                >
                  <Icon name="check" size={16} /> {t("links.approve")}
                </button>
                <button
                  type="button"
                  class="btn small ghost"
                  disabled={busy === l.id}
                  aria-label={t("links.rejectAria", l.guardian_name, l.student_name)}
                  onClick={() => decide(l, false)}
                >
                  {t("links.reject")}
                </button>
              </div>
            </li>
          ))}
        </ul>
      ) : null}
    </div>
  );
}
