import { render } from "preact";
import "./styles.css";
import "./state/session";
import "./state/me";
import "./state/chat";
import "./state/notices";
import "./state/questions";
import "./state/alerts";
import "./state/push";
import { rolesIn } from "./state/me";
import { setRecipientTest } from "./state/notices";
import { App } from "./views/App";

// Guardians and students receive notices; they tell the server when one reached them.
setRecipientTest((classId) => {
  const r = rolesIn(classId);
  return (r.guardian || r.student) && !r.staff;
});

render(<App />, document.getElementById("app")!);
