// One live session in this browser: a lesson, a parent meeting or a dual-teacher lesson.
//
// session.join, then two peer connections (docs/protocol.md §9.4): the *publish* leg, where this
// page offers its camera, microphone and screen (rtc.publish, renegotiated for every change), and
// the *subscribe* leg, where the server offers what this person may receive (rtc.subscribe, then
// pushed rtc.offer, answered in order with rtc.answer). Candidates trickle with rtc.ice once the
// server has the leg. Pushes (session.state, session.lobby, stage.invited, media.muted, ...)
// keep the signals below current; the session's Q&A streams (qa:{cid}:s{id}) are followed with
// their history.
import { mediaConstraints, mutesToApply } from "./devices";
import { signal } from "@preact/signals";
import { ApiError, asApiError } from "../api/errors";
import { newClientId } from "../api/ids";
import type {
  JoinAck,
  LiveParticipant,
  MediaSource,
  OfferTrack,
  PublishAck,
  Question,
  SessionSummary,
  SessionView,
  SubscribeOffer,
} from "../api/types";
import { t } from "../i18n";
import { auth } from "./auth";
import { forgetSession } from "./lessons";
import { follow, on, onReset, onStream, request, status } from "./session";
import { toast } from "./toasts";
import { describeDeviceError, describeError } from "../i18n/errors";

export type Phase = "joining" | "lobby" | "live" | "ended" | "removed" | "declined" | "failed";

export interface LiveState {
  sessionId: number;
  phase: Phase;
  summary: SessionSummary | null;
  view: SessionView | null;
  you: LiveParticipant | null;
  error: ApiError | null;
  endedReason: string | null;
  /** The last host mute notice (media.muted): who, and what is muted now. */
  hostMute: { by: number; kinds: string[] } | null;
  qaStreams: string[];
}

/** What others publish, grouped per person: camera (+ microphone) and screen (+ its sound). */
export interface Feed {
  key: string;
  publisherId: number;
  group: "camera" | "screen";
  stream: MediaStream;
  video: boolean;
  audio: boolean;
  /** The server paused this video for my connection (it cannot carry even the lowest layer);
   *  the sound goes on, and the video comes back by itself (media.layer). */
  videoPaused: boolean;
}

export interface LocalMedia {
  camera: MediaStream | null;
  screen: MediaStream | null;
  /** Why the camera or microphone could not be opened. */
  error: string | null;
}

export const live = signal<LiveState | null>(null);
export const local = signal<LocalMedia>({ camera: null, screen: null, error: null });
export const feeds = signal<Feed[]>([]);
export const liveQuestions = signal<Record<number, Question>>({});
/** The browser refused to play sound before a click: the console offers a button. */
export const soundBlocked = signal(false);

const ENDED_PHASES: Phase[] = ["ended", "removed", "declined", "failed"];

function myId(): number {
  return auth.value?.user.id ?? 0;
}

// --- the peer connections ---------------------------------------------------------------------

type LegName = "publish" | "subscribe";

interface Leg {
  name: LegName;
  pc: RTCPeerConnection;
  ready: boolean;
  queued: (RTCIceCandidateInit | null)[];
}

class Engine {
  pub: Leg | null = null;
  sub: Leg | null = null;
  iceServers: RTCIceServer[] = [];
  senders: Partial<Record<MediaSource, RTCRtpTransceiver>> = {};
  /** The camera's lower layers (quarter and half size), each its own m-line. */
  cameraLayers: RTCRtpTransceiver[] = [];
  /** Tracks the server paused for my connection (media.layer). */
  pausedTracks = new Set<string>();
  tracksByMid: Record<string, OfferTrack> = {};
  pubChain: Promise<void> = Promise.resolve();
  subChain: Promise<void> = Promise.resolve();
  /** The last `rtc.resubscribe`'s fresh subscribe request (placed again once it is answered). */
  resubscribed: Promise<void> = Promise.resolve();
  negotiationQueued = false;
  closed = false;

  /** `again`: joining a session this page was in (it moved, or the connection came back). */
  constructor(
    readonly sessionId: number,
    readonly again = false,
  ) {}

  leg(name: LegName): Leg {
    const existing = name === "publish" ? this.pub : this.sub;
    if (existing) return existing;
    const pc = new RTCPeerConnection({ iceServers: this.iceServers });
    const leg: Leg = { name, pc, ready: false, queued: [] };
    pc.onicecandidate = (ev) => {
      const candidate = ev.candidate ? ev.candidate.toJSON() : null;
      if (leg.ready) this.sendCandidate(name, candidate);
      else leg.queued.push(candidate);
    };
    if (name === "publish") this.pub = leg;
    else this.sub = leg;
    return leg;
  }

