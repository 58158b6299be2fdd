import { useEffect, useRef, useState } from "preact/hooks";
import type { LiveParticipant, SessionView } from "../../api/types";
import { t } from "../../i18n";
import { classPath } from "../../router";
import { auth } from "../../state/auth";
import {
  acceptStage,
  camOn,
  classroomOnStage,
  declineStage,
  endSession,
  feeds,
  hostMute,
  joinSession,
  leaveSession,
  live,
  local,
  lowerHand,
  micOn,
  raiseClassroomHand,
  raiseHand,
  removeFromStage,
  setCamera,
  setMic,
  toggleScreen,
  type Feed,
  type LiveState,
} from "../../state/live";
import { ChatPanel } from "../ChatPanel";
import { ErrorBox, Loading } from "../common";
import { Icon } from "../icons";
import { AudioOut, Tile } from "./media";
import { JoinPreview } from "./JoinPreview";
import { needsPreview } from "../../state/devices";
import { rolesIn } from "../../state/me";
import { HandsPanel, LobbyPanel, PeoplePanel, QAPanel } from "./panels";
import { SessionPolls, useWaitingPolls } from "./SessionPolls";
import { classroomName, handOf, personName } from "./util";

/** The live console of one session (route #/class/{cid}/lessons/{sessionId}): joins on open,
 *  leaves on close. What it shows depends on the session's kind and my role in it. */
export function LessonConsole(props: { classId: number; sessionId: number }) {
  const { classId, sessionId } = props;
  // A preview of camera and microphone first (views/lessons/JoinPreview.tsx).
  const [previewed, setPreviewed] = useState(() => !needsPreview(sessionId));
  const go = previewed || !needsPreview(sessionId);
  useEffect(() => {
    if (!go) return;
    void joinSession(sessionId);
    return () => leaveSession();
  }, [sessionId, go]);
  if (!go) {
    const r = rolesIn(classId);
    return <JoinPreview sessionId={sessionId} startOff={r.guardian && !r.staff && !r.student} onJoin={() => setPreviewed(true)} />;
  }
  const s = live.value;
  if (!s || s.sessionId !== sessionId || s.phase === "joining") {
    return (
      <div class="page">
        <Loading label={t("live.joining")} />
      </div>
    );
  }
  if (s.phase === "lobby") return <LobbyWait s={s} />;
  if (s.phase !== "live" || !s.view || !s.you) return <Over classId={classId} s={s} />;
  return <Console classId={classId} s={s} view={s.view} you={s.you} />;
}

function LobbyWait(props: { s: LiveState }) {
  const title = props.s.summary?.title ?? "";
  return (
    <div class="page narrow">
      <section class="card lobby-wait" aria-labelledby="lobby-title" data-testid="lobby-wait">
        <Icon name="clock" size={40} class="lobby-icon" />
        <h1 id="lobby-title" class="page-title">
          {t("live.lobbyTitle")}
        </h1>
        <p class="lobby-session">{title}</p>
        <p class="muted">{t("live.lobbyHint")}</p>
        <Loading label={t("live.waitingAdmit")} />
        <a class="btn" href="#/" onClick={() => leaveSession()}>
          <Icon name="exit" size={18} /> {t("live.leave")}
        </a>
      </section>
    </div>
  );
}

function Over(props: { classId: number; s: LiveState }) {
  const { s, classId } = props;
  const meeting = s.summary?.kind === "meeting";
  const title =
    s.phase === "ended"
      ? t(meeting ? "live.meetingEnded" : "live.lessonEnded")
      : s.phase === "removed"
        ? t("live.removed")
        : s.phase === "declined"
          ? t("live.declined")
          : t("live.joinFailed");
  return (
    <div class="page narrow">
      <section class="card lobby-wait" aria-labelledby="over-title" data-testid="session-over" data-phase={s.phase}>
        <Icon name={s.phase === "ended" ? "check" : "lock"} size={40} class="lobby-icon" />
        <h1 id="over-title" class="page-title">
          {title}
        </h1>
        {s.phase === "ended" && !meeting ? <p class="muted">{t("live.questionsMoved")}</p> : null}
        {s.error ? <ErrorBox error={s.error} /> : null}
        <p class="over-actions">
          {s.phase === "ended" && !meeting ? (
            <a class="btn" href={`#${classPath(classId, "qa")}`}>
              {t("nav.qa")}
            </a>
          ) : null}
          <a class="btn primary" href={`#${classPath(classId, "lessons")}`}>
            {t("live.backToLessons")}
          </a>
        </p>
      </section>
    </div>
  );
}

