// coldrec demo page: plain JS against the coldrec HTTP API (no build step, no dependencies).
"use strict";

const $ = (id) => document.getElementById(id);
const SHOWN_CATEGORIES = 40; // chips listed before the filter is used
// a server with keys asks for its write key once; kept for this tab only, never in the URL (where logs and history keep it)
const KEY_STORE = "coldrec-demo-key";

const state = { user: "", interests: new Set(), categories: [], generation: 0 };

function randomId() {
  const bytes = crypto.getRandomValues(new Uint8Array(8)); // works outside secure contexts too
  return Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
}

async function api(method, path, body, retried = false) {
  const headers = body === undefined ? {} : { "Content-Type": "application/json" };
  const apiKey = sessionStorage.getItem(KEY_STORE);
  if (apiKey) headers["X-API-Key"] = apiKey;
  const response = await fetch(path, { method, headers, body: body === undefined ? undefined : JSON.stringify(body) });
  if ((response.status === 401 || response.status === 403) && !retried) {
    const given = window.prompt("This coldrec server needs its write API key for the demo:");
    if (given) {
      sessionStorage.setItem(KEY_STORE, given.trim());
      return api(method, path, body, true);
    }
  }
  const data = await response.json().catch(() => ({}));
  if (!response.ok) {
    const detail = Array.isArray(data.detail) ? data.detail.map((d) => `${d.field}: ${d.msg}`).join("; ") : data.detail;
    throw new Error(`${method} ${path.split("?")[0]}: ${response.status} ${detail || ""}`);
  }
  return data;
}

function status(text, isError = false) {
  $("status").textContent = text;
  $("status").className = isError ? "error" : "";
}

const userPath = () => encodeURIComponent(state.user);
const query = (params) => new URLSearchParams(params).toString();

// ---------------------------------------------------------------- rendering

function card(item, { showReason }) {
  const el = document.createElement("button");
  el.type = "button";
  el.className = "card";
  el.dataset.testid = "product-card";
  el.dataset.itemId = item.item_id;
  const title = document.createElement("span");
  title.className = "title";
  title.textContent = item.title || item.item_id;
  const meta = document.createElement("span");
  meta.className = "meta";
  const leaf = (item.category || "").split(" > ").pop();
  meta.textContent = [leaf, item.price == null ? "" : `$${item.price.toFixed(2)}`].filter(Boolean).join(" · ");
  el.append(title, meta);
  if (showReason && item.reason) {
    const reason = document.createElement("span");
    reason.className = "reason";
    reason.dataset.testid = "reason";
    reason.textContent = item.reason;
    el.append(reason);
  }
  el.addEventListener("click", () => viewItem(item));
  return el;
}

function renderCards(container, items, options) {
  container.replaceChildren(...items.map((item) => card(item, options)));
  if (!items.length) container.textContent = "Nothing here yet.";
}

function renderInterests() {
  const filter = $("interest-filter").value.trim().toLowerCase();
  const matching = state.categories.filter((c) => !filter || c.toLowerCase().includes(filter));
  const shown = [...new Set([...state.interests, ...matching.slice(0, SHOWN_CATEGORIES)])];
  $("interests").replaceChildren(...shown.map((category) => {
    const chip = document.createElement("button");
    chip.type = "button";
    chip.className = "chip" + (state.interests.has(category) ? " on" : "");
    chip.dataset.testid = "interest";
    chip.dataset.category = category;
    chip.setAttribute("aria-pressed", state.interests.has(category));
    chip.title = category;
    chip.textContent = category.split(" > ").pop();
    chip.addEventListener("click", () => toggleInterest(category));
    return chip;
  }));
}

function note(text) {
  const li = document.createElement("li");
  li.textContent = text;
  $("history").prepend(li);
}

// ---------------------------------------------------------------- actions

async function refreshRecommendations() {
  const generation = ++state.generation;
  try {
    const data = await api("GET", `/recommend?${query({ user: state.user, n: 10 })}`);
    if (generation !== state.generation) return; // a newer refresh is under way
    renderCards($("recommendations"), data.items, { showReason: true });
    $("recommendations").dataset.generation = generation; // tests wait on this
  } catch (error) {
    status(error.message, true);
  }
}

async function toggleInterest(category) {
  state.interests.has(category) ? state.interests.delete(category) : state.interests.add(category);
  renderInterests();
  try {
    await api("PUT", `/users/${userPath()}/profile`, { interests: [...state.interests] });
    status(state.interests.size ? `Interests: ${[...state.interests].join(", ")}` : "No interests chosen");
  } catch (error) {
    status(error.message, true);
  }
  await refreshRecommendations();
}

async function viewItem(item) {
  const event = { event_id: randomId(), user_id: state.user, item_id: item.item_id, type: "view" };
  try {
    const stored = await api("POST", "/events", { events: [event] });
    if (stored.rejected && stored.rejected.length) throw new Error(stored.rejected[0].reason);
    note(`viewed ${item.title || item.item_id}`);
    status(`Viewed “${item.title || item.item_id}”`);
  } catch (error) {
    status(error.message, true);
  }
  await refreshRecommendations();
}

async function search(event) {
  event.preventDefault();
  const q = $("search-input").value.trim();
  if (!q) return;
  try {
    const data = await api("GET", `/search?${query({ q, user: state.user, n: 10 })}`);
    // lexical matches say "matches your search", results close only in meaning "related to your search"
    renderCards($("search-results"), data.items, { showReason: true });
    if (!data.items.length) $("search-results").textContent = `No products match “${q}”.`;
    $("search-results").dataset.query = q;
    await api("POST", "/events", { events: [{ event_id: randomId(), user_id: state.user, type: "search", query: q }] });
    note(`searched “${q}”`);
    status(`${data.items.length} results for “${q}”`);
  } catch (error) {
    status(error.message, true);
  }
  await refreshRecommendations();
}

async function forgetMe() {
  try {
    const erased = await api("DELETE", `/users/${userPath()}`);
    state.interests.clear();
    renderInterests();
    $("history").replaceChildren();
    status(`Erased ${erased.events} events and ${erased.profiles} profile(s) for ${state.user}`);
  } catch (error) {
    status(error.message, true);
  }
  await refreshRecommendations();
}

function setUser(user) {
  state.user = user;
  state.interests.clear(); // the API does not read profiles back: start this user's page afresh
  localStorage.setItem("coldrec-demo-user", user);
  $("user-id").value = user;
  $("history").replaceChildren();
  renderInterests();
  refreshRecommendations();
}

async function start() {
  $("search-form").addEventListener("submit", search);
  $("forget").addEventListener("click", forgetMe);
  $("refresh").addEventListener("click", refreshRecommendations);
  $("interest-filter").addEventListener("input", renderInterests);
  $("user-id").addEventListener("change", () => setUser($("user-id").value.trim() || `demo-${randomId()}`));
  try {
    state.categories = (await api("GET", "/categories")).categories;
  } catch (error) {
    status(error.message, true);
  }
  const remembered = new URLSearchParams(location.search).get("user") || localStorage.getItem("coldrec-demo-user");
  setUser(remembered || `demo-${randomId()}`);
  document.body.dataset.ready = "1";
}

start();
