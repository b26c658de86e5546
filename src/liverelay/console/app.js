// The console's shell: sign-in, navigation and the page router (#/overview ...).
// Nothing loads before a signed DescribeNodeStatus succeeds with the key pair given.
import { ApiError, call, clearKeys, loadKeys, saveKeys } from "./api.js";
import { errorBox, field, h, replace } from "./ui.js";
import * as overview from "./page-overview.js";
import * as streams from "./page-streams.js";
import * as domains from "./page-domains.js";
import * as relayV3 from "./page-v3.js";
import * as relayV4 from "./page-v4.js";
import * as status from "./page-status.js";

const PAGES = [
  ["overview", "Overview", overview],
  ["streams", "Streams", streams],
  ["domains", "Domains", domains],
  ["v3", "Play-triggered relays (V3)", relayV3],
  ["v4", "Fixed relays (V4)", relayV4],
  ["status", "Relay status", status],
];

const main = document.getElementById("main");
const nav = document.getElementById("nav");
const logout = document.getElementById("logout");
let cleanup = null;
const ctx = { node: null };

function stopPage() {
  if (cleanup) {
    try {
      cleanup();
    } catch (err) {
      console.warn("page cleanup failed", err);
    }
    cleanup = null;
  }
}

function renderNav(current) {
  replace(
    nav,
    h(
      "ul",
      {},
      PAGES.map(([id, title]) =>
        h("li", {}, h("a", { href: `#/${id}`, "aria-current": id === current ? "page" : null }, title)),
      ),
    ),
  );
}

async function route() {
  if (!ctx.node) return;
  const id = (location.hash.replace(/^#\/?/, "").split("?")[0] || "overview").toLowerCase();
  const page = PAGES.find(([pid]) => pid === id) || PAGES[0];
  stopPage();
  renderNav(page[0]);
  document.title = `${page[1]} · liverelay console`;
  replace(main, h("h1", {}, page[1]));
  try {
    cleanup = (await page[2].mount(main, ctx)) || null;
  } catch (err) {
    main.append(errorBox(err instanceof ApiError ? err : { code: "Error", message: String(err) }));
  }
}

function showLogin(error) {
  stopPage();
  ctx.node = null;
  nav.hidden = true;
  logout.hidden = true;
  replace(nav);
  const ak = h("input", { name: "ak", autocomplete: "username", required: true, spellcheck: "false" });
  const sk = h("input", { name: "sk", type: "password", autocomplete: "current-password", required: true });
  const submit = h("button", { type: "submit" }, "Sign in");
  const form = h(
    "form",
    { class: "card login", "aria-labelledby": "login-title" },
    h("h1", { id: "login-title" }, "Sign in to the node"),
    h(
      "p",
      { class: "hint" },
      "Every request is signed in this browser with your key pair (HMAC-SHA256). " +
        "The pair stays in this tab's session storage and is never sent.",
    ),
    field("Access key ID", ak),
    field("Secret access key", sk),
    submit,
  );
  form.addEventListener("submit", async (ev) => {
    ev.preventDefault();
    for (const node of form.querySelectorAll(".error")) node.remove();
    submit.disabled = true;
    const keys = { ak: ak.value.trim(), sk: sk.value };
    try {
      const node = await call("DescribeNodeStatus", {}, keys);
      saveKeys(keys);
      enter(node);
    } catch (err) {
      form.append(errorBox(err instanceof ApiError ? err : { code: "Error", message: String(err) }, "login"));
    } finally {
      submit.disabled = false;
    }
  });
  replace(main, form);
  if (error) form.append(errorBox(error, "login"));
  ak.focus();
}

function enter(node) {
  ctx.node = node;
  nav.hidden = false;
  logout.hidden = false;
  if (!location.hash) location.hash = "#/overview";
  route();
}

logout.addEventListener("click", () => {
  clearKeys();
  showLogin();
});
window.addEventListener("hashchange", route);

async function start() {
  const keys = loadKeys();
  if (!keys) {
    showLogin();
    return;
  }
  try {
    enter(await call("DescribeNodeStatus", {}, keys));
  } catch (err) {
    clearKeys();
    showLogin(err instanceof ApiError ? err : null);
  }
}

start();