  /** The server has this leg now: trickle what was found meanwhile. */
  ready(leg: Leg): void {
    if (leg.ready) return;
    leg.ready = true;
    for (const c of leg.queued.splice(0)) this.sendCandidate(leg.name, c);
  }

  sendCandidate(leg: LegName, candidate: RTCIceCandidateInit | null): void {
    if (this.closed) return;
    void request("rtc.ice", { session_id: this.sessionId, leg, candidate }).catch(() => undefined);
  }

  /** Its peer connections can go on under a new Socket.IO connection: it has each one it
   * should (`publishing`: the camera's too; a join cut off half-way has not), each negotiated
   * and up, and the publish one not in the middle of a negotiation (whose answer was lost with
   * the connection). */
  resumable(publishing: boolean): boolean {
    const wanted = publishing ? [this.sub, this.pub] : [this.sub];
    if (wanted.some((l) => l === null || l.pc.remoteDescription === null)) return false;
    if (this.pub && this.pub.pc.signalingState !== "stable") return false;
    const legs = wanted.filter((l): l is Leg => l !== null);
    return legs.every((l) => !["failed", "closed"].includes(l.pc.connectionState));
  }

  close(): void {
    this.closed = true;
    this.pub?.pc.close();
    this.sub?.pc.close();
    this.pub = this.sub = null;
    this.senders = {};
    this.cameraLayers = [];
  }
}

let engine: Engine | null = null;

function alive(e: Engine): boolean {
  return engine === e && !e.closed;
}

// --- joining and leaving -----------------------------------------------------------------------

function setLive(change: Partial<LiveState>): void {
  if (live.value) live.value = { ...live.value, ...change };
}

/** Join a session (again): the lobby, or the session with media. */
export async function joinSession(sessionId: number): Promise<void> {
  const s = live.value;
  if (s && s.sessionId === sessionId && !ENDED_PHASES.includes(s.phase) && engine && !engine.closed) return;
  if (engine) stopEngine();
  const e = new Engine(sessionId);
  engine = e;
  live.value = {
    sessionId,
    phase: "joining",
    summary: null,
    view: null,
    you: null,
    error: null,
    endedReason: null,
    hostMute: null,
    qaStreams: [],
  };
  liveQuestions.value = {};
  await enter(e);
}

// Joining again while the session moves between servers (or this connection's server restarts)
// may be answered unavailable or not_found for a moment, or not at all (docs/protocol.md §9.3):
// try again.
const REJOIN_TRIES = 20;
const REJOIN_WAIT_MS = 500;

async function enter(e: Engine): Promise<void> {
  let ack: JoinAck;
  for (let attempt = 1; ; attempt++) {
    try {
      ack = await request<JoinAck>("session.join", { session_id: e.sessionId });
      break;
    } catch (err) {
      const error = asApiError(err);
      // (timeout: the request went to a server that stopped before answering it.)
      const retry = ["unavailable", "offline", "timeout", ...(e.again ? ["not_found"] : [])];
      const moving = retry.includes(error.code);
      if (alive(e) && moving && attempt < REJOIN_TRIES) {
        await new Promise((resolve) => setTimeout(resolve, REJOIN_WAIT_MS));
        if (alive(e)) continue;
      }
      if (alive(e)) {
        setLive({ phase: "failed", error });
        stopEngine();
      }
      return;
    }
  }
  if (!alive(e)) return;
  e.iceServers = ack.ice_servers ?? [];
  if (ack.you.in_lobby) {
    setLive({ phase: "lobby", summary: ack.session, you: ack.you });
    return;
  }
  admitted(e, ack.session as SessionView, ack.you, ack.qa_streams);
}

function admitted(e: Engine, view: SessionView, you: LiveParticipant, qaStreams: string[]): void {
  setLive({ phase: "live", summary: view, view, you, qaStreams });
  void followQuestions(e, view, you, qaStreams);
  void subscribe(e);
  if (mayPublish(you)) void publishCamera(e);
}

/** Who sends their camera and microphone from the start (students only once on stage). */
function mayPublish(p: LiveParticipant): boolean {
  return p.role !== "student" || p.on_stage;
}

function stopLocal(): void {
  const m = local.value;
  for (const s of [m.camera, m.screen]) s?.getTracks().forEach((tr) => tr.stop());
  local.value = { camera: null, screen: null, error: null };
}

function stopEngine(): void {
  engine?.close();
  engine = null;
  feeds.value = [];
  soundBlocked.value = false;
}

/** Leave the console: tell the server (unless it is over already) and let go of the devices. */
export function leaveSession(): void {
  const s = live.value;
  const e = engine;
  stopEngine();
  stopLocal();
  live.value = null;
  liveQuestions.value = {};
  if (s && e && !ENDED_PHASES.includes(s.phase)) {
    void request("session.leave", { session_id: s.sessionId }).catch(() => undefined);
  }
}