type TabId = "qa" | "people" | "chat" | "lobby" | "polls";

function Console(props: { classId: number; s: LiveState; view: SessionView; you: LiveParticipant }) {
  const { view, you, s } = props;
  const role = you.role;
  const teacher = role === "host" || role === "teacher";
  const meeting = view.kind === "meeting";
  const tabs: TabId[] = meeting
    ? role === "host"
      ? ["lobby", "people", "polls", "chat"]
      : ["people", "polls", "chat"]
    : teacher || role === "local_teacher"
      ? ["qa", "polls", "people", "chat"]
      : ["qa", "polls", "chat"];
  const [chosen, setTab] = useState<TabId>(meeting && role === "host" ? "lobby" : tabs[0]);
  const tab = tabs.includes(chosen) ? chosen : tabs[0]; // a new role may have other tabs
  const chatStream = meeting
    ? `class:${view.class_id}:guardians`
    : `class:${teacher ? view.class_id : you.class_id}:students`;
  const showHands = !meeting && (teacher || role === "local_teacher");
  const people = view.participants.length;
  const waitingPolls = useWaitingPolls(view, you);
  return (
    <div class={`console kind-${view.kind} role-${role}`} data-testid="console">
      <header class="console-head">
        <div class="grow">
          <h1 class="page-title console-title">{view.title}</h1>
          <p class="page-subtitle console-meta">
            <span class="live-pill">
              <span class="live-dot" aria-hidden="true" />
              {t("live.onAir")}
            </span>
            <span>{t(`live.kind.${view.kind}`)}</span>
            <span>{t(`live.role.${role}`)}</span>
            <span>{t("live.peopleCount", people)}</span>
            {view.kind === "dual_lesson" ? <span>{t("live.classroomCount", view.classrooms.length - 1)}</span> : null}
          </p>
        </div>
      </header>
      <Notices s={s} view={view} you={you} />
      <div class="console-body">
        <section class="stage-area" aria-label={t("live.stageArea")}>
          <StageView view={view} you={you} />
        </section>
        <aside class="console-side" aria-label={t("live.sidePanel")}>
          {showHands ? <HandsPanel view={view} you={you} /> : null}
          <div class="side-card side-tabs">
            <Tabs tabs={tabs} tab={tab} setTab={setTab} view={view} waitingPolls={waitingPolls} />
            <div class="tab-panel" role="tabpanel" id={`live-panel-${tab}`} aria-labelledby={`live-tab-${tab}`}>
              {tab === "qa" ? <QAPanel view={view} you={you} /> : null}
              {tab === "people" ? <PeoplePanel view={view} you={you} /> : null}
              {tab === "lobby" ? <LobbyPanel view={view} /> : null}
              {tab === "polls" ? <SessionPolls view={view} you={you} /> : null}
              {tab === "chat" ? (
                <ChatPanel
                  key={chatStream}
                  stream={chatStream}
                  classId={meeting || teacher ? view.class_id : you.class_id}
                  title={meeting ? t("nav.guardianChat") : teacher ? t("nav.studentChat") : t("nav.classChat")}
                  compact
                />
              ) : null}
            </div>
          </div>
        </aside>
      </div>
      <Toolbar classId={props.classId} view={view} you={you} />
      <AudioOut />
    </div>
  );
}

