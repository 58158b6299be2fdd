// Before entering a lesson or meeting: see oneself, choose the camera, microphone and speaker,
// test them (the picture, a level meter that moves with one's voice, a tone on the speaker), and
// turn either off, so that a parent at home decides before anyone sees or hears them (issue #16).
import { useEffect, useRef, useState } from "preact/hooks";
import { t } from "../../i18n";
import { canChooseSpeaker, routeSound, setJoinChoice } from "../../state/devices";
import { Icon } from "../icons";
import { Video } from "./media";

interface Devices {
  cameras: MediaDeviceInfo[];
  mics: MediaDeviceInfo[];
  speakers: MediaDeviceInfo[];
}

/** How long the speaker test plays: two soft notes, like a doorbell. */
const TONE_S = 1.6;

/** Play the test tone on the chosen speaker; "playing" until it ends, "failed" when the browser
 * refused (the chosen speaker is gone, or sound is not allowed). */
function useSpeakerTest(speakerId: string): { state: "idle" | "playing" | "failed"; play: () => void } {
  const [state, setState] = useState<"idle" | "playing" | "failed">("idle");
  const stop = useRef<(() => void) | null>(null);
  useEffect(() => () => stop.current?.(), []);
  function play() {
    stop.current?.();
    const ctx = new AudioContext();
    const out = ctx.createMediaStreamDestination();
    const gain = ctx.createGain();
    gain.connect(out);
    const t0 = ctx.currentTime + 0.05;
    gain.gain.setValueAtTime(0, t0);
    for (const [i, freq] of [659.25, 523.25].entries()) {
      const at = t0 + i * (TONE_S / 2);
      const osc = ctx.createOscillator();
      osc.frequency.value = freq;
      osc.connect(gain);
      gain.gain.linearRampToValueAtTime(0.3, at + 0.03);
      gain.gain.exponentialRampToValueAtTime(0.001, at + TONE_S / 2 - 0.05);
      osc.start(at);
      osc.stop(at + TONE_S / 2);
    }
    // Through an <audio> element: it, unlike the audio context, plays on a chosen output.
    const audio = new Audio();
    audio.dataset.testid = "speaker-tone";
    audio.srcObject = out.stream;
    document.body.appendChild(audio);
    let timer = 0;
    const end = (next: "idle" | "failed") => {
      window.clearTimeout(timer);
      audio.pause();
      audio.remove();
      void ctx.close();
      stop.current = null;
      setState(next);
    };
    stop.current = () => end("idle");
    setState("playing");
    routeSound(audio, speakerId)
      .then(() => ctx.resume())
      .then(() => audio.play())
      .then(() => {
        timer = window.setTimeout(() => end("idle"), TONE_S * 1000 + 200);
      })
      .catch(() => end("failed"));
  }
  return { state, play };
}

/** How loud the microphone is, 0 to 100, measured while the preview is open. */
function useLevel(stream: MediaStream | null, on: boolean): number {
  const [level, setLevel] = useState(0);
  useEffect(() => {
    if (!stream || !on || !stream.getAudioTracks().length) {
      setLevel(0);
      return;
    }
    const ctx = new AudioContext();
    const source = ctx.createMediaStreamSource(stream);
    const analyser = ctx.createAnalyser();
    analyser.fftSize = 512;
    source.connect(analyser);
    const data = new Float32Array(analyser.fftSize);
    let frame = 0;
    const tick = () => {
      analyser.getFloatTimeDomainData(data);
      let sum = 0;
      for (const x of data) sum += x * x;
      const rms = Math.sqrt(sum / data.length);
      // About -60 dBFS shows nothing, 0 dBFS fills the meter.
      const db = 20 * Math.log10(Math.max(rms, 1e-6));
      setLevel(Math.round(Math.max(0, Math.min(100, ((db + 60) / 60) * 100))));
      frame = requestAnimationFrame(tick);
    };
    void ctx.resume().then(tick);
    return () => {
      cancelAnimationFrame(frame);
      source.disconnect();
      void ctx.close();
    };
  }, [stream, on]);
  return level;
}

