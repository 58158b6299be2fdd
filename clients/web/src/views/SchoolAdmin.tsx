import { useEffect, useState } from "preact/hooks";
import { asApiError, type ApiError } from "../api/errors";
import { api, uploadRoster } from "../api/rest";
import type { RosterResult, SchoolLink, SchoolOverview, SchoolStorage } from "../api/school";
import { formatBytes, formatDateTime, formatPercent, t, tMaybe } from "../i18n";
import { describeError } from "../i18n/errors";
import { toast } from "../state/toasts";
import { Empty, ErrorBox, Loading, PageHeader } from "./common";
import { JoinQr } from "./JoinQr";
import { Shell } from "./Shell";

type SchoolClassRow = SchoolOverview["classes"][number];
const ROLES = ["head_teacher", "teacher", "assistant_teacher"] as const;

/** School admins set the school up: years, classes, teachers, rosters, QR codes, link requests. */
export function SchoolAdmin() {
  const [data, setData] = useState<SchoolOverview | null>(null);
  const [links, setLinks] = useState<SchoolLink[] | null>(null);
  const [error, setError] = useState<ApiError | null>(null);

  async function load() {
    try {
      const [school, pending] = await Promise.all([api.school(), api.schoolLinks()]);
      setData(school);
      setLinks(pending.links);
      setError(null);
    } catch (err) {
      setError(asApiError(err));
    }
  }
  useEffect(() => {
    void load();
  }, []);

  /** Run a change, say it worked or why not (in the person's language), then reload. */
  async function act(work: () => Promise<unknown>, done: string): Promise<boolean> {
    try {
      await work();
      toast(done, "success");
      await load();
      return true;
    } catch (err) {
      toast(describeError(asApiError(err)), "error");
      return false;
    }
  }

  return (
    <Shell>
      <main id="main" class="page" tabIndex={-1}>
        <PageHeader title={t("school.title")} subtitle={t("school.subtitle")} />
        {error ? <ErrorBox error={error} /> : null}
        {!data && !error ? <Loading /> : null}
        {data ? (
          <>
            <Years data={data} act={act} />
            <NewClass data={data} act={act} />
            <section aria-labelledby="classes-title">
              <h2 id="classes-title" class="card-title">
                {t("school.classes")}
              </h2>
              <ul class="plain-list school-classes">
                {data.classes.map((c) => (
                  <ClassCard key={c.id} c={c} data={data} act={act} />
                ))}
              </ul>
            </section>
            <TimeZone data={data} act={act} />
            <GuardianHistory data={data} act={act} />
            <Storage />
          </>
        ) : null}
        {links ? <PendingLinks links={links} /> : null}
      </main>
    </Shell>
  );
}

type Act = (work: () => Promise<unknown>, done: string) => Promise<boolean>;

function Years(props: { data: SchoolOverview; act: Act }) {
  const [name, setName] = useState("");
  return (
    <section class="card" aria-labelledby="years-title">
      <h2 id="years-title" class="card-title">
        {t("school.years")}
      </h2>
      <ul class="plain-list">
        {props.data.years.map((y) => (
          <li key={y.id} class="pending-item">
            <span>{y.name}</span>
            {y.archived ? (
              <span class="tag">{t("school.archived")}</span>
            ) : (
              <button type="button" class="btn small ghost" onClick={() => props.act(() => api.archiveYear(y.id), t("school.archived"))}>
                {t("school.archive")} {y.name}
              </button>
            )}
          </li>
        ))}
      </ul>
      <form
        class="row-form"
        onSubmit={async (e) => {
          e.preventDefault();
          if (await props.act(() => api.createYear(name.trim()), t("school.created", name.trim()))) setName("");
        }}
      >
        <label>
          {t("school.yearName")}
          <input value={name} required maxLength={40} onInput={(e) => setName(e.currentTarget.value)} />
        </label>
        <button type="submit" class="btn">
          {t("school.addYear")}
        </button>
      </form>
    </section>
  );
}

