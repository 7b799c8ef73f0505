// The run's flow: tasks as nodes in columns by depth, edges from the snapshot's flow_graph,
// coloured by task state; a node opens its task record (click, Enter or Space).
import { $, clock, duration, el, json, svg } from "./util.js";
import { t } from "./i18n.js";

// What is drawn: the structure (redrawn only when it changes), the run and the picked task.
const graph = { key: "", snapshot: null, picked: null };

/** Forgets the drawing and the picked task (another run was selected). */
export function resetGraph() {
  graph.key = "";
  graph.picked = null;
  $("taskRecord").hidden = true;
}

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
export function drawGraph(snap) {
  graph.snapshot = snap;
  const { nodes, edges } = graphOf(snap);
  const box = $("flowGraph");
  const key = JSON.stringify([nodes, edges]);
  if (key !== graph.key) {
    graph.key = key;
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
  if (graph.picked) showTask(graph.picked);
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
export function showTask(name) {
  graph.picked = name;
  for (const g of $("flowGraph").querySelectorAll(".node")) g.classList.toggle("picked", g.dataset.task === name);
  const snap = graph.snapshot || {};
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
