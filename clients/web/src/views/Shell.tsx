import type { ComponentChildren } from "preact";
import { useEffect, useRef, useState } from "preact/hooks";
import { t } from "../i18n";
import { auth, signOut } from "../state/auth";
import { status } from "../state/session";
import { dismissToast, toasts } from "../state/toasts";
import { ConnectionStatus } from "./ConnectionStatus";
import { LanguageSelect } from "./LanguageSelect";
import { NotifySettings } from "./NotifySettings";
import { Avatar } from "./common";

/** The frame of every signed-in screen: top bar (brand, place, connection, language, me). */
export function Shell(props: { place?: ComponentChildren; children: ComponentChildren }) {
  const user = auth.value?.user;
  return (
    <div class="app">
      <button class="skip-link" type="button" onClick={() => document.getElementById("main")?.focus()}>
        {t("a11y.skipToContent")}
      </button>
      <header class="topbar">
        <a class="brand" href="#/" aria-label={t("nav.homeAria")}>
          <span class="brand-mark" aria-hidden="true" />
          <span class="brand-name">{t("app.name")}</span>
        </a>
        {props.place ? <div class="topbar-place">{props.place}</div> : <div class="topbar-place" />}
        <div class="topbar-tools">
          <ConnectionStatus />
          <LanguageSelect />
          {user ? <UserMenu name={user.display_name} username={user.username} /> : null}
        </div>
      </header>
      <OfflineBanner />
      {props.children}
      <Toasts />
    </div>
  );
}

function UserMenu(props: { name: string; username: string }) {
  const [open, setOpen] = useState(false);
  const [notify, setNotify] = useState(false);
  const ref = useRef<HTMLDivElement>(null);
  useEffect(() => {
    if (!open) return;
    const close = (e: Event) => {
      if (ref.current && !ref.current.contains(e.target as Node)) setOpen(false);
    };
    const esc = (e: KeyboardEvent) => e.key === "Escape" && setOpen(false);
    document.addEventListener("mousedown", close);
    document.addEventListener("keydown", esc);
    return () => {
      document.removeEventListener("mousedown", close);
      document.removeEventListener("keydown", esc);
    };
  }, [open]);
  return (
    <div class="user-menu" ref={ref}>
      <button
        type="button"
        class="user-button"
        aria-haspopup="true"
        aria-expanded={open}
        aria-label={t("user.menu", props.name)}
        onClick={() => setOpen(!open)}
      >
        <Avatar name={props.name} size={30} />
        <span class="user-name">{props.name}</span>
      </button>
      {open ? (
        <div class="menu" role="menu">
          <p class="menu-info">
            {props.name}
            <br />
            <small>@{props.username}</small>
          </p>
          <a class="menu-item" role="menuitem" href="#/join" onClick={() => setOpen(false)}>
            {t("user.linkChild")}
          </a>
          <button
            type="button"
            class="menu-item"
            role="menuitem"
            onClick={() => {
              setOpen(false);
              setNotify(true);
            }}
          >
            {t("user.notifications")}
          </button>
          <button type="button" class="menu-item" role="menuitem" onClick={() => signOut(null)}>
            {t("user.signOut")}
          </button>
        </div>
      ) : null}
      {notify ? <NotifySettings onClose={() => setNotify(false)} /> : null}
    </div>
  );
}

/** Connection lost: said across the page, not only in the small status at the top. */
function OfflineBanner() {
  if (status.value !== "reconnecting") return null;
  return (
    <div class="offline-banner" role="alert" data-testid="offline-banner">
      {t("offline.banner")}
    </div>
  );
}

function Toasts() {
  return (
    <div class="toasts" aria-live="polite">
      {toasts.value.map((x) => (
        <div class={`toast toast-${x.kind}`} key={x.id} role={x.kind === "error" ? "alert" : "status"}>
          <span>{x.text}</span>
          <button type="button" class="toast-close" aria-label={t("common.close")} onClick={() => dismissToast(x.id)}>
            ×
          </button>
        </div>
      ))}
    </div>
  );
}
