import { useState } from "preact/hooks";
import { asApiError, type ApiError } from "../api/errors";
import { t } from "../i18n";

/** A form's submit: prevents the page load, shows busy while ``action`` runs, keeps its error. */
export function useSubmit(action: () => Promise<void>) {
  const [busy, setBusy] = useState(false);
  const [error, setError] = useState<ApiError | null>(null);

  async function onSubmit(e: Event) {
    e.preventDefault();
    setBusy(true);
    setError(null);
    try {
      await action();
    } catch (err) {
      setError(asApiError(err));
    } finally {
      setBusy(false);
    }
  }

  return { busy, error, onSubmit };
}

/** The class's join code, as a guardian types it from the teacher's message. */
export function JoinCodeField(props: { value: string; onInput: (value: string) => void; hint?: boolean }) {
  return (
    <label class="field">
      <span class="field-label">{t("join.code")}</span>
      <input
        name="join_code"
        required
        minLength={4}
        maxLength={20}
        autoCapitalize="characters"
        value={props.value}
        onInput={(e) => props.onInput(e.currentTarget.value)}
      />
      {props.hint ? <span class="field-hint">{t("join.codeHint")}</span> : null}
    </label>
  );
}
