import { useEffect } from "preact/hooks";
import type { ClassInfo } from "../api/types";
import { t, formatList } from "../i18n";
import { classPath, navigate } from "../router";
import { me, meError } from "../state/me";
import { classUnread, defaultSection, roleNames } from "./classNav";
import { CountBadge, Empty, ErrorBox, Loading, PageHeader } from "./common";
import { JoinForm } from "./JoinForm";
import { Shell } from "./Shell";

/** My classes; with exactly one (and nothing pending) it opens that class straight away. */
export function Home() {
  const m = me.value;
  useEffect(() => {
    if (m && m.classes.length === 1 && m.pending_links.length === 0) {
      const c = m.classes[0];
      navigate(classPath(c.id, ...defaultSection(c.id)), true);
    }
  }, [m]);

  return (
    <Shell>
      <main id="main" class="page narrow" tabIndex={-1}>
        {!m ? (
          meError.value ? <ErrorBox error={meError.value} /> : <Loading />
        ) : (
          <>
            <PageHeader title={t("home.title", m.user.display_name)} subtitle={t("home.subtitle")}>
              {m.user.school_admin ? (
                <a class="btn primary" href="#/school">
                  {t("school.open")}
                </a>
              ) : null}
            </PageHeader>
            {m.classes.length ? (
              <ul class="class-list" aria-label={t("home.classes")}>
                {m.classes.map((c) => (
                  <ClassCard c={c} key={c.id} />
                ))}
              </ul>
            ) : (
              <Empty>{t("home.noClasses")}</Empty>
            )}
            {m.pending_links.length ? (
              <section class="card" aria-labelledby="pending-title">
                <h2 id="pending-title" class="card-title">
                  {t("home.pendingTitle")}
                </h2>
                <ul class="plain-list">
                  {m.pending_links.map((p) => (
                    <li key={p.link_id} class="pending-item">
                      <span>{t("home.pendingItem", p.child.name)}</span>
                      <span class="tag tag-warn">{t("home.pendingState")}</span>
                    </li>
                  ))}
                </ul>
              </section>
            ) : null}
            {!m.classes.some((c) => c.roles.some((r) => r !== "guardian")) ? (
              <section class="card" aria-labelledby="join-title">
                <h2 id="join-title" class="card-title">
                  {t("join.title")}
                </h2>
                <p class="muted">{t("join.explain")}</p>
                <JoinForm />
              </section>
            ) : null}
          </>
        )}
      </main>
    </Shell>
  );
}

function ClassCard(props: { c: ClassInfo }) {
  const { c } = props;
  const unread = classUnread(c.id);
  return (
    <li>
      <a class="class-card" href={`#${classPath(c.id, ...defaultSection(c.id))}`}>
        <span class="class-card-name">{c.name}</span>
        <span class="class-card-roles">{roleNames(c).join(" · ")}</span>
        {c.children.length ? (
          <span class="class-card-children">{t("home.children", formatList(c.children.map((k) => k.name)))}</span>
        ) : null}
        <CountBadge count={unread} label={t("chat.unreadAria", unread)} />
      </a>
    </li>
  );
}
