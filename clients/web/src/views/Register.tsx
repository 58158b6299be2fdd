import { useState } from "preact/hooks";
import { t } from "../i18n";
import { auth, register } from "../state/auth";
import { AuthFrame } from "./AuthFrame";
import { ErrorBox } from "./common";
import { JoinCodeField, useSubmit } from "./forms";
import { JoinForm } from "./JoinForm";

/** A guardian creates an account with the class's join code, then asks to be linked to a child.
 *  From a class's invitation link or QR code (#/join/CODE) the code is filled in, and "sign in"
 *  keeps it for someone who has an account already. */
export function Register(props: { initialCode?: string; onSignIn?: () => void } = {}) {
  const [joinCode, setJoinCode] = useState(props.initialCode ?? "");
  const [displayName, setDisplayName] = useState("");
  const [username, setUsername] = useState("");
  const [password, setPassword] = useState("");
  const { busy, error, onSubmit } = useSubmit(() =>
    register({
      join_code: joinCode.trim().toUpperCase(),
      display_name: displayName.trim(),
      username: username.trim(),
      password,
    }),
  );

  if (auth.value) {
    return (
      <AuthFrame title={t("register.linkTitle")} subtitle={t("register.linkSubtitle")}>
        <JoinForm initialCode={joinCode} onDone={() => (location.hash = "#/")} />
      </AuthFrame>
    );
  }

  return (
    <AuthFrame title={t("register.title")} subtitle={t("register.subtitle")}>
      <form class="form" onSubmit={onSubmit} aria-label={t("register.title")}>
        <JoinCodeField value={joinCode} onInput={setJoinCode} hint />
        <label class="field">
          <span class="field-label">{t("register.displayName")}</span>
          <input
            name="display_name"
            required
            maxLength={120}
            placeholder={t("register.displayNameExample")}
            value={displayName}
            onInput={(e) => setDisplayName(e.currentTarget.value)}
          />
        </label>
        <label class="field">
          <span class="field-label">{t("login.username")}</span>
          <input
            name="username"
            required
            minLength={3}
            maxLength={80}
            pattern="[A-Za-z0-9_.@\-]+"
            autoComplete="username"
            autoCapitalize="off"
            value={username}
            onInput={(e) => setUsername(e.currentTarget.value)}
          />
          <span class="field-hint">{t("register.usernameHint")}</span>
        </label>
        <label class="field">
          <span class="field-label">{t("login.password")}</span>
          <input
            name="password"
            type="password"
            required
            minLength={8}
            autoComplete="new-password"
            value={password}
            onInput={(e) => setPassword(e.currentTarget.value)}
          />
          <span class="field-hint">{t("register.passwordHint")}</span>
        </label>
        {error ? <ErrorBox error={error} /> : null}
        <button class="btn primary block" type="submit" disabled={busy}>
          {t("register.submit")}
        </button>
      </form>
      <p class="auth-alt">
        {t("register.haveAccount")}{" "}
        {props.onSignIn ? (
          <a
            href={location.hash}
            onClick={(e) => {
              e.preventDefault();
              props.onSignIn?.();
            }}
          >
            {t("login.submit")}
          </a>
        ) : (
          <a href="#/login">{t("login.submit")}</a>
        )}
      </p>
    </AuthFrame>
  );
}