function finish(phase: Phase, reason: string | null = null): void {
  const s = live.value;
  if (!s) return;
  stopEngine();
  stopLocal();
  setLive({ phase, endedReason: reason });
  if (phase === "ended") forgetSession(s.sessionId);
}

/** Join the current session again with new peer connections: publish again, subscribe again. */
function joinAgain(): void {
  const s = live.peek();
  if (!s || !engine || (s.phase !== "live" && s.phase !== "lobby")) return;
  engine.close();
  // The new publish leg sends the camera and microphone again, and a screen still shared (the
  // browser's capture outlives the peer connection): the lesson goes on as it was.
  const e = new Engine(s.sessionId, true);
  engine = e;
  feeds.value = [];
  void enter(e);
}

/** The Socket.IO connection came back. The media never went through it: if the server still
 * has our peer connections (within its grace period), they go on as they are ("resume", no
 * new negotiation, no freeze); otherwise join again with new ones. */
async function resumeOrJoinAgain(): Promise<void> {
  const s = live.peek();
  const e = engine;
  if (!s || !e || s.phase !== "live" || !s.you || !e.resumable(mayPublish(s.you))) {
    joinAgain();
    return;
  }
  try {
    const ack = await request<JoinAck>("session.join", { session_id: e.sessionId, resume: true });
    if (!alive(e)) return;
    if (ack.resumed) {
      e.iceServers = ack.ice_servers ?? e.iceServers;
      const view = ack.session as SessionView;
      setLive({ you: ack.you, ...(ack.you.in_lobby ? {} : { view, summary: view }) });
      return;
    }
  } catch {
    // (its server is restarting, or the session moved: start over below)
  }
  if (alive(e)) joinAgain();
}

let wasConnected = false;
status.subscribe((st) => {
  if (st === "connected") {
    if (wasConnected === false) void resumeOrJoinAgain();
    wasConnected = true;
  } else if (st === "reconnecting") {
    wasConnected = false;
  }
});

// The session moved to another server (its server was lost or is restarting): the
// session.moved event in a class stream says so, live or on catching up. Join it there; a dual
// lesson announces it in every classroom's stream, so once per new server.
let movedTo = "";
onStream("class", (ev) => {
  if (ev.type !== "session.moved") return;
  const d = ev.data as SessionSummary & { node: string };
  if (!current(d.id) || movedTo === `${d.id}@${d.node}`) return;
  movedTo = `${d.id}@${d.node}`;
  toast(t("live.moved"), "info");
  joinAgain();
});

// --- publishing ------------------------------------------------------------------------------

async function openCamera(): Promise<MediaStream | null> {
  const existing = local.value.camera;
  if (existing && existing.getTracks().some((tr) => tr.readyState === "live")) return existing;
  if (!navigator.mediaDevices?.getUserMedia) {
    local.value = { ...local.value, error: t("live.noDevices") };
    return null;
  }
  let stream: MediaStream | null = null;
  try {
    stream = await navigator.mediaDevices.getUserMedia(mediaConstraints(live.value?.sessionId ?? 0));
  } catch {
    try {
      stream = await navigator.mediaDevices.getUserMedia({ audio: true });
    } catch (err) {
      local.value = { ...local.value, error: t("live.deviceFailed", describeDeviceError(err)) };
      return null;
    }
  }
  local.value = { ...local.value, camera: stream, error: null };
  return stream;
}

/** Send the camera and microphone (opening them first). */
async function publishCamera(e: Engine): Promise<void> {
  // What the join preview turned off is off at the server before the first frame is sent.
  const off = mutesToApply(e.sessionId);
  if (off) await act("media.mute_self", off);
  const stream = await openCamera();
  if (!stream || !alive(e)) return;
  applyMutes();
  const leg = e.leg("publish");
  for (const track of stream.getTracks()) {
    attach(e, leg, track.kind === "video" ? "camera" : "microphone", track, stream);
    if (track.kind === "video") attachCameraLayers(e, leg, track, stream);
  }
  // Joining again (the session moved, the connection came back): the screen still shared.
  const screen = local.value.screen;
  const shared = screen?.getVideoTracks().find((tr) => tr.readyState === "live");
  if (screen && shared) attach(e, leg, "screen", shared, screen);
  applyMutes();
  await negotiate(e);
}

// The camera in three qualities (docs/media.md, "Layers per viewer"): the full picture on the
// camera's own m-line, a half-size and a quarter-size encoding of the same camera on two more.
// Each viewer gets the one its connection carries; nothing is re-encoded on the server.
const CAMERA_TOP_BITRATE = 800_000;
const CAMERA_LAYERS: RTCRtpEncodingParameters[] = [
  { scaleResolutionDownBy: 4, maxBitrate: 100_000 },
  { scaleResolutionDownBy: 2, maxBitrate: 300_000 },
];

