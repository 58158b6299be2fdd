import { HandOver } from "./HandOver";
import { useEffect, useState } from "preact/hooks";
import { asApiError } from "../../api/errors";
import { rest } from "../../api/rest";
import type { LegLink, SessionStats } from "../../api/stats";
import type { LiveParticipant, Question, SessionView } from "../../api/types";
import { formatTime, t } from "../../i18n";
import {
  admit,
  answerInSession,
  answeredLiveInSession,
  askInSession,
  classroomOnStage,
  declineLobby,
  dismissInSession,
  hostMute,
  inviteOnStage,
  liveQuestions,
  lockMeeting,
  lowerHand,
  micOn,
  muteAll,
  removeFromStage,
  removePerson,
  sessionQuestions,
  setStagePlaces,
  voteInSession,
} from "../../state/live";
import { toast } from "../../state/toasts";
import { Avatar } from "../common";
import { Icon } from "../icons";
import { AnswerText, askerLabel, Votes } from "../questionParts";
import { classroomName, handOf } from "./util";
import { describeError } from "../../i18n/errors";

const ROLE_ORDER = ["host", "teacher", "local_teacher", "student", "guardian"];

function isModerator(you: LiveParticipant, p: LiveParticipant): boolean {
  if (p.user_id === you.user_id || p.role === "host") return false;
  if (you.role === "host" || you.role === "teacher") return true;
  return you.role === "local_teacher" && p.role === "student" && p.class_id === you.class_id;
}

// --- raised hands and the stage --------------------------------------------------------------------

/** The queue of raised hands (students, and classrooms in a dual lesson), and who is on stage.
 *  A local teacher sees their own classroom's only. */
export function HandsPanel(props: { view: SessionView; you: LiveParticipant }) {
  const { view, you } = props;
  const host = you.role === "host";
  const dual = view.kind === "dual_lesson";
  const byId = new Map(view.participants.map((p) => [p.user_id, p]));
  const hands = view.hands.filter((h) => {
    if (you.role !== "local_teacher") return true;
    const [kind, id] = h.split(":");
    return kind === "classroom" ? Number(id) === you.class_id : byId.get(Number(id))?.class_id === you.class_id;
  });
  const onStage = view.participants.filter((p) => p.on_stage);
  const invited = view.participants.filter((p) => p.invited);
  return (
    <section class="side-card hands-card" aria-labelledby="hands-title" data-testid="hands">
      <h2 id="hands-title" class="side-title">
        <Icon name="hand" size={18} /> {t("live.hands")}
        <span class="tab-count">{hands.length}</span>
      </h2>
      {hands.length === 0 ? <p class="muted small-text">{t("live.noHands")}</p> : null}
      <ol class="hand-list">
        {hands.map((h, i) => {
          const [kind, idText] = h.split(":");
          const id = Number(idText);
          if (kind === "classroom") {
            const name = classroomName(view, id);
            return (
              <li class="hand-item" key={h}>
                <span class="hand-order">{i + 1}</span>
                <Icon name="school" size={18} />
                <span class="grow">
                  <span class="hand-name">{name}</span>
                  <span class="tag tag-new">{t("live.classroomHand")}</span>
                </span>
                {host ? (
                  <button type="button" class="btn small primary" onClick={() => void classroomOnStage(id)} aria-label={t("live.classroomOnStageAria", name)}>
                    {t("live.putOnStage")}
                  </button>
                ) : null}
                <button type="button" class="btn small" onClick={() => void lowerHand(h)} aria-label={t("live.lowerHandOf", name)}>
                  {t("live.lower")}
                </button>
              </li>
            );
          }
          const p = byId.get(id);
          if (!p) return null;
          return (
            <li class="hand-item" key={h}>
              <span class="hand-order">{i + 1}</span>
              <Avatar name={p.name} size={28} />
              <span class="grow">
                <span class="hand-name">{p.name}</span>
                {dual ? <span class="tag">{classroomName(view, p.class_id)}</span> : null}
              </span>
              {host && p.role === "student" ? (
                <button
                  type="button"
                  class="btn small primary"
                  disabled={p.invited || p.on_stage}
                  onClick={() => void inviteOnStage(p.user_id)}
                  aria-label={t("live.inviteAria", p.name)}
                >
                  {p.invited ? t("live.invitedShort") : t("live.invite")}
                </button>
              ) : null}
              {isModerator(you, p) ? (
                <button type="button" class="btn small" onClick={() => void lowerHand(h)} aria-label={t("live.lowerHandOf", p.name)}>
                  {t("live.lower")}
                </button>
              ) : null}
            </li>
          );
        })}
      </ol>
      {you.role !== "local_teacher" ? (
        <>
          <div class="stage-head">
            <h3 class="side-subtitle">
              <Icon name="stage" size={16} /> {t("live.stagePlaces", onStage.length, view.stage_places)}
            </h3>
            {host ? (
              <span class="stepper" role="group" aria-label={t("live.placesLabel")}>
                <button type="button" class="btn small" disabled={view.stage_places <= 0} onClick={() => void setStagePlaces(view.stage_places - 1)} aria-label={t("live.fewerPlaces")}>
                  −
                </button>
                <span aria-live="polite">{view.stage_places}</span>
                <button type="button" class="btn small" disabled={view.stage_places >= 16} onClick={() => void setStagePlaces(view.stage_places + 1)} aria-label={t("live.morePlaces")}>
                  +
                </button>
              </span>
            ) : null}
          </div>
          <ul class="stage-list">
            {onStage.map((p) => (
              <li key={p.user_id} class="hand-item">
                <Avatar name={p.name} size={28} />
                <span class="grow hand-name">{p.name}</span>
                {host ? (
                  <button type="button" class="btn small" onClick={() => void removeFromStage(p.user_id)} aria-label={t("live.offStageAria", p.name)}>
                    {t("live.offStage")}
                  </button>
                ) : null}
              </li>
            ))}
            {invited.map((p) => (
              <li key={`i${p.user_id}`} class="hand-item muted">
                <Avatar name={p.name} size={28} />
                <span class="grow">{t("live.waitingAccept", p.name)}</span>
              </li>
            ))}
            {view.stage_classroom !== null ? (
              <li class="hand-item">
                <Icon name="school" size={18} />
                <span class="grow hand-name">{classroomName(view, view.stage_classroom)}</span>
                {host ? (
                  <button type="button" class="btn small" onClick={() => void classroomOnStage(null)} aria-label={t("live.classroomOffStageAria", classroomName(view, view.stage_classroom))}>
                    {t("live.offStage")}
                  </button>
                ) : null}
              </li>
            ) : null}
          </ul>
        </>
      ) : null}
    </section>
  );
}

