import { t } from "../i18n";
import { describeError } from "../i18n/errors";
import { connectionError, ready, status } from "../state/session";

/** Always visible: whether live updates are flowing, and what happens when they are not. */
export function ConnectionStatus() {
  const s = status.value;
  const state = s === "connected" && !ready.value ? "connecting" : s;
  const label =
    state === "connected"
      ? t("conn.connected")
      : state === "reconnecting"
        ? t("conn.reconnecting")
        : state === "refused"
          ? t("conn.refused")
          : t("conn.connecting");
  const err = state === "refused" ? connectionError() : null;
  return (
    <span class={`conn conn-${state}`} role="status" aria-live="polite" data-state={state} title={err ? describeError(err) : label}>
      <span class="conn-dot" aria-hidden="true" />
      <span class="conn-label">{label}</span>
    </span>
  );
}