function attachCameraLayers(e: Engine, leg: Leg, track: MediaStreamTrack, stream: MediaStream): void {
  CAMERA_LAYERS.forEach((encoding, i) => {
    const clone = track.clone();
    const tr = e.cameraLayers[i];
    if (tr && tr.currentDirection !== "stopped") {
      tr.sender.track?.stop();
      void tr.sender.replaceTrack(clone);
      tr.direction = "sendonly";
    } else {
      e.cameraLayers[i] = leg.pc.addTransceiver(clone, { direction: "sendonly", streams: [stream], sendEncodings: [encoding] });
    }
  });
}

/** mid -> layer index of the camera's m-lines (lowest first, the camera's own last). */
function cameraLayerMids(e: Engine): Record<string, number> {
  const camera = e.senders.camera;
  const layers = [...e.cameraLayers, camera];
  if (layers.some((tr) => !tr?.mid || tr.direction !== "sendonly")) return {};
  return Object.fromEntries(layers.map((tr, i) => [tr!.mid!, i]));
}

/** The screen in VP8 with temporal layers (docs/media.md, "Screen share"): the server sends each
 *  viewer the frame rate its link carries (full, 1/2, 1/4), always at full resolution. The
 *  first mode the browser takes; one plain encoding if it refuses them all. */
const SCREEN_SCALABILITY = ["L1T3", "L1T2"];

function addScreen(leg: Leg, track: MediaStreamTrack, stream: MediaStream): RTCRtpTransceiver {
  for (const scalabilityMode of SCREEN_SCALABILITY) {
    try {
      // (WebRTC-SVC's field; TypeScript's DOM types do not have it yet.)
      const encoding: RTCRtpEncodingParameters & { scalabilityMode: string } = { scalabilityMode };
      return leg.pc.addTransceiver(track, { direction: "sendonly", streams: [stream], sendEncodings: [encoding] });
    } catch {
      // Not supported here: the next one.
    }
  }
  return leg.pc.addTransceiver(track, { direction: "sendonly", streams: [stream] });
}

function attach(e: Engine, leg: Leg, source: MediaSource, track: MediaStreamTrack, stream: MediaStream): void {
  const tr = e.senders[source];
  if (tr && tr.currentDirection !== "stopped") {
    void tr.sender.replaceTrack(track);
    tr.direction = "sendonly";
  } else {
    const sendEncodings = source === "camera" ? [{ maxBitrate: CAMERA_TOP_BITRATE }] : undefined;
    e.senders[source] =
      source === "screen"
        ? addScreen(leg, track, stream)
        : leg.pc.addTransceiver(track, { direction: "sendonly", streams: [stream], sendEncodings });
    if (source === "screen") {
      const params = e.senders[source]!.sender.getParameters();
      params.degradationPreference = "maintain-resolution";
      void e.senders[source]!.sender.setParameters(params).catch(() => undefined);
    }
  }
}

/** Stop sending one source: its m-line goes inactive (the server ends the track). */
function detach(e: Engine, source: MediaSource): boolean {
  const tr = e.senders[source];
  if (source === "camera") {
    for (const layer of e.cameraLayers) {
      if (layer.direction === "inactive") continue;
      layer.sender.track?.stop();
      void layer.sender.replaceTrack(null);
      layer.direction = "inactive";
    }
  }
  if (!tr || tr.direction === "inactive") return false;
  void tr.sender.replaceTrack(null);
  tr.direction = "inactive";
  return true;
}

/** A new offer on the publish leg; one at a time, and changes made meanwhile share the next. */
function negotiate(e: Engine): Promise<void> {
  if (e.negotiationQueued) return e.pubChain;
  e.negotiationQueued = true;
  e.pubChain = e.pubChain.then(async () => {
    e.negotiationQueued = false;
    if (!alive(e) || !e.pub) return;
    const leg = e.pub;
    try {
      await leg.pc.setLocalDescription(await leg.pc.createOffer());
      const sources: Record<string, MediaSource> = {};
      for (const [source, tr] of Object.entries(e.senders)) if (tr?.mid) sources[tr.mid] = source as MediaSource;
      const layers = cameraLayerMids(e);
      for (const mid of Object.keys(layers)) sources[mid] = "camera";
      const ack = await request<PublishAck>(
        "rtc.publish",
        { session_id: e.sessionId, sdp: leg.pc.localDescription!.sdp, sources, layers },
        20_000,
      );
      if (!alive(e)) return;
      await leg.pc.setRemoteDescription({ type: "answer", sdp: ack.sdp });
      e.ready(leg);
      for (const r of ack.rejected) toast(t("live.rejected", sourceName(r.source), r.reason), "error");
    } catch (err) {
      if (alive(e)) toast(t("live.publishFailed", describeError(asApiError(err))), "error");
    }
  });
  return e.pubChain;
}

