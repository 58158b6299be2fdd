import { startedHere } from "../../state/devices";
import { useEffect, useRef, useState } from "preact/hooks";
import { asApiError, type ApiError } from "../../api/errors";
import type { SchoolClass, SessionKind, SessionSummary } from "../../api/types";
import { t } from "../../i18n";
import { classPath, navigate } from "../../router";
import { loadRunning, runningIn, schoolClasses, startSession } from "../../state/lessons";
import { classInfo, rolesIn } from "../../state/me";
import { ready } from "../../state/session";
import { ErrorBox, Loading } from "../common";
import { Icon, type IconName } from "../icons";
import { localName } from "./util";

const KINDS: { kind: SessionKind; icon: IconName }[] = [
  { kind: "lesson", icon: "video" },
  { kind: "dual_lesson", icon: "school" },
  { kind: "meeting", icon: "family" },
];

/** Whether I take part in a session of this kind in this class. */
export function mayJoin(classId: number, s: SessionSummary): boolean {
  const r = rolesIn(classId);
  if (r.staff) return true;
  return s.kind === "meeting" ? r.guardian : r.student;
}

/** The three ways a teacher goes live: a lesson, a dual-teacher lesson, a parent meeting. */
export function LiveStart(props: { classId: number; compact?: boolean }) {
  const [kind, setKind] = useState<SessionKind | null>(null);
  if (!rolesIn(props.classId).teacher) return null;
  return (
    <>
      <div class={`tiles live-start${props.compact ? " compact" : ""}`}>
        {KINDS.map((k) => (
          <div class="tile" key={k.kind}>
            <span class="tile-head">
              <Icon name={k.icon} /> {t(`live.kind.${k.kind}`)}
            </span>
            <span class="tile-body muted">{t(`live.hint.${k.kind}`)}</span>
            <button type="button" class={`btn${k.kind === "lesson" ? " primary" : ""} tile-button`} onClick={() => setKind(k.kind)}>
              {t(`live.start.${k.kind}`)}
            </button>
          </div>
        ))}
      </div>
      {kind ? <StartDialog classId={props.classId} kind={kind} onClose={() => setKind(null)} /> : null}
    </>
  );
}

function StartDialog(props: { classId: number; kind: SessionKind; onClose: () => void }) {
  const { classId, kind } = props;
  const ref = useRef<HTMLDialogElement>(null);
  const className = classInfo(classId)?.name ?? "";
  const [title, setTitle] = useState(t(`live.defaultTitle.${kind}`, localName(className)));
  const [others, setOthers] = useState<SchoolClass[] | null>(null);
  const [loadError, setLoadError] = useState<ApiError | null>(null);
  const [linked, setLinked] = useState<number[]>([]);
  const [busy, setBusy] = useState(false);
  const [error, setError] = useState<ApiError | null>(null);

  useEffect(() => {
    const d = ref.current;
    if (d && !d.open) d.showModal();
  }, []);
  useEffect(() => {
    if (kind !== "dual_lesson") return;
    schoolClasses()
      .then((list) => setOthers(list.filter((c) => c.id !== classId)))
      .catch((err) => setLoadError(asApiError(err)));
  }, [kind, classId]);

  async function submit(e: Event) {
    e.preventDefault();
    if (!title.trim() || (kind === "dual_lesson" && !linked.length)) return;
    setBusy(true);
    setError(null);
    try {
      const s = await startSession(classId, kind, title.trim(), linked);
      ref.current?.close();
      props.onClose();
      startedHere(s.id);
      navigate(classPath(classId, "lessons", s.id));
    } catch (err) {
      setError(asApiError(err));
    } finally {
      setBusy(false);
    }
  }

  return (
    <dialog ref={ref} class="dialog" aria-labelledby="start-title" onCancel={props.onClose} onClose={props.onClose}>
      <form class="form" onSubmit={submit}>
        <h2 id="start-title" class="card-title">
          {t(`live.start.${kind}`)}
        </h2>
        <p class="muted dialog-hint">{t(`live.hint.${kind}`)}</p>
        <label class="field">
          <span class="field-label">{t("live.titleLabel")}</span>
          <input value={title} maxLength={200} required onInput={(e) => setTitle(e.currentTarget.value)} />
        </label>
        {kind === "dual_lesson" ? (
          <fieldset class="field linked-classes">
            <legend class="field-label">{t("live.linkedLabel")}</legend>
            <p class="field-hint">{t("live.linkedHint")}</p>
            {loadError ? <ErrorBox error={loadError} /> : null}
            {!others && !loadError ? <Loading /> : null}
            {others && !others.length ? <p class="muted">{t("live.noOtherClasses")}</p> : null}
            {others?.map((c) => (
              <label class="check" key={c.id}>
                <input
                  type="checkbox"
                  checked={linked.includes(c.id)}
                  onChange={(e) =>
                    setLinked(e.currentTarget.checked ? [...linked, c.id] : linked.filter((x) => x !== c.id))
                  }
                />
                <span>
                  {c.name}
                  {c.teachers.length ? <small class="muted"> · {c.teachers.join("、")}</small> : null}
                </span>
              </label>
            ))}
          </fieldset>
        ) : null}
        {error ? <ErrorBox error={error} /> : null}
        <div class="form-actions">
          <button type="button" class="btn" onClick={() => ref.current?.close()}>
            {t("common.cancel")}
          </button>
          <button
            type="submit"
            class="btn primary"
            disabled={busy || !title.trim() || (kind === "dual_lesson" && !linked.length)}
          >
            {t("live.startNow")}
          </button>
        </div>
      </form>
    </dialog>
  );
}

/** Sessions running now that I may join, with a button each. */
export function RunningSessions(props: { classId: number; banner?: boolean }) {
  const { classId } = props;
  useEffect(() => {
    if (ready.value) void loadRunning(classId);
  }, [classId, ready.value]);
  const list = runningIn(classId).filter((s) => mayJoin(classId, s));
  if (!list.length) return null;
  return (
    <section class={props.banner ? "live-banner" : "card live-list"} aria-label={t("live.runningNow")}>
      {list.map((s) => (
        <div class="live-item" key={s.id} data-session-id={s.id}>
          <span class="live-pill">
            <span class="live-dot" aria-hidden="true" />
            {t(`live.kind.${s.kind}`)}
          </span>
          <span class="live-title">
            {t("live.runningTitle", s.title)}
            {s.kind === "dual_lesson" && s.class_id !== classId ? (
              <small class="muted"> · {t("live.fromClass", s.classrooms[0]?.name ?? "")}</small>
            ) : null}
          </span>
          <a class="btn small primary" href={`#${classPath(classId, "lessons", s.id)}`}>
            {t(rolesIn(classId).guardian && !rolesIn(classId).staff ? "live.enterLobby" : "live.join")}
          </a>
        </div>
      ))}
    </section>
  );
}
