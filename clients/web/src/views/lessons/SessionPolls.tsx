// Polls inside the live console: the host and co-teachers run them, students (a lesson) and
// guardians (a parent meeting) answer, and a dual lesson's local teacher answers for their
// classroom when the master teacher chose classroom answers (issue #14).
import { useEffect } from "preact/hooks";
import type { LiveParticipant, SessionView } from "../../api/types";
import { loadPolls, waitingPolls } from "../../state/classroom";
import { ready } from "../../state/session";
import { PollsPanel, type PollMode } from "../classroom/Polls";
import { classroomName } from "./util";

function target(view: SessionView, you: LiveParticipant): { classId: number; mode: PollMode } {
  const role = you.role;
  if (role === "host" || role === "teacher") return { classId: view.class_id, mode: "host" };
  return { classId: you.class_id, mode: role === "local_teacher" ? "classroom" : "participant" };
}

export function SessionPolls(props: { view: SessionView; you: LiveParticipant }) {
  const { view, you } = props;
  const { classId, mode } = target(view, you);
  return (
    <PollsPanel
      classId={classId}
      sessionId={view.id}
      mode={mode}
      dual={view.kind === "dual_lesson"}
      classroomName={(cid) => classroomName(view, cid)}
      compact
    />
  );
}

/** The polls tab's badge: open polls of this session waiting for my answer (none for the host).
 *  Loads the session's polls on joining, so a late joiner sees the badge before the tab. */
export function useWaitingPolls(view: SessionView, you: LiveParticipant): number | null {
  const { classId, mode } = target(view, you);
  useEffect(() => {
    if (ready.value) void loadPolls(classId, view.id).catch(() => undefined);
  }, [classId, view.id, ready.value]);
  if (mode === "host") return null;
  return waitingPolls(classId, view.id, mode === "classroom").length || null;
}
