import type { ComponentChildren } from "preact";
import { t } from "../i18n";
import { LanguageSelect } from "./LanguageSelect";

/** The frame of the screens before signing in: brand, language, a card. */
export function AuthFrame(props: { title: string; subtitle?: string; children: ComponentChildren }) {
  return (
    <div class="auth-page">
      <header class="auth-top">
        <span class="brand">
          <span class="brand-mark" aria-hidden="true" />
          {t("app.name")}
        </span>
        <LanguageSelect />
      </header>
      <main id="main" class="auth-main" tabIndex={-1}>
        <section class="auth-card" aria-labelledby="auth-title">
          <h1 id="auth-title">{props.title}</h1>
          {props.subtitle ? <p class="auth-subtitle">{props.subtitle}</p> : null}
          {props.children}
        </section>
        <p class="auth-footer">{t("app.tagline")}</p>
      </main>
    </div>
  );
}
