import { useEffect, useRef, useState } from "preact/hooks";
import { ApiError, asApiError } from "../api/errors";
import { t, tMaybe } from "../i18n";
import { describeDeviceError, describeError } from "../i18n/errors";
import {
  disablePush,
  enablePush,
  loadPushSettings,
  pushSupported,
  savePushSettings,
  subscribed,
} from "../state/push";
import type { PushSettings } from "../api/types";
import { toast } from "../state/toasts";
import { ErrorBox, Loading } from "./common";

/** Push notifications on this device, what to be pushed, and quiet hours (school time). */
export function NotifySettings(props: { onClose: () => void }) {
  const ref = useRef<HTMLDialogElement>(null);
  const [settings, setSettings] = useState<PushSettings | null>(null);
  const [kinds, setKinds] = useState<string[]>([]);
  const [quiet, setQuiet] = useState(false);
  const [start, setStart] = useState("21:30");
  const [end, setEnd] = useState("07:00");
  const [error, setError] = useState<ApiError | null>(null);
  const [busy, setBusy] = useState(false);

  useEffect(() => {
    ref.current?.showModal();
    loadPushSettings()
      .then((s) => {
        setSettings(s);
        setKinds(s.kinds);
        setQuiet(!!s.quiet_hours);
        if (s.quiet_hours) {
          setStart(s.quiet_hours.start);
          setEnd(s.quiet_hours.end);
        }
      })
      .catch((err) => setError(asApiError(err)));
  }, []);

  async function toggleDevice() {
    setBusy(true);
    setError(null);
    try {
      if (subscribed.value) await disablePush();
      else await enablePush();
    } catch (err) {
      // Never the server's or the browser's English: the catalogue's words for what failed.
      const why =
        err instanceof ApiError ? describeError(err) : (err as Error)?.message === "disabled" ? t("push.disabled") : describeDeviceError(err);
      toast((err as Error)?.message === "denied" ? t("push.denied") : `${t("push.failed")} ${why}`, "error", 8000);
    } finally {
      setBusy(false);
    }
  }

  async function save(e: Event) {
    e.preventDefault();
    setBusy(true);
    setError(null);
    try {
      setSettings(await savePushSettings(kinds, quiet ? { start, end } : null));
      toast(t("push.saved"), "success");
      ref.current?.close();
    } catch (err) {
      setError(asApiError(err));
    } finally {
      setBusy(false);
    }
  }

  return (
    <dialog ref={ref} class="dialog" aria-labelledby="push-title" onCancel={props.onClose} onClose={props.onClose}>
      <form class="form" onSubmit={save}>
        <h2 id="push-title" class="card-title">
          {t("push.title")}
        </h2>
        <p class="muted dialog-hint">{t("push.hint")}</p>
        <div class="field">
          {pushSupported ? (
            <button type="button" class="btn" disabled={busy || subscribed.value === null} onClick={toggleDevice}>
              {subscribed.value ? t("push.disable") : t("push.enable")}
            </button>
          ) : (
            <p class="muted">{t("push.unsupported")}</p>
          )}
        </div>
        {!settings && !error ? <Loading /> : null}
        {settings ? (
          <>
            <fieldset class="field">
              <legend class="field-label">{t("push.kinds")}</legend>
              {settings.available.map((k) => (
                <label class="check" key={k}>
                  <input
                    type="checkbox"
                    checked={kinds.includes(k)}
                    onChange={(e) => setKinds(e.currentTarget.checked ? [...kinds, k] : kinds.filter((x) => x !== k))}
                  />
                  <span>{tMaybe(`push.kind.${k}`, k)}</span>
                </label>
              ))}
            </fieldset>
            <fieldset class="field">
              <legend class="field-label">{t("push.quiet")}</legend>
              <label class="check">
                <input type="checkbox" checked={quiet} onChange={(e) => setQuiet(e.currentTarget.checked)} />
                <span>{t("push.quietOn")}</span>
              </label>
              {quiet ? (
                <div class="row">
                  <label>
                    {t("push.quietFrom")} <input type="time" value={start} required onInput={(e) => setStart(e.currentTarget.value)} />
                  </label>
                  <label>
                    {t("push.quietTo")} <input type="time" value={end} required onInput={(e) => setEnd(e.currentTarget.value)} />
                  </label>
                </div>
              ) : null}
              <p class="field-hint">{t("push.quietHint", settings.time_zone)}</p>
            </fieldset>
          </>
        ) : null}
        {error ? <ErrorBox error={error} /> : null}
        <div class="form-actions">
          <button type="button" class="btn" onClick={() => ref.current?.close()}>
            {t("common.cancel")}
          </button>
          <button type="submit" class="btn primary" disabled={busy || !settings}>
            {t("push.save")}
          </button>
        </div>
      </form>
    </dialog>
  );
}