// --- people -------------------------------------------------------------------------------------

const LINKS_POLL_MS = 5000;

/** The host's view of everyone's media link (path, loss, RTT), polled from the stats endpoint. */
function useLinks(sessionId: number, enabled: boolean): SessionStats["links"] {
  const [links, setLinks] = useState<SessionStats["links"]>({});
  useEffect(() => {
    if (!enabled) return undefined;
    let stopped = false;
    const poll = async () => {
      try {
        const stats = await rest<SessionStats>("GET", `/api/v1/sessions/${sessionId}/stats`);
        if (!stopped) setLinks(stats.links ?? {});
      } catch {
        // Best effort: the stats are for the host's eyes only, and a session on another node
        // has none here.
      }
    };
    void poll();
    const timer = setInterval(() => void poll(), LINKS_POLL_MS);
    return () => {
      stopped = true;
      clearInterval(timer);
    };
  }, [sessionId, enabled]);
  return links;
}

// Frame-rate steps of a screen share, lowest first (docs/media.md, "Screen share").
const SCREEN_STEPS = ["paused", "1/4", "1/2", "1"] as const;

function LinkTags(props: { link: { publish?: LegLink; subscribe?: LegLink } | undefined }) {
  const legs = [props.link?.subscribe, props.link?.publish].filter((l): l is LegLink => !!l);
  const path = legs.find((l) => l.path)?.path;
  const bad = [...new Set(legs.flatMap((l) => l.bad))];
  const rtt = legs.find((l) => l.rtt_ms !== null)?.rtt_ms;
  const loss = Math.max(0, ...legs.map((l) => l.loss));
  const sub = props.link?.subscribe;
  const freezes = sub?.freezes
    ? ` · ${t("live.link.freezes", sub.freezes, sub.freeze_s ?? 0)}`
    : "";
  const detail = t("live.link.detail", rtt ?? "–", Math.round(loss * 100)) + freezes;
  const received = Object.values(sub?.layers ?? {});
  const layer = received.length ? Math.min(...received) : null;
  // The lowest frame-rate step of the screen shares this person receives.
  const steps = Object.values(sub?.frame_rates ?? {});
  const step = SCREEN_STEPS.find((s) => steps.includes(s)) ?? null;
  const mic = props.link?.publish?.audio?.microphone ?? null;
  return (
    <>
      {mic ? (
        <span class="tag tag-muted link-audio" data-dbov={mic.dbov} data-voice={String(mic.voice)}>
          {mic.audio_level === 0
            ? t("live.link.micSilent")
            : mic.voice
              ? t("live.link.micSpeaking", mic.dbov)
              : t("live.link.mic", mic.dbov)}
        </span>
      ) : null}
      {sub?.frozen_s ? (
        <span class="tag tag-warn link-frozen" data-frozen={sub.frozen_s}>
          {t("live.link.frozen")}
        </span>
      ) : null}
      {layer !== null ? (
        <span class="tag tag-muted link-layer" data-layer={layer}>
          {layer < 0 ? t("live.link.audioOnly") : t("live.link.layer", layer + 1)}
        </span>
      ) : null}
      {step !== null ? (
        <span class="tag tag-muted link-screen-rate" data-frame-rate={step}>
          {step === "paused"
            ? t("live.link.screenPaused")
            : step === "1"
              ? t("live.link.screenFull")
              : t("live.link.screenRate", step)}
        </span>
      ) : null}
      {path ? (
        <span class="tag tag-muted link-path" data-path={path} title={detail}>
          {t(`live.link.${path}`)}
        </span>
      ) : null}
      {bad.length ? (
        <span class="tag tag-warn link-bad" title={`${bad.map((r) => t(`live.link.bad.${r}`)).join(", ")} · ${detail}`}>
          {t("live.link.poor")}
        </span>
      ) : null}
    </>
  );
}

