// Installable app and Web Push: the service worker (public/sw.js) and this browser's push
// subscription, with the person's settings of what to push and quiet hours (REST /api/v1/push).
import { effect, signal } from "@preact/signals";
import { rest } from "../api/rest";
import type { PushKey, PushSettings } from "../api/types";
import { locale } from "../i18n";
import { auth } from "./auth";

/** Whether this browser can be pushed to at all (service workers, Push API, a secure page). */
export const pushSupported =
  typeof navigator !== "undefined" &&
  "serviceWorker" in navigator &&
  typeof window !== "undefined" &&
  "PushManager" in window &&
  window.isSecureContext;

/** Whether this browser is subscribed (null: not known yet). */
export const subscribed = signal<boolean | null>(null);

function registration(): Promise<ServiceWorkerRegistration> {
  return navigator.serviceWorker.ready;
}

// The worker caches the app shell (it opens offline) and shows pushes; it is registered for
// everyone, signed in or not. It also learns the language to word notifications in.
if (typeof navigator !== "undefined" && "serviceWorker" in navigator) {
  void navigator.serviceWorker
    .register("/sw.js", { scope: "/" })
    .then(async () => {
      const reg = await registration();
      reg.active?.postMessage({ type: "locale", locale: locale.value });
      subscribed.value = pushSupported ? !!(await reg.pushManager.getSubscription()) : false;
    })
    .catch(() => {
      subscribed.value = false;
    });
}

/** Ask for permission, subscribe with the server's VAPID key and hand the subscription over. */
export async function enablePush(): Promise<void> {
  if ((await Notification.requestPermission()) !== "granted") throw new Error("denied");
  // The key as base64url text: the Push API takes it as it is.
  const { public_key } = await rest<PushKey>("GET", "/api/v1/push/key");
  if (!public_key) throw new Error("disabled");
  const reg = await registration();
  const sub =
    (await reg.pushManager.getSubscription()) ??
    (await reg.pushManager.subscribe({ userVisibleOnly: true, applicationServerKey: public_key }));
  const json = sub.toJSON();
  await rest("POST", "/api/v1/push/subscriptions", {
    body: { endpoint: json.endpoint, keys: json.keys },
  });
  subscribed.value = true;
}

export async function disablePush(): Promise<void> {
  const sub = await (await registration()).pushManager.getSubscription();
  if (sub) {
    await rest("DELETE", "/api/v1/push/subscriptions", { body: { endpoint: sub.endpoint } });
    await sub.unsubscribe();
  }
  subscribed.value = false;
}

export const loadPushSettings = () => rest<PushSettings>("GET", "/api/v1/push/settings");

export const savePushSettings = (kinds: string[], quiet: { start: string; end: string } | null) =>
  rest<PushSettings>("PUT", "/api/v1/push/settings", { body: { kinds, quiet_hours: quiet } });

// The worker words notifications in the app's language: tell it when that changes.
effect(() => {
  const l = locale.value;
  if (typeof navigator !== "undefined" && "serviceWorker" in navigator) {
    navigator.serviceWorker.controller?.postMessage({ type: "locale", locale: l });
  }
});

// Signing out ends this browser's subscription, so a shared device stops showing the pushes of
// the person who left (the push service then answers 410 and the server forgets the row).
let pushedFor: number | null = auth.value?.user.id ?? null;
effect(() => {
  const user = auth.value?.user.id ?? null;
  const before = pushedFor;
  pushedFor = user;
  if (before === null || user === before || !pushSupported) return;
  void registration()
    .then((reg) => reg.pushManager.getSubscription())
    .then((sub) => sub?.unsubscribe())
    .finally(() => {
      subscribed.value = false;
    });
});