function NewClass(props: { data: SchoolOverview; act: Act }) {
  const [name, setName] = useState("");
  const open = props.data.years.filter((y) => !y.archived);
  const [year, setYear] = useState<string>("");
  return (
    <form
      class="card row-form"
      onSubmit={async (e) => {
        e.preventDefault();
        const ok = await props.act(() => api.createClass(name.trim(), year ? Number(year) : null), t("school.created", name.trim()));
        if (ok) setName("");
      }}
    >
      <label>
        {t("school.className")}
        <input value={name} required maxLength={200} onInput={(e) => setName(e.currentTarget.value)} />
      </label>
      <label>
        {t("school.yearOf")}
        <select value={year} aria-label={t("school.yearOf")} onChange={(e) => setYear(e.currentTarget.value)}>
          <option value="">{t("school.noYear")}</option>
          {open.map((y) => (
            <option key={y.id} value={String(y.id)}>
              {y.name}
            </option>
          ))}
        </select>
      </label>
      <button type="submit" class="btn primary">
        {t("school.addClass")}
      </button>
    </form>
  );
}

function ClassCard(props: { c: SchoolClassRow; data: SchoolOverview; act: Act }) {
  const { c } = props;
  const [who, setWho] = useState<string>("");
  const [role, setRole] = useState<string>("head_teacher");
  const [roster, setRoster] = useState<
    { result: RosterResult } | { error: ApiError; rejected: { line: number; reason: string }[] } | null
  >(null);
  const year = props.data.years.find((y) => y.id === c.school_year_id);

  async function importFile(file: File) {
    const answer = await uploadRoster(c.id, await file.text());
    setRoster(answer.ok ? { result: answer.result } : { error: answer.error, rejected: answer.rejected });
    if (answer.ok) toast(t("school.rosterDone", answer.result.rows), "success");
  }

  return (
    <li class="card school-class" aria-label={c.name} data-class-id={c.id}>
      <h3 class="card-title">
        {c.name} {year ? <span class="muted">· {year.name}</span> : null}{" "}
        {c.archived ? <span class="tag">{t("school.archived")}</span> : null}
      </h3>
      <p class="muted">
        {t("school.joinCode")} <code class="code-big">{c.join_code}</code> · {t("school.students", c.students)}
      </p>
      <p>
        {t("school.teachers")}:{" "}
        {c.teachers.length
          ? c.teachers.map((x) => `${x.name}（${tMaybe(`school.role.${x.role}`, x.role)}）`).join("、")
          : t("school.noTeachers")}
      </p>
      {!c.archived ? (
        <>
          <form
            class="row-form"
            onSubmit={async (e) => {
              e.preventDefault();
              const person = props.data.staff.find((p) => String(p.id) === who);
              if (person) await props.act(() => api.assignTeacher(c.id, person.id, role), t("school.assigned", person.name, c.name));
            }}
          >
            <label>
              {t("school.assignWho")}
              <select value={who} required aria-label={t("school.assignWho")} onChange={(e) => setWho(e.currentTarget.value)}>
                <option value="" />
                {props.data.staff.map((p) => (
                  <option key={p.id} value={String(p.id)}>
                    {p.name}（{p.username}）
                  </option>
                ))}
              </select>
            </label>
            <label>
              {t("school.assignRole")}
              <select value={role} aria-label={t("school.assignRole")} onChange={(e) => setRole(e.currentTarget.value)}>
                {ROLES.map((r) => (
                  <option key={r} value={r}>
                    {t(`school.role.${r}`)}
                  </option>
                ))}
              </select>
            </label>
            <button type="submit" class="btn small">
              {t("school.assign")}
            </button>
          </form>
          <MoveStudent c={c} data={props.data} act={props.act} />
          <label class="row-form">
            {t("school.rosterFile")}
            <input
              type="file"
              accept=".csv,text/csv"
              aria-label={`${t("school.roster")} ${c.name}`}
              onChange={(e) => {
                const f = e.currentTarget.files?.[0];
                if (f) void importFile(f);
              }}
            />
          </label>
        </>
      ) : null}
      {roster && "result" in roster ? (
        <div class="roster-result" role="status">
          <p>{t("school.rosterDone", roster.result.rows)}</p>
          {roster.result.created.length ? (
            <>
              <p>{t("school.rosterCreated")}</p>
              <ul class="plain-list">
                {roster.result.created.map((x) => (
                  <li key={x.username}>
                    {x.display_name} · <code>{x.username}</code> · <code>{x.password}</code>
                  </li>
                ))}
              </ul>
            </>
          ) : null}
          {roster.result.pending.length ? (
            <>
              <p>{t("school.rosterPending")}</p>
              <ul class="plain-list">
                {roster.result.pending.map((x) => (
                  <li key={x.line}>{t("school.rosterLine", x.line, `${x.username} · ${x.reason}`)}</li>
                ))}
              </ul>
            </>
          ) : null}
        </div>
      ) : null}
      {roster && "error" in roster ? (
        <ErrorBox error={roster.error} title={roster.rejected.length ? t("school.rosterRejected") : undefined}>
          <ul class="plain-list roster-rejected">
            {roster.rejected.map((x) => (
              <li key={x.line}>{t("school.rosterLine", x.line, x.reason)}</li>
            ))}
          </ul>
        </ErrorBox>
      ) : null}
      <div class="link-actions">
        <JoinQr classId={c.id} className={c.name} code={c.join_code} />
        {!c.archived ? (
          <button type="button" class="btn small ghost" onClick={() => props.act(() => api.archiveClass(c.id), t("school.archived"))}>
            {t("school.archive")} {c.name}
          </button>
        ) : null}
      </div>
    </li>
  );
}

