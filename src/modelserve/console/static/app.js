// The page's frame: API key, theme, tabs; each view is its own module.

import { ApiError, forgetModels, getJSON, getKey, say, setKey } from "./api.js";
import * as audio from "./audio.js";
import * as chat from "./chat.js";
import * as embeddings from "./embeddings.js";
import * as images from "./images.js";
import * as ops from "./ops.js";

const VIEWS = { chat, embeddings, images, audio, ops };
const THEME_ITEM = "modelserve.theme";
const status = document.getElementById("status");
const tabs = [...document.querySelectorAll('[role="tab"]')];
let current = "chat";
let checking = 0;  // only the latest key check may change the page

function viewOf(tab) {
  return tab.id.replace("tab-", "");
}

function select(tab, focus = false) {
  for (const t of tabs) {
    const chosen = t === tab;
    t.setAttribute("aria-selected", String(chosen));
    t.tabIndex = chosen ? 0 : -1;
    document.getElementById(t.getAttribute("aria-controls")).hidden = !chosen;
  }
  if (focus) tab.focus();
  const previous = current;
  current = viewOf(tab);
  if (previous !== current) VIEWS[previous].hide?.();
  VIEWS[current].show?.();
}

// Arrow keys, Home and End move between tabs (the WAI-ARIA tabs pattern).
function onTabKey(event) {
  const visible = tabs.filter((t) => !t.hidden);
  const at = visible.indexOf(event.currentTarget);
  const next = { ArrowRight: at + 1, ArrowLeft: at - 1, Home: 0, End: visible.length - 1 }[event.key];
  if (next === undefined) return;
  event.preventDefault();
  select(visible[(next + visible.length) % visible.length], true);
}

function applyTheme(theme) {
  const root = document.documentElement;
  if (theme) root.dataset.theme = theme;
  else delete root.dataset.theme;
  const dark = theme ? theme === "dark" : matchMedia("(prefers-color-scheme: dark)").matches;
  const toggle = document.getElementById("theme-toggle");
  toggle.setAttribute("aria-pressed", String(dark));
  toggle.textContent = dark ? "Light theme" : "Dark theme";
}

function toggleTheme() {
  const dark = document.getElementById("theme-toggle").getAttribute("aria-pressed") === "true";
  const theme = dark ? "light" : "dark";
  localStorage.setItem(THEME_ITEM, theme);
  applyTheme(theme);
}

// What the key may do: a wrong key is the API's 401 message; a key without the admin scope
// (403, or 401 on a server without that key) hides the operations view.
async function checkKey() {
  const mine = ++checking;
  forgetModels();
  say(status, "Checking key…");
  document.body.dataset.keyState = "checking";  // then refused, user or admin
  const opsTab = document.getElementById("tab-ops");
  try {
    await getJSON("/v1/models");
  } catch (err) {
    if (mine !== checking) return;
    say(status, err instanceof ApiError ? `API key refused: ${err.message}` : String(err), true);
    opsTab.hidden = true;
    if (current === "ops") select(tabs[0]);
    document.body.dataset.keyState = "refused";
    return;
  }
  let admin = true;
  try {
    await getJSON("/admin/summary");
  } catch (err) {
    if (!(err instanceof ApiError) || (err.status !== 401 && err.status !== 403)) throw err;
    admin = false;
  }
  if (mine !== checking) return;
  opsTab.hidden = !admin;
  if (!admin && current === "ops") select(tabs[0]);
  say(status, admin ? (getKey() ? "Key accepted (admin)." : "Connected.")
    : "Key accepted. The operations view needs an admin key.");
  document.body.dataset.keyState = admin ? "admin" : "user";
  VIEWS[current].show?.();
}

function init() {
  applyTheme(localStorage.getItem(THEME_ITEM));
  matchMedia("(prefers-color-scheme: dark)").addEventListener("change",
    () => applyTheme(localStorage.getItem(THEME_ITEM)));
  document.getElementById("theme-toggle").addEventListener("click", toggleTheme);
  for (const tab of tabs) {
    tab.addEventListener("click", () => select(tab));
    tab.addEventListener("keydown", onTabKey);
  }
  const keyInput = document.getElementById("api-key");
  keyInput.value = getKey();
  document.getElementById("key-form").addEventListener("submit", (event) => {
    event.preventDefault();
    setKey(keyInput.value.trim());
    checkKey();
  });
  for (const view of Object.values(VIEWS)) view.init();
  checkKey();
}

init();
