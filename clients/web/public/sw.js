// Homeroom's service worker: the app shell cached so the app opens offline with what it had,
// and Web Push shown as notifications. API responses (they carry tokens and personal data) and
// Socket.IO are never cached: only "/", /assets/*, /icons/* and the manifest.
const SHELL = "homeroom-shell-v1";
const PREFS = "homeroom-prefs";
const STATIC = ["/", "/manifest.webmanifest", "/icons/icon-192.png", "/icons/icon-512.png"];

async function precache() {
  const cache = await caches.open(SHELL);
  await cache.addAll(STATIC);
  // The built app's hashed files, named in its page.
  const html = await (await cache.match("/")).text();
  const assets = [...html.matchAll(/(?:src|href)="(\/assets\/[^"]+)"/g)].map((m) => m[1]);
  if (assets.length) await cache.addAll(assets);
}

self.addEventListener("install", (event) => {
  event.waitUntil(precache().then(() => self.skipWaiting()));
});

self.addEventListener("activate", (event) => {
  event.waitUntil(
    caches
      .keys()
      .then((keys) => Promise.all(keys.filter((k) => k !== SHELL && k !== PREFS).map((k) => caches.delete(k))))
      .then(() => self.clients.claim()),
  );
});

function cacheable(url) {
  return (
    url.origin === self.location.origin &&
    (url.pathname === "/" ||
      url.pathname.startsWith("/assets/") ||
      url.pathname.startsWith("/icons/") ||
      url.pathname === "/manifest.webmanifest")
  );
}

self.addEventListener("fetch", (event) => {
  const req = event.request;
  const url = new URL(req.url);
  if (req.method !== "GET") return;
  if (req.mode === "navigate" && url.origin === self.location.origin && url.pathname === "/") {
    // The page: fresh from the network when it answers (a new build), else the cached shell.
    event.respondWith(
      fetch(req)
        .then((resp) => {
          if (resp.ok) {
            const copy = resp.clone();
            void caches.open(SHELL).then((c) => c.put("/", copy));
          }
          return resp;
        })
        .catch(() => caches.match("/")),
    );
    return;
  }
  if (!cacheable(url)) return; // /api, /socket.io, everything else: the network only
  // Hashed assets never change: the cache first, then the network (and keep a copy).
  event.respondWith(
    caches.match(req).then(
      (hit) =>
        hit ||
        fetch(req).then((resp) => {
          if (resp.ok) {
            const copy = resp.clone();
            void caches.open(SHELL).then((c) => c.put(req, copy));
          }
          return resp;
        }),
    ),
  );
});

// --- push -------------------------------------------------------------------------------------

const TEXT = {
  "zh-CN": {
    notice: (d) => ["新通知", d.title],
    reminder: (d) => ["通知提醒", `老师提醒你处理：${d.title}`],
    message: (d) => ["新私信", `来自 ${d.from} 的新消息`],
    mention: (d) => ["有人@了你", `${d.from} 在群聊中提到了你`],
    session: (d) => [d.session_kind === "meeting" ? "家长会开始了" : "直播课开始了", d.title],
    link: (d) => ["新的绑定申请", `${d.guardian} 申请绑定 ${d.student}`],
    homework_reminder: (d) => ["作业提醒", `老师提醒交作业：${d.title}`],
    homework: (d) => ["作业即将截止", d.student ? `${d.student}：${d.title}` : d.title],
    other: () => ["家校通", "有新消息"],
  },
  en: {
    notice: (d) => ["New notice", d.title],
    reminder: (d) => ["Reminder", `Your teacher reminds you: ${d.title}`],
    message: (d) => ["New private message", `New message from ${d.from}`],
    mention: (d) => ["You were mentioned", `${d.from} mentioned you in a class chat`],
    session: (d) => [d.session_kind === "meeting" ? "A parent meeting has started" : "A lesson has started", d.title],
    link: (d) => ["New link request", `${d.guardian} asks to be linked to ${d.student}`],
    homework_reminder: (d) => ["Homework reminder", `Your teacher reminds you to hand in: ${d.title}`],
    homework: (d) => ["Homework due soon", d.student ? `${d.student}: ${d.title}` : d.title],
    other: () => ["Homeroom", "Something new"],
  },
};

async function currentLocale() {
  const hit = await (await caches.open(PREFS)).match("/__locale");
  const value = hit ? await hit.text() : "zh-CN";
  return value in TEXT ? value : "zh-CN";
}

function target(d) {
  if (d.kind === "notice" || d.kind === "reminder") return `/#/class/${d.class_id}/notices/${d.notice_id}`;
  if (d.kind === "session") return `/#/class/${d.class_id}/lessons`;
  if (d.kind === "link") return `/#/class/${d.class_id}/links`;
  if (d.kind === "mention" && typeof d.stream === "string") {
    const [, cid, part] = d.stream.split(":");
    return `/#/class/${cid}/chat/${part}`;
  }
  if (d.kind === "homework" || d.kind === "homework_reminder") return `/#/class/${d.class_id}/homework`;
  if (d.kind === "message" && typeof d.stream === "string" && /^conv:\d+$/.test(d.stream)) return `/#/conv/${d.stream.slice(5)}`;
  return "/#/";
}

self.addEventListener("message", (event) => {
  const d = event.data || {};
  if (d.type === "locale" && typeof d.locale === "string") {
    event.waitUntil(caches.open(PREFS).then((c) => c.put("/__locale", new Response(d.locale))));
  }
});

self.addEventListener("push", (event) => {
  event.waitUntil(
    (async () => {
      let d = {};
      try {
        d = event.data ? event.data.json() : {};
      } catch {
        d = {};
      }
      const text = TEXT[await currentLocale()];
      const [title, body] = (text[d.kind] || text.other)(d);
      await self.registration.showNotification(title, {
        body,
        tag: `${d.kind || "homeroom"}:${d.notice_id || d.stream || d.session_id || d.homework_id || d.class_id || ""}`,
        icon: "/icons/icon-192.png",
        badge: "/icons/icon-192.png",
        data: { url: target(d), kind: d.kind },
        lang: (await currentLocale()) === "en" ? "en" : "zh-CN",
      });
    })(),
  );
});

self.addEventListener("notificationclick", (event) => {
  event.notification.close();
  const url = (event.notification.data && event.notification.data.url) || "/#/";
  event.waitUntil(
    self.clients.matchAll({ type: "window", includeUncontrolled: true }).then((list) => {
      for (const c of list) {
        if (new URL(c.url).origin === self.location.origin) {
          c.navigate(url);
          return c.focus();
        }
      }
      return self.clients.openWindow(url);
    }),
  );
});
