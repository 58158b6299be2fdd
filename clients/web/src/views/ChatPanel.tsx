import { useEffect, useLayoutEffect, useRef, useState } from "preact/hooks";
import { asApiError } from "../api/errors";
import type { Message } from "../api/types";
import { formatDay, formatTime, t, tMaybe, formatList } from "../i18n";
import { auth } from "../state/auth";
import {
  chatOf,
  deleteMessage,
  discard,
  ensureHistory,
  loadOlder,
  markRead,
  retry,
  send,
  typing,
  type Outgoing,
  type SystemItem,
} from "../state/chat";
import { rolesIn } from "../state/me";
import { ready } from "../state/session";
import { toast } from "../state/toasts";
import { Avatar, ErrorBox, Loading } from "./common";
import { AttachmentList } from "./Attachments";
import { Composer } from "./Composer";
import { canEdit, EditBox, MessageText, offersReadBy, ReadByButton, useMentionable } from "./chatParts";
import { Icon } from "./icons";
import { describeError } from "../i18n/errors";

type Row =
  | { kind: "day"; key: string; label: string }
  | { kind: "msg"; key: string; msg: Message; cont: boolean }
  | { kind: "sys"; key: string; item: SystemItem }
  | { kind: "out"; key: string; out: Outgoing };

/** One chat stream: a class chat or a private conversation. */
export function ChatPanel(props: {
  stream: string;
  title: string;
  subtitle?: string;
  classId: number;
  /** Inside another page (the live console): a smaller heading. */
  compact?: boolean;
}) {
  const { stream } = props;
  const state = chatOf(stream);
  const me = auth.value?.user.id ?? 0;
  const staff = rolesIn(props.classId).staff;
  const listRef = useRef<HTMLDivElement>(null);
  const stick = useRef(true);
  const [draft, setDraft] = useState("");
  const [editing, setEditing] = useState<number | null>(null);
  const people = useMentionable(stream, props.classId, state.messages);
  const names = new Map(people.map((p) => [p.id, p.name]));
  names.set(me, auth.value?.user.display_name ?? "");

  useEffect(() => {
    void ensureHistory(stream); // offline: the last messages as they were
  }, [stream, ready.value]);

  // Shown and visible: what is on screen has been read.
  const newest = state.messages.length ? state.messages[state.messages.length - 1].seq : 0;
  useEffect(() => {
    if (!ready.value || state.history !== "loaded") return;
    const mark = () => document.visibilityState === "visible" && markRead(stream);
    mark();
    document.addEventListener("visibilitychange", mark);
    return () => document.removeEventListener("visibilitychange", mark);
  }, [stream, newest, ready.value, state.history]);

  const rows = buildRows(state.messages, state.system, state.outbox);

  useLayoutEffect(() => {
    const el = listRef.current;
    if (el && stick.current) el.scrollTop = el.scrollHeight;
  }, [rows.length, stream]);

  function onScroll() {
    const el = listRef.current;
    if (el) stick.current = el.scrollHeight - el.scrollTop - el.clientHeight < 80;
  }

  async function remove(m: Message) {
    if (!confirm(t("chat.deleteConfirm"))) return;
    try {
      await deleteMessage(m.id);
    } catch (err) {
      toast(describeError(asApiError(err)), "error");
    }
  }

  const typers = Object.entries(typing.value[stream] ?? {})
    .filter(([, until]) => until > Date.now())
    .map(([name]) => name);

  return (
    <section class={`chat${props.compact ? " compact" : ""}`} aria-labelledby={`chat-title-${stream}`}>
      <header class="chat-header">
        {props.compact ? (
          <h2 class="chat-title" id={`chat-title-${stream}`}>
            {props.title}
          </h2>
        ) : (
          <h1 class="chat-title" id={`chat-title-${stream}`}>
            {props.title}
          </h1>
        )}
        {props.subtitle ? <p class="chat-subtitle">{props.subtitle}</p> : null}
      </header>
      <div class="chat-log" ref={listRef} onScroll={onScroll} role="log" aria-live="polite" aria-label={t("chat.logLabel", props.title)} tabIndex={0}>
        {state.history === "loading" ? <Loading /> : null}
        {state.history === "error" && state.historyError ? <ErrorBox error={state.historyError} /> : null}
        {state.olderBefore !== null ? (
          <div class="chat-older">
            <button type="button" class="btn small" disabled={state.loadingOlder} onClick={() => loadOlder(stream)}>
              {t("chat.loadOlder")}
            </button>
          </div>
        ) : null}
        {state.history === "loaded" && rows.length === 0 ? <p class="chat-empty">{t("chat.empty")}</p> : null}
        {rows.map((row) => {
          if (row.kind === "day") {
            return (
              <div class="chat-day" key={row.key} role="separator">
                <span>{row.label}</span>
              </div>
            );
          }
          if (row.kind === "sys") return <SystemLine item={row.item} key={row.key} />;
          if (row.kind === "out") return <OutgoingBubble stream={stream} out={row.out} key={row.key} />;
          const m = row.msg;
          const mine = m.sender_id === me;
          const canDelete = !m.deleted && (mine || (staff && stream.startsWith("class:")));
          const forMe = !mine && !m.deleted && (m.mentions ?? []).includes(me);
          return (
            <article
              class={`msg${mine ? " mine" : ""}${row.cont ? " cont" : ""}${forMe ? " mentions-me" : ""}`}
              key={row.key}
              data-seq={m.seq}
              aria-label={t("chat.messageAria", m.sender_name, formatTime(m.sent_at))}
            >
              {mine ? null : row.cont ? <span class="avatar-space" aria-hidden="true" /> : <Avatar name={m.sender_name} size={34} />}
              <div class="msg-main">
                {mine || row.cont ? null : <span class="msg-sender">{m.sender_name}</span>}
                {editing === m.id ? (
                  <EditBox m={m} onDone={() => setEditing(null)} />
                ) : (
                  <div class={`bubble${m.deleted ? " deleted" : ""}`}>
                    {m.deleted ? <em>{t("chat.deleted")}</em> : m.body ? <MessageText m={m} names={names} /> : null}
                    {m.deleted ? null : <AttachmentList items={m.attachments} />}
                  </div>
                )}
                <span class="msg-meta">
                  {forMe ? <span class="tag tag-new">{t("chat.mentionsMe")}</span> : null}
                  <time dateTime={new Date(m.sent_at * 1000).toISOString()}>{formatTime(m.sent_at)}</time>
                  {m.edited_at && !m.deleted ? <span> · {t("chat.edited")}</span> : null}
                  {offersReadBy(m, me, props.classId) ? <ReadByButton m={m} key={`rb${m.id}`} /> : null}
                  {canEdit(m, me) && editing !== m.id ? (
                    <button type="button" class="link-button msg-edit-button" onClick={() => setEditing(m.id)} aria-label={t("chat.editAria")}>
                      {t("chat.edit")}
                    </button>
                  ) : null}
                  {canDelete ? (
                    <button type="button" class="link-button msg-delete" onClick={() => remove(m)} aria-label={t("chat.deleteAria")}>
                      {t("chat.delete")}
                    </button>
                  ) : null}
                </span>
              </div>
            </article>
          );
        })}
      </div>
      <p class="typing" aria-live="polite">
        {typers.length ? t("chat.typing", formatList(typers)) : "\u00a0"}
      </p>
      <Composer
        stream={stream}
        draft={draft}
        setDraft={setDraft}
        people={people}
        onSend={(body, ids, mentions) => {
          send(stream, body, ids, mentions);
          setDraft("");
          stick.current = true;
        }}
      />
    </section>
  );
}