export function PeoplePanel(props: { view: SessionView; you: LiveParticipant }) {
  const { view, you } = props;
  const host = you.role === "host";
  const meeting = view.kind === "meeting";
  const people = [...view.participants].sort(
    (a, b) => ROLE_ORDER.indexOf(a.role) - ROLE_ORDER.indexOf(b.role) || a.name.localeCompare(b.name),
  );
  const links = useLinks(view.id, host);
  return (
    <div class="people-panel">
      {host && meeting ? (
        <div class="panel-actions">
          <button type="button" class="btn small" onClick={() => void muteAll()}>
            <Icon name="micOff" size={16} /> {t("live.muteAll")}
          </button>
          <button type="button" class="btn small" onClick={() => void lockMeeting(!view.locked)}>
            <Icon name={view.locked ? "lock" : "unlock"} size={16} /> {view.locked ? t("live.unlock") : t("live.lock")}
          </button>
        </div>
      ) : null}
      {host && meeting && view.locked ? <p class="muted small-text">{t("live.lockedHint")}</p> : null}
      <ul class="people-list" aria-label={t("live.tab.people")}>
        {people.map((p) => {
          const mod = isModerator(you, p);
          const hand = view.hands.includes(handOf(p));
          const hostMuted = p.muted_by_host.includes("audio");
          return (
            <li class={`person${p.connected ? "" : " offline"}`} key={p.user_id} data-user-id={p.user_id}>
              <Avatar name={p.name} size={32} />
              <span class="grow person-text">
                <span class="person-name">
                  {p.name}
                  {p.user_id === you.user_id ? <span class="muted"> ({t("live.me")})</span> : null}
                </span>
                <span class="person-meta">
                  <span>{t(`live.role.${p.role}`)}</span>
                  {view.kind === "dual_lesson" ? <span>{classroomName(view, p.class_id)}</span> : null}
                  {p.on_stage ? <span class="tag tag-ok">{t("live.onStage")}</span> : null}
                  {hand ? <span class="tag tag-new">{t("live.handRaised")}</span> : null}
                  {!p.connected ? <span class="tag tag-muted">{t("live.offline")}</span> : null}
                  {host && p.connected ? <LinkTags link={links[String(p.user_id)]} /> : null}
                  {hostMuted ? <span class="tag tag-warn">{t("live.mutedByHost")}</span> : !micOn(p) && p.publishing.includes("microphone") ? <span class="tag tag-muted">{t("live.micOff")}</span> : null}
                </span>
              </span>
              <span class="person-actions">
                <HandOver view={view} you={you} p={p} />
                {host && !meeting && p.role === "student" && !p.on_stage ? (
                  <button type="button" class="btn small" disabled={p.invited} onClick={() => void inviteOnStage(p.user_id)} aria-label={t("live.inviteAria", p.name)}>
                    {p.invited ? t("live.invitedShort") : t("live.invite")}
                  </button>
                ) : null}
                {host && p.on_stage ? (
                  <button type="button" class="btn small" onClick={() => void removeFromStage(p.user_id)} aria-label={t("live.offStageAria", p.name)}>
                    {t("live.offStage")}
                  </button>
                ) : null}
                {mod && hand ? (
                  <button type="button" class="btn small" onClick={() => void lowerHand(handOf(p))} aria-label={t("live.lowerHandOf", p.name)}>
                    {t("live.lower")}
                  </button>
                ) : null}
                {mod ? (
                  <button
                    type="button"
                    class="btn small"
                    onClick={() => void hostMute(p.user_id, !hostMuted)}
                    aria-label={hostMuted ? t("live.unmuteAria", p.name) : t("live.muteAria", p.name)}
                  >
                    <Icon name={hostMuted ? "mic" : "micOff"} size={16} /> {hostMuted ? t("live.unmute") : t("live.mute")}
                  </button>
                ) : null}
                {mod ? (
                  <button type="button" class="btn small ghost" onClick={() => void removePerson(p.user_id)} aria-label={t("live.removeAria", p.name)}>
                    {t("live.remove")}
                  </button>
                ) : null}
              </span>
            </li>
          );
        })}
      </ul>
    </div>
  );
}

