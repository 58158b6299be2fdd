import { useEffect, useRef } from "preact/hooks";
import type { Notice } from "../../api/types";
import { formatDateTime, formatPercent, formatWhen, t } from "../../i18n";
import { classPath } from "../../router";
import { rolesIn } from "../../state/me";
import { boardOf, loadNotices, needsAction, receiptTicks, reminders } from "../../state/notices";
import { ready } from "../../state/session";
import { Empty, ErrorBox, Loading, PageHeader } from "../common";
import { Icon } from "../icons";
import { kindLabel, ReceiptTag } from "./labels";

export function NoticeList(props: { classId: number }) {
  const { classId } = props;
  const roles = rolesIn(classId);
  const board = boardOf(classId);

  useEffect(() => {
    void loadNotices(classId); // offline: the list as it was
  }, [classId, ready.value]);

  // Teachers: coverage numbers move as receipts come in; reload the list (at most once a second).
  const ticks = Object.values(receiptTicks.value).reduce((a, b) => a + b, 0);
  const timer = useRef<ReturnType<typeof setTimeout> | null>(null);
  useEffect(() => {
    if (!roles.staff || !ticks) return;
    if (timer.current) return;
    timer.current = setTimeout(() => {
      timer.current = null;
      void loadNotices(classId, true);
    }, 1000);
  }, [ticks]);
  useEffect(() => () => void (timer.current && clearTimeout(timer.current)), []);

  return (
    <div class="page">
      <PageHeader title={t("notices.title")} subtitle={roles.staff ? t("notices.subtitleStaff") : t("notices.subtitle")}>
        {roles.teacher ? (
          <a class="btn primary" href={`#${classPath(classId, "notices", "new")}`}>
            <Icon name="plus" size={18} /> {t("notices.new")}
          </a>
        ) : null}
      </PageHeader>
      {board.state === "error" && board.error ? <ErrorBox error={board.error} /> : null}
      {board.state === "none" || board.state === "loading" ? <Loading /> : null}
      {board.state === "loaded" && board.list.length === 0 ? <Empty>{t("notices.none")}</Empty> : null}
      <ul class="notice-list" aria-label={t("notices.title")}>
        {board.list.map((n) => (
          <NoticeCard n={n} staff={roles.staff} key={n.id} />
        ))}
      </ul>
    </div>
  );
}

function NoticeCard(props: { n: Notice; staff: boolean }) {
  const { n, staff } = props;
  const reminded = n.id in reminders.value;
  const todo = !staff && needsAction(n);
  return (
    <li>
      <a
        class={`notice-card${todo ? " todo" : ""}${reminded && todo ? " reminded" : ""}`}
        href={`#${classPath(n.class_id, "notices", n.id)}`}
        data-notice-id={n.id}
      >
        <div class="notice-card-top">
          <span class={`tag kind-${n.kind}`}>{kindLabel(n.kind)}</span>
          {staff ? <span class="tag">{t(`audience.${n.audience}`)}</span> : null}
          {!staff ? <ReceiptTag n={n} /> : null}
          <span class="notice-date">{formatWhen(n.created_at)}</span>
        </div>
        <h2 class="notice-card-title">{n.title}</h2>
        {n.body ? <p class="notice-card-body">{n.body}</p> : null}
        <div class="notice-card-foot">
          <span class="muted">{n.author_name}</span>
          {n.deadline ? (
            <span class="deadline">
              <Icon name="clock" size={14} /> {t("notices.deadline", formatDateTime(n.deadline))}
            </span>
          ) : null}
        </div>
        {staff && n.counts ? <Coverage covered={n.counts.covered} total={n.counts.students} /> : null}
      </a>
    </li>
  );
}

export function Coverage(props: { covered: number; total: number; large?: boolean }) {
  const { covered, total } = props;
  return (
    <div class={`coverage${props.large ? " large" : ""}`}>
      <div
        class="progress"
        role="progressbar"
        aria-valuemin={0}
        aria-valuemax={total}
        aria-valuenow={covered}
        aria-label={t("receipts.coverageAria")}
      >
        <span style={{ width: formatPercentCss(covered, total) }} />
      </div>
      <span class="coverage-text" data-testid="coverage">
        {t("receipts.coverage", covered, total)} · {formatPercent(covered, total)}
      </span>
    </div>
  );
}

function formatPercentCss(part: number, whole: number): string {
  return `${whole ? Math.round((part / whole) * 100) : 0}%`;
}
