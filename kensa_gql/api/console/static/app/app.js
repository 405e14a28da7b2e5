// The console: sign in with an API key (kept in sessionStorage only), then generate, watch, play,
// delete, and follow credits, all through the public GraphQL API (api.js).

import { ApiError, DOCUMENTS, request, subscriptions } from "./api.js";
import { $, announce, h, when } from "./dom.js";
import { Gallery } from "./gallery.js";
import { GenerateForm } from "./generate.js";

const KEY_ITEM = "kensa.apiKey";
const HISTORY_PAGE_SIZE = 10;
// Tabs of this browser tell each other about new videos, so every tab follows them at once.
const tabs = "BroadcastChannel" in window ? new BroadcastChannel("kensa-console") : null;

const state = { key: null, client: null, credits: null, historyPage: 1 };

const api = (query, variables) => request(state.key, query, variables);

function live() {
  if (!state.client) {
    state.client = subscriptions(state.key, {
      onReconnect: () => { refresh(); },
      onRefused: () => { signOut("The key was refused; sign in again."); },
      onState: (s) => {
        $("live").textContent = s === "connected" ? "Live" : gallery.running() ? "Reconnecting…" : "";
      },
    });
  }
  return state.client;
}

const gallery = new Gallery({ api, live, onSettled: () => refreshCredits()});
const form = new GenerateForm({
  api,
  balance: () => (state.credits ? state.credits.available : null),
  onGenerated: async (video) => {
    tabs?.postMessage({ generated: video.uuid });
    await Promise.all([gallery.added(video), refreshCredits()]);
  },
});

async function refreshCredits() {
  const data = await api(DOCUMENTS.me);
  state.credits = data.me.credits;
  for (const name of ["available", "frozen", "used", "total"]) {
    $(`credits-${name}`).textContent = String(state.credits[name]);
  }
  $("who").textContent = data.me.email;
  form.showPrice();
  await loadHistory(state.historyPage);
}

async function loadHistory(page) {
  const data = await api(DOCUMENTS.history, { page: Math.max(page, 1), pageSize: HISTORY_PAGE_SIZE });
  const { transactions, total } = data.creditHistory;
  state.historyPage = data.creditHistory.page;
  $("history").tBodies[0].replaceChildren(...transactions.map((t) => h("tr", {},
    h("td", {}, when(t.createdAt)), h("td", {}, t.transType),
    h("td", { class: "num" }, t.credits > 0 ? `+${t.credits}` : String(t.credits)),
    h("td", { class: "num" }, String(t.balanceAfter)),
    h("td", {}, t.videoUuid ? t.videoUuid.slice(0, 8) : ""))));
  const pages = Math.max(1, Math.ceil(total / HISTORY_PAGE_SIZE));
  $("history-page").textContent = `Page ${state.historyPage} of ${pages}`;
  $("history-prev").disabled = state.historyPage <= 1;
  $("history-next").disabled = state.historyPage >= pages;
}

async function refresh() {
  await Promise.all([refreshCredits(), gallery.load()]);
}

async function signIn(key) {
  state.key = key;
  try {
    await refreshCredits();
  } catch (error) {
    state.key = null;
    throw error;
  }
  sessionStorage.setItem(KEY_ITEM, key);
  $("sign-in").hidden = true;
  $("workspace").hidden = false;
  $("account").hidden = false;
  await Promise.all([form.load(), gallery.load(1)]);
  announce("Signed in");
}

function signOut(message = "") {
  sessionStorage.removeItem(KEY_ITEM);
  gallery.stopAll();
  gallery.close();
  state.client?.dispose();
  Object.assign(state, { key: null, client: null, credits: null, historyPage: 1 });
  $("workspace").hidden = true;
  $("account").hidden = true;
  $("sign-in").hidden = false;
  $("api-key").value = "";
  $("api-key-error").textContent = message;
  $("api-key").focus();
  announce("Signed out");
}

$("sign-in-form").addEventListener("submit", async (event) => {
  event.preventDefault();
  const key = $("api-key").value.trim();
  $("api-key-error").textContent = "";
  if (!key) {
    $("api-key-error").textContent = "Enter your API key.";
    return;
  }
  try {
    await signIn(key);
  } catch (error) {
    $("api-key-error").textContent = error instanceof ApiError && error.code === "UNAUTHENTICATED"
      ? "That key was not accepted." : `${error.message} (${error.code})`;
    $("api-key").setAttribute("aria-invalid", "true");
    $("api-key").focus();
  }
});
$("sign-out").addEventListener("click", () => signOut());
$("history-prev").addEventListener("click", () => loadHistory(state.historyPage - 1));
$("history-next").addEventListener("click", () => loadHistory(state.historyPage + 1));
tabs?.addEventListener("message", (event) => {
  if (state.key && event.data && event.data.generated) {
    gallery.added(null).then(refreshCredits);
  }
});
// Back to a tab that was hidden: re-read, in case another device changed something.
document.addEventListener("visibilitychange", () => {
  if (!document.hidden && state.key) refresh();
});

const saved = sessionStorage.getItem(KEY_ITEM);
if (saved) signIn(saved).catch(() => signOut("Your saved key no longer works; sign in again."));
else $("api-key").focus();
