import { t } from "../../i18n";
import { rolesIn } from "../../state/me";
import { runningIn } from "../../state/lessons";
import { LIVE_CONSOLE } from "../../features";
import { Empty, PageHeader } from "../common";
import { LessonConsole } from "./LessonConsole";
import { LiveStart, mayJoin, RunningSessions } from "./Start";

/** Lessons and meetings: what runs now (to join), and for teachers the three ways to start one.
 *  With a session id in the route: the console of that session. */
export function Lessons(props: { classId: number; sessionId: number | null }) {
  const { classId, sessionId } = props;
  const roles = rolesIn(classId);
  if (sessionId !== null && LIVE_CONSOLE) return <LessonConsole classId={classId} sessionId={sessionId} key={sessionId} />;
  const guardianOnly = roles.guardian && !roles.staff && !roles.student;
  const nothing = !runningIn(classId).some((s) => mayJoin(classId, s));
  return (
    <div class="page">
      <PageHeader title={guardianOnly ? t("nav.meetings") : t("nav.lessons")} subtitle={t("lessons.subtitle")} />
      <RunningSessions classId={classId} />
      {roles.teacher ? (
        <>
          <h2 class="section-title">{t("live.startTitle")}</h2>
          <LiveStart classId={classId} />
        </>
      ) : nothing ? (
        <Empty>{guardianOnly ? t("lessons.meetingJoinHint") : t("lessons.lessonJoinHint")}</Empty>
      ) : null}
    </div>
  );
}
