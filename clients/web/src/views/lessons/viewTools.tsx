// Watching one picture large: pin it over the stage (a classroom on stage in a dual-teacher
// lesson, a classmate showing their work) or watch it full screen. Each tile carries the two
// buttons (views/lessons/media.tsx); what is pinned is kept here, for this page only.
import { signal } from "@preact/signals";
import type { RefObject } from "preact";
import { useEffect, useState } from "preact/hooks";
import { t } from "../../i18n";
import { Icon } from "../icons";

/** The tile shown large over the stage (its key), or none. */
export const pinned = signal<string | null>(null);

export function ViewTools(props: { target: RefObject<HTMLElement>; pinKey: string; name: string }) {
  const [full, setFull] = useState(false);
  useEffect(() => {
    const onChange = () => setFull(document.fullscreenElement === props.target.current);
    document.addEventListener("fullscreenchange", onChange);
    return () => document.removeEventListener("fullscreenchange", onChange);
  }, []);
  const isPinned = pinned.value === props.pinKey;
  return (
    <div class="tile-view-tools">
      <button
        type="button"
        class={`btn icon small${isPinned ? " active" : ""}`}
        aria-pressed={isPinned}
        aria-label={isPinned ? t("live.unpinAria", props.name) : t("live.pinAria", props.name)}
        title={isPinned ? t("live.unpin") : t("live.pin")}
        onClick={() => (pinned.value = isPinned ? null : props.pinKey)}
      >
        <Icon name="pin" size={16} />
      </button>
      <button
        type="button"
        class="btn icon small"
        aria-label={full ? t("live.exitFullscreen") : t("live.fullscreenAria", props.name)}
        title={full ? t("live.exitFullscreen") : t("live.fullscreen")}
        onClick={() => {
          if (document.fullscreenElement) void document.exitFullscreen();
          else void props.target.current?.requestFullscreen?.();
        }}
      >
        <Icon name={full ? "shrink" : "expand"} size={16} />
      </button>
    </div>
  );
}
