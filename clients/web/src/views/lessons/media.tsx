import type { ComponentChildren } from "preact";
import { useEffect, useRef } from "preact/hooks";
import { t } from "../../i18n";
import { speakerOf, routeSound } from "../../state/devices";
import { feeds, live, soundBlocked } from "../../state/live";
import { pinned, ViewTools } from "./viewTools";
import { Avatar } from "../common";
import { Icon } from "../icons";

/** A video element showing a stream. Always muted: sound plays through <AudioOut>. */
export function Video(props: { stream: MediaStream | null; label: string; mirror?: boolean }) {
  const ref = useRef<HTMLVideoElement>(null);
  useEffect(() => {
    const v = ref.current;
    if (!v) return;
    if (v.srcObject !== props.stream) v.srcObject = props.stream;
    if (props.stream) v.play().catch(() => undefined);
  }, [props.stream]);
  return (
    <video
      ref={ref}
      class={`video${props.mirror ? " mirror" : ""}`}
      autoPlay
      playsInline
      muted
      aria-label={props.label}
    />
  );
}

export interface TileProps {
  name: string;
  /** What this tile shows, for screen readers ("Ms. Li's camera"). */
  label: string;
  stream: MediaStream | null;
  /** Show the video (false: the person's initial instead). */
  video: boolean;
  mine?: boolean;
  big?: boolean;
  tag?: string;
  micOff?: boolean;
  hand?: boolean;
  testId?: string;
  /** A state of the picture to say over it ("video paused for your connection"). */
  notice?: string;
  children?: ComponentChildren;
}

/** One person's (or one classroom's) picture with a caption and optional controls; any picture
 *  can be pinned (shown large over the stage) or watched full screen. */
export function Tile(props: TileProps) {
  const ref = useRef<HTMLElement>(null);
  const key = props.testId ?? props.label;
  const isPinned = pinned.value === key;
  return (
    <figure
      ref={ref}
      class={`tile-video${props.big ? " big" : ""}${props.mine ? " mine" : ""}${isPinned ? " pinned" : ""}`}
      data-testid={props.testId}
    >
      {props.video && props.stream ? <ViewTools target={ref} pinKey={key} name={props.label} /> : null}
      {props.video && props.stream ? (
        <Video stream={props.stream} label={props.label} mirror={props.mine && !props.big} />
      ) : (
        <div class="video-off" role="img" aria-label={props.label}>
          <Avatar name={props.name} size={props.big ? 84 : 56} />
        </div>
      )}
      {props.notice ? (
        <p class="tile-notice" role="status">
          {props.notice}
        </p>
      ) : null}
      <figcaption class="tile-caption">
        {props.micOff ? (
          <span class="mic-off" title={t("live.micOff")}>
            <Icon name="micOff" size={14} />
            <span class="sr-only">{t("live.micOff")}</span>
          </span>
        ) : null}
        {props.hand ? (
          <span class="hand-flag" title={t("live.handRaised")}>
            <Icon name="hand" size={14} />
            <span class="sr-only">{t("live.handRaised")}</span>
          </span>
        ) : null}
        <span class="tile-name">{props.name}</span>
        {props.tag ? <span class="tile-tag">{props.tag}</span> : null}
      </figcaption>
      {props.children ? <div class="tile-actions">{props.children}</div> : null}
    </figure>
  );
}

/** The sound of everyone I receive. Browsers may refuse to play it before a click: then a button. */
export function AudioOut() {
  const list = feeds.value.filter((f) => f.audio);
  return (
    <div class="audio-out" aria-hidden={!soundBlocked.value}>
      {list.map((f) => (
        <Audio stream={f.stream} key={f.key} />
      ))}
      {soundBlocked.value ? (
        <button
          type="button"
          class="btn primary sound-button"
          onClick={() => {
            soundBlocked.value = false;
            document.querySelectorAll<HTMLAudioElement>(".audio-out audio").forEach((a) => {
              a.play().catch(() => (soundBlocked.value = true));
            });
          }}
        >
          <Icon name="sound" size={18} /> {t("live.enableSound")}
        </button>
      ) : null}
    </div>
  );
}

function Audio(props: { stream: MediaStream }) {
  const ref = useRef<HTMLAudioElement>(null);
  useEffect(() => {
    const a = ref.current;
    if (!a) return;
    a.srcObject = props.stream;
    // On the speaker chosen in the join preview (a failure keeps the default output).
    void routeSound(a, speakerOf(live.value?.sessionId ?? 0)).catch(() => undefined);
    a.play().catch((err: Error) => {
      if (err?.name === "NotAllowedError") soundBlocked.value = true;
    });
  }, [props.stream]);
  return <audio ref={ref} autoPlay />;
}
