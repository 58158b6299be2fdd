import type { Question } from "../api/types";
import { AttachmentList } from "./Attachments";
import { t } from "../i18n";
import { Icon } from "./icons";

/** Who asked, as this viewer may see it: anonymous questions name their asker to staff only. */
export function askerLabel(q: Question, staff: boolean): string {
  if (!q.anonymous) return q.asker_name;
  if (staff && q.asker_name) return t("qa.anonymousStaff", q.asker_name);
  return q.mine ? t("qa.anonymousMine") : t("qa.anonymousName");
}

/** The vote count, as a toggle for those who may vote and as a plain count for the rest. */
export function Votes(props: { q: Question; canVote: boolean; busy?: boolean; size: number; onVote: () => void }) {
  const { q } = props;
  return (
    <div class="votes">
      {props.canVote ? (
        <button
          type="button"
          class={`vote${q.voted ? " voted" : ""}`}
          aria-pressed={!!q.voted}
          aria-label={q.voted ? t("qa.unvoteAria", q.votes) : t("qa.voteAria", q.votes)}
          disabled={props.busy}
          onClick={props.onVote}
        >
          <Icon name="up" size={props.size} />
          <span class="vote-count">{q.votes}</span>
        </button>
      ) : (
        <span class="vote static" aria-label={t("qa.votesAria", q.votes)}>
          <Icon name="up" size={props.size} />
          <span class="vote-count">{q.votes}</span>
        </span>
      )}
    </div>
  );
}

/** The teacher's written answer. */
export function AnswerText(props: { q: Question }) {
  return (
    <div class="answer">
      <span class="answer-label">{t("qa.answerBy", props.q.answered_by_name ?? "")}</span>
      <p>{props.q.answer}</p>
      <AttachmentList items={props.q.answer_attachments} />
    </div>
  );
}