export function sourceName(source: string): string {
  return t(source === "screen" ? "live.source.screen" : source === "microphone" ? "live.source.microphone" : "live.source.camera");
}

/** Stop sending the camera and microphone and let go of them (off stage, unpublished). */
function unpublishCamera(e: Engine | null): void {
  if (e && alive(e)) {
    const a = detach(e, "camera");
    const b = detach(e, "microphone");
    if (a || b) void negotiate(e);
  }
  local.value.camera?.getTracks().forEach((tr) => tr.stop());
  local.value = { ...local.value, camera: null };
}

export async function toggleScreen(): Promise<void> {
  const e = engine;
  if (!e || !alive(e)) return;
  const current = local.value.screen;
  if (current) {
    current.getTracks().forEach((tr) => tr.stop());
    local.value = { ...local.value, screen: null };
    if (detach(e, "screen")) await negotiate(e);
    return;
  }
  let stream: MediaStream;
  try {
    stream = await navigator.mediaDevices.getDisplayMedia({ video: true, audio: false });
  } catch (err) {
    toast(t("live.screenFailed", describeDeviceError(err)), "error");
    return;
  }
  if (!alive(e)) {
    stream.getTracks().forEach((tr) => tr.stop());
    return;
  }
  const track = stream.getVideoTracks()[0];
  // Text must stay readable: under a short uplink the encoder keeps the resolution and lowers
  // the frame rate first, and so does the server for a viewer's short downlink (temporal
  // layers, attach below; docs/media.md, "Screen share").
  track.contentHint = "detail";
  // The browser's own "stop sharing" button.
  track.addEventListener("ended", () => {
    if (local.value.screen === stream) void toggleScreen();
  });
  local.value = { ...local.value, screen: stream };
  attach(e, e.leg("publish"), "screen", track, stream);
  await negotiate(e);
}

// --- receiving ---------------------------------------------------------------------------------

async function subscribe(e: Engine): Promise<void> {
  e.leg("subscribe");
  try {
    const ack = await request<{ offer: SubscribeOffer | null }>("rtc.subscribe", { session_id: e.sessionId });
    if (ack.offer && alive(e)) queueOffer(e, ack.offer);
  } catch (err) {
    if (alive(e)) toast(t("live.subscribeFailed", describeError(asApiError(err))), "error");
  }
}

function queueOffer(e: Engine, msg: SubscribeOffer): void {
  e.subChain = e.subChain
    .then(() => answerOffer(e, msg))
    .catch((err) => {
      if (alive(e)) toast(t("live.subscribeFailed", describeError(asApiError(err))), "error");
    });
}

async function answerOffer(e: Engine, msg: SubscribeOffer): Promise<void> {
  if (!alive(e) || !e.sub) return;
  const leg = e.sub;
  e.tracksByMid = Object.fromEntries(msg.tracks.map((tr) => [tr.mid, tr]));
  await leg.pc.setRemoteDescription({ type: "offer", sdp: msg.sdp });
  await leg.pc.setLocalDescription(await leg.pc.createAnswer());
  await request("rtc.answer", { session_id: e.sessionId, sdp: leg.pc.localDescription!.sdp });
  if (!alive(e)) return;
  e.ready(leg);
  rebuildFeeds(e);
}

/** The tracks of the subscribe leg, grouped per publisher and source (the same MediaStream as
 *  long as its tracks stay the same, so video elements do not restart). */
function rebuildFeeds(e: Engine): void {
  const groups = new Map<string, { publisherId: number; group: Feed["group"]; tracks: MediaStreamTrack[]; paused: boolean }>();
  for (const tr of e.sub?.pc.getTransceivers() ?? []) {
    const info = tr.mid ? e.tracksByMid[tr.mid] : undefined;
    if (!info) continue;
    const group = info.source === "screen" || info.source === "screen_audio" ? "screen" : "camera";
    const key = `${info.publisher_id}:${group}`;
    let g = groups.get(key);
    if (!g) groups.set(key, (g = { publisherId: info.publisher_id, group, tracks: [], paused: false }));
    g.tracks.push(tr.receiver.track);
    if (e.pausedTracks.has(info.track_id)) g.paused = true;
  }
  const before = new Map(feeds.value.map((f) => [f.key, f]));
  const next: Feed[] = [];
  for (const [key, g] of groups) {
    const old = before.get(key);
    const oldTracks = old?.stream.getTracks() ?? [];
    const same = old && oldTracks.length === g.tracks.length && g.tracks.every((tr) => oldTracks.includes(tr));
    next.push({
      key,
      publisherId: g.publisherId,
      group: g.group,
      stream: same ? old.stream : new MediaStream(g.tracks),
      video: g.tracks.some((tr) => tr.kind === "video"),
      audio: g.tracks.some((tr) => tr.kind === "audio"),
      videoPaused: g.paused,
    });
  }
  feeds.value = next;
}

