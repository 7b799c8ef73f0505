// Pyoco Control Deck: the gateway's dashboard. Plain browser JavaScript modules (no build
// step, no library); it only calls the public HTTP API, with the key the operator typed in.
// This module: the runs list (diff-mode polling), the run detail with its live SSE watch, and
// the wiring. graph.js draws the flow, ops.js the rest of the page.
import { ACTIVE, ICONS, TERMINAL, $, ApiError, api, authHeaders, clock, el, json, postJson, showError, touched } from "./util.js";
import { LANG, t } from "./i18n.js";
import { drawGraph, resetGraph } from "./graph.js";
import { features, loadApprovals, loadFeatures, loadMetrics, loadQueues, loadSchedules, loadWheels, loadWorkers, uploadWheel } from "./ops.js";

const state = {
  runs: new Map(),
  maxUpdated: 0,
  selected: null,
  snapshot: null,
  watchToken: 0,
  watchAbort: null,
};

// ---- runs ----------------------------------------------------------------------------
function filters() {
  const limit = Math.min(200, Math.max(1, parseInt($("fLimit").value, 10) || 50));
  return {
    status: $("fStatus").value, flow: $("fFlow").value.trim(), tag: $("fTag").value.trim(),
    runId: $("fRunId").value.trim(), worker: $("fWorker").value.trim(),
    sort: $("fSort").value, order: $("fSort").value === "ops_default" ? "desc" : $("fOrder").value, limit,
  };
}
function runsQuery(f, after, cursor, limit) {
  const q = new URLSearchParams({ limit: String(limit), updated_after: String(after) });
  if (f.status) q.set("status", f.status);
  if (f.flow) q.set("flow", f.flow);
  if (f.tag) q.set("tag", f.tag);
  if (cursor) q.set("cursor", cursor);
  return `/runs?${q}`;
}
function merge(items) {
  let changed = false;
  for (const item of items) {
    const old = state.runs.get(item.run_id);
    if (!old || (item.updated_at || 0) >= (old.updated_at || 0)) {
      state.runs.set(item.run_id, Object.assign({}, old, item));
      changed = true;
    }
    state.maxUpdated = Math.max(state.maxUpdated, item.updated_at || 0);
  }
  return changed;
}
async function fetchPages(f, after, limit) {
  let cursor = null;
  for (let page = 0; page < 8; page++) {
    const body = await api(runsQuery(f, after, cursor, limit));
    merge(body.items || []);
    cursor = body.next_cursor;
    if (!cursor) break;
  }
}
async function loadRuns() {
  const f = filters();
  state.runs.clear();
  state.maxUpdated = 0;
  await fetchPages(f, 0, f.limit);
  renderRuns();
}
// Every 2 s: only what changed since the newest update seen (the list's diff mode).
async function refreshRunsDelta() {
  const before = state.maxUpdated;
  await fetchPages(filters(), before, 200);
  if (state.maxUpdated !== before) renderRuns();
  $("errorLine").textContent = "";
  touched();
  // The list saw a newer state of the selected run than the detail shows, and no watch is
  // running (it ended): read the run again, which restarts the watch unless it is terminal.
  const listed = state.selected && state.runs.get(state.selected);
  const watching = ["connecting", "streaming", "reconnecting", "retrying"].includes($("watchState").dataset.state);
  if (listed && state.snapshot && !watching && (listed.updated_at || 0) > (state.snapshot.updated_at || 0)) {
    await selectRun(state.selected, { keepTask: true });
  }
}
/** True when `snap` is older than the run detail on show (same run). */
function isOlder(snap) {
  return !!(state.snapshot && snap && state.snapshot.run_id === snap.run_id && (snap.updated_at || 0) < (state.snapshot.updated_at || 0));
}
function rank(status) {
  if (ACTIVE.includes(status)) return 0;
  if (status === "FAILED" || status === "CANCELLED") return 1;
  return 2;
}
function sortedRuns(f) {
  let runs = [...state.runs.values()];
  if (f.status) runs = runs.filter((r) => r.status === f.status);
  if (f.runId) runs = runs.filter((r) => (r.run_id || "").includes(f.runId));
  if (f.worker) runs = runs.filter((r) => (r.worker_id || "").includes(f.worker));
  const key = f.sort === "ops_default" ? "updated_at" : f.sort;
  const value = (r) => r[key] ?? r.updated_at ?? "";
  runs.sort((a, b) => {
    if (f.sort === "ops_default" && rank(a.status) !== rank(b.status)) return rank(a.status) - rank(b.status);
    const x = value(a), y = value(b);
    const c = x < y ? -1 : x > y ? 1 : 0;
    return f.order === "asc" ? c : -c;
  });
  return runs.slice(0, f.limit);
}
function renderRuns() {
  const f = filters();
  const runs = sortedRuns(f);
  const all = [...state.runs.values()];
  const count = (s) => all.filter((r) => r.status === s).length;
  const chips = f.status
    ? [[f.status, count(f.status)]]
    : [[t("all"), all.length], [t("running"), count("RUNNING")], [t("completed"), count("COMPLETED")], [t("failed"), count("FAILED")]];
  $("runStats").replaceChildren(...chips.map(([label, n]) => el("span", { class: "chip" }, `${label} `, el("b", { text: String(n) }))));
  const list = $("runsList");
  const focused = document.activeElement && document.activeElement.dataset ? document.activeElement.dataset.runId : null;
  if (!runs.length) {
    list.replaceChildren(el("li", { class: "empty", text: t("noRuns") }));
    return;
  }
  list.replaceChildren(...runs.map((r) => {
    const li = el("li", {
      tabindex: "0", role: "button", "data-run-id": r.run_id, "data-status": r.status,
      "aria-current": r.run_id === state.selected ? "true" : null,
      onclick: () => selectRun(r.run_id),
      onkeydown: (e) => { if (e.key === "Enter" || e.key === " ") { e.preventDefault(); selectRun(r.run_id); } },
    },
    el("span", { class: `icon st-${r.status}`, "aria-hidden": "true", text: ICONS[r.status] || "•" }),
    el("span", { class: "title" }, `${r.flow_name || "?"} `, el("span", { class: `status st-${r.status}`, text: r.status })),
    el("span", { class: "meta" }, el("span", { class: "chip", text: r.tag || "-" }), ` ${r.worker_id || ""}`),
    el("span", { class: "meta", text: `${r.run_id} · ${clock(r.updated_at)}` }));
    return li;
  }));
  if (focused) {
    const again = list.querySelector(`[data-run-id="${CSS.escape(focused)}"]`);
    if (again) again.focus();
  }
}

