import { useEffect, useState } from "preact/hooks";
import { asApiError } from "../api/errors";
import { objectUrl } from "../api/rest";
import { t } from "../i18n";
import { describeError } from "../i18n/errors";
import { toast } from "../state/toasts";

/** A class's join code as a QR code to print, and its link to copy or share (into the parents'
 *  group of a chat app): for the class's teachers and the school's admins. */
export function JoinQr(props: { classId: number; className: string; code: string }) {
  const [qr, setQr] = useState<string | null>(null);
  useEffect(() => () => void (qr && URL.revokeObjectURL(qr)), [qr]);
  const link = `${location.origin}/#/join/${encodeURIComponent(props.code)}`;

  async function show() {
    try {
      setQr(await objectUrl(`/api/v1/classes/${props.classId}/join-qr.svg`));
    } catch (err) {
      toast(describeError(asApiError(err)), "error");
    }
  }

  async function copy() {
    try {
      await navigator.clipboard.writeText(`${t("qr.shareText", props.className)} ${link}`);
      toast(t("qr.copied"), "success");
    } catch {
      toast(t("qr.copyFailed", link), "error", 15000);
    }
  }

  async function share() {
    try {
      await navigator.share({ title: t("qr.shareTitle", props.className), text: t("qr.shareText", props.className), url: link });
    } catch {
      // cancelled: nothing to say
    }
  }

  if (!qr) {
    return (
      <button type="button" class="btn small" onClick={show}>
        {t("school.qr")}
      </button>
    );
  }
  return (
    <figure class="join-qr">
      <img src={qr} alt={t("school.qrAlt", props.className)} width={220} height={220} />
      <figcaption>
        {props.className} · <code>{props.code}</code>{" "}
        <button type="button" class="btn small" onClick={() => window.print()}>
          {t("school.print")}
        </button>{" "}
        <button type="button" class="btn small" onClick={() => void copy()}>
          {t("qr.copy")}
        </button>{" "}
        {"share" in navigator ? (
          <button type="button" class="btn small" onClick={() => void share()}>
            {t("qr.share")}
          </button>
        ) : null}
      </figcaption>
    </figure>
  );
}