/** The start of a year: a student of this class moves to another open class of the school, his
 * approved guardians with him. The class's students are read when the form is opened. */
function MoveStudent(props: { c: SchoolClassRow; data: SchoolOverview; act: Act }) {
  const { c } = props;
  const [open, setOpen] = useState(false);
  const [students, setStudents] = useState<{ id: number; name: string }[] | null>(null);
  const [who, setWho] = useState("");
  const [to, setTo] = useState("");
  const targets = props.data.classes.filter((x) => x.id !== c.id && !x.archived);

  async function load() {
    try {
      const m = await api.members(c.id);
      setStudents(m.members.filter((x) => x.role === "student").map((x) => ({ id: x.id, name: x.name })));
    } catch (err) {
      toast(describeError(asApiError(err)), "error");
    }
  }
  if (!c.students || !targets.length) return null;
  if (!open) {
    return (
      <button
        type="button"
        class="btn small ghost"
        onClick={() => {
          setOpen(true);
          void load();
        }}
      >
        {t("school.move")}
      </button>
    );
  }
  return (
    <form
      class="row-form move-student"
      aria-label={t("school.moveTitle", c.name)}
      onSubmit={async (e) => {
        e.preventDefault();
        const student = students?.find((x) => String(x.id) === who);
        const target = targets.find((x) => String(x.id) === to);
        if (!student || !target) return;
        if (await props.act(() => api.moveStudent(c.id, student.id, target.id), t("school.moved", student.name, target.name))) {
          setWho("");
          setOpen(false);
        }
      }}
    >
      <label>
        {t("school.moveWho")}
        <select value={who} required aria-label={t("school.moveWho")} onChange={(e) => setWho(e.currentTarget.value)}>
          <option value="" />
          {(students ?? []).map((x) => (
            <option key={x.id} value={String(x.id)}>
              {x.name}
            </option>
          ))}
        </select>
      </label>
      <label>
        {t("school.moveTo")}
        <select value={to} required aria-label={t("school.moveTo")} onChange={(e) => setTo(e.currentTarget.value)}>
          <option value="" />
          {targets.map((x) => (
            <option key={x.id} value={String(x.id)}>
              {x.name}
            </option>
          ))}
        </select>
      </label>
      <p class="field-hint">{t("school.moveHint")}</p>
      <button type="submit" class="btn small primary" disabled={!students}>
        {t("school.moveSubmit")}
      </button>
      <button type="button" class="btn small ghost" onClick={() => setOpen(false)}>
        {t("common.cancel")}
      </button>
    </form>
  );
}

