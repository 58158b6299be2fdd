import { t } from "../../i18n";
import { PageHeader } from "../common";

/** The live lesson / meeting console: a placeholder for the live-session work (session.*,
 *  rtc.*, hand.*, stage.*). Route: #/class/{cid}/lessons/{sessionId}. */
export function LessonConsole(props: { classId: number; sessionId: number }) {
  return (
    <div class="page">
      <PageHeader title={t("nav.lessons")} subtitle={`#${props.sessionId}`} />
      <p class="notice-banner">{t("lessons.comingSoon")}</p>
    </div>
  );
}