function Tabs(props: { tabs: TabId[]; tab: TabId; setTab: (t: TabId) => void; view: SessionView; waitingPolls: number | null }) {
  const { tabs, tab, setTab, view } = props;
  const refs = useRef<Record<string, HTMLButtonElement | null>>({});
  function onKey(e: KeyboardEvent) {
    const i = tabs.indexOf(tab);
    const next = e.key === "ArrowRight" ? tabs[(i + 1) % tabs.length] : e.key === "ArrowLeft" ? tabs[(i + tabs.length - 1) % tabs.length] : null;
    if (next) {
      e.preventDefault();
      setTab(next);
      refs.current[next]?.focus();
    }
  }
  const count = (x: TabId): number | null =>
    x === "lobby" ? view.lobby.length : x === "people" ? view.participants.length : x === "polls" ? props.waitingPolls : null;
  return (
    <div class="tabs live-tabs" role="tablist" aria-label={t("live.sidePanel")} onKeyDown={onKey}>
      {tabs.map((x) => (
        <button
          type="button"
          role="tab"
          key={x}
          id={`live-tab-${x}`}
          ref={(el) => {
            refs.current[x] = el;
          }}
          aria-selected={tab === x}
          aria-controls={`live-panel-${x}`}
          tabIndex={tab === x ? 0 : -1}
          class={`tab${tab === x ? " active" : ""}`}
          onClick={() => setTab(x)}
        >
          {t(`live.tab.${x}`)}
          {count(x) !== null ? <span class="tab-count">{count(x)}</span> : null}
        </button>
      ))}
    </div>
  );
}

function Notices(props: { s: LiveState; view: SessionView; you: LiveParticipant }) {
  const { view, you } = props;
  const acceptRef = useRef<HTMLButtonElement>(null);
  useEffect(() => {
    if (you.invited) acceptRef.current?.focus();
  }, [you.invited]);
  const err = local.value.error;
  const hostMuted = you.muted_by_host;
  return (
    <>
      {you.invited && you.role === "student" ? (
        <section class="invite-card" role="alertdialog" aria-labelledby="invite-title" aria-describedby="invite-hint" data-testid="stage-invite">
          <Icon name="stage" size={28} />
          <div class="grow">
            <h2 id="invite-title" class="card-title">
              {t("live.invitedTitle")}
            </h2>
            <p id="invite-hint" class="muted">
              {t("live.invitedHint")}
            </p>
          </div>
          <button type="button" class="btn primary" ref={acceptRef} onClick={() => void acceptStage()}>
            {t("live.acceptStage")}
          </button>
          <button type="button" class="btn" onClick={() => void declineStage()}>
            {t("live.declineStage")}
          </button>
        </section>
      ) : null}
      {hostMuted.length ? (
        <p class="notice-banner warn" role="status" data-testid="host-muted">
          <Icon name="micOff" size={18} />{" "}
          {hostMuted.includes("video") && hostMuted.includes("audio")
            ? t("live.hostMutedBoth", personName(view, props.s.hostMute?.by ?? view.host_id))
            : hostMuted.includes("video")
              ? t("live.hostMutedVideo", personName(view, props.s.hostMute?.by ?? view.host_id))
              : t("live.hostMutedAudio", personName(view, props.s.hostMute?.by ?? view.host_id))}{" "}
          {view.unmute_locked ? t("live.unmuteLocked") : t("live.unmuteYourself")}
        </p>
      ) : null}
      {view.kind === "dual_lesson" && you.role === "local_teacher" && view.stage_classroom === you.class_id ? (
        <p class="notice-banner" role="status" data-testid="classroom-on-stage">
          <Icon name="stage" size={18} /> {t("live.myClassroomOnStage")}
        </p>
      ) : null}
      {err ? (
        <p class="notice-banner error" role="alert">
          {err}
        </p>
      ) : null}
    </>
  );
}

// --- what is on the stage ---------------------------------------------------------------------

