// Pyoco Control Deck: the gateway's dashboard. Plain browser JavaScript (no build step, no
// library); it only calls the public HTTP API, with the key the operator typed in.
"use strict";
(() => {
  const MESSAGES = {
    en: {
      skip: "Skip to runs", subtitle: "A cheerful operations room for your flows",
      authHeader: "Header", authKey: "API key", apply: "Apply",
      runs: "Runs", detail: "Run detail", ops: "Ops", wheels: "Wheels", schedules: "Schedules",
      approvals: "Approvals", status: "Status", flow: "Flow", tag: "Tag", runId: "Run id",
      worker: "Worker", sort: "Sort", order: "Order", limit: "Limit", opsDefault: "ops default",
      applyFilters: "Apply filters", cancel: "Cancel", cancelling: "Cancelling…",
      pickRun: "Pick a run to see its flow.", awaitingApproval: "Waiting for approval",
      approve: "Approve", reject: "Reject", flowGraph: "Flow", story: "Execution Story",
      recipe: "Flow Recipe", kpiRunning: "Engines running", kpiCompleted: "Completed today",
      kpiFailed: "Failed today", resetCounter: "RESET COUNTER", throughput: "Runs finished / min",
      latency: "HTTP latency (mean)", queues: "Queues", workers: "Workers", state: "State",
      includeHidden: "include hidden", wheelFile: "Wheel file", wheelTags: "Tags (CSV)",
      upload: "Upload", name: "Name", size: "Size", tags: "Tags", modified: "Modified",
      history: "History", type: "Type", nextRun: "Next run", dispatched: "Dispatched",
      lastError: "Last error", lastUpdate: "Last update", all: "All", running: "Running",
      completed: "Completed", failed: "Failed", noRuns: "No runs yet.", noWorkers: "No workers.",
      noWheels: "No wheels.", noQueues: "No queued work.", noApprovals: "Nothing waits for approval.",
      noSchedules: "No schedules.", hide: "Hide", unhide: "Unhide", hidden: "hidden",
      disconnected: "No heartbeat: the worker is gone or cut off.", lastSeen: "last seen",
      currentRun: "running", lastResult: "last", queued: "queued", liveWorkers: "workers",
      unserved: "work waiting, no live worker", taskState: "State", attempts: "Attempts",
      started: "Started", ended: "Ended", duration: "Duration", error: "Error", output: "Output",
      stdout: "stdout", stderr: "stderr", traceback: "Traceback", noGraph: "No tasks yet.",
      watch_idle: "idle", watch_connecting: "connecting", watch_streaming: "streaming",
      watch_reconnecting: "reconnecting", watch_retrying: "retrying", watch_terminal: "terminal",
      yamlNote: "the YAML text travels with the job and is not stored in the run",
      uploaded: "uploaded", pickFile: "Choose a .whl file first.",
    },
    ja: {
      skip: "実行一覧へ", subtitle: "ワークフローのたのしい運用ルーム",
      authHeader: "ヘッダー", authKey: "APIキー", apply: "適用",
      runs: "実行", detail: "実行の詳細", ops: "運用", wheels: "Wheel", schedules: "スケジュール",
      approvals: "承認待ち", status: "状態", flow: "フロー", tag: "タグ", runId: "実行ID",
      worker: "ワーカー", sort: "並び順", order: "向き", limit: "件数", opsDefault: "運用順",
      applyFilters: "絞り込む", cancel: "キャンセル", cancelling: "キャンセル中…",
      pickRun: "実行を選ぶとフローが表示されます。", awaitingApproval: "承認を待っています",
      approve: "承認", reject: "却下", flowGraph: "フロー", story: "実行ストーリー",
      recipe: "フローレシピ", kpiRunning: "稼働中エンジン", kpiCompleted: "本日の完了",
      kpiFailed: "本日の失敗", resetCounter: "カウンターをリセット", throughput: "完了数 / 分",
      latency: "HTTP 応答時間 (平均)", queues: "キュー", workers: "ワーカー", state: "状態",
      includeHidden: "非表示も含める", wheelFile: "Wheel ファイル", wheelTags: "タグ (CSV)",
      upload: "アップロード", name: "名前", size: "サイズ", tags: "タグ", modified: "更新",
      history: "履歴", type: "種類", nextRun: "次回", dispatched: "投入回数",
      lastError: "直近のエラー", lastUpdate: "最終更新", all: "すべて", running: "実行中",
      completed: "完了", failed: "失敗", noRuns: "まだ実行はありません。", noWorkers: "ワーカーはいません。",
      noWheels: "Wheel はありません。", noQueues: "待ちの仕事はありません。", noApprovals: "承認待ちはありません。",
      noSchedules: "スケジュールはありません。", hide: "隠す", unhide: "表示する", hidden: "非表示",
      disconnected: "ハートビートがありません。停止したか切断されています。", lastSeen: "最終確認",
      currentRun: "実行中", lastResult: "前回", queued: "待ち", liveWorkers: "ワーカー",
      unserved: "仕事があるのに稼働中のワーカーがいません", taskState: "状態", attempts: "試行回数",
      started: "開始", ended: "終了", duration: "所要時間", error: "エラー", output: "出力",
      stdout: "標準出力", stderr: "標準エラー", traceback: "トレースバック", noGraph: "タスクはまだありません。",
      watch_idle: "待機", watch_connecting: "接続中", watch_streaming: "受信中",
      watch_reconnecting: "再接続中", watch_retrying: "再試行中", watch_terminal: "終了",
      yamlNote: "YAML 本文はジョブと一緒に送られ、実行には保存されません",
      uploaded: "アップロードしました", pickFile: "先に .whl ファイルを選んでください。",
    },
  };
  const metaLang = (document.querySelector('meta[name="pyoco-dashboard-lang"]') || {}).content || "";
  const LANG = metaLang.startsWith("ja") ? "ja" : "en";
  const t = (key) => MESSAGES[LANG][key] ?? MESSAGES.en[key] ?? key;

  const ACTIVE = ["RUNNING", "CANCELLING", "PENDING", "PENDING_APPROVAL"];
  const TERMINAL = ["COMPLETED", "FAILED", "CANCELLED"];
  const ICONS = { COMPLETED: "✔", FAILED: "✖", CANCELLED: "⊘", RUNNING: "▶", CANCELLING: "◼", PENDING: "…", PENDING_APPROVAL: "?" };
  const $ = (id) => document.getElementById(id);
  const SVG = "http://www.w3.org/2000/svg";

  const state = {
    runs: new Map(),
    maxUpdated: 0,
    selected: null,
    snapshot: null,
    watchToken: 0,
    watchAbort: null,
    pickedTask: null,
    graphKey: "",
    features: { schedules: false, approvals: false, known: false },
    samples: [],
  };

  // ---- helpers -------------------------------------------------------------------------
  function el(tag, attrs, ...children) {
    const node = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (v === null || v === undefined || v === false) continue;
      if (k === "class") node.className = v;
      else if (k === "text") node.textContent = v;
      else if (k.startsWith("on")) node.addEventListener(k.slice(2), v);
      else node.setAttribute(k, v === true ? "" : v);
    }
    for (const c of children) if (c !== null && c !== undefined) node.append(c);
    return node;
  }
  function svg(tag, attrs) {
    const node = document.createElementNS(SVG, tag);
    for (const [k, v] of Object.entries(attrs || {})) node.setAttribute(k, v);
    return node;
  }
  const pad = (n) => String(n).padStart(2, "0");
  function clock(ts) {
    if (typeof ts !== "number" || !ts) return "-";
    const d = new Date(ts * 1000);
    const today = new Date();
    const time = `${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())}`;
    return d.toDateString() === today.toDateString() ? time : `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())} ${time}`;
  }
  function ago(ts) {
    if (typeof ts !== "number" || !ts) return "-";
    const s = Math.max(0, Date.now() / 1000 - ts);
    if (s < 60) return `${s.toFixed(0)} s`;
    if (s < 3600) return `${(s / 60).toFixed(0)} min`;
    return clock(ts);
  }
  function duration(ms) {
    if (typeof ms !== "number") return "-";
    if (ms < 1000) return `${ms.toFixed(ms < 10 ? 1 : 0)} ms`;
    if (ms < 60000) return `${(ms / 1000).toFixed(1)} s`;
    return `${Math.floor(ms / 60000)} min ${Math.round((ms % 60000) / 1000)} s`;
  }
  function bytes(n) {
    if (typeof n !== "number") return "-";
    if (n < 1024) return `${n} B`;
    if (n < 1048576) return `${(n / 1024).toFixed(1)} KiB`;
    return `${(n / 1048576).toFixed(1)} MiB`;
  }
  const json = (v) => JSON.stringify(v, null, 2);

  // ---- HTTP ----------------------------------------------------------------------------
  class ApiError extends Error {
    constructor(status, body) {
      super(`${status} ${body}`);
      this.status = status;
      this.body = body;
    }
  }
  function authHeaders() {
    const name = (localStorage.getItem("pyoco.auth_header") || "X-API-Key").trim();
    const key = (localStorage.getItem("pyoco.auth_key") || "").trim();
    return key && name ? { [name]: key } : {};
  }
  async function api(path, options = {}) {
    const headers = Object.assign({}, authHeaders(), options.headers || {});
    const response = await fetch(path, Object.assign({}, options, { headers }));
    if (!response.ok) throw new ApiError(response.status, await response.text());
    const type = response.headers.get("content-type") || "";
    return type.includes("json") ? response.json() : response.text();
  }
  const postJson = (path, body) => api(path, { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify(body || {}) });
  function showError(e) {
    $("errorLine").textContent = e instanceof ApiError ? `${e.status} ${e.body}` : String(e && e.message || e);
  }
  function touched() {
    $("lastUpdate").textContent = clock(Date.now() / 1000);
  }

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
  async function selectRun(runId) {
    stopWatch();
    state.selected = runId;
    state.pickedTask = null;
    state.graphKey = "";
    $("taskRecord").hidden = true;
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
    $("approvalBox").hidden = !(state.features.approvals && snap.status === "PENDING_APPROVAL");
    drawGraph(snap);
    if (state.pickedTask) showTask(state.pickedTask);
  }

  // ---- the flow graph -------------------------------------------------------------------
  function graphOf(snap) {
    const drawn = snap.flow_graph && Array.isArray(snap.flow_graph.nodes) ? snap.flow_graph : null;
    const nodes = drawn ? [...drawn.nodes] : [];
    for (const name of Object.keys(snap.tasks || {})) if (!nodes.includes(name)) nodes.push(name);
    const edges = drawn && Array.isArray(drawn.edges) ? drawn.edges.filter((e) => nodes.includes(e[0]) && nodes.includes(e[1])) : [];
    return { nodes, edges };
  }
  // Columns by longest path from a root, rows in order of appearance.
  function layout(nodes, edges) {
    const depth = new Map(nodes.map((n) => [n, 0]));
    for (let pass = 0; pass < nodes.length; pass++) {
      let moved = false;
      for (const [from, to] of edges) {
        if (depth.get(to) < depth.get(from) + 1) {
          depth.set(to, depth.get(from) + 1);
          moved = true;
        }
      }
      if (!moved) break;
    }
    const columns = [];
    for (const n of nodes) (columns[depth.get(n)] ||= []).push(n);
    return columns.filter(Boolean);
  }
  function drawGraph(snap) {
    const { nodes, edges } = graphOf(snap);
    const box = $("flowGraph");
    const key = JSON.stringify([nodes, edges]);
    if (key !== state.graphKey) {
      state.graphKey = key;
      box.replaceChildren();
      if (!nodes.length) {
        box.setAttribute("width", "240");
        box.setAttribute("height", "40");
        const text = svg("text", { x: "12", y: "24", fill: "#6b7080" });
        text.textContent = t("noGraph");
        box.append(text);
      } else {
        buildGraph(box, nodes, edges);
      }
    }
    for (const g of box.querySelectorAll(".node")) {
      const s = (snap.tasks || {})[g.dataset.task] || "PENDING";
      g.dataset.state = s;
      g.setAttribute("aria-label", `${g.dataset.task}: ${s}`);
      g.querySelector("title").textContent = `${g.dataset.task}: ${s}`;
    }
  }
  function buildGraph(box, nodes, edges) {
    const columns = layout(nodes, edges);
    const H = 34, GAPX = 46, GAPY = 14, M = 10;
    const widths = columns.map((col) => Math.min(200, Math.max(72, ...col.map((n) => n.length * 7.5 + 24))));
    const pos = new Map();
    let x = M;
    columns.forEach((col, c) => {
      col.forEach((n, r) => pos.set(n, { x, y: M + r * (H + GAPY), w: widths[c] }));
      x += widths[c] + GAPX;
    });
    const height = M * 2 + Math.max(...columns.map((c) => c.length)) * (H + GAPY) - GAPY;
    box.setAttribute("width", String(x - GAPX + M));
    box.setAttribute("height", String(height));
    const defs = svg("defs");
    const marker = svg("marker", { id: "arrow", viewBox: "0 0 10 10", refX: "9", refY: "5", markerWidth: "7", markerHeight: "7", orient: "auto" });
    marker.append(svg("path", { d: "M0,0 L10,5 L0,10 z", fill: "#b9b4a6" }));
    defs.append(marker);
    box.append(defs);
    for (const [from, to] of edges) {
      const a = pos.get(from), b = pos.get(to);
      const x1 = a.x + a.w, y1 = a.y + H / 2, x2 = b.x, y2 = b.y + H / 2, mid = (x1 + x2) / 2;
      box.append(svg("path", { class: "edge", d: `M${x1},${y1} C${mid},${y1} ${mid},${y2} ${x2},${y2}`, "marker-end": "url(#arrow)" }));
    }
    for (const n of nodes) {
      const p = pos.get(n);
      const g = svg("g", { class: "node", tabindex: "0", role: "button", transform: `translate(${p.x},${p.y})` });
      g.dataset.task = n;
      g.append(svg("title"));
      g.append(svg("rect", { width: String(p.w), height: String(H), rx: "8" }));
      const label = svg("text", { x: String(p.w / 2), y: String(H / 2) });
      label.textContent = n.length > 24 ? `${n.slice(0, 23)}…` : n;
      g.append(label);
      g.addEventListener("click", () => showTask(n));
      g.addEventListener("keydown", (e) => { if (e.key === "Enter" || e.key === " ") { e.preventDefault(); showTask(n); } });
      box.append(g);
    }
  }
  function showTask(name) {
    state.pickedTask = name;
    for (const g of $("flowGraph").querySelectorAll(".node")) g.classList.toggle("picked", g.dataset.task === name);
    const snap = state.snapshot || {};
    const rec = (snap.task_records || {})[name] || {};
    const s = (snap.tasks || {})[name] || rec.state || "PENDING";
    const rows = [[t("taskState"), s], [t("attempts"), rec.attempts ?? (rec.started_at ? 1 : 0)], [t("started"), clock(rec.started_at)], [t("ended"), clock(rec.ended_at)], [t("duration"), duration(rec.duration_ms)]];
    if (rec.error) rows.push([t("error"), rec.error]);
    const box = $("taskRecord");
    box.hidden = false;
    box.dataset.task = name;
    const blocks = [];
    for (const [k, label] of [["stdout", t("stdout")], ["stderr", t("stderr")], ["traceback", t("traceback")]]) {
      if (rec[k]) blocks.push(el("h3", { text: label }), el("pre", { text: String(rec[k]) }));
    }
    if (rec.output !== undefined && rec.output !== null) blocks.push(el("h3", { text: t("output") }), el("pre", { text: json(rec.output) }));
    box.replaceChildren(el("h3", { text: name }), el("dl", {}, ...rows.flatMap(([k, v]) => [el("dt", { text: k }), el("dd", { text: String(v) })])), ...blocks);
  }
  async function cancelSelected() {
    const runId = state.selected;
    if (!runId) return;
    $("detailCancel").disabled = true;
    try {
      const snap = await postJson(`/runs/${encodeURIComponent(runId)}/cancel`, {});
      if (state.selected === runId) renderDetail(Object.assign({}, state.snapshot, snap, { task_records: (state.snapshot || {}).task_records }));
      if (merge([snap])) renderRuns();
    } catch (e) {
      showError(e);
    }
  }
  async function decide(runId, verb) {
    try {
      await postJson(`/runs/${encodeURIComponent(runId)}/${verb}`, {});
      await Promise.all([refreshRunsDelta(), loadApprovals()]);
      if (state.selected === runId) selectRun(runId);
    } catch (e) {
      showError(e);
    }
  }

  // ---- workers, metrics, queues ----------------------------------------------------------
  async function loadWorkers() {
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
  async function loadMetrics() {
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
    const prev = state.samples[state.samples.length - 1];
    if (prev) {
      const dt = Math.max(0.001, sample.at - prev.at);
      sample.rate = Math.max(0, (sample.finished - prev.finished) / dt * 60);
      const n = sample.latCount - prev.latCount;
      sample.latency = n > 0 ? (sample.latSum - prev.latSum) / n * 1000 : prev.latency || 0;
    }
    state.samples.push(sample);
    if (state.samples.length > 40) state.samples.shift();
    spark("sparkThroughput", "throughputValue", state.samples.map((s) => s.rate), (v) => v.toFixed(1));
    spark("sparkLatency", "latencyValue", state.samples.map((s) => s.latency), (v) => duration(v));
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
  async function loadQueues() {
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
  async function loadWheels() {
    const [wheels, history] = await Promise.all([api("/wheels"), api("/wheels/history?limit=20")]);
    $("wheelsList").replaceChildren(...(wheels.length ? wheels.map((w) => el("tr", {},
      el("td", { text: w.name }), el("td", { text: bytes(w.size_bytes) }),
      el("td", { text: (w.tags || []).join(", ") || "*" }), el("td", { text: w.mtime ? clock(Date.parse(w.mtime) / 1000) : "-" })))
      : [el("tr", {}, el("td", { colspan: "4", class: "empty", text: t("noWheels") }))]));
    $("wheelHistory").replaceChildren(...history.map((h) => el("li", { text: `${clock(h.occurred_at)} ${h.action} ${h.wheel_name} ${bytes(h.size_bytes)}` })));
  }
  async function uploadWheel(e) {
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
      $("errorLine").textContent = `${t("uploaded")}: ${file.name}`;
      $("wheelFile").value = "";
      await loadWheels();
    } catch (err) {
      showError(err);
    }
  }
  // Which optional routes this gateway serves, from its own OpenAPI document.
  async function loadFeatures() {
    const doc = await api("/openapi.json");
    const paths = Object.keys(doc.paths || {});
    state.features = { known: true, schedules: paths.includes("/schedules"), approvals: paths.includes("/runs/{run_id}/approve") };
    $("schedulesPanel").hidden = !state.features.schedules;
    $("approvalsPanel").hidden = !state.features.approvals;
    for (const a of document.querySelectorAll(".needs-schedules")) a.hidden = !state.features.schedules;
    for (const a of document.querySelectorAll(".needs-approvals")) a.hidden = !state.features.approvals;
  }
  async function loadSchedules() {
    if (!state.features.schedules) return;
    const rows = await api("/schedules");
    $("schedulesList").replaceChildren(...(rows.length ? rows.map((s) => el("tr", {},
      el("td", { text: s.flow_name }), el("td", { text: s.schedule_type }), el("td", { text: s.status }),
      el("td", { text: clock(s.next_run_at) }), el("td", { text: String(s.dispatch_count ?? 0) }), el("td", { text: s.last_error || "" })))
      : [el("tr", {}, el("td", { colspan: "6", class: "empty", text: t("noSchedules") }))]));
  }
  async function loadApprovals() {
    if (!state.features.approvals) return;
    const body = await api("/runs?status=PENDING_APPROVAL&updated_after=0&limit=50");
    const items = body.items || [];
    $("approvalsList").replaceChildren(...(items.length ? items.map((r) => el("li", { "data-run-id": r.run_id },
      el("div", { class: "worker-head" }, el("b", { text: r.flow_name }),
        el("button", { type: "button", onclick: () => decide(r.run_id, "approve") }, t("approve")),
        el("button", { type: "button", class: "danger", onclick: () => decide(r.run_id, "reject") }, t("reject"))),
      el("span", { class: "meta", text: `${r.run_id} · ${clock(r.updated_at)}` })))
      : [el("li", { class: "empty", text: t("noApprovals") })]));
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
      await Promise.all([loadSchedules(), loadApprovals()]);
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
      if (!state.features.known) await loadFeatures();
      await loadSchedules();
      await loadApprovals();
    });
  }
  init();
})();
