// What a person chose in the join preview (views/lessons/JoinPreview.tsx) before entering a live
// session: camera and microphone on or off, and which ones. The live engine (state/live.ts) opens
// the chosen devices and, before anything is sent, tells the server what is off, so nobody sees
// or hears what the person turned off.

export interface JoinChoice {
  audio: boolean;
  video: boolean;
  /** deviceId of the chosen microphone and camera ("" : the browser's default). */
  audioInput: string;
  videoInput: string;
  /** deviceId of the chosen speaker or headphones ("": the system's default). */
  audioOutput?: string;
}

const choices = new Map<number, JoinChoice>();
const applied = new Set<number>();
const started = new Set<number>();

export function setJoinChoice(sessionId: number, choice: JoinChoice): void {
  choices.set(sessionId, choice);
  applied.delete(sessionId);
}

export function joinChoice(sessionId: number): JoinChoice | null {
  return choices.get(sessionId) ?? null;
}

/** The first time media is sent in this session: what to tell the server is off (then null). */
export function mutesToApply(sessionId: number): { audio?: boolean; video?: boolean } | null {
  const c = choices.get(sessionId);
  if (!c || applied.has(sessionId)) return null;
  applied.add(sessionId);
  if (c.audio && c.video) return null;
  return { ...(c.audio ? {} : { audio: true }), ...(c.video ? {} : { video: true }) };
}

/** The host who just started a session goes straight in (they chose to start it). */
export function startedHere(sessionId: number): void {
  started.add(sessionId);
}

export function needsPreview(sessionId: number): boolean {
  return !started.has(sessionId) && !choices.has(sessionId);
}

/** Constraints of getUserMedia for the chosen devices. */
export function mediaConstraints(sessionId: number): MediaStreamConstraints {
  const c = choices.get(sessionId);
  const video: MediaTrackConstraints = { width: { ideal: 640 }, height: { ideal: 480 } };
  if (c?.videoInput) video.deviceId = { exact: c.videoInput };
  return { video, audio: c?.audioInput ? { deviceId: { exact: c.audioInput } } : true };
}

/** Whether this browser lets a page choose where sound plays (setSinkId: Chromium, Edge,
 * Firefox 116+; not Safari): otherwise sound plays on the system's default output. */
export function canChooseSpeaker(): boolean {
  return typeof HTMLMediaElement !== "undefined" && "setSinkId" in HTMLMediaElement.prototype;
}

/** Play this element's sound on the chosen output, where the browser allows choosing. */
export async function routeSound(el: HTMLMediaElement, deviceId: string | undefined): Promise<void> {
  if (!deviceId || !canChooseSpeaker()) return;
  const media = el as HTMLMediaElement & { sinkId: string; setSinkId(id: string): Promise<void> };
  if (media.sinkId !== deviceId) await media.setSinkId(deviceId);
}

/** The speaker chosen in the preview of this session ("" for the default). */
export function speakerOf(sessionId: number): string {
  return choices.get(sessionId)?.audioOutput ?? "";
}