function feedOf(userId: number, group: Feed["group"]): Feed | undefined {
  return feeds.value.find((f) => f.publisherId === userId && f.group === group);
}

function MyTile(props: { you: LiveParticipant; big?: boolean; label?: string }) {
  const { you } = props;
  const cam = local.value.camera;
  const video = !!cam && cam.getVideoTracks().length > 0 && camOn(you);
  return (
    <Tile
      name={you.name}
      label={props.label ?? t("live.myCamera")}
      stream={cam}
      video={video}
      mine
      big={props.big}
      tag={props.label ?? t("live.me")}
      micOff={!micOn(you)}
      testId="my-video"
    />
  );
}

function PersonTile(props: { view: SessionView; p: LiveParticipant; group?: Feed["group"]; big?: boolean; tag?: string; children?: any }) {
  const { p, view } = props;
  const group = props.group ?? "camera";
  const feed = feedOf(p.user_id, group);
  const label = group === "screen" ? t("live.screenOf", p.name) : t("live.cameraOf", p.name);
  return (
    <Tile
      name={p.name}
      label={label}
      stream={feed?.stream ?? null}
      video={
        !!feed?.video &&
        !feed.videoPaused &&
        (group === "screen" || (!p.muted_by_host.includes("video") && !p.self_muted.includes("video")))
      }
      notice={feed?.videoPaused ? t("live.videoPaused") : undefined}
      big={props.big}
      tag={props.tag}
      micOff={group === "camera" && (!p.publishing.includes("microphone") || !micOn(p))}
      hand={view.hands.includes(handOf(p))}
      testId={`video-${p.user_id}-${group}`}
    >
      {props.children}
    </Tile>
  );
}

function StageView(props: { view: SessionView; you: LiveParticipant }) {
  const { view, you } = props;
  const role = you.role;
  const me = auth.value?.user.id ?? 0;
  const others = view.participants.filter((p) => p.user_id !== me);
  const publishing = !!local.value.camera;

  if (view.kind === "meeting") {
    // Everyone in a grid, me first.
    return (
      <div class="video-grid" data-count={view.participants.length}>
        {publishing ? <MyTile you={you} /> : null}
        {others.map((p) => {
          const muted = p.muted_by_host.includes("audio");
          return (
            <PersonTile view={view} p={p} key={p.user_id} tag={t(`live.role.${p.role}`)}>
              {role === "host" ? (
                <button
                  type="button"
                  class="btn small tile-button-overlay"
                  onClick={() => void hostMute(p.user_id, !muted)}
                  aria-label={muted ? t("live.unmuteAria", p.name) : t("live.muteAria", p.name)}
                  title={muted ? t("live.unmuteAria", p.name) : t("live.muteAria", p.name)}
                >
                  <Icon name={muted ? "micOff" : "mic"} size={16} />
                </button>
              ) : null}
            </PersonTile>
          );
        })}
      </div>
    );
  }

  const onStage = others.filter((p) => p.on_stage);
  const teachers = others.filter((p) => p.role === "host" || p.role === "teacher");
  const host = view.participants.find((p) => p.user_id === view.host_id);
  const strip: preact.JSX.Element[] = [];

  if (role === "host" || role === "teacher") {
    const screen = local.value.screen;
    const main = screen ? (
      <Tile name={you.name} label={t("live.myScreen")} stream={screen} video big tag={t("live.myScreen")} testId="my-screen" />
    ) : publishing ? (
      <MyTile you={you} big />
    ) : null;
    if (screen && publishing) strip.push(<MyTile you={you} key="me" />);
    for (const p of teachers) strip.push(<PersonTile view={view} p={p} key={p.user_id} tag={t(`live.role.${p.role}`)} />);
    for (const p of teachers) {
      if (feedOf(p.user_id, "screen")) strip.push(<PersonTile view={view} p={p} group="screen" key={`${p.user_id}s`} />);
    }
    for (const p of onStage) strip.push(<PersonTile view={view} p={p} key={p.user_id} tag={t("live.onStage")} />);
    return (
      <>
        {main ? <div class="main-video">{main}</div> : null}
        {view.kind === "dual_lesson" ? <ClassroomGrid view={view} you={you} /> : null}
        <VideoStrip tiles={strip} />
      </>
    );
  }

  // Students and local teachers watch the host: the screen if shared, else the camera.
  const hostScreen = host ? feedOf(host.user_id, "screen") : undefined;
  const main = host ? <PersonTile view={view} p={host} group={hostScreen ? "screen" : "camera"} big tag={t("live.role.host")} /> : null;
  if (host && hostScreen) strip.push(<PersonTile view={view} p={host} key="host-cam" tag={t("live.role.host")} />);
  for (const p of teachers) if (p.user_id !== view.host_id) strip.push(<PersonTile view={view} p={p} key={p.user_id} tag={t("live.role.teacher")} />);
  // A dual lesson's classroom on stage is shown large beside the host, never as a thumbnail
  // (its own local teacher sees her classroom's camera there).
  let staged: preact.JSX.Element | null = null;
  const myClassroomStaged = role === "local_teacher" && view.stage_classroom === you.class_id;
  if (view.stage_classroom !== null && !myClassroomStaged) {
    const lt = others.find((p) => p.role === "local_teacher" && p.class_id === view.stage_classroom);
    if (lt) staged = <PersonTile view={view} p={lt} key={lt.user_id} big tag={`${classroomName(view, lt.class_id)} · ${t("live.onStage")}`} />;
  }
  for (const p of onStage) strip.push(<PersonTile view={view} p={p} key={p.user_id} tag={t("live.onStage")} />);
  if (publishing && myClassroomStaged) staged = <MyTile you={you} key="me" big label={t("live.myClassroom")} />;
  else if (publishing) strip.push(<MyTile you={you} key="me" label={role === "local_teacher" ? t("live.myClassroom") : undefined} />);
  return (
    <>
      <div class={`main-video${staged ? " with-classroom" : ""}`}>
        {main ?? <p class="empty">{t("live.waitingHost")}</p>}
        {staged}
      </div>
      <VideoStrip tiles={strip} />
    </>
  );
}

