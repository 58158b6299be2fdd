// Files shown with a message, notice, question or answer: photo thumbnails (a viewer that swipes
// between a message's photos), voice messages played inline, documents to open.
import { useEffect, useRef, useState } from "preact/hooks";
import { fileLinks } from "../api/files";
import type { Attachment } from "../api/types";
import { t } from "../i18n";

function sizeText(n: number): string {
  if (n >= 1024 * 1024) return `${(n / 1024 / 1024).toFixed(1)} MB`;
  if (n >= 1024) return `${Math.round(n / 1024)} KB`;
  return `${n} B`;
}

function useLinks(ids: string[], variant: "original" | "preview" | "thumb"): Record<string, string> {
  const [links, setLinks] = useState<Record<string, string>>({});
  const key = ids.join(",");
  useEffect(() => {
    if (!ids.length) return;
    let live = true;
    fileLinks(ids, variant)
      .then((got) => live && setLinks(got))
      .catch(() => undefined);
    return () => {
      live = false;
    };
  }, [key, variant]);
  return links;
}

export function AttachmentList(props: { items: Attachment[] | undefined }) {
  const items = props.items ?? [];
  const photos = items.filter((a) => a.kind === "image");
  const others = items.filter((a) => a.kind !== "image");
  const thumbs = useLinks(photos.map((p) => p.id), "thumb");
  const originals = useLinks(others.map((p) => p.id), "original");
  const [open, setOpen] = useState<number | null>(null);
  if (!items.length) return null;
  return (
    <div class="attachments">
      {photos.length ? (
        <div class={`photo-grid n${Math.min(photos.length, 3)}`}>
          {photos.map((p, i) => (
            <button type="button" class="photo-thumb" key={p.id} onClick={() => setOpen(i)} aria-label={t("files.openPhoto", p.name)}>
              {thumbs[p.id] ? <img src={thumbs[p.id]} alt={p.name} loading="lazy" data-attachment={p.id} /> : <span class="photo-wait" />}
            </button>
          ))}
        </div>
      ) : null}
      {others.map((a) =>
        a.kind === "audio" ? (
          <div class="voice" key={a.id}>
            <audio controls preload="none" src={originals[a.id]} aria-label={t("files.voice")} />
            {a.duration_s !== null ? <span class="voice-len">{Math.round(a.duration_s)}″</span> : null}
          </div>
        ) : a.kind === "video" ? (
          <video key={a.id} class="video-att" controls preload="none" src={originals[a.id]} />
        ) : (
          <a key={a.id} class="file-att" href={originals[a.id]} target="_blank" rel="noopener">
            <span class="file-name">{a.name}</span>
            <span class="file-size">{sizeText(a.size)}</span>
          </a>
        ),
      )}
      {open !== null ? <PhotoViewer photos={photos} start={open} onClose={() => setOpen(null)} /> : null}
    </div>
  );
}

/** Full-screen photos: arrows, keys and swipes move between a message's photos. */
function PhotoViewer(props: { photos: Attachment[]; start: number; onClose: () => void }) {
  const [i, setI] = useState(props.start);
  const previews = useLinks(props.photos.map((p) => p.id), "preview");
  const touch = useRef<number | null>(null);
  const n = props.photos.length;
  const go = (d: number) => setI((x) => (x + d + n) % n);
  useEffect(() => {
    const onKey = (e: KeyboardEvent) => {
      if (e.key === "Escape") props.onClose();
      if (e.key === "ArrowRight") go(1);
      if (e.key === "ArrowLeft") go(-1);
    };
    document.addEventListener("keydown", onKey);
    return () => document.removeEventListener("keydown", onKey);
  }, [n]);
  const p = props.photos[i];
  return (
    <div
      class="photo-viewer"
      role="dialog"
      aria-modal="true"
      aria-label={t("files.viewer", i + 1, n)}
      onTouchStart={(e) => (touch.current = e.touches[0].clientX)}
      onTouchEnd={(e) => {
        if (touch.current === null) return;
        const dx = e.changedTouches[0].clientX - touch.current;
        touch.current = null;
        if (Math.abs(dx) > 40) go(dx < 0 ? 1 : -1);
      }}
    >
      <button type="button" class="viewer-close" onClick={props.onClose} aria-label={t("common.close")}>
        ×
      </button>
      {n > 1 ? (
        <button type="button" class="viewer-prev" onClick={() => go(-1)} aria-label={t("files.previous")}>
          ‹
        </button>
      ) : null}
      {previews[p.id] ? <img src={previews[p.id]} alt={p.name} /> : <span class="photo-wait" />}
      {n > 1 ? (
        <button type="button" class="viewer-next" onClick={() => go(1)} aria-label={t("files.next")}>
          ›
        </button>
      ) : null}
      <p class="viewer-count">
        {i + 1} / {n}
      </p>
    </div>
  );
}
