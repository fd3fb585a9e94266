// The dashboard's script: reads the admin API with the key the operator signed in with and
// writes what it read into the page. Every value from the API is written as text (never as
// markup): records hold prompts and answers that anyone could have written.
"use strict";

const KEY_ITEM = "switchyard-dashboard-key";
// How often each view reads the gateway again. Health and alerts are in memory and cheap; the
// request list reads the store, so less often; spend sums the store, so only when asked (its
// Show button), as does a request's record.
const REFRESH_MS = { providers: 5000, alerts: 5000, requests: 15000 };
const STATE_ORDER = { cooling: 0, degraded: 1, healthy: 2 };

const state = {
  key: sessionStorage.getItem(KEY_ITEM) || "",
  view: "providers",
  requestFilters: new URLSearchParams(),
  nextCursor: null,
  pagedBack: false,
  openRequest: null,
  timer: null,
};

class ApiError extends Error {
  constructor(status, message) {
    super(message);
    this.status = status;
  }
}

async function api(path) {
  const response = await fetch(path, { headers: { Authorization: "Bearer " + state.key } });
  let body = null;
  try {
    body = await response.json();
  } catch (_) {
    body = null;
  }
  if (!response.ok) {
    const message = body && body.error && body.error.message ? body.error.message : response.statusText;
    throw new ApiError(response.status, message);
  }
  return body;
}

// A text node or an element with text: `el("td", {class: "num"}, "12")`.
function el(tag, attributes, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attributes || {})) {
    if (value !== null && value !== undefined) node.setAttribute(name, value);
  }
  for (const child of children) {
    if (child === null || child === undefined) continue;
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return node;
}

function $(id) {
  return document.getElementById(id);
}

function fill(tbody, rows) {
  tbody.replaceChildren(...rows);
}

function number(value, digits) {
  if (value === null || value === undefined) return "–";
  return Number(value).toLocaleString("en-US", { maximumFractionDigits: digits ?? 0, minimumFractionDigits: digits ?? 0 });
}

function dollars(nanos) {
  if (nanos === null || nanos === undefined) return "–";
  return (nanos / 1e9).toLocaleString("en-US", { minimumFractionDigits: 6, maximumFractionDigits: 6 });
}

function percent(rate) {
  return rate === null || rate === undefined ? "–" : (rate * 100).toFixed(1) + " %";
}

function time(ms) {
  return ms ? new Date(ms).toISOString().replace("T", " ").replace(/\.\d+Z$/, "Z") : "–";
}

function badge(kind, value) {
  return el("span", { class: "state " + kind + "-" + value }, value);
}

function showProblem(message) {
  const problem = $("problem");
  problem.textContent = message || "";
  problem.hidden = !message;
}

// --- Signing in -------------------------------------------------------------------------

// A link may carry the key once (`/dashboard#key=...`, as the demo prints it): it is kept
// for this tab and taken out of the address at once. The fragment never reaches a server.
function takeFragment() {
  const params = new URLSearchParams(location.hash.slice(1));
  const key = params.get("key");
  if (key) {
    state.key = key;
    sessionStorage.setItem(KEY_ITEM, key);
    params.delete("key");
  }
  const rest = params.toString();
  history.replaceState(null, "", location.pathname + (rest ? "#" + rest : ""));
  return { request: params.get("request"), view: params.get("view") };
}

function showSignIn(message) {
  clearTimeout(state.timer);
  $("sign-in").hidden = false;
  $("tabs").hidden = true;
  $("sign-out").hidden = true;
  for (const view of document.querySelectorAll(".view")) view.hidden = true;
  showProblem(message);
}

function signOut() {
  state.key = "";
  sessionStorage.removeItem(KEY_ITEM);
  showSignIn("");
}

// --- Views ------------------------------------------------------------------------------

function show(view) {
  state.view = view;
  $("sign-in").hidden = true;
  $("tabs").hidden = false;
  $("sign-out").hidden = false;
  for (const section of document.querySelectorAll(".view")) {
    section.hidden = section.id !== "view-" + view;
  }
  const tab = view === "request" ? "requests" : view;
  for (const button of document.querySelectorAll("#tabs button")) {
    if (button.dataset.view === tab) button.setAttribute("aria-current", "page");
    else button.removeAttribute("aria-current");
  }
  return refresh();
}

