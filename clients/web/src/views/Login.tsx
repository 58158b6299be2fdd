import { useState } from "preact/hooks";
import { t, tMaybe } from "../i18n";
import { signIn, signedOutReason } from "../state/auth";
import { ErrorBox } from "./common";
import { AuthFrame } from "./AuthFrame";
import { useSubmit } from "./forms";

export function Login() {
  const [username, setUsername] = useState("");
  const [password, setPassword] = useState("");
  const [remember, setRemember] = useState(false);
  const reason = signedOutReason.value;
  const { busy, error, onSubmit } = useSubmit(async () => {
    await signIn(username.trim(), password, remember);
    if (!location.hash || location.hash === "#/login") location.hash = "#/";
  });

  return (
    <AuthFrame title={t("login.title")} subtitle={t("login.subtitle")}>
      {reason ? (
        <p class="notice-banner" role="status">
          {tMaybe(reason, reason)}
        </p>
      ) : null}
      <form class="form" onSubmit={onSubmit} aria-label={t("login.title")}>
        <label class="field">
          <span class="field-label">{t("login.username")}</span>
          <input
            name="username"
            autoComplete="username"
            autoCapitalize="off"
            required
            value={username}
            onInput={(e) => setUsername(e.currentTarget.value)}
          />
        </label>
        <label class="field">
          <span class="field-label">{t("login.password")}</span>
          <input
            name="password"
            type="password"
            autoComplete="current-password"
            required
            value={password}
            onInput={(e) => setPassword(e.currentTarget.value)}
          />
        </label>
        <label class="check">
          <input type="checkbox" checked={remember} onChange={(e) => setRemember(e.currentTarget.checked)} />
          <span>{t("login.remember")}</span>
        </label>
        {error ? <ErrorBox error={error} /> : null}
        <button class="btn primary block" type="submit" disabled={busy}>
          {busy ? t("login.signingIn") : t("login.submit")}
        </button>
      </form>
      <p class="auth-alt">
        {t("login.newGuardian")} <a href="#/register">{t("login.registerLink")}</a>
      </p>
    </AuthFrame>
  );
}
