import type { Member } from "../api/types";
import { t, formatList } from "../i18n";
import { classes } from "../state/classes";
import { classInfo, rolesIn } from "../state/me";
import { Avatar, PageHeader } from "./common";

const ORDER = ["head_teacher", "teacher", "assistant_teacher", "student", "guardian"];

/** Teachers see the roster; a guardian sees the teachers and their own children only. */
export function Members(props: { classId: number }) {
  const { classId } = props;
  const data = classes.value[classId]?.data;
  const roles = rolesIn(classId);
  if (!data) return null;
  const people = data.members.slice().sort((a, b) => ORDER.indexOf(a.role) - ORDER.indexOf(b.role) || a.id - b.id);
  const names = new Map(data.members.map((m) => [m.id, m.name]));
  const groups = ORDER.map((role) => [role, people.filter((m) => m.role === role)] as const).filter(([, list]) => list.length);
  const children = classInfo(classId)?.children ?? [];
  const guardianOnly = roles.guardian && !roles.staff && !roles.student;

  return (
    <div class="page">
      <PageHeader title={guardianOnly ? t("members.childrenTitle") : t("members.title")} subtitle={data.class.name} />
      {guardianOnly ? (
        <section class="card" aria-labelledby="kids-title">
          <h2 id="kids-title" class="card-title">
            {t("members.myChildren")}
          </h2>
          <ul class="people">
            {children.map((k) => (
              <li class="person-row" key={k.id}>
                <Avatar name={k.name} />
                <span>{k.name}</span>
              </li>
            ))}
          </ul>
        </section>
      ) : null}
      {groups.map(([role, list]) =>
        guardianOnly && role === "student" ? null : (
          <section class="card" key={role} aria-labelledby={`role-${role}`}>
            <h2 id={`role-${role}`} class="card-title">
              {t(`roleGroup.${role}` as "roleGroup.student")} <span class="muted">({list.length})</span>
            </h2>
            <ul class="people">
              {list.map((m: Member) => (
                <li class="person-row" key={`${m.id}-${m.role}`}>
                  <Avatar name={m.name} />
                  <span class="grow">{m.name}</span>
                  {m.children && m.children.length ? (
                    <span class="muted">{t("members.guardianOf", formatList(m.children.map((c) => names.get(c) ?? String(c))))}</span>
                  ) : null}
                </li>
              ))}
            </ul>
          </section>
        ),
      )}
    </div>
  );
}
