// Helpers shared by the dashboard's modules: DOM building, formatting for people, HTTP.
export const ACTIVE = ["RUNNING", "CANCELLING", "PENDING", "PENDING_APPROVAL"];
export const TERMINAL = ["COMPLETED", "FAILED", "CANCELLED"];
export const ICONS = { COMPLETED: "✔", FAILED: "✖", CANCELLED: "⊘", RUNNING: "▶", CANCELLING: "◼", PENDING: "…", PENDING_APPROVAL: "?" };
export const $ = (id) => document.getElementById(id);
export const SVG = "http://www.w3.org/2000/svg";

// ---- helpers -------------------------------------------------------------------------
export function el(tag, attrs, ...children) {
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
export function svg(tag, attrs) {
  const node = document.createElementNS(SVG, tag);
  for (const [k, v] of Object.entries(attrs || {})) node.setAttribute(k, v);
  return node;
}
const pad = (n) => String(n).padStart(2, "0");
export function clock(ts) {
  if (typeof ts !== "number" || !ts) return "-";
  const d = new Date(ts * 1000);
  const today = new Date();
  const time = `${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())}`;
  return d.toDateString() === today.toDateString() ? time : `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())} ${time}`;
}
export function ago(ts) {
  if (typeof ts !== "number" || !ts) return "-";
  const s = Math.max(0, Date.now() / 1000 - ts);
  if (s < 60) return `${s.toFixed(0)} s`;
  if (s < 3600) return `${(s / 60).toFixed(0)} min`;
  return clock(ts);
}
export function duration(ms) {
  if (typeof ms !== "number") return "-";
  if (ms < 1000) return `${ms.toFixed(ms < 10 ? 1 : 0)} ms`;
  if (ms < 60000) return `${(ms / 1000).toFixed(1)} s`;
  return `${Math.floor(ms / 60000)} min ${Math.round((ms % 60000) / 1000)} s`;
}
export function bytes(n) {
  if (typeof n !== "number") return "-";
  if (n < 1024) return `${n} B`;
  if (n < 1048576) return `${(n / 1024).toFixed(1)} KiB`;
  return `${(n / 1048576).toFixed(1)} MiB`;
}
export const json = (v) => JSON.stringify(v, null, 2);

// ---- HTTP ----------------------------------------------------------------------------
export class ApiError extends Error {
  constructor(status, body) {
    super(`${status} ${body}`);
    this.status = status;
    this.body = body;
  }
}
export function authHeaders() {
  const name = (localStorage.getItem("pyoco.auth_header") || "X-API-Key").trim();
  const key = (localStorage.getItem("pyoco.auth_key") || "").trim();
  return key && name ? { [name]: key } : {};
}
export async function api(path, options = {}) {
  const headers = Object.assign({}, authHeaders(), options.headers || {});
  const response = await fetch(path, Object.assign({}, options, { headers }));
  if (!response.ok) throw new ApiError(response.status, await response.text());
  const type = response.headers.get("content-type") || "";
  return type.includes("json") ? response.json() : response.text();
}
export const postJson = (path, body) => api(path, { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify(body || {}) });
export function showError(e) {
  $("errorLine").textContent = e instanceof ApiError ? `${e.status} ${e.body}` : String(e && e.message || e);
}
export function touched() {
  $("lastUpdate").textContent = clock(Date.now() / 1000);
}