// ---- run detail and the live watch ----------------------------------------------------
function setWatch(s) {
  const badge = $("watchState");
  badge.dataset.state = s;
  badge.className = `badge watch-${s}`;
  badge.textContent = t(`watch_${s}`);
}
async function selectRun(runId, { keepTask = false } = {}) {
  stopWatch();
  state.selected = runId;
  if (!keepTask) resetGraph();
  for (const li of $("runsList").children) {
    if (li.dataset.runId === runId) li.setAttribute("aria-current", "true");
    else li.removeAttribute("aria-current");
  }
  try {
    const snap = await api(`/runs/${encodeURIComponent(runId)}?include=records`);
    if (state.selected !== runId) return;
    renderDetail(snap);
    watch(runId, state.watchToken);
  } catch (e) {
    showError(e);
  }
}
function stopWatch() {
  state.watchToken += 1;
  if (state.watchAbort) state.watchAbort.abort();
  state.watchAbort = null;
  setWatch("idle");
}
// SSE over fetch (EventSource cannot send the key header). Reconnects after 0.9 s when a
// stream ends and 1.2 s after an error, resuming from the last updated_at, until terminal.
async function watch(runId, token) {
  if (token !== state.watchToken) return;
  if (state.snapshot && TERMINAL.includes(state.snapshot.status)) {
    setWatch("terminal");
    return;
  }
  const q = new URLSearchParams({ timeout_sec: "60", include: "records" });
  if (state.snapshot && state.snapshot.updated_at) q.set("since", String(state.snapshot.updated_at));
  const abort = new AbortController();
  state.watchAbort = abort;
  setWatch(state.watchRetry ? state.watchRetry : "connecting");
  let retryIn = 900;
  try {
    const response = await fetch(`/runs/${encodeURIComponent(runId)}/watch?${q}`, { headers: authHeaders(), signal: abort.signal });
    if (!response.ok) throw new ApiError(response.status, await response.text());
    setWatch("streaming");
    const reader = response.body.getReader();
    const decoder = new TextDecoder();
    let buffer = "";
    for (;;) {
      const { value, done } = await reader.read();
      if (done) break;
      buffer += decoder.decode(value, { stream: true }).replace(/\r\n/g, "\n");
      let cut;
      while ((cut = buffer.indexOf("\n\n")) >= 0) {
        const frame = buffer.slice(0, cut);
        buffer = buffer.slice(cut + 2);
        onFrame(runId, token, frame);
      }
    }
    state.watchRetry = "reconnecting";
  } catch (e) {
    if (abort.signal.aborted || token !== state.watchToken) return;
    showError(e);
    state.watchRetry = "retrying";
    retryIn = 1200;
  }
  if (token !== state.watchToken) return;
  if (state.snapshot && TERMINAL.includes(state.snapshot.status)) {
    state.watchRetry = null;
    setWatch("terminal");
    return;
  }
  setWatch(state.watchRetry || "reconnecting");
  setTimeout(() => watch(runId, token), retryIn);
}
function onFrame(runId, token, frame) {
  let event = "message";
  const data = [];
  for (const line of frame.split("\n")) {
    if (line.startsWith("event:")) event = line.slice(6).trim();
    else if (line.startsWith("data:")) data.push(line.slice(5).replace(/^ /, ""));
  }
  if (event !== "snapshot" || token !== state.watchToken || state.selected !== runId) return;
  try {
    const body = JSON.parse(data.join("\n"));
    state.watchRetry = null;
    if (isOlder(body.snapshot)) return;
    renderDetail(body.snapshot);
    if (merge([body.snapshot])) renderRuns();
    touched();
  } catch (e) {
    showError(e);
  }
}
function renderDetail(snap) {
  state.snapshot = snap;
  $("detailHint").hidden = true;
  const story = {};
  for (const k of ["run_id", "status", "cancel_requested_at", "cancel_requested_by", "worker_id", "start_time", "end_time", "heartbeat_at", "updated_at", "tasks", "task_records_truncated", "error"]) {
    story[k] = snap[k] ?? (k === "tasks" ? {} : k === "task_records_truncated" ? false : null);
  }
  $("detailJson").textContent = json(story);
  $("recipeJson").textContent = json({
    flow_name: snap.flow_name, tag: snap.tag, tags: snap.tags, params: snap.params,
    workflow_yaml: { sha256: snap.workflow_yaml_sha256 ?? null, bytes: snap.workflow_yaml_bytes ?? null, note: t("yamlNote") },
  });
  const cancel = $("detailCancel");
  cancel.disabled = !(snap.status === "PENDING" || snap.status === "RUNNING");
  cancel.textContent = snap.status === "CANCELLING" ? t("cancelling") : t("cancel");
  $("approvalBox").hidden = !(features.approvals && snap.status === "PENDING_APPROVAL");
  drawGraph(snap);
}

