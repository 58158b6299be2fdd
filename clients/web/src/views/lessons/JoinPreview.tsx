// Before entering a lesson or meeting: see oneself, choose the camera and microphone, test them
// (the picture, a level meter that moves with one's voice), and turn either off, so that a parent
// at home decides before anyone sees or hears them (issue #16).
import { useEffect, useRef, useState } from "preact/hooks";
import { t } from "../../i18n";
import { setJoinChoice } from "../../state/devices";
import { Icon } from "../icons";
import { Video } from "./media";

interface Devices {
  cameras: MediaDeviceInfo[];
  mics: MediaDeviceInfo[];
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
  const [devices, setDevices] = useState<Devices>({ cameras: [], mics: [] });
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
