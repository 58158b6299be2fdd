import type { ComponentChildren } from "preact";
import type { ApiError } from "../api/errors";
import { t } from "../i18n";
import { describeError } from "../i18n/errors";

/** Why something was refused: what the code means here, then the server's own words. */
export function ErrorBox(props: { error: ApiError; title?: string; children?: ComponentChildren }) {
  const { error } = props;
  return (
    <div class="error-box" role="alert">
      <p class="error-title">{props.title ?? describeError(error)}</p>
      <p class="error-detail">
        <code class="error-code" title={t("error.code")} data-reason={error.details.reason ?? ""}>
          {error.code}
        </code>
      </p>
      {props.children}
    </div>
  );
}

export function Loading(props: { label?: string }) {
  return (
    <p class="loading" role="status" aria-live="polite">
      <span class="spinner" aria-hidden="true" />
      {props.label ?? t("common.loading")}
    </p>
  );
}

export function Empty(props: { children: ComponentChildren }) {
  return <p class="empty">{props.children}</p>;
}

export function CountBadge(props: { count: number; label: string }) {
  if (!props.count) return null;
  return (
    <span class="badge" aria-label={props.label} title={props.label}>
      {props.count > 99 ? "99+" : props.count}
    </span>
  );
}

const AVATAR_COLORS = ["#2563eb", "#0891b2", "#7c3aed", "#db2777", "#ea580c", "#059669", "#4f46e5", "#b45309"];

export function Avatar(props: { name: string; size?: number }) {
  const name = props.name.trim() || "?";
  let h = 0;
  for (const ch of name) h = (h * 31 + ch.codePointAt(0)!) >>> 0;
  const size = props.size ?? 36;
  return (
    <span
      class="avatar"
      aria-hidden="true"
      style={{ background: AVATAR_COLORS[h % AVATAR_COLORS.length], width: size, height: size, fontSize: size * 0.42 }}
    >
      {Array.from(name)[0]}
    </span>
  );
}

export function PageHeader(props: { title: string; subtitle?: string; children?: ComponentChildren }) {
  return (
    <div class="page-header">
      <div>
        <h1 class="page-title">{props.title}</h1>
        {props.subtitle ? <p class="page-subtitle">{props.subtitle}</p> : null}
      </div>
      {props.children ? <div class="page-actions">{props.children}</div> : null}
    </div>
  );
}
