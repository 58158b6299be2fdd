// Parts of a chat message beyond its bubble: editing one's own message, @mentions (who can be
// mentioned, how a message that mentions me looks), and "read by" on a teacher's message in the
// guardians' chat.
import { useEffect, useRef, useState } from "preact/hooks";
import { api } from "../api/rest";
import { asApiError } from "../api/errors";
import type { Message } from "../api/types";
import { t } from "../i18n";
import { describeError } from "../i18n/errors";
import { auth } from "../state/auth";
import { editMessage, readBy, readByNow, EDIT_WINDOW_S, type ReadBy } from "../state/chat";
import { rolesIn } from "../state/me";
import { toast } from "../state/toasts";

export interface Person {
  id: number;
  name: string;
}

/** Whether I may still change this message of mine (the server decides in the end). */
export function canEdit(m: Message, me: number): boolean {
  return m.sender_id === me && !m.deleted && !!m.body && Date.now() / 1000 - m.sent_at < EDIT_WINDOW_S;
}

/** The text of a message, with @names of the people it mentions marked. */
export function MessageText(props: { m: Message; names: Map<number, string> }) {
  const { m, names } = props;
  const mentioned = (m.mentions ?? []).map((id) => names.get(id)).filter((n): n is string => !!n);
  if (!mentioned.length) return <span class="msg-body">{m.body}</span>;
  const parts: (string | { name: string })[] = [];
  let rest = m.body;
  for (;;) {
    let at = -1;
    let hit = "";
    for (const n of mentioned) {
      const i = rest.indexOf(`@${n}`);
      if (i >= 0 && (at < 0 || i < at)) {
        at = i;
        hit = n;
      }
    }
    if (at < 0) break;
    parts.push(rest.slice(0, at), { name: hit });
    rest = rest.slice(at + hit.length + 1);
  }
  parts.push(rest);
  return (
    <span class="msg-body">
      {parts.map((p, i) => (typeof p === "string" ? p : <mark class="mention" key={i}>@{p.name}</mark>))}
    </span>
  );
}

/** Change the text of one's own message in place. */
export function EditBox(props: { m: Message; onDone: () => void }) {
  const [text, setText] = useState(props.m.body);
  const [busy, setBusy] = useState(false);
  async function save(e: Event) {
    e.preventDefault();
    const body = text.trim();
    if (!body || body === props.m.body) return props.onDone();
    setBusy(true);
    try {
      await editMessage(props.m.id, body);
      props.onDone();
    } catch (err) {
      toast(describeError(asApiError(err)), "error");
    } finally {
      setBusy(false);
    }
  }
  return (
    <form class="msg-edit" onSubmit={save}>
      <label class="sr-only" htmlFor={`edit-${props.m.id}`}>
        {t("chat.editLabel")}
      </label>
      <textarea
        id={`edit-${props.m.id}`}
        rows={2}
        maxLength={2000}
        value={text}
        onInput={(e) => setText(e.currentTarget.value)}
        onKeyDown={(e) => {
          if (e.key === "Escape") props.onDone();
        }}
      />
      <div class="form-actions">
        <button type="button" class="btn small ghost" onClick={props.onDone}>
          {t("common.cancel")}
        </button>
        <button type="submit" class="btn small primary" disabled={busy || !text.trim()}>
          {t("chat.saveEdit")}
        </button>
      </div>
    </form>
  );
}

/** "Read by" of a teacher's message in the guardians' chat: the counts appear once the message
 * is on screen (as in the chat apps teachers already use), the names on a tap; both move as
 * guardians read (chat.read_by events), without reloading. */
export function ReadByButton(props: { m: Message }) {
  const [fetched, setInfo] = useState<ReadBy | null>(null);
  const [busy, setBusy] = useState(false);
  const [open, setOpen] = useState(false);
  const spot = useRef<HTMLSpanElement>(null);
  const info = fetched && readByNow(fetched, props.m);
  async function load(quiet = false) {
    setBusy(true);
    try {
      setInfo(await readBy(props.m.id));
    } catch (err) {
      // Loaded by itself: the button stays, and a tap says what went wrong.
      if (!quiet) toast(describeError(asApiError(err)), "error");
    } finally {
      setBusy(false);
    }
  }
  useEffect(() => {
    const el = spot.current;
    if (fetched || !el || typeof IntersectionObserver === "undefined") return;
    const seen = new IntersectionObserver((entries) => {
      if (!entries.some((e) => e.isIntersecting)) return;
      seen.disconnect();
      void load(true);
    });
    seen.observe(el);
    return () => seen.disconnect();
  }, [fetched, props.m.id]);
  if (!info) {
    return (
      <span ref={spot}>
        <button
          type="button"
          class="link-button msg-readby"
          disabled={busy}
          onClick={() => {
            setOpen(true);
            void load();
          }}
        >
          {t("chat.readBy")}
        </button>
      </span>
    );
  }
  return (
    <details class="readby" open={open} data-testid="read-by" onToggle={(e) => setOpen(e.currentTarget.open)}>
      <summary>
        {t("chat.readCounts", info.read.length, info.unread.length)}{" "}
        <button
          type="button"
          class="link-button"
          disabled={busy}
          onClick={(e) => {
            e.preventDefault(); // not a tap on the summary: the names stay as they are
            void load();
          }}
          aria-label={t("chat.readRefresh")}
        >
          ↻
        </button>
      </summary>
      <p>
        <strong>{t("chat.readNames")}</strong> {info.read.map((p) => p.name).join("、") || t("chat.nobody")}
      </p>
      <p>
        <strong>{t("chat.unreadNames")}</strong> {info.unread.map((p) => p.name).join("、") || t("chat.nobody")}
      </p>
    </details>
  );
}

/** Who can be @mentioned in a class chat: the class's members of that chat (teachers, and the
 * students or guardians a person may see), and whoever has written in it. */
export function useMentionable(stream: string, classId: number, messages: Message[]): Person[] {
  const [members, setMembers] = useState<Person[]>([]);
  const me = auth.value?.user.id ?? 0;
  const part = stream.split(":")[2];
  useEffect(() => {
    if (!stream.startsWith("class:")) return;
    let live = true;
    api
      .members(classId)
      .then((m) => {
        const want = new Set(["head_teacher", "teacher", "assistant_teacher", part === "guardians" ? "guardian" : "student"]);
        if (live) setMembers(m.members.filter((x) => want.has(x.role)).map((x) => ({ id: x.id, name: x.name })));
      })
      .catch(() => undefined);
    return () => {
      live = false;
    };
  }, [stream, classId]);
  if (!stream.startsWith("class:")) return [];
  const out = new Map<number, string>();
  for (const p of members) out.set(p.id, p.name);
  for (const m of messages) if (!m.deleted) out.set(m.sender_id, m.sender_name);
  out.delete(me);
  return [...out].map(([id, name]) => ({ id, name }));
}

/** Whether "read by" is offered on this message: my own, as a teacher, in the guardians' chat. */
export function offersReadBy(m: Message, me: number, classId: number): boolean {
  return m.sender_id === me && !m.deleted && m.stream.endsWith(":guardians") && rolesIn(classId).staff;
}
