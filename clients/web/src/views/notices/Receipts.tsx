import { useEffect, useRef, useState } from "preact/hooks";
import { asApiError, type ApiError } from "../../api/errors";
import { api } from "../../api/rest";
import type { Rollup, RollupList, RollupPage, StudentCoverage } from "../../api/types";
import { formatDateTime, formatTime, t } from "../../i18n";
import { classPath } from "../../router";
import { receiptTicks } from "../../state/notices";
import { ready, request, status } from "../../state/session";
import { toast } from "../../state/toasts";
import { ErrorBox, Loading } from "../common";
import { Icon } from "../icons";
import { kindLabel, stateLabel } from "./labels";
import { Coverage } from "./NoticeList";
import { describeError, formatWait } from "../../i18n/errors";

/** A page of a list; the server allows up to 500. */
const PAGE = 100;
const PAGE_MAX = 500;

/** A notice's receipts rolled up per student; it follows notice.receipt events live.
 * The counts cover the whole class; the lists come a page at a time ("load more"). */
export function Receipts(props: { classId: number; noticeId: number }) {
  const { classId, noticeId } = props;
  const [data, setData] = useState<Rollup | null>(null);
  const [error, setError] = useState<ApiError | null>(null);
  const [updatedAt, setUpdatedAt] = useState(0);
  const [busy, setBusy] = useState(false);
  const [confirming, setConfirming] = useState(false);
  // The reminder's cool-down: when the server allows the next one, and a clock that ticks.
  const [againAt, setAgainAt] = useState(0);
  const [now, setNow] = useState(() => Date.now() / 1000);
  const until = Math.max(againAt, data?.remind_again_at ?? 0);
  const coolDown = Math.max(0, Math.ceil(until - now));
  useEffect(() => {
    if (until <= Date.now() / 1000) return;
    const timer = setInterval(() => setNow(Date.now() / 1000), 1000);
    return () => clearInterval(timer);
  }, [until]);
  const [more, setMore] = useState<RollupList | null>(null);
  const tick = receiptTicks.value[noticeId] ?? 0;
  const timer = useRef<ReturnType<typeof setTimeout> | null>(null);
  const loadingRef = useRef(false);
  const dataRef = useRef<Rollup | null>(null);
  const againRef = useRef(false);

  async function load() {
    if (loadingRef.current) {
      againRef.current = true;
      return;
    }
    loadingRef.current = true;
    try {
      do {
        againRef.current = false;
        // A reload keeps what "load more" had shown (up to the largest page).
        const shown = dataRef.current;
        const longest = shown ? Math.max(shown.receipts.length, shown.covered.length, shown.not_covered.length) : 0;
        const limit = Math.min(PAGE_MAX, Math.max(PAGE, longest));
        const ack = await request<Rollup & { ok: true }>("notice.receipts", { notice_id: noticeId, limit });
        dataRef.current = ack;
        setData(ack);
        setError(null);
        setUpdatedAt(Date.now() / 1000);
      } while (againRef.current);
    } catch (err) {
      setError(asApiError(err));
    } finally {
      loadingRef.current = false;
    }
  }

  // First load, and again after each reconnection (receipts may have changed meanwhile).
  useEffect(() => {
    if (ready.value && status.value === "connected") void load();
  }, [noticeId, ready.value, status.value === "connected"]);

  // Live: a receipt of this notice changed; reload soon (bursts fold into one reload).
  useEffect(() => {
    if (!tick) return;
    if (timer.current) clearTimeout(timer.current);
    timer.current = setTimeout(() => {
      timer.current = null;
      void load();
    }, 200);
  }, [tick]);
  useEffect(() => () => void (timer.current && clearTimeout(timer.current)), []);

  async function loadMore(list: RollupList) {
    const shown = dataRef.current;
    const after = shown?.next[list];
    if (!shown || after == null) return;
    setMore(list);
    try {
      const page = await request<RollupPage & { ok: true }>("notice.receipts", {
        notice_id: noticeId,
        list,
        after,
        limit: PAGE,
      });
      const now = dataRef.current ?? shown;
      const merged = { ...now, counts: page.counts, [list]: [...now[list], ...(page[list] ?? [])], next: { ...now.next, [list]: page.next[list] ?? null } } as Rollup;
      dataRef.current = merged;
      setData(merged);
    } catch (err) {
      toast(describeError(asApiError(err)), "error");
    } finally {
      setMore(null);
    }
  }

  /** "Showing 100 of 3,595" and a button, while a list has more pages. */
  function moreButton(list: RollupList, shown: number, total: number) {
    if (!data || data.next[list] == null) return null;
    return (
      <div class="load-more" data-testid={`more-${list}`}>
        <span class="muted">{t("receipts.shown", shown, total)}</span>
        <button type="button" class="btn" onClick={() => void loadMore(list)} disabled={more !== null}>
          {t("receipts.loadMore")}
        </button>
      </div>
    );
  }

  async function remind() {
    setConfirming(false);
    setBusy(true);
    try {
      const ack = await request<{ reminded: number[]; students: number[] }>("notice.remind", { notice_id: noticeId });
      toast(t("receipts.reminded", ack.reminded.length), "success");
      void load();
    } catch (err) {
      const e = asApiError(err);
      if (e.code === "rate_limited" && typeof e.details.retry_after_s === "number") {
        setNow(Date.now() / 1000);
        setAgainAt(Date.now() / 1000 + e.details.retry_after_s);
      }
      toast(`${t("receipts.remindFailed")} ${describeError(e)}`, "error", 8000);
    } finally {
      setBusy(false);
    }
  }

  async function exportCsv() {
    try {
      await api.receiptsCsv(noticeId);
    } catch (err) {
      toast(`${t("receipts.exportFailed")} ${describeError(asApiError(err))}`, "error");
    }
  }

  if (error && !data) return <ErrorBox error={error} />;
  if (!data) return <Loading />;

  const n = data.notice;
  const byGuardianAudience = n.audience === "guardians";
  const unreachable = byGuardianAudience ? data.not_covered.filter((s) => s.guardians.length === 0) : [];
  const waiting = data.not_covered.filter((s) => !unreachable.includes(s));
  // Until every page is loaded, the counts say how many are left; the loaded rows cannot.
  const allNotCovered = data.next.not_covered == null;
  const waitingCount = allNotCovered ? waiting.length : data.counts.not_covered;
  const states = Object.entries(data.counts.states);

  return (
    <div class="page receipts" data-notice-id={noticeId}>
      <a class="back-link" href={`#${classPath(classId, "notices")}`}>
        <Icon name="back" size={16} /> {t("notices.back")}
      </a>
      <header class="receipts-head card">
        <div class="notice-card-top">
          <span class={`tag kind-${n.kind}`}>{kindLabel(n.kind)}</span>
          <span class="tag">{t(`audience.${n.audience}`)}</span>
          <span class="live-pill" title={t("receipts.liveHint")}>
            <span class="live-dot" aria-hidden="true" />
            {t("receipts.live", formatTime(updatedAt))}
          </span>
        </div>
        <h1 class="notice-detail-title">{n.title}</h1>
        <p class="muted">
          {n.author_name ? `${n.author_name} · ` : ""}
          {formatDateTime(n.created_at)}
          {n.deadline ? ` · ${t("notices.deadline", formatDateTime(n.deadline))}` : ""}
        </p>
        <Coverage covered={data.counts.covered} total={data.counts.students} large />
        <ul class="state-chips" aria-label={t("receipts.statesLabel")}>
          {states.map(([s, count]) => (
            <li class={`chip state-${s}`} key={s}>
              {stateLabel(s as never)} <strong>{count}</strong>
            </li>
          ))}
        </ul>
        {n.kind === "reply_required" ? <ReplyTally choices={n.choices} counts={data.counts.replies ?? {}} /> : null}
        <div class="receipts-actions">
          {confirming ? (
            <span class="remind-confirm" role="group" aria-label={t("receipts.remindConfirm", waitingCount)}>
              <span>{t("receipts.remindConfirm", waitingCount)}</span>
              <button type="button" class="btn primary" onClick={remind} disabled={busy}>
                {t("receipts.remindSend")}
              </button>
              <button type="button" class="btn ghost" onClick={() => setConfirming(false)}>
                {t("common.cancel")}
              </button>
            </span>
          ) : (
            <button
              type="button"
              class="btn primary"
              onClick={() => setConfirming(true)}
              disabled={busy || waitingCount === 0 || coolDown > 0}
            >
              <Icon name="bell" size={18} /> {t("receipts.remind", waitingCount)}
            </button>
          )}
          {coolDown > 0 ? (
            <span class="muted" data-testid="remind-wait">
              {t("receipts.remindWait", formatWait(coolDown))}
            </span>
          ) : null}
          <button type="button" class="btn" onClick={exportCsv}>
            <Icon name="download" size={18} /> {t("receipts.export")}
          </button>
          {data.last_reminded_at ? <span class="muted">{t("receipts.lastReminded", formatDateTime(data.last_reminded_at))}</span> : null}
        </div>
      </header>

      <section class="card" aria-labelledby="not-covered-title" data-testid="not-covered">
        <h2 id="not-covered-title" class="card-title">
          {t("receipts.notCovered", waitingCount)}
        </h2>
        {waiting.length || !allNotCovered ? (
          <>
            <ul class="student-list">
              {waiting.map((s) => (
                <StudentRow s={s} key={s.student_id} />
              ))}
            </ul>
            {moreButton("not_covered", data.not_covered.length, data.counts.not_covered)}
          </>
        ) : (
          <p class="done-line">
            <Icon name="check" /> {t("receipts.allCovered")}
          </p>
        )}
      </section>

      {unreachable.length ? (
        <section class="card" aria-labelledby="no-guardian-title" data-testid="no-guardian">
          <h2 id="no-guardian-title" class="card-title">
            {t("receipts.noGuardian", unreachable.length)}
          </h2>
          <p class="muted">{t("receipts.noGuardianHint")}</p>
          <ul class="student-list">
            {unreachable.map((s) => (
              <StudentRow s={s} key={s.student_id} />
            ))}
          </ul>
        </section>
      ) : null}

      <section class="card" aria-labelledby="covered-title" data-testid="covered">
        <h2 id="covered-title" class="card-title">
          {t("receipts.covered", data.counts.covered)}
        </h2>
        <ul class="student-list">
          {data.covered.map((s) => (
            <StudentRow s={s} key={s.student_id} />
          ))}
        </ul>
        {moreButton("covered", data.covered.length, data.counts.covered)}
      </section>

      <details class="card">
        <summary class="card-title">{t("receipts.everyRecipient", data.counts.recipients)}</summary>
        <div class="table-wrap">
          <table class="table">
            <thead>
              <tr>
                <th scope="col">{t("receipts.col.name")}</th>
                <th scope="col">{t("receipts.col.state")}</th>
                <th scope="col">{t("receipts.col.delivered")}</th>
                <th scope="col">{t("receipts.col.read")}</th>
                <th scope="col">{t("receipts.col.confirmed")}</th>
                <th scope="col">{t("receipts.col.reply")}</th>
              </tr>
            </thead>
            <tbody>
              {data.receipts.map((r) => (
                <tr key={r.user_id}>
                  <td>{r.name}</td>
                  <td>
                    <span class={`tag state-${r.state}`}>{stateLabel(r.state)}</span>
                  </td>
                  <td>{r.delivered_at ? formatDateTime(r.delivered_at) : "—"}</td>
                  <td>{r.read_at ? formatDateTime(r.read_at) : "—"}</td>
                  <td>{r.confirmed_at ? formatDateTime(r.confirmed_at) : "—"}</td>
                  <td>{r.reply ?? "—"}</td>
                </tr>
              ))}
            </tbody>
          </table>
        </div>
        {moreButton("receipts", data.receipts.length, data.counts.recipients)}
      </details>
    </div>
  );
}