async function cancelSelected() {
  const runId = state.selected;
  if (!runId) return;
  $("detailCancel").disabled = true;
  try {
    const snap = await postJson(`/runs/${encodeURIComponent(runId)}/cancel`, {});
    // The watch may have shown the worker's CANCELLED before this answer arrived: never go
    // back to an older snapshot.
    if (state.selected === runId && !isOlder(snap)) {
      renderDetail(Object.assign({}, state.snapshot, snap, { task_records: (state.snapshot || {}).task_records }));
    }
    if (merge([snap])) renderRuns();
  } catch (e) {
    showError(e);
  }
}
async function decide(runId, verb) {
  try {
    await postJson(`/runs/${encodeURIComponent(runId)}/${verb}`, {});
    await Promise.all([refreshRunsDelta(), loadApprovals(decide)]);
    if (state.selected === runId) selectRun(runId);
  } catch (e) {
    showError(e);
  }
}

// ---- wiring ------------------------------------------------------------------------------
function every(ms, task) {
  let busy = false;
  setInterval(async () => {
    if (busy || document.hidden) return;
    busy = true;
    try { await task(); } catch (e) { showError(e); } finally { busy = false; }
  }, ms);
}
async function attempt(task) {
  try { await task(); } catch (e) { showError(e); }
}
async function boot() {
  $("errorLine").textContent = "";
  await attempt(loadRuns);
  await Promise.all([attempt(loadWorkers), attempt(loadMetrics), attempt(loadQueues), attempt(loadWheels)]);
  await attempt(async () => {
    await loadFeatures();
    await Promise.all([loadSchedules(), loadApprovals(decide)]);
  });
  touched();
}
function init() {
  document.documentElement.lang = LANG;
  for (const node of document.querySelectorAll("[data-i18n]")) node.textContent = t(node.dataset.i18n);
  setWatch("idle");
  $("apiHeader").value = localStorage.getItem("pyoco.auth_header") || "X-API-Key";
  $("apiKey").value = localStorage.getItem("pyoco.auth_key") || "";
  $("authForm").addEventListener("submit", (e) => {
    e.preventDefault();
    localStorage.setItem("pyoco.auth_header", $("apiHeader").value.trim() || "X-API-Key");
    localStorage.setItem("pyoco.auth_key", $("apiKey").value.trim());
    boot();
  });
  $("runsFilters").addEventListener("submit", (e) => {
    e.preventDefault();
    $("errorLine").textContent = "";
    attempt(loadRuns).then(() => { if (state.selected) selectRun(state.selected); });
  });
  $("fSort").addEventListener("change", () => { $("fOrder").disabled = $("fSort").value === "ops_default"; renderRuns(); });
  $("fOrder").disabled = true;
  $("wState").addEventListener("change", () => attempt(loadWorkers));
  $("wIncludeHidden").addEventListener("change", () => attempt(loadWorkers));
  $("detailCancel").addEventListener("click", cancelSelected);
  $("detailApprove").addEventListener("click", () => state.selected && decide(state.selected, "approve"));
  $("detailReject").addEventListener("click", () => state.selected && decide(state.selected, "reject"));
  $("wheelUpload").addEventListener("submit", uploadWheel);
  // The original keeps a baseline without subtracting it; kept for its tests' sake.
  $("resetCounter").addEventListener("click", () => localStorage.setItem("pyoco.metrics_baseline", JSON.stringify({ at: Date.now() / 1000 })));
  boot();
  every(2000, refreshRunsDelta);
  every(5000, async () => { await loadMetrics(); await loadQueues(); });
  every(10000, loadWorkers);
  every(15000, async () => {
    await loadWheels();
    if (!features.known) await loadFeatures();
    await loadSchedules();
    await loadApprovals(decide);
  });
}
init();
