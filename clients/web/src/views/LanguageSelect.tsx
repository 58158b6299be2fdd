import { LOCALES, locale, setLocale, t, type Locale } from "../i18n";

export function LanguageSelect() {
  return (
    <label class="lang">
      <span class="sr-only">{t("language.label")}</span>
      <span class="lang-icon" aria-hidden="true">
        文A
      </span>
      <select
        aria-label={t("language.label")}
        value={locale.value}
        onChange={(e) => setLocale(e.currentTarget.value as Locale)}
      >
        {LOCALES.map((l) => (
          <option value={l} lang={l} key={l}>
            {t(`language.${l}` as "language.en")}
          </option>
        ))}
      </select>
    </label>
  );
}