function TimeZone(props: { data: SchoolOverview; act: Act }) {
  const [zone, setZone] = useState(props.data.school.time_zone);
  return (
    <form
      class="card row-form"
      onSubmit={(e) => {
        e.preventDefault();
        void props.act(() => api.setTimeZone(zone.trim()), t("school.saved"));
      }}
    >
      <label>
        {t("school.timeZone")}
        <input value={zone} required maxLength={64} onInput={(e) => setZone(e.currentTarget.value)} />
      </label>
      <button type="submit" class="btn">
        {t("school.save")}
      </button>
    </form>
  );
}

/** Whether a guardian approved today sees the families' earlier conversation (default: not). */
function GuardianHistory(props: { data: SchoolOverview; act: Act }) {
  const open = props.data.school.guardian_chat_history;
  return (
    <section class="card" aria-labelledby="guardian-history-title">
      <h2 id="guardian-history-title" class="card-title">
        {t("school.guardianHistory")}
      </h2>
      <label class="check">
        <input
          type="checkbox"
          checked={open}
          onChange={(e) => void props.act(() => api.setGuardianHistory(e.currentTarget.checked), t("school.saved"))}
        />
        <span>{t("school.guardianHistoryOpen")}</span>
      </label>
      <p class="field-hint">{t("school.guardianHistoryHint")}</p>
    </section>
  );
}

/** The school's attachments: the space they take of its quota, and how long they are kept. */
function Storage() {
  const [storage, setStorage] = useState<SchoolStorage | null>(null);
  const [days, setDays] = useState("");
  const [error, setError] = useState<ApiError | null>(null);

  function show(s: SchoolStorage) {
    setStorage(s);
    setDays(String(s.retention_days));
  }
  useEffect(() => {
    api.schoolStorage().then(show, (err) => setError(asApiError(err)));
  }, []);

  async function save(e: Event) {
    e.preventDefault();
    try {
      show(await api.setRetention(Number(days)));
      toast(t("school.saved"), "success");
    } catch (err) {
      toast(describeError(asApiError(err)), "error");
    }
  }

  return (
    <section class="card school-storage" aria-labelledby="storage-title">
      <h2 id="storage-title" class="card-title">
        {t("school.storage")}
      </h2>
      {error ? <ErrorBox error={error} /> : null}
      {!storage && !error ? <Loading /> : null}
      {storage ? (
        <>
          <p class="storage-used">
            {t(
              "school.storageUsed",
              formatBytes(storage.used_bytes),
              formatBytes(storage.quota_bytes),
              formatPercent(storage.used_bytes, storage.quota_bytes),
            )}
          </p>
          <meter
            class="storage-meter"
            min={0}
            max={storage.quota_bytes || 1}
            value={storage.used_bytes}
            high={storage.quota_bytes * 0.9}
            aria-label={t("school.storageMeter")}
          />
          <p class="field-hint">{t("school.storageHint")}</p>
          <p class="storage-retention" role="status">
            {t("school.retentionNow", storage.retention_days)}
          </p>
          <form class="row-form" onSubmit={save}>
            <label>
              {t("school.retention")}
              <input
                type="number"
                inputMode="numeric"
                min={0}
                max={36500}
                step={1}
                required
                value={days}
                onInput={(e) => setDays(e.currentTarget.value)}
              />
            </label>
            <button type="submit" class="btn">
              {t("school.save")}
            </button>
          </form>
        </>
      ) : null}
    </section>
  );
}

function PendingLinks(props: { links: SchoolLink[] }) {
  return (
    <section class="card" aria-labelledby="school-links-title">
      <h2 id="school-links-title" class="card-title">
        {t("school.links")}
      </h2>
      {props.links.length === 0 ? <Empty>{t("school.noLinks")}</Empty> : null}
      <ul class="plain-list school-links">
        {props.links.map((l) => (
          <li key={l.id}>
            <a href={`#/class/${l.class_id}/links`}>{t("school.linkItem", l.guardian.name, l.student.name, l.class_name)}</a>
            <span class="muted">
              {" "}
              · {l.relationship ? tMaybe(`relationship.${l.relationship}`, l.relationship) : ""}
              {l.guardian.phone ? ` · ${t("school.phone", l.guardian.phone)}` : ""} · {formatDateTime(l.requested_at)}
            </span>
          </li>
        ))}
      </ul>
    </section>
  );
}
