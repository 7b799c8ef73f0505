// The ops side of the page: workers, KPIs and sparklines from /metrics, queues from /health,
// wheels, and the schedules and approvals views when the gateway serves those routes.
import { $, ApiError, TERMINAL, ago, api, bytes, clock, duration, el, showError, svg } from "./util.js";
import { t } from "./i18n.js";

// Which optional routes the gateway serves (from its OpenAPI document).
export const features = { schedules: false, approvals: false, known: false };
// /metrics samples for the sparklines (the last 40).
const samples = [];

// ---- workers, metrics, queues ----------------------------------------------------------
export async function loadWorkers() {
  const q = new URLSearchParams({ scope: "all", limit: "200" });
  if ($("wState").value) q.set("state", $("wState").value);
  if ($("wIncludeHidden").checked) q.set("include_hidden", "true");
  const workers = await api(`/workers?${q}`);
  const list = $("workersList");
  if (!workers.length) {
    list.replaceChildren(el("li", { class: "empty", text: t("noWorkers") }));
    return;
  }
  list.replaceChildren(...workers.map((w) => el("li", { "data-worker-id": w.worker_id },
    el("div", { class: "worker-head" },
      el("b", { text: w.worker_id }),
      el("span", { class: `worker-state ws-${w.state}`, text: w.state }),
      w.hidden ? el("span", { class: "chip", text: t("hidden") }) : null,
      el("button", { type: "button", class: "ghost worker-toggle-hidden", onclick: () => toggleHidden(w) }, w.hidden ? t("unhide") : t("hide"))),
    w.state === "DISCONNECTED" ? el("span", { class: "note", text: t("disconnected") }) : null,
    el("span", { class: "meta", text: `${t("lastSeen")} ${ago(w.last_seen_at)} · ${(w.tags || []).join(", ")}` }),
    el("span", { class: "meta", text: w.current_run_id ? `${t("currentRun")} ${w.current_run_id}` : `${t("lastResult")} ${w.last_run_status || "-"} ${w.last_run_id || ""}` }))));
}
async function toggleHidden(w) {
  try {
    await api(`/workers/${encodeURIComponent(w.worker_id)}`, { method: "PATCH", headers: { "content-type": "application/json" }, body: JSON.stringify({ hidden: !w.hidden }) });
    await loadWorkers();
  } catch (e) {
    showError(e);
  }
}
function parseMetrics(text) {
  const out = [];
  for (const line of text.split("\n")) {
    const m = /^([a-zA-Z_:][\w:]*)(\{([^}]*)\})?\s+(\S+)/.exec(line);
    if (!m) continue;
    const labels = {};
    for (const part of (m[3] || "").matchAll(/(\w+)="((?:[^"\\]|\\.)*)"/g)) labels[part[1]] = part[2];
    out.push({ name: m[1], labels, value: Number(m[4]) });
  }
  return out;
}
export async function loadMetrics() {
  const series = parseMetrics(await api("/metrics"));
  const sum = (name, pred) => series.filter((s) => s.name === name && (!pred || pred(s.labels))).reduce((a, s) => a + s.value, 0);
  $("kpiRunning").textContent = String(sum("pyoco_runs_total", (l) => l.status === "RUNNING"));
  $("kpiCompletedToday").textContent = String(sum("pyoco_runs_today_total", (l) => l.status === "COMPLETED"));
  $("kpiFailedToday").textContent = String(sum("pyoco_runs_today_total", (l) => l.status === "FAILED"));
  const sample = {
    at: Date.now() / 1000,
    finished: sum("pyoco_runs_total", (l) => TERMINAL.includes(l.status)),
    latSum: sum("pyoco_http_request_duration_seconds_sum"),
    latCount: sum("pyoco_http_request_duration_seconds_count"),
  };
  const prev = samples[samples.length - 1];
  if (prev) {
    const dt = Math.max(0.001, sample.at - prev.at);
    sample.rate = Math.max(0, (sample.finished - prev.finished) / dt * 60);
    const n = sample.latCount - prev.latCount;
    sample.latency = n > 0 ? (sample.latSum - prev.latSum) / n * 1000 : prev.latency || 0;
  }
  samples.push(sample);
  if (samples.length > 40) samples.shift();
  spark("sparkThroughput", "throughputValue", samples.map((s) => s.rate), (v) => v.toFixed(1));
  spark("sparkLatency", "latencyValue", samples.map((s) => s.latency), (v) => duration(v));
}
function spark(id, valueId, raw, fmt) {
  const values = raw.filter((v) => typeof v === "number");
  const box = $(id);
  box.replaceChildren();
  if (!values.length) return;
  const max = Math.max(...values, 1e-9);
  const step = values.length > 1 ? 120 / (values.length - 1) : 0;
  const points = values.map((v, i) => `${(i * step).toFixed(1)},${(30 - (v / max) * 28).toFixed(1)}`).join(" ");
  box.append(svg("polyline", { points }));
  $(valueId).textContent = fmt(values[values.length - 1]);
}
export async function loadQueues() {
  let body;
  try {
    body = await api("/health");
  } catch (e) {
    if (!(e instanceof ApiError)) throw e;
    try { body = JSON.parse(e.body); } catch (_) { throw e; }
  }
  const tags = (body.components || {}).tags || {};
  const names = Object.keys(tags).sort();
  const list = $("queueList");
  if (!names.length) {
    list.replaceChildren(el("li", { class: "empty", text: t("noQueues") }));
    return;
  }
  list.replaceChildren(...names.map((name) => {
    const q = tags[name] || {};
    const unserved = q.queued > 0 && q.live_workers === 0;
    return el("li", { class: unserved ? "unserved" : null, "data-tag": name },
      el("b", { text: name }),
      el("span", { text: `${t("queued")} ${q.queued ?? "?"} · ${t("liveWorkers")} ${q.live_workers ?? "?"}` }),
      unserved ? el("span", { class: "tag-warning", role: "alert", text: `⚠ ${t("unserved")}` }) : null);
  }));
}

