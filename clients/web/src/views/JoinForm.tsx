import { useState } from "preact/hooks";
import { api } from "../api/rest";
import { t } from "../i18n";
import { loadMe } from "../state/me";
import { toast } from "../state/toasts";
import { ErrorBox } from "./common";
import { JoinCodeField, useSubmit } from "./forms";

/** Ask to be linked to a child of the class with this join code; a teacher approves it. */
export function JoinForm(props: { initialCode?: string; onDone?: () => void }) {
  const [code, setCode] = useState(props.initialCode ?? "");
  const [child, setChild] = useState("");
  const [relationship, setRelationship] = useState("");
  const [phone, setPhone] = useState("");
  const { busy, error, onSubmit } = useSubmit(async () => {
    await api.join({
      join_code: code.trim().toUpperCase(),
      child_name: child.trim(),
      relationship: relationship.trim(),
      phone: phone.trim(),
    });
    toast(t("join.sent"), "success");
    await loadMe();
    props.onDone?.();
  });

  return (
    <form class="form" onSubmit={onSubmit} aria-label={t("join.title")}>
      <JoinCodeField value={code} onInput={setCode} />
      <label class="field">
        <span class="field-label">{t("join.childName")}</span>
        <input
          name="child_name"
          required
          maxLength={120}
          value={child}
          onInput={(e) => setChild(e.currentTarget.value)}
        />
        <span class="field-hint">{t("join.childNameHint")}</span>
      </label>
      <label class="field">
        <span class="field-label">{t("join.relationship")}</span>
        <select name="relationship" value={relationship} onChange={(e) => setRelationship(e.currentTarget.value)}>
          <option value="">{t("join.relationshipChoose")}</option>
          {(["mother", "father", "grandmother", "grandfather", "guardian"] as const).map((r) => (
            <option value={r} key={r}>
              {t(`relationship.${r}`)}
            </option>
          ))}
        </select>
      </label>
      <label class="field">
        <span class="field-label">{t("join.phone")}</span>
        <input
          name="phone"
          type="tel"
          inputMode="tel"
          autoComplete="tel"
          maxLength={40}
          pattern="\+?[0-9][0-9 \-]{4,30}"
          value={phone}
          onInput={(e) => setPhone(e.currentTarget.value)}
        />
        <span class="field-hint">{t("join.phoneHint")}</span>
      </label>
      {error ? <ErrorBox error={error} /> : null}
      <button class="btn primary block" type="submit" disabled={busy}>
        {t("join.submit")}
      </button>
    </form>
  );
}