async function refresh() {
  clearTimeout(state.timer);
  try {
    await Promise.all([loaders[state.view](), loadAlertCount()]);
    showProblem("");
    $("refreshed").textContent = "Updated " + new Date().toLocaleTimeString();
  } catch (e) {
    if (e instanceof ApiError && (e.status === 401 || e.status === 403)) {
      showSignIn(e.status === 401 ? "That key is not valid here: " + e.message : "That key may not read the admin API: " + e.message);
      return;
    }
    showProblem("Could not read the gateway: " + e.message);
  }
  // Live views follow the gateway; older pages of requests stay as read.
  const every = REFRESH_MS[state.view];
  if (every && !state.pagedBack) {
    state.timer = setTimeout(refresh, every);
  }
}

async function loadProviders() {
  const body = await api("/admin/deployments");
  const deployments = body.data.slice().sort((a, b) =>
    (STATE_ORDER[a.state] ?? 3) - (STATE_ORDER[b.state] ?? 3) ||
    b.recent_error_rate - a.recent_error_rate ||
    a.deployment.localeCompare(b.deployment));

  const providers = new Map();
  for (const d of deployments) {
    const p = providers.get(d.provider) || { name: d.provider, state: "healthy", errorRate: 0, inFlight: 0, lastMinute: 0, deployments: 0 };
    if ((STATE_ORDER[d.state] ?? 3) < (STATE_ORDER[p.state] ?? 3)) p.state = d.state;
    p.errorRate = Math.max(p.errorRate, d.recent_error_rate);
    p.inFlight += d.in_flight;
    p.lastMinute += d.requests_this_minute;
    p.deployments += 1;
    providers.set(d.provider, p);
  }
  $("provider-cards").replaceChildren(...[...providers.values()].map((p) =>
    el("div", { class: "card card-" + p.state, "data-provider": p.name },
      el("h3", null, p.name + " ", badge("state", p.state)),
      el("p", null, "Error rate " + percent(p.errorRate)),
      el("p", null, number(p.lastMinute) + " requests in the last minute, " + number(p.inFlight) + " in flight"),
      el("p", { class: "muted" }, p.deployments + (p.deployments === 1 ? " deployment" : " deployments")))));

  fill($("deployments").tBodies[0], deployments.map((d) =>
    el("tr", { "data-deployment": d.deployment, "data-alias": d.alias },
      el("td", null, badge("state", d.state)),
      el("td", null, d.alias),
      el("td", null, d.deployment),
      el("td", null, d.provider),
      el("td", { class: "num" }, percent(d.recent_error_rate)),
      el("td", { class: "num" }, number(d.latency_p50_ms)),
      el("td", { class: "num" }, number(d.latency_p99_ms)),
      el("td", { class: "num" }, number(d.in_flight)),
      el("td", { class: "num" }, number(d.requests_this_minute)),
      el("td", { class: "num" }, number(d.successes)),
      el("td", { class: "num" }, number(d.failures)),
      el("td", { class: "num" }, d.cooldown_remaining_ms ? number(d.cooldown_remaining_ms / 1000, 1) : "–"))));
}

async function loadAlertCount() {
  if (state.view === "alerts") return;
  const body = await api("/admin/alerts");
  $("alert-count").textContent = body.data.length ? String(body.data.length) : "";
}

async function loadAlerts() {
  const body = await api("/admin/alerts");
  $("alert-count").textContent = body.data.length ? String(body.data.length) : "";
  $("no-alerts").hidden = body.data.length > 0;
  $("alerts").hidden = body.data.length === 0;
  fill($("alerts").tBodies[0], body.data.map((a) =>
    el("tr", { "data-rule": a.rule },
      el("td", null, a.rule),
      el("td", null, a.kind),
      el("td", null, a.subject),
      el("td", { class: "num" }, number(a.value, 3)),
      el("td", { class: "num" }, number(a.threshold, 3)),
      el("td", null, time(a.since_ms)))));
}