function StudentRow(props: { s: StudentCoverage }) {
  const { s } = props;
  return (
    <li class="student-row" data-student-id={s.student_id}>
      <span class="student-name">{s.name}</span>
      <span class="guardian-states">
        {s.guardians.length ? (
          s.guardians.map((g) => (
            <span class={`tag state-${g.state}`} key={g.id}>
              {g.name}: {stateLabel(g.state)}
            </span>
          ))
        ) : (
          <span class="tag tag-muted">{t("receipts.noGuardianTag")}</span>
        )}
      </span>
    </li>
  );
}

/** How many chose each reply (reply-required notices). */
function ReplyTally(props: { choices: string[]; counts: Record<string, number> }) {
  const total = props.choices.reduce((sum, c) => sum + (props.counts[c] ?? 0), 0);
  return (
    <ul class="tally" aria-label={t("receipts.tallyLabel")}>
      {props.choices.map((c) => {
        const count = props.counts[c] ?? 0;
        return (
          <li key={c} class="tally-row">
            <span class="tally-choice">{c}</span>
            <span class="tally-bar" aria-hidden="true">
              <span style={{ width: `${total ? Math.round((count / total) * 100) : 0}%` }} />
            </span>
            <strong class="tally-count">{count}</strong>
          </li>
        );
      })}
    </ul>
  );
}