export function JoinPreview(props: { sessionId: number; startOff: boolean; onJoin: () => void }) {
  const [video, setVideo] = useState(!props.startOff);
  const [audio, setAudio] = useState(!props.startOff);
  const [camId, setCamId] = useState("");
  const [micId, setMicId] = useState("");
  const [speakerId, setSpeakerId] = useState("");
  const [devices, setDevices] = useState<Devices>({ cameras: [], mics: [], speakers: [] });
  const speaker = useSpeakerTest(speakerId);
  const [stream, setStream] = useState<MediaStream | null>(null);
  const [failed, setFailed] = useState(false);
  const current = useRef<MediaStream | null>(null);

  // Open the chosen devices for the preview (again when another one is chosen).
  useEffect(() => {
    let live = true;
    (async () => {
      current.current?.getTracks().forEach((tr) => tr.stop());
      if (!navigator.mediaDevices?.getUserMedia) {
        setFailed(true);
        return;
      }
      try {
        const s = await navigator.mediaDevices.getUserMedia({
          video: camId ? { deviceId: { exact: camId } } : true,
          audio: micId ? { deviceId: { exact: micId } } : true,
        });
        if (!live) {
          s.getTracks().forEach((tr) => tr.stop());
          return;
        }
        current.current = s;
        setStream(s);
        setFailed(false);
        const all = await navigator.mediaDevices.enumerateDevices();
        if (live) {
          setDevices({
            cameras: all.filter((d) => d.kind === "videoinput"),
            mics: all.filter((d) => d.kind === "audioinput"),
            speakers: all.filter((d) => d.kind === "audiooutput"),
          });
        }
      } catch {
        if (live) setFailed(true);
      }
    })();
    return () => {
      live = false;
    };
  }, [camId, micId]);

  // Let go of the devices when leaving the preview (the console opens its own).
  useEffect(() => () => current.current?.getTracks().forEach((tr) => tr.stop()), []);

  const level = useLevel(stream, audio);
  const camTrack = stream?.getVideoTracks()[0];
  const micTrack = stream?.getAudioTracks()[0];

  function join() {
    setJoinChoice(props.sessionId, {
      audio,
      video,
      audioInput: micId || micTrack?.getSettings().deviceId || "",
      videoInput: camId || camTrack?.getSettings().deviceId || "",
      audioOutput: speakerId,
    });
    current.current?.getTracks().forEach((tr) => tr.stop());
    current.current = null;
    props.onJoin();
  }

  return (
    <div class="page narrow">
      <section class="card join-preview" aria-labelledby="preview-title" data-testid="join-preview">
        <h1 id="preview-title" class="page-title">
          {t("preview.title")}
        </h1>
        <p class="muted">{t("preview.hint")}</p>
        <div class={`preview-video${video ? "" : " off"}`}>
          {video && stream && camTrack ? (
            <Video stream={stream} label={t("preview.myCamera")} mirror />
          ) : (
            <p class="preview-off" role="img" aria-label={t("preview.cameraIsOff")}>
              <Icon name="cameraOff" size={36} />
              <span>{failed ? t("preview.noDevices") : t("preview.cameraIsOff")}</span>
            </p>
          )}
        </div>
        <div class="preview-switches">
          <button type="button" class={`btn tool${audio ? "" : " off"}`} aria-pressed={audio} onClick={() => setAudio(!audio)}>
            <Icon name={audio ? "mic" : "micOff"} size={18} /> {audio ? t("preview.micOn") : t("preview.micOff")}
          </button>
          <button type="button" class={`btn tool${video ? "" : " off"}`} aria-pressed={video} onClick={() => setVideo(!video)}>
            <Icon name={video ? "video" : "cameraOff"} size={18} /> {video ? t("preview.camOn") : t("preview.camOff")}
          </button>
        </div>
        <label class="field">
          <span class="field-label">{t("preview.camera")}</span>
          <select data-testid="camera-choice" value={camId || camTrack?.getSettings().deviceId || ""} onChange={(e) => setCamId(e.currentTarget.value)}>
            {devices.cameras.map((d, i) => (
              <option key={d.deviceId} value={d.deviceId}>
                {d.label || t("preview.cameraN", i + 1)}
              </option>
            ))}
          </select>
        </label>
        <label class="field">
          <span class="field-label">{t("preview.microphone")}</span>
          <select data-testid="mic-choice" value={micId || micTrack?.getSettings().deviceId || ""} onChange={(e) => setMicId(e.currentTarget.value)}>
            {devices.mics.map((d, i) => (
              <option key={d.deviceId} value={d.deviceId}>
                {d.label || t("preview.micN", i + 1)}
              </option>
            ))}
          </select>
        </label>
        <div class="field">
          <span class="field-label" id="mic-level-label">
            {t("preview.micTest")}
          </span>
          <div class="level-meter" role="meter" aria-labelledby="mic-level-label" aria-valuemin={0} aria-valuemax={100} aria-valuenow={level} data-level={level}>
            <span style={{ width: `${level}%` }} />
          </div>
          <p class="field-hint">{audio ? t("preview.micTestHint") : t("preview.micIsOff")}</p>
        </div>
        {canChooseSpeaker() && devices.speakers.length > 1 ? (
          <label class="field">
            <span class="field-label">{t("preview.speaker")}</span>
            <select data-testid="speaker-choice" value={speakerId} onChange={(e) => setSpeakerId(e.currentTarget.value)}>
              {devices.speakers.map((d, i) => (
                <option key={d.deviceId} value={d.deviceId === "default" ? "" : d.deviceId}>
                  {d.label || t("preview.speakerN", i + 1)}
                </option>
              ))}
            </select>
          </label>
        ) : null}
        <div class="field">
          <span class="field-label">{t("preview.speakerTest")}</span>
          <button
            type="button"
            class="btn tool"
            data-testid="speaker-test"
            data-state={speaker.state}
            disabled={speaker.state === "playing"}
            onClick={speaker.play}
          >
            <Icon name="sound" size={18} /> {speaker.state === "playing" ? t("preview.tonePlaying") : t("preview.playTone")}
          </button>
          <p class="field-hint" role="status">
            {speaker.state === "failed" ? t("preview.toneFailed") : t("preview.toneHint")}
          </p>
        </div>
        <p class="muted">{audio || video ? t("preview.othersWill") : t("preview.othersWont")}</p>
        <div class="form-actions">
          <a class="btn" href="#/">
            {t("common.cancel")}
          </a>
          <button type="button" class="btn primary" onClick={join}>
            {t("preview.join")}
          </button>
        </div>
      </section>
    </div>
  );
}