function requestRow(r) {
  const tokens = r.tokens || {};
  const caller = r.caller ? (r.caller.key_name || r.caller.key_id) : "";
  const row = el("tr", { class: "link", "data-request": r.id },
    el("td", null, time(r.started_at_ms)),
    el("td", null, badge("outcome", r.outcome)),
    el("td", { class: "num" }, r.status),
    el("td", null, r.alias || r.requested_model || ""),
    el("td", null, r.deployment || "–"),
    el("td", null, caller),
    el("td", { class: "num" }, (r.attempts || []).length),
    el("td", { class: "num" }, number(r.duration_ms, 1)),
    el("td", { class: "num" }, number(r.ttft_ms, 1)),
    el("td", { class: "num" }, number(tokens.input)),
    el("td", { class: "num" }, number(tokens.output)),
    el("td", { class: "num" }, dollars(r.cost_nanos)));
  row.addEventListener("click", () => openRequest(r.id));
  return row;
}

async function loadRequests() {
  const params = new URLSearchParams(state.requestFilters);
  params.set("limit", "50");
  const body = await api("/admin/requests?" + params);
  fill($("requests").tBodies[0], body.data.map(requestRow));
  state.nextCursor = body.data.length === 50 ? body.next_cursor : null;
  state.pagedBack = false;
  $("more-requests").hidden = !state.nextCursor;
}

async function loadOlderRequests() {
  const params = new URLSearchParams(state.requestFilters);
  params.set("limit", "50");
  params.set("cursor", state.nextCursor);
  clearTimeout(state.timer);
  state.pagedBack = true;
  const body = await api("/admin/requests?" + params);
  $("requests").tBodies[0].append(...body.data.map(requestRow));
  state.nextCursor = body.data.length === 50 ? body.next_cursor : null;
  $("more-requests").hidden = !state.nextCursor;
}

function openRequest(id) {
  state.openRequest = id;
  history.replaceState(null, "", location.pathname + "#request=" + encodeURIComponent(id));
  return show("request");
}

function summaryItem(term, value) {
  return [el("dt", null, term), el("dd", null, value)];
}

async function loadRequest() {
  const r = await api("/admin/requests/" + encodeURIComponent(state.openRequest));
  const tokens = r.tokens || {};
  const caller = r.caller || {};
  $("request-id").textContent = r.id;
  $("request-summary").replaceChildren(...[
    summaryItem("Started", time(r.started_at_ms)),
    summaryItem("Outcome", badge("outcome", r.outcome)),
    summaryItem("Status", r.status),
    summaryItem("Endpoint", (r.ingress || "") + " " + (r.endpoint || "") + (r.stream ? ", streamed" : "")),
    summaryItem("Model asked", r.requested_model || "–"),
    summaryItem("Alias", r.alias || "–"),
    summaryItem("Deployment", r.deployment || "–"),
    summaryItem("Caller", [caller.key_name || caller.key_id, caller.team, caller.customer].filter(Boolean).join(" · ") || "–"),
    summaryItem("Latency", number(r.duration_ms, 1) + " ms" + (r.ttft_ms !== undefined ? ", first token " + number(r.ttft_ms, 1) + " ms" : "")),
    summaryItem("Tokens", number(tokens.input) + " in, " + number(tokens.output) + " out" +
      (tokens.cache_read ? ", " + number(tokens.cache_read) + " read from cache" : "") +
      (tokens.reasoning ? ", " + number(tokens.reasoning) + " reasoning" : "") +
      (tokens.estimated ? " (estimated)" : "")),
    summaryItem("Cost", "$" + dollars(r.cost_nanos)),
    summaryItem("Finish reason", r.finish_reason || "–"),
    summaryItem("Trace", r.trace && r.trace.trace_id ? r.trace.trace_id : "–"),
  ].flat());
  $("request-error").textContent = r.error_code ? r.error_code + ": " + (r.error_message || "") : "None.";

  const decision = r.decision || {};
  fill($("request-candidates").tBodies[0], (decision.candidates || []).map((c) =>
    el("tr", null,
      el("td", null, c.alias),
      el("td", null, c.deployment),
      el("td", { class: "num" }, number(c.score, 3)),
      el("td", null, c.cooling ? "yes" : "no"))));

  fill($("request-attempts").tBodies[0], (r.attempts || []).map((a, i) =>
    el("tr", { "data-attempt": i + 1 },
      el("td", null, i + 1),
      el("td", null, a.deployment),
      el("td", { class: "num" }, a.status ?? "–"),
      el("td", { title: a.error_message }, a.error_class || "",
        a.error_message ? el("div", { class: "muted" }, a.error_message) : null),
      el("td", { class: "num" }, number(a.latency_ms, 1)),
      el("td", null, [a.retry && "retry", a.fell_back && "fallback", a.hedged && "hedged", a.cancelled && "cancelled"].filter(Boolean).join(", ")))));

  const prompt = Array.isArray(r.prompt) ? r.prompt : [];
  $("request-prompt").replaceChildren(...(prompt.length ? prompt.flatMap((m) => [
    el("div", { class: "message-role" }, m.role || ""),
    el("pre", { class: "text" }, typeof m.content === "string" ? m.content : JSON.stringify(m.content, null, 2)),
  ]) : [el("p", { class: "muted" }, "Not kept.")]));
  $("request-response").textContent = r.response === undefined || r.response === null ? "Not kept." :
    (typeof r.response === "string" ? r.response : JSON.stringify(r.response, null, 2));
}

