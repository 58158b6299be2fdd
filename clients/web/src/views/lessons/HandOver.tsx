// Host hand-over: the host gives the session to another teacher of the class who is present
// (host.transfer); asked once more before it happens, since the host loses the controls.
import { useState } from "preact/hooks";
import type { LiveParticipant, SessionView } from "../../api/types";
import { t } from "../../i18n";
import { transferHost } from "../../state/live";

export function HandOver(props: { view: SessionView; you: LiveParticipant; p: LiveParticipant }) {
  const { you, p } = props;
  const [asking, setAsking] = useState(false);
  if (you.role !== "host" || p.role !== "teacher" || !p.connected) return null;
  if (!asking) {
    return (
      <button type="button" class="btn small" onClick={() => setAsking(true)} aria-label={t("live.handOverAria", p.name)}>
        {t("live.handOver")}
      </button>
    );
  }
  return (
    <span class="confirm-inline" role="group" aria-label={t("live.handOverConfirm", p.name)}>
      <span>{t("live.handOverConfirm", p.name)}</span>
      <button
        type="button"
        class="btn small primary"
        onClick={() => {
          setAsking(false);
          void transferHost(p.user_id);
        }}
      >
        {t("live.handOverYes")}
      </button>
      <button type="button" class="btn small" onClick={() => setAsking(false)}>
        {t("common.cancel")}
      </button>
    </span>
  );
}