// --- the lobby ----------------------------------------------------------------------------------

export function LobbyPanel(props: { view: SessionView }) {
  const { view } = props;
  return (
    <div class="lobby-panel" data-testid="lobby">
      <div class="panel-actions">
        <button type="button" class="btn small primary" disabled={!view.lobby.length} onClick={() => void admit(null)}>
          {t("live.admitAll")}
        </button>
        <button type="button" class="btn small" onClick={() => void lockMeeting(!view.locked)}>
          <Icon name={view.locked ? "lock" : "unlock"} size={16} /> {view.locked ? t("live.unlock") : t("live.lock")}
        </button>
      </div>
      {view.lobby.length === 0 ? <p class="muted small-text">{t("live.lobbyEmpty")}</p> : null}
      <ul class="people-list">
        {view.lobby.map((p) => (
          <li class="person" key={p.user_id} data-user-id={p.user_id}>
            <Avatar name={p.name} size={32} />
            <span class="grow person-name">{p.name}</span>
            <span class="person-actions">
              <button type="button" class="btn small primary" onClick={() => void admit([p.user_id])} aria-label={t("live.admitAria", p.name)}>
                {t("live.admit")}
              </button>
              <button type="button" class="btn small" onClick={() => void declineLobby([p.user_id])} aria-label={t("live.declineAria", p.name)}>
                {t("live.decline")}
              </button>
            </span>
          </li>
        ))}
      </ul>
    </div>
  );
}

// --- the session's questions ------------------------------------------------------------------------

export function QAPanel(props: { view: SessionView; you: LiveParticipant }) {
  const { view, you } = props;
  const staff = you.role === "host" || you.role === "teacher" || you.role === "local_teacher";
  const list = sessionQuestions();
  void liveQuestions.value; // re-render on every change
  return (
    <div class="qa-panel">
      {you.role === "student" ? <AskInSession /> : null}
      {list.length === 0 ? <p class="muted small-text">{t("live.noQuestions")}</p> : null}
      <ul class="question-list live-questions" aria-label={t("live.questionsLabel")}>
        {list.map((q) => (
          <LiveQuestion q={q} view={view} staff={staff} student={you.role === "student"} key={q.id} />
        ))}
      </ul>
    </div>
  );
}