async function loadSpend() {
  const form = $("spend-filters");
  const params = new URLSearchParams({ by: form.elements.by.value });
  if (form.elements.since.value) params.set("since", form.elements.since.value);
  const body = await api("/admin/spend?" + params);
  const rows = body.data.slice().sort((a, b) => b.cost_nanos - a.cost_nanos);
  fill($("spend").tBodies[0], rows.map((g) =>
    el("tr", { "data-group": g.group ?? "" },
      el("td", null, g.group ?? "(none)"),
      el("td", { class: "num" }, number(g.requests)),
      el("td", { class: "num" }, number(g.input_tokens)),
      el("td", { class: "num" }, number(g.output_tokens)),
      el("td", { class: "num" }, dollars(g.cost_nanos)))));
  const total = (field) => rows.reduce((sum, g) => sum + (g[field] || 0), 0);
  $("spend").tFoot.replaceChildren(el("tr", null,
    el("td", null, "Total"),
    el("td", { class: "num" }, number(total("requests"))),
    el("td", { class: "num" }, number(total("input_tokens"))),
    el("td", { class: "num" }, number(total("output_tokens"))),
    el("td", { class: "num", id: "spend-total" }, dollars(total("cost_nanos")))));
}

const loaders = {
  providers: loadProviders,
  alerts: loadAlerts,
  requests: loadRequests,
  request: loadRequest,
  spend: loadSpend,
};

// --- Wiring -----------------------------------------------------------------------------

function start() {
  for (const button of document.querySelectorAll("#tabs button")) {
    button.addEventListener("click", () => {
      history.replaceState(null, "", location.pathname + "#view=" + button.dataset.view);
      show(button.dataset.view);
    });
  }
  $("sign-in-form").addEventListener("submit", (event) => {
    event.preventDefault();
    state.key = $("key").value.trim();
    sessionStorage.setItem(KEY_ITEM, state.key);
    $("key").value = "";
    show("providers");
  });
  $("sign-out").addEventListener("click", signOut);
  $("request-filters").addEventListener("submit", (event) => {
    event.preventDefault();
    const params = new URLSearchParams();
    for (const [name, value] of new FormData(event.target)) {
      if (value.trim()) params.set(name, value.trim());
    }
    state.requestFilters = params;
    show("requests");
  });
  $("more-requests").addEventListener("click", () => loadOlderRequests().catch((e) => showProblem(e.message)));
  $("back-to-requests").addEventListener("click", () => {
    history.replaceState(null, "", location.pathname + "#view=requests");
    show("requests");
  });
  $("spend-filters").addEventListener("submit", (event) => {
    event.preventDefault();
    show("spend");
  });

  // The address names the view (`#view=requests`) or a request (`#request=ID`), so a
  // link to either can be shared (without the key, which never stays in it).
  const { request, view } = takeFragment();
  if (!state.key) {
    showSignIn("");
  } else if (request) {
    openRequest(request);
  } else {
    show(Object.hasOwn(loaders, view) && view !== "request" ? view : "providers");
  }
}

start();
