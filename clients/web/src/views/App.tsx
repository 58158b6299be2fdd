import { useEffect, useState } from "preact/hooks";
import { t } from "../i18n";
import { classPath, navigate, route } from "../router";
import { appTitle } from "../state/alerts";
import { auth } from "../state/auth";
import { conversations } from "../state/chat";
import { ready } from "../state/session";
import { ClassView } from "./ClassView";
import { Empty, Loading, PageHeader } from "./common";
import { Home } from "./Home";
import { JoinForm } from "./JoinForm";
import { Login } from "./Login";
import { Register } from "./Register";
import { SchoolAdmin } from "./SchoolAdmin";
import { Shell } from "./Shell";

export function App() {
  const r = route.value;
  const signedIn = !!auth.value;
  // Signed out on a class's invitation link: register with its code, or sign in and keep it.
  const [signInInstead, setSignInInstead] = useState(false);

  useEffect(() => {
    document.title = appTitle();
  });
  useEffect(() => {
    if (signedIn && r.name === "login") navigate("/", true);
  }, [signedIn, r.name]);

  if (r.name === "register") return <Register />;
  if (!signedIn) {
    if (r.name === "join" && r.code && !signInInstead) return <Register initialCode={r.code} onSignIn={() => setSignInInstead(true)} />;
    return <Login />;
  }
  switch (r.name) {
    case "login":
    case "home":
      return <Home />;
    case "join":
      return (
        <Shell>
          <main id="main" class="page narrow" tabIndex={-1}>
            <PageHeader title={t("join.title")} subtitle={t("join.explain")} />
            <section class="card">
              <JoinForm initialCode={r.code} onDone={() => navigate("/")} />
            </section>
          </main>
        </Shell>
      );
    case "school":
      return <SchoolAdmin />;
    case "conv":
      return <ToConversation id={r.id} />;
    case "class":
      return <ClassView key={r.classId} classId={r.classId} section={r.section} sub={r.sub} id={r.id} />;
    case "notfound":
      return (
        <Shell>
          <main id="main" class="page narrow" tabIndex={-1}>
            <PageHeader title={t("notFound.title")} />
            <Empty>
              {t("notFound.text")} <a href="#/">{t("class.backHome")}</a>
            </Empty>
          </main>
        </Shell>
      );
  }
}

/** A conversation known by its id alone: on to its class's messages page once my conversations
 * are known (kept from before, or the sync's). */
function ToConversation(props: { id: number }) {
  const c = conversations.value.find((x) => x.id === props.id);
  useEffect(() => {
    if (c) navigate(classPath(c.class_id, "messages", c.id), true);
  }, [c?.id]);
  return (
    <Shell>
      <main id="main" class="page narrow" tabIndex={-1}>
        {c || !ready.value ? (
          <Loading />
        ) : (
          <Empty>
            {t("messages.notFound")} <a href="#/">{t("class.backHome")}</a>
          </Empty>
        )}
      </main>
    </Shell>
  );
}