// --- pushes ------------------------------------------------------------------------------------

function current(sessionId: number): LiveState | null {
  const s = live.value;
  return s && s.sessionId === sessionId && engine ? s : null;
}

function applyView(view: SessionView): void {
  const s = current(view.id);
  if (!s || s.phase !== "live") return;
  const me = myId();
  const you = view.participants.find((p) => p.user_id === me) ?? s.you;
  const wasOnStage = !!s.you?.on_stage;
  setLive({ view, summary: view, you });
  if (you && you.role === "student") {
    if (wasOnStage && !you.on_stage) unpublishCamera(engine);
  }
  applyMutes();
}

/** Local tracks follow what the server says is muted (by me or by the host). */
function applyMutes(): void {
  const you = live.value?.you;
  const cam = local.value.camera;
  if (!you || !cam) return;
  for (const tr of cam.getAudioTracks()) tr.enabled = !you.self_muted.includes("audio") && !you.muted_by_host.includes("audio");
  const video = !you.self_muted.includes("video") && !you.muted_by_host.includes("video");
  for (const tr of cam.getVideoTracks()) tr.enabled = video;
  for (const layer of engine?.cameraLayers ?? []) if (layer.sender.track) layer.sender.track.enabled = video;
}

on<SessionView>("session.state", applyView);

// The layer of a track my connection receives: -1 = video paused for my connection (audio goes
// on); it comes back by itself when the connection recovers.
on<{ session_id: number; track_id: string; layer: number; video_paused: boolean }>("media.layer", (d) => {
  if (!current(d.session_id) || !engine) return;
  if (d.video_paused) engine.pausedTracks.add(d.track_id);
  else engine.pausedTracks.delete(d.track_id);
  rebuildFeeds(engine);
});

on<{ session_id: number; status: string; session?: SessionView; you?: LiveParticipant }>("session.lobby", (d) => {
  const s = current(d.session_id);
  if (!s || !engine) return;
  if (d.status === "waiting") {
    if (s.phase !== "lobby") setLive({ phase: "lobby" });
  } else if (d.status === "admitted" && d.session && d.you) {
    if (s.phase === "lobby") {
      toast(t("live.admitted"), "success");
      admitted(engine, d.session, d.you, []);
    }
  } else if (d.status === "declined") {
    finish("declined");
  }
});

// A classroom was linked into the dual lesson: the master teachers also follow its questions.
on<{ session_id: number; qa_streams: string[] }>("session.qa_streams", (d) => {
  const s = current(d.session_id);
  if (!s || s.phase !== "live" || !s.view || !s.you || !engine) return;
  const fresh = d.qa_streams.filter((x) => !s.qaStreams.includes(x));
  if (!fresh.length) return;
  setLive({ qaStreams: [...s.qaStreams, ...fresh] });
  void followQuestions(engine, s.view, s.you, fresh);
});

on<{ session_id: number; reason: string }>("session.ended", (d) => {
  if (current(d.session_id)) finish("ended", d.reason);
  else forgetSession(d.session_id);
});

on<{ session_id: number }>("session.removed", (d) => {
  if (current(d.session_id)) finish("removed");
});

on<{ session_id: number }>("stage.invited", (d) => {
  const s = current(d.session_id);
  if (s?.you) setLive({ you: { ...s.you, invited: true } });
});

on<{ session_id: number; by: number; muted_by_host: string[] }>("media.muted", (d) => {
  const s = current(d.session_id);
  if (!s?.you) return;
  const muted = d.muted_by_host as ("audio" | "video")[];
  setLive({ hostMute: muted.length ? { by: d.by, kinds: muted } : null, you: { ...s.you, muted_by_host: muted } });
  applyMutes();
  toast(muted.length ? t("live.mutedByHostToast") : t("live.unmutedByHostToast"), muted.length ? "info" : "success");
});

on<SubscribeOffer>("rtc.offer", (msg) => {
  const e = engine;
  if (e && alive(e) && msg.session_id === e.sessionId && e.sub) queueOffer(e, msg);
});

// The server that delivered this page's media as an edge of a big lesson was lost: a fresh
// subscribe connection, which the lesson serves from another server (docs/protocol.md §9.4).
on<{ session_id: number; reason: string }>("rtc.resubscribe", (d) => {
  const e = engine;
  if (!e || !alive(e) || d.session_id !== e.sessionId || !e.sub) return;
  e.sub.pc.close();
  e.sub = null;
  e.tracksByMid = {};
  e.resubscribed = subscribe(e);
});

