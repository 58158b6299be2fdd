import type { Notice, NoticeKind, ReceiptState } from "../../api/types";
import { t } from "../../i18n";

export function kindLabel(kind: NoticeKind): string {
  return t(`kind.${kind}`);
}

export function stateLabel(state: ReceiptState): string {
  return t(`receipt.${state}`);
}

/** My receipt of a notice, as one tag: what is still asked, or what I did. */
export function ReceiptTag(props: { n: Notice }) {
  const { n } = props;
  const r = n.receipt;
  if (n.kind === "confirm_required") {
    return r?.confirmed_at ? <span class="tag tag-ok">{t("receipt.confirmed")}</span> : <span class="tag tag-warn">{t("notices.toConfirm")}</span>;
  }
  if (n.kind === "reply_required") {
    return r?.reply ? (
      <span class="tag tag-ok">{t("notices.replied", r.reply)}</span>
    ) : (
      <span class="tag tag-warn">{t("notices.toReply")}</span>
    );
  }
  if (!r?.read_at) return <span class="tag tag-new">{t("notices.unread")}</span>;
  return <span class="tag">{t("receipt.read")}</span>;
}
