import { useEffect, useState } from "preact/hooks";
import { t } from "../i18n";
import { classPath, type Section } from "../router";
import { classes, loadClass } from "../state/classes";
import { classInfo, rolesIn } from "../state/me";
import { loadNotices } from "../state/notices";
import { ready } from "../state/session";
import { navItems, type NavItem } from "./classNav";
import { ChatPanel } from "./ChatPanel";
import { CountBadge, ErrorBox, Loading } from "./common";
import { Icon } from "./icons";
import { Lessons } from "./lessons/Lessons";
import { RunningSessions } from "./lessons/Start";
import { LIVE_CONSOLE } from "../features";
import { Links } from "./Links";
import { Members } from "./Members";
import { Messages } from "./Messages";
import { NoticeCompose } from "./notices/NoticeCompose";
import { NoticeDetail } from "./notices/NoticeDetail";
import { NoticeList } from "./notices/NoticeList";
import { Receipts } from "./notices/Receipts";
import { Overview } from "./Overview";
import { QABoard } from "./QABoard";
import { Shell } from "./Shell";
import { AttendancePage } from "./classroom/Attendance";
import { HomeworkPage } from "./classroom/Homework";
import { PollsPage } from "./classroom/Polls";
import { RecordsPage } from "./classroom/Records";

export interface ClassRoute {
  classId: number;
  section: Section;
  sub: string | null;
  id: number | null;
}

/** A class's pages. Opening one asks the server for the class first: a refusal is shown as is. */
export function ClassView(props: ClassRoute) {
  const { classId } = props;
  useEffect(() => {
    void loadClass(classId);
  }, [classId]);
  const entry = classes.value[classId];
  // Notices waiting for me show as a number on the navigation, whatever page is open.
  useEffect(() => {
    if (entry?.data) void loadNotices(classId); // offline: the list as it was
  }, [classId, ready.value, !!entry?.data]);
  const name = entry?.data?.class.name ?? classInfo(classId)?.name ?? "";

  if (entry?.error) {
    return (
      <Shell>
        <main id="main" class="page narrow" tabIndex={-1}>
          <section class="card refused" aria-labelledby="refused-title">
            <Icon name="lock" size={32} class="refused-icon" />
            <h1 id="refused-title" class="page-title">
              {t("class.refusedTitle")}
            </h1>
            <ErrorBox error={entry.error} />
            <p>
              <a class="btn" href="#/">
                {t("class.backHome")}
              </a>
            </p>
          </section>
        </main>
      </Shell>
    );
  }

  return (
    <Shell place={<span class="place-name">{name}</span>}>
      <div class="class-layout">
        <ClassNav {...props} />
        <main id="main" class="class-main" tabIndex={-1}>
          {entry?.data && LIVE_CONSOLE && props.section !== "lessons" ? <RunningSessions classId={classId} banner /> : null}
          {!entry?.data ? <Loading /> : <SectionView {...props} />}
        </main>
      </div>
    </Shell>
  );
}

// On a phone the bar holds this many items and "more"; the rest open in a panel that fits.
const PHONE_BAR = 4;

function ClassNav(props: ClassRoute) {
  const items = navItems(props.classId);
  const [open, setOpen] = useState(false);
  const isActive = (item: NavItem) => item.section === props.section && (item.sub === undefined || item.sub === props.sub);
  const extra = items.slice(PHONE_BAR);
  const extraUnread = extra.reduce((n, i) => n + (i.unread ?? 0), 0);
  const extraActive = extra.some(isActive);
  useEffect(() => setOpen(false), [props.section, props.sub, props.classId]);
  return (
    <nav class={`class-nav${open ? " more-open" : ""}`} aria-label={t("nav.classNav")}>
      <ul>
        {items.map((item, i) => {
          const active = isActive(item);
          const href = `#${classPath(props.classId, item.section, ...(item.sub ? [item.sub] : []))}`;
          return (
            <li key={href} class={i >= PHONE_BAR ? "nav-extra" : undefined}>
              <a class={`nav-item${active ? " active" : ""}`} href={href} aria-current={active ? "page" : undefined} onClick={() => setOpen(false)}>
                <Icon name={item.icon} />
                <span class="nav-label">{item.label}</span>
                <CountBadge count={item.unread ?? 0} label={item.badgeLabel ?? t("chat.unreadAria", item.unread ?? 0)} />
              </a>
            </li>
          );
        })}
        {extra.length ? (
          <li class="nav-more">
            <button
              type="button"
              class={`nav-item${extraActive ? " active" : ""}`}
              aria-expanded={open}
              aria-label={t("nav.more")}
              onClick={() => setOpen(!open)}
            >
              <Icon name="more" />
              <span class="nav-label">{t("nav.moreShort")}</span>
              <CountBadge count={extraUnread} label={t("chat.unreadAria", extraUnread)} />
            </button>
          </li>
        ) : null}
      </ul>
    </nav>
  );
}

function SectionView(props: ClassRoute) {
  const { classId, section, sub, id } = props;
  const roles = rolesIn(classId);
  switch (section) {
    case "home":
      return roles.staff ? <Overview classId={classId} /> : <NoticeList classId={classId} />;
    case "chat": {
      const audience = sub === "guardians" ? "guardians" : "students";
      return (
        <ChatPanel
          key={`class:${classId}:${audience}`}
          stream={`class:${classId}:${audience}`}
          title={
            audience === "guardians"
              ? t("nav.guardianChat")
              : roles.staff
                ? t("nav.studentChat")
                : t("nav.classChat")
          }
          classId={classId}
        />
      );
    }
    case "messages":
      return <Messages classId={classId} convId={id} />;
    case "notices":
      if (sub === "new") return <NoticeCompose classId={classId} />;
      if (id !== null) {
        return roles.staff ? <Receipts classId={classId} noticeId={id} key={id} /> : <NoticeDetail classId={classId} noticeId={id} key={id} />;
      }
      return <NoticeList classId={classId} />;
    case "qa":
      return <QABoard classId={classId} />;
    case "links":
      return <Links classId={classId} />;
    case "members":
      return <Members classId={classId} />;
    case "lessons":
      return <Lessons classId={classId} sessionId={id} />;
    case "polls":
      return <PollsPage classId={classId} />;
    case "homework":
      return <HomeworkPage classId={classId} homeworkId={id} key={id ?? 0} />;
    case "records":
      return <RecordsPage classId={classId} studentId={id} key={id ?? 0} />;
    case "attendance":
      return <AttendancePage classId={classId} sessionId={id} key={id ?? 0} />;
  }
}