function AskInSession() {
  const [body, setBody] = useState("");
  const [anonymous, setAnonymous] = useState(false);
  const [busy, setBusy] = useState(false);
  async function submit(e: Event) {
    e.preventDefault();
    if (!body.trim()) return;
    setBusy(true);
    try {
      await askInSession(body.trim(), anonymous);
      setBody("");
      // Anonymity is chosen per question: the next one is asked by name unless ticked again.
      setAnonymous(false);
      toast(t("qa.asked"), "success");
    } catch (err) {
      toast(t("live.refused", describeError(asApiError(err))), "error");
    } finally {
      setBusy(false);
    }
  }
  return (
    <form class="ask-form live-ask" onSubmit={submit}>
      <label class="sr-only" htmlFor="live-ask">
        {t("qa.yourQuestion")}
      </label>
      <textarea id="live-ask" rows={2} maxLength={1000} placeholder={t("live.askPlaceholder")} value={body} onInput={(e) => setBody(e.currentTarget.value)} />
      <div class="ask-row">
        <label class="check">
          <input type="checkbox" checked={anonymous} onChange={(e) => setAnonymous(e.currentTarget.checked)} />
          <span>{t("qa.anonymous")}</span>
        </label>
        <button type="submit" class="btn small primary" disabled={busy || !body.trim()}>
          {t("qa.ask")}
        </button>
      </div>
    </form>
  );
}

function LiveQuestion(props: { q: Question; view: SessionView; staff: boolean; student: boolean }) {
  const { q, view, staff, student } = props;
  const [answering, setAnswering] = useState(false);
  const [text, setText] = useState("");
  const dual = view.kind === "dual_lesson";
  async function run(fn: () => Promise<void>) {
    try {
      await fn();
    } catch (err) {
      toast(t("live.refused", describeError(asApiError(err))), "error");
    }
  }
  const canVote = student && !q.mine && q.status === "open";
  return (
    <li class={`question status-${q.status}`} data-question-id={q.id}>
      <Votes q={q} canVote={canVote} size={16} onVote={() => run(() => voteInSession(q, !q.voted))} />
      <div class="question-main">
        <p class="question-body">{q.body}</p>
        <p class="question-meta">
          <span class={`asker${q.anonymous ? " anon" : ""}`}>{askerLabel(q, staff)}</span>
          {dual ? <span class="tag">{classroomName(view, q.class_id)}</span> : null}
          <span>{formatTime(q.created_at)}</span>
          {q.status === "answered_live" ? <span class="tag tag-ok">{t("qa.answeredLive")}</span> : null}
          {q.status === "answered" ? <span class="tag tag-ok">{t("live.answered")}</span> : null}
          {q.status === "dismissed" ? <span class="tag tag-muted">{t("qa.dismissed")}</span> : null}
        </p>
        {q.answer && q.status !== "open" ? <AnswerText q={q} /> : null}
        {staff && q.status === "open" ? (
          answering ? (
            <form
              class="answer-form"
              onSubmit={(e) => {
                e.preventDefault();
                if (text.trim()) void run(() => answerInSession(q, text.trim())).then(() => setAnswering(false));
              }}
            >
              <label class="sr-only" htmlFor={`live-answer-${q.id}`}>
                {t("qa.answerLabel")}
              </label>
              <textarea id={`live-answer-${q.id}`} rows={2} value={text} onInput={(e) => setText(e.currentTarget.value)} />
              <div class="question-actions">
                <button type="submit" class="btn small primary" disabled={!text.trim()}>
                  {t("qa.sendAnswer")}
                </button>
                <button type="button" class="btn small" onClick={() => setAnswering(false)}>
                  {t("common.cancel")}
                </button>
              </div>
            </form>
          ) : (
            <div class="question-actions">
              <button type="button" class="btn small" onClick={() => setAnswering(true)}>
                {t("qa.answer")}
              </button>
              <button type="button" class="btn small" onClick={() => run(() => answeredLiveInSession(q))}>
                {t("qa.markLive")}
              </button>
              <button type="button" class="btn small ghost" onClick={() => run(() => dismissInSession(q))}>
                {t("qa.dismiss")}
              </button>
            </div>
          )
        ) : null}
      </div>
    </li>
  );
}
