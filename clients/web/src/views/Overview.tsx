import { useEffect } from "preact/hooks";
import { pendingLinks } from "../state/alerts";
import { t } from "../i18n";
import { classPath } from "../router";
import { chatOf, unreadOf } from "../state/chat";
import { classes } from "../state/classes";
import { rolesIn } from "../state/me";
import { boardOf, loadNotices } from "../state/notices";
import { loadQuestions, qaOf, sorted } from "../state/questions";
import { ready } from "../state/session";
import { chatStream, conversationsUnread } from "./classNav";
import { CountBadge, PageHeader } from "./common";
import { Icon, type IconName } from "./icons";
import { Coverage } from "./notices/NoticeList";
import { LiveStart } from "./lessons/Start";

/** A teacher's class home: the two class chats, private messages, notices, Q&A, requests. */
export function Overview(props: { classId: number }) {
  const { classId } = props;
  const roles = rolesIn(classId);
  const data = classes.value[classId]?.data;
  // Live: state/alerts.ts counts the requests and follows the class's staff stream.
  const pending = roles.teacher ? (pendingLinks.value[classId] ?? null) : null;

  useEffect(() => {
    if (!ready.value) return;
    void loadNotices(classId);
    void loadQuestions(classId);
  }, [classId, ready.value]);

  const students = data?.members.filter((m) => m.role === "student").length ?? 0;
  const guardians = new Set(data?.members.filter((m) => m.role === "guardian").map((m) => m.id)).size;
  const notices = boardOf(classId).list.slice(0, 3);
  const open = sorted(qaOf(classId), "open");

  return (
    <div class="page">
      <PageHeader title={data?.class.name ?? ""} subtitle={t("overview.subtitle", students, guardians)} />
      <div class="tiles">
        <ChatTile classId={classId} audience="students" icon="chat" title={t("nav.studentChat")} />
        <ChatTile classId={classId} audience="guardians" icon="family" title={t("nav.guardianChat")} />
        <a class="tile" href={`#${classPath(classId, "messages")}`}>
          <span class="tile-head">
            <Icon name="mail" /> {t("nav.messages")}
            <CountBadge count={conversationsUnread(classId)} label={t("chat.unreadAria", conversationsUnread(classId))} />
          </span>
          <span class="tile-body muted">{t("overview.messagesHint")}</span>
        </a>
        <a class="tile" href={`#${classPath(classId, "qa")}`}>
          <span class="tile-head">
            <Icon name="question" /> {t("nav.qa")}
          </span>
          <span class="tile-number">{open.length}</span>
          <span class="tile-body muted">{open[0] ? t("overview.topQuestion", open[0].body) : t("overview.noOpenQuestions")}</span>
        </a>
        {roles.teacher ? (
          <a class="tile" href={`#${classPath(classId, "links")}`}>
            <span class="tile-head">
              <Icon name="link" /> {t("nav.links")}
            </span>
            <span class="tile-number">{pending ?? "–"}</span>
            <span class="tile-body muted">{t("overview.linksHint")}</span>
          </a>
        ) : null}
      </div>
      {roles.teacher ? (
        <section class="live-home" aria-labelledby="live-home-title">
          <h2 id="live-home-title" class="section-title">
            {t("live.startTitle")}
          </h2>
          <LiveStart classId={classId} compact />
        </section>
      ) : null}
      <section class="card" aria-labelledby="recent-notices">
        <div class="card-head">
          <h2 id="recent-notices" class="card-title">
            {t("overview.recentNotices")}
          </h2>
          {roles.teacher ? (
            <a class="btn small primary" href={`#${classPath(classId, "notices", "new")}`}>
              <Icon name="plus" size={16} /> {t("notices.new")}
            </a>
          ) : null}
        </div>
        {notices.length ? (
          <ul class="plain-list">
            {notices.map((n) => (
              <li key={n.id} class="recent-notice">
                <a href={`#${classPath(classId, "notices", n.id)}`}>{n.title}</a>
                {n.counts ? <Coverage covered={n.counts.covered} total={n.counts.students} /> : null}
              </li>
            ))}
          </ul>
        ) : (
          <p class="muted">{t("notices.none")}</p>
        )}
      </section>
    </div>
  );
}

function ChatTile(props: { classId: number; audience: "students" | "guardians"; icon: IconName; title: string }) {
  const stream = chatStream(props.classId, props.audience);
  const s = chatOf(stream);
  const unread = unreadOf(s);
  const last = s.messages[s.messages.length - 1];
  return (
    <a class="tile" href={`#${classPath(props.classId, "chat", props.audience)}`}>
      <span class="tile-head">
        <Icon name={props.icon} /> {props.title}
        <CountBadge count={unread} label={t("chat.unreadAria", unread)} />
      </span>
      <span class="tile-body muted">
        {last ? `${last.sender_name}: ${last.deleted ? t("chat.deleted") : last.body}` : t("overview.openChat")}
      </span>
    </a>
  );
}