function SystemLine(props: { item: SystemItem }) {
  const d = props.item.data as { title?: string; kind?: string };
  const key = `chat.system.${props.item.type}`;
  const text = tMaybe(key, t("chat.system.other"));
  return (
    <div class="chat-system" role="note">
      <Icon name="video" size={16} />
      <span>
        {text}
        {d.title ? `: ${d.title}` : ""} · {formatTime(props.item.at)}
      </span>
    </div>
  );
}

function OutgoingBubble(props: { stream: string; out: Outgoing }) {
  const { out, stream } = props;
  return (
    <article class={`msg mine outgoing state-${out.state}`} aria-label={t("chat.outgoingAria")}>
      <div class="msg-main">
        <div class="bubble">
          <span class="msg-body">{out.body}</span>
        </div>
        <span class="msg-meta">
          {out.state === "sending" ? t("chat.sending") : null}
          {out.state === "waiting" ? t("chat.waiting") : null}
          {out.state === "failed" ? (
            <>
              <span class="text-error">
                {t("chat.failed")} {out.error ? `(${describeError(out.error)})` : ""}
              </span>{" "}
              <button type="button" class="link-button" onClick={() => retry(stream, out.client_id)}>
                {t("chat.retry")}
              </button>{" "}
              <button type="button" class="link-button" onClick={() => discard(stream, out.client_id)}>
                {t("chat.discard")}
              </button>
            </>
          ) : null}
        </span>
      </div>
    </article>
  );
}

function buildRows(messages: Message[], system: SystemItem[], outbox: Outgoing[]): Row[] {
  const items: { seq: number; at: number; row: Row }[] = [];
  for (const m of messages) items.push({ seq: m.seq, at: m.sent_at, row: { kind: "msg", key: `m${m.id}`, msg: m, cont: false } });
  for (const s of system) items.push({ seq: s.seq, at: s.at, row: { kind: "sys", key: `s${s.seq}`, item: s } });
  items.sort((a, b) => a.seq - b.seq);
  const rows: Row[] = [];
  let lastDay = "";
  for (const it of [...items, ...outbox.map((o) => ({ seq: Infinity, at: o.at, row: { kind: "out", key: `o${o.client_id}`, out: o } as Row }))]) {
    const day = new Date(it.at * 1000).toDateString();
    if (day !== lastDay) {
      lastDay = day;
      rows.push({ kind: "day", key: `d${day}`, label: formatDay(it.at) });
    }
    const prev = rows[rows.length - 1];
    if (it.row.kind === "msg" && prev?.kind === "msg") {
      // A run of messages from one person within a few minutes shows their name once.
      it.row.cont = prev.msg.sender_id === it.row.msg.sender_id && it.row.msg.sent_at - prev.msg.sent_at < 300;
    }
    rows.push(it.row);
  }
  return rows;
}