// The server this page published on as an edge of a big lesson was lost, and with it what it
// sent: a fresh publish connection with the same camera, microphone and screen, once the
// subscribe connection told before this has been placed again (so on the server that serves
// the page next; docs/protocol.md §9.4).
on<{ session_id: number; reason: string }>("rtc.republish", (d) => {
  const e = engine;
  if (!e || !alive(e) || d.session_id !== e.sessionId || !e.pub || !local.value.camera) return;
  e.pub.pc.close();
  e.pub = null;
  e.senders = {};
  for (const layer of e.cameraLayers) layer.sender.track?.stop(); // clones made afresh
  e.cameraLayers = [];
  void e.resubscribed.then(() => (alive(e) ? publishCamera(e) : undefined));
});

on<{ session_id: number; source: MediaSource; reason: string }>("rtc.unpublished", (d) => {
  const e = engine;
  if (!e || !alive(e) || d.session_id !== e.sessionId) return;
  if (d.source === "screen" || d.source === "screen_audio") {
    local.value.screen?.getTracks().forEach((tr) => tr.stop());
    local.value = { ...local.value, screen: null };
    if (detach(e, d.source)) void negotiate(e);
  } else {
    unpublishCamera(e);
  }
});

// --- requests ---------------------------------------------------------------------------------

/** A live request; a refusal is shown as a toast. Answers with a session view update the page. */
async function act(event: string, payload: Record<string, unknown> = {}): Promise<boolean> {
  const s = live.value;
  if (!s) return false;
  try {
    const ack = await request<{ session?: SessionView }>(event, { session_id: s.sessionId, ...payload });
    if (ack.session && "participants" in ack.session) applyView(ack.session);
    return true;
  } catch (err) {
    toast(t("live.refused", describeError(asApiError(err))), "error");
    return false;
  }
}

export function micOn(you: LiveParticipant | null): boolean {
  return !!you && !you.self_muted.includes("audio") && !you.muted_by_host.includes("audio");
}

export function camOn(you: LiveParticipant | null): boolean {
  return !!you && !you.self_muted.includes("video") && !you.muted_by_host.includes("video");
}

export async function setMic(on: boolean): Promise<void> {
  if (await act("media.mute_self", { audio: !on })) applyMutes();
}

export async function setCamera(on: boolean): Promise<void> {
  if (await act("media.mute_self", { video: !on })) applyMutes();
}

export const raiseHand = () => act("hand.raise", {});
export const raiseClassroomHand = () => act("hand.raise", { classroom: true });
export const lowerHand = (hand?: string) => act("hand.lower", hand ? { hand } : {});
export const inviteOnStage = (userId: number) => act("stage.invite", { user_id: userId });
export const removeFromStage = (userId: number) => act("stage.remove", { user_id: userId });
export const setStagePlaces = (places: number) => act("stage.places", { places });
export const classroomOnStage = (classId: number | null) => act("classroom.stage", { class_id: classId });
export const muteAll = () => act("moderate.mute_all");
export const lockMeeting = (locked: boolean) => act("moderate.lock", { locked });
export const removePerson = (userId: number) => act("moderate.remove", { user_id: userId });
export const hostMute = (userId: number, audio: boolean) => act("moderate.mute", { user_id: userId, audio });
export const transferHost = (userId: number) => act("host.transfer", { user_id: userId });

export async function acceptStage(): Promise<void> {
  const e = engine;
  if (e && (await act("stage.accept"))) await publishCamera(e);
}

export const declineStage = () => act("stage.decline");

export async function admit(userIds: number[] | null): Promise<void> {
  await act("lobby.admit", { user_ids: userIds });
}

export async function declineLobby(userIds: number[]): Promise<void> {
  await act("lobby.decline", { user_ids: userIds });
}

export async function endSession(): Promise<void> {
  await act("session.end");
}

// --- the session's questions -------------------------------------------------------------------

async function followQuestions(e: Engine, view: SessionView, you: LiveParticipant, streams: string[]): Promise<void> {
  if (!streams.length) return;
  try {
    // From the start: the events rebuild every question (asked, answered, voted, moved).
    for (const stream of streams) await follow(stream, 0);
    if (you.role === "student" && alive(e)) {
      // What the events do not say: which ones I asked and voted for.
      const ack = await request<{ questions: Question[] }>("question.list", {
        class_id: you.class_id,
        session_id: view.id,
      });
      if (alive(e)) for (const q of ack.questions) mergeQuestion(q);
    }
  } catch {
    // The next sync brings them.
  }
}

function mergeQuestion(q: Question): void {
  const prev = liveQuestions.value[q.id];
  liveQuestions.value = {
    ...liveQuestions.value,
    [q.id]: { ...q, voted: q.voted ?? prev?.voted ?? false, mine: q.mine ?? prev?.mine ?? false },
  };
}