/** The smaller tiles beside the main video: nothing when nobody else is on stage. */
function VideoStrip({ tiles }: { tiles: preact.JSX.Element[] }) {
  return tiles.length ? (
    <div class="video-strip" aria-label={t("live.othersOnStage")}>
      {tiles}
    </div>
  ) : null;
}

/** A dual lesson's linked classrooms, as their local teachers send them; one can be on stage. */
function ClassroomGrid(props: { view: SessionView; you: LiveParticipant }) {
  const { view, you } = props;
  const host = you.role === "host";
  const linked = view.classrooms.filter((c) => c.class_id !== view.class_id);
  return (
    <section class="classroom-grid-wrap" aria-labelledby="classrooms-title">
      <h2 id="classrooms-title" class="section-title small">
        {t("live.classrooms")}
      </h2>
      <div class="video-grid classrooms">
        {linked.map((c) => {
          const lt = view.participants.find((p) => p.role === "local_teacher" && p.class_id === c.class_id);
          const name = classroomName(view, c.class_id);
          const feed = lt ? feedOf(lt.user_id, "camera") : undefined;
          const staged = view.stage_classroom === c.class_id;
          return (
            <Tile
              key={c.class_id}
              name={name}
              label={t("live.classroomCamera", name)}
              stream={feed?.stream ?? null}
              video={!!feed?.video}
              big={staged}
              tag={staged ? t("live.onStage") : lt ? lt.name : t("live.notConnected")}
              hand={view.hands.includes(`classroom:${c.class_id}`)}
              testId={`classroom-${c.class_id}`}
            >
              {host ? (
                <button
                  type="button"
                  class={`btn small${staged ? "" : " primary"}`}
                  onClick={() => void classroomOnStage(staged ? null : c.class_id)}
                  aria-label={staged ? t("live.classroomOffStageAria", name) : t("live.classroomOnStageAria", name)}
                >
                  {staged ? t("live.offStage") : t("live.putOnStage")}
                </button>
              ) : null}
            </Tile>
          );
        })}
      </div>
    </section>
  );
}

