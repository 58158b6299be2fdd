import { t } from "../../i18n";
import { rolesIn } from "../../state/me";
import { LIVE_CONSOLE } from "../../features";
import { PageHeader } from "../common";
import { Icon } from "../icons";
import { LessonConsole } from "./LessonConsole";

/** Lessons and meetings. Until the live-session console lands, the start buttons stay disabled
 *  (clients/web/README.md says how the console plugs in). */
export function Lessons(props: { classId: number; sessionId: number | null }) {
  const { classId, sessionId } = props;
  const roles = rolesIn(classId);
  if (sessionId !== null && LIVE_CONSOLE) return <LessonConsole classId={classId} sessionId={sessionId} />;
  const guardianOnly = roles.guardian && !roles.staff && !roles.student;
  return (
    <div class="page">
      <PageHeader title={guardianOnly ? t("nav.meetings") : t("nav.lessons")} subtitle={t("lessons.subtitle")} />
      <div class="tiles">
        {roles.staff ? (
          <>
            <div class="tile disabled-tile">
              <span class="tile-head">
                <Icon name="video" /> {t("lessons.lesson")}
              </span>
              <span class="tile-body muted">{t("lessons.lessonHint")}</span>
              <button type="button" class="btn primary" disabled={!LIVE_CONSOLE} aria-describedby="lessons-soon">
                {t("lessons.startLesson")}
              </button>
            </div>
            <div class="tile disabled-tile">
              <span class="tile-head">
                <Icon name="family" /> {t("lessons.meeting")}
              </span>
              <span class="tile-body muted">{t("lessons.meetingHint")}</span>
              <button type="button" class="btn" disabled={!LIVE_CONSOLE} aria-describedby="lessons-soon">
                {t("lessons.startMeeting")}
              </button>
            </div>
          </>
        ) : (
          <div class="tile disabled-tile">
            <span class="tile-head">
              <Icon name="video" /> {guardianOnly ? t("lessons.meeting") : t("lessons.lesson")}
            </span>
            <span class="tile-body muted">{guardianOnly ? t("lessons.meetingJoinHint") : t("lessons.lessonJoinHint")}</span>
          </div>
        )}
      </div>
      <p id="lessons-soon" class="notice-banner">
        {t("lessons.comingSoon")}
      </p>
    </div>
  );
}