onStream("qa", (ev) => {
  const s = live.value;
  if (!s || !s.qaStreams.includes(ev.stream)) return;
  const d = ev.data as Record<string, any>;
  if (ev.type === "question.asked" || ev.type === "question.updated") mergeQuestion(d as Question);
  else if (ev.type === "question.voted") {
    const q = liveQuestions.value[d.question_id];
    if (q) liveQuestions.value = { ...liveQuestions.value, [q.id]: { ...q, votes: d.votes } };
  } else if (ev.type === "question.moved") {
    const { [d.question_id]: _moved, ...rest } = liveQuestions.value;
    liveQuestions.value = rest;
  }
});

/** Open questions by votes (most first), then the answered ones; withdrawn and dismissed last. */
export function sessionQuestions(): Question[] {
  const rank = (q: Question) => (q.status === "open" ? 0 : q.status === "dismissed" ? 2 : 1);
  return Object.values(liveQuestions.value)
    .filter((q) => q.status !== "withdrawn")
    .sort((a, b) => rank(a) - rank(b) || b.votes - a.votes || a.id - b.id);
}

export async function askInSession(body: string, anonymous: boolean): Promise<void> {
  const s = live.value;
  if (!s?.you) throw new ApiError("offline", "not in a session");
  const ack = await request<{ question: Question }>("question.ask", {
    class_id: s.you.class_id,
    client_id: newClientId(),
    body,
    anonymous,
    session_id: s.sessionId,
  });
  mergeQuestion({ ...ack.question, mine: true });
}

export async function voteInSession(q: Question, up: boolean): Promise<void> {
  const ack = await request<{ votes: number; voted: boolean }>("question.vote", { question_id: q.id, up });
  const cur = liveQuestions.value[q.id];
  if (cur) liveQuestions.value = { ...liveQuestions.value, [q.id]: { ...cur, votes: ack.votes, voted: ack.voted } };
}

async function moderateQuestion(q: Question, event: string, payload: Record<string, unknown>): Promise<void> {
  const ack = await request<{ question: Question }>(event, { question_id: q.id, ...payload });
  mergeQuestion(ack.question);
}

export const answerInSession = (q: Question, text: string) => moderateQuestion(q, "question.answer", { answer: text });
export const answeredLiveInSession = (q: Question) => moderateQuestion(q, "question.answer", { live: true });
export const dismissInSession = (q: Question) => moderateQuestion(q, "question.dismiss", {});

// --- sound, statistics ---------------------------------------------------------------------------

/** What getStats() says about one leg (for people curious about quality, and for the tests). */
async function legStats(leg: Leg | null, tracksByMid: Record<string, OfferTrack>) {
  if (!leg) return null;
  const report = await leg.pc.getStats();
  const byId = new Map<string, any>();
  report.forEach((r: any) => byId.set(r.id, r));
  const out = {
    connection: leg.pc.connectionState,
    inbound: [] as Record<string, unknown>[],
    outbound: [] as Record<string, unknown>[],
    pair: null as null | Record<string, unknown>,
  };
  let pairId: string | null = null;
  report.forEach((r: any) => {
    if (r.type === "transport" && r.selectedCandidatePairId) pairId = r.selectedCandidatePairId;
    if (r.type === "inbound-rtp") {
      const info = tracksByMid[r.mid] ?? ({} as Partial<OfferTrack>);
      out.inbound.push({
        kind: r.kind,
        mid: r.mid,
        publisher_id: info.publisher_id ?? null,
        source: info.source ?? null,
        packets: r.packetsReceived ?? 0,
        framesDecoded: r.framesDecoded ?? 0,
        width: r.frameWidth ?? null,
        height: r.frameHeight ?? null,
      });
    } else if (r.type === "outbound-rtp") {
      out.outbound.push({
        kind: r.kind,
        mid: r.mid,
        packets: r.packetsSent ?? 0,
        framesEncoded: r.framesEncoded ?? 0,
        width: r.frameWidth ?? null,
        height: r.frameHeight ?? null,
      });
    }
  });
  const pair = pairId ? byId.get(pairId) : null;
  if (pair) {
    const side = (c: any) => c && { address: c.address ?? c.ip, port: c.port, type: c.candidateType, protocol: c.protocol };
    out.pair = { state: pair.state, local: side(byId.get(pair.localCandidateId)), remote: side(byId.get(pair.remoteCandidateId)) };
  }
  return out;
}

export async function mediaStats() {
  const e = engine;
  const s = live.value;
  return {
    phase: s?.phase ?? null,
    session_id: s?.sessionId ?? null,
    you: s?.you ?? null,
    feeds: feeds.value.map((f) => ({ publisher_id: f.publisherId, group: f.group, video: f.video, audio: f.audio })),
    publish: e ? await legStats(e.pub, {}) : null,
    subscribe: e ? await legStats(e.sub, e.tracksByMid) : null,
  };
}

(window as unknown as { __homeroom: unknown }).__homeroom = {
  stats: mediaStats,
  live: () => live.value,
};

onReset(() => leaveSession());