// ---- wheels, schedules, approvals ------------------------------------------------------
export async function loadWheels() {
  const [wheels, history] = await Promise.all([api("/wheels"), api("/wheels/history?limit=20")]);
  $("wheelsList").replaceChildren(...(wheels.length ? wheels.map((w) => el("tr", {},
    el("td", { text: w.name }), el("td", { text: bytes(w.size_bytes) }),
    el("td", { text: (w.tags || []).join(", ") || "*" }), el("td", { text: w.mtime ? clock(Date.parse(w.mtime) / 1000) : "-" })))
    : [el("tr", {}, el("td", { colspan: "4", class: "empty", text: t("noWheels") }))]));
  $("wheelHistory").replaceChildren(...history.map((h) => el("li", { text: `${clock(h.occurred_at)} ${h.action} ${h.wheel_name} ${bytes(h.size_bytes)}` })));
}
export async function uploadWheel(e) {
  e.preventDefault();
  const file = $("wheelFile").files[0];
  if (!file) {
    showError(t("pickFile"));
    return;
  }
  const form = new FormData();
  form.append("wheel", file, file.name);
  if ($("wheelTags").value.trim()) form.append("tags", $("wheelTags").value.trim());
  try {
    await api("/wheels", { method: "POST", body: form });
    $("wheelStatus").textContent = `${t("uploaded")}: ${file.name}`;
    $("wheelFile").value = "";
    await loadWheels();
  } catch (err) {
    showError(err);
  }
}
// Which optional routes this gateway serves, from its own OpenAPI document.
export async function loadFeatures() {
  const doc = await api("/openapi.json");
  const paths = Object.keys(doc.paths || {});
  Object.assign(features, { known: true, schedules: paths.includes("/schedules"), approvals: paths.includes("/runs/{run_id}/approve") });
  $("schedulesPanel").hidden = !features.schedules;
  $("approvalsPanel").hidden = !features.approvals;
  for (const a of document.querySelectorAll(".needs-schedules")) a.hidden = !features.schedules;
  for (const a of document.querySelectorAll(".needs-approvals")) a.hidden = !features.approvals;
}
export async function loadSchedules() {
  if (!features.schedules) return;
  const rows = await api("/schedules");
  $("schedulesList").replaceChildren(...(rows.length ? rows.map((s) => el("tr", {},
    el("td", { text: s.flow_name }), el("td", { text: s.schedule_type }), el("td", { text: s.status }),
    el("td", { text: clock(s.next_run_at) }), el("td", { text: String(s.dispatch_count ?? 0) }), el("td", { text: s.last_error || "" })))
    : [el("tr", {}, el("td", { colspan: "6", class: "empty", text: t("noSchedules") }))]));
}
export async function loadApprovals(decide) {
  if (!features.approvals) return;
  const body = await api("/runs?status=PENDING_APPROVAL&updated_after=0&limit=50");
  const items = body.items || [];
  $("approvalsList").replaceChildren(...(items.length ? items.map((r) => el("li", { "data-run-id": r.run_id },
    el("div", { class: "worker-head" }, el("b", { text: r.flow_name }),
      el("button", { type: "button", onclick: () => decide(r.run_id, "approve") }, t("approve")),
      el("button", { type: "button", class: "danger", onclick: () => decide(r.run_id, "reject") }, t("reject"))),
    el("span", { class: "meta", text: `${r.run_id} · ${clock(r.updated_at)}` })))
    : [el("li", { class: "empty", text: t("noApprovals") })]));
}

