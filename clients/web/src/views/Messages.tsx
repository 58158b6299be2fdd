import { useState } from "preact/hooks";
import { asApiError, type ApiError } from "../api/errors";
import type { Member } from "../api/types";
import { t } from "../i18n";
import { classPath, navigate } from "../router";
import { chats, conversations, openConversation, otherPerson, unreadOf } from "../state/chat";
import { classes } from "../state/classes";
import { rolesIn } from "../state/me";
import { ChatPanel } from "./ChatPanel";
import { Avatar, CountBadge, Empty, ErrorBox } from "./common";
import { Icon } from "./icons";

const STAFF = ["head_teacher", "teacher", "assistant_teacher"];

/** Private conversations of a class: teacher with a guardian or a student. */
export function Messages(props: { classId: number; convId: number | null }) {
  const { classId, convId } = props;
  const roles = rolesIn(classId);
  const members = classes.value[classId]?.data?.members ?? [];
  const mine = conversations.value.filter((c) => c.class_id === classId);
  const current = convId !== null ? mine.find((c) => c.id === convId) : undefined;
  const [pick, setPick] = useState("");
  const [error, setError] = useState<ApiError | null>(null);

  // Who I may start a conversation with (the server decides; this only offers sensible ones).
  const candidates: Member[] = roles.staff
    ? members.filter((m) => m.role === "guardian" || m.role === "student")
    : members.filter((m) => STAFF.includes(m.role));
  const unique = candidates.filter((m, i) => candidates.findIndex((x) => x.id === m.id) === i);

  async function start(userId: number) {
    setError(null);
    try {
      const c = await openConversation(classId, userId);
      navigate(classPath(classId, "messages", c.id));
    } catch (err) {
      setError(asApiError(err));
    }
  }

  const roleLabel = (m: Member) => t(`role.${m.role}`);

  return (
    <div class={`split${current ? " has-detail" : ""}`}>
      <section class="split-list" aria-labelledby="conv-title">
        <h1 id="conv-title" class="section-title">
          {t("messages.title")}
        </h1>
        {roles.staff ? (
          <form
            class="inline-form"
            onSubmit={(e) => {
              e.preventDefault();
              if (pick) void start(Number(pick));
            }}
          >
            <label class="field grow">
              <span class="field-label">{t("messages.newWith")}</span>
              <select value={pick} onChange={(e) => setPick(e.currentTarget.value)}>
                <option value="">{t("messages.choosePerson")}</option>
                {unique.map((m) => (
                  <option value={m.id} key={m.id}>
                    {m.name} · {roleLabel(m)}
                  </option>
                ))}
              </select>
            </label>
            <button class="btn primary" type="submit" disabled={!pick}>
              {t("messages.start")}
            </button>
          </form>
        ) : (
          <div class="teacher-list">
            <p class="muted">{t("messages.teachersHint")}</p>
            <ul class="plain-list">
              {unique.map((m) => (
                <li key={m.id} class="person-row">
                  <Avatar name={m.name} size={32} />
                  <span class="grow">
                    {m.name}
                    <small class="muted"> · {roleLabel(m)}</small>
                  </span>
                  <button type="button" class="btn small" onClick={() => start(m.id)} aria-label={t("messages.messageAria", m.name)}>
                    <Icon name="mail" size={16} /> {t("messages.message")}
                  </button>
                </li>
              ))}
            </ul>
          </div>
        )}
        {error ? <ErrorBox error={error} /> : null}
        {mine.length ? (
          <ul class="conv-list" aria-label={t("messages.listLabel")}>
            {mine.map((c) => {
              const other = otherPerson(c);
              const s = chats.value[c.stream];
              const unread = s ? unreadOf(s) : 0;
              const last = s?.messages[s.messages.length - 1];
              return (
                <li key={c.id}>
                  <a
                    class={`conv-item${c.id === convId ? " active" : ""}`}
                    href={`#${classPath(classId, "messages", c.id)}`}
                    aria-current={c.id === convId ? "page" : undefined}
                  >
                    <Avatar name={other.name} size={36} />
                    <span class="conv-text">
                      <span class="conv-name">{other.name}</span>
                      <span class="conv-last">{last ? (last.deleted ? t("chat.deleted") : last.body) : "\u00a0"}</span>
                    </span>
                    <CountBadge count={unread} label={t("chat.unreadAria", unread)} />
                  </a>
                </li>
              );
            })}
          </ul>
        ) : (
          <Empty>{t("messages.none")}</Empty>
        )}
      </section>
      <div class="split-detail">
        {current ? (
          <>
            <a class="back-link" href={`#${classPath(classId, "messages")}`}>
              <Icon name="back" size={16} /> {t("messages.back")}
            </a>
            <ChatPanel
              key={current.stream}
              stream={current.stream}
              classId={classId}
              title={otherPerson(current).name}
              subtitle={t("messages.private")}
            />
          </>
        ) : convId !== null ? (
          <Empty>{t("messages.notFound")}</Empty>
        ) : (
          <Empty>{t("messages.pick")}</Empty>
        )}
      </div>
    </div>
  );
}