// --- the toolbar -------------------------------------------------------------------------------

function Toolbar(props: { classId: number; view: SessionView; you: LiveParticipant }) {
  const { view, you } = props;
  const role = you.role;
  const teacher = role === "host" || role === "teacher";
  const publishing = !!local.value.camera;
  const mic = micOn(you);
  const cam = camOn(you);
  const hasVideo = !!local.value.camera?.getVideoTracks().length;
  const myHand = view.hands.includes(`user:${you.user_id}`);
  const classHand = view.hands.includes(`classroom:${you.class_id}`);
  const [confirmEnd, setConfirmEnd] = useState(false);
  return (
    <div class="toolbar" role="toolbar" aria-label={t("live.controls")}>
      {publishing ? (
        <>
          <button type="button" class={`btn tool${mic ? "" : " off"}`} onClick={() => void setMic(!mic)}>
            <Icon name={mic ? "mic" : "micOff"} size={18} /> {mic ? t("live.muteMic") : t("live.unmuteMic")}
          </button>
          {hasVideo ? (
            <button type="button" class={`btn tool${cam ? "" : " off"}`} onClick={() => void setCamera(!cam)}>
              <Icon name={cam ? "video" : "cameraOff"} size={18} /> {cam ? t("live.cameraOff") : t("live.cameraOn")}
            </button>
          ) : null}
        </>
      ) : null}
      {teacher ? (
        <button type="button" class={`btn tool${local.value.screen ? " active" : ""}`} onClick={() => void toggleScreen()}>
          <Icon name={local.value.screen ? "stop" : "screen"} size={18} /> {local.value.screen ? t("live.stopShare") : t("live.shareScreen")}
        </button>
      ) : null}
      {role === "student" && you.on_stage ? (
        <button type="button" class="btn tool" onClick={() => void removeFromStage(you.user_id)}>
          <Icon name="exit" size={18} /> {t("live.leaveStage")}
        </button>
      ) : null}
      {(role === "student" && !you.on_stage) || role === "guardian" ? (
        <button type="button" class={`btn tool${myHand ? " active" : ""}`} onClick={() => void (myHand ? lowerHand() : raiseHand())}>
          <Icon name="hand" size={18} /> {myHand ? t("live.lowerHand") : t("live.raiseHand")}
        </button>
      ) : null}
      {role === "local_teacher" ? (
        <button
          type="button"
          class={`btn tool${classHand ? " active" : ""}`}
          onClick={() => void (classHand ? lowerHand(`classroom:${you.class_id}`) : raiseClassroomHand())}
        >
          <Icon name="hand" size={18} /> {classHand ? t("live.lowerClassHand") : t("live.raiseClassHand")}
        </button>
      ) : null}
      <span class="grow" />
      {role === "host" ? (
        confirmEnd ? (
          <span class="confirm-end" role="group" aria-label={t("live.endConfirm")}>
            <span>{t("live.endConfirm")}</span>
            <button type="button" class="btn danger" onClick={() => void endSession()}>
              {t(view.kind === "meeting" ? "live.endMeeting" : "live.endLesson")}
            </button>
            <button type="button" class="btn" onClick={() => setConfirmEnd(false)}>
              {t("common.cancel")}
            </button>
          </span>
        ) : (
          <button type="button" class="btn danger" onClick={() => setConfirmEnd(true)}>
            <Icon name="stop" size={18} /> {t(view.kind === "meeting" ? "live.endMeeting" : "live.endLesson")}
          </button>
        )
      ) : null}
      <a class="btn tool" href={`#${classPath(props.classId, "lessons")}`}>
        <Icon name="exit" size={18} /> {t("live.leave")}
      </a>
    </div>
  );
}
