// Small shared helpers: API calls, DOM building, formatting, JSON highlighting.

export const KINDS = [
  ["process", "process."], ["file", "file."], ["net", "net."], ["llm", "llm."], ["mcp", "mcp."], ["http", "http."],
  ["http", "sse."], ["tls", "ssl."], ["stdio", "stdio."], ["system", "system."], ["session", "session."],
];
export const KIND_NAMES = ["process", "file", "net", "llm", "mcp", "http", "tls", "stdio", "system", "session", "other"];
export const KIND_PREFIXES = {
  process: ["process."], file: ["file."], net: ["net."], llm: ["llm."], mcp: ["mcp."], http: ["http.", "sse."], tls: ["ssl."],
  stdio: ["stdio."], system: ["system."], session: ["session."],
};
export const KIND_COLORS = {
  process: "#7aa2f7", file: "#9ece6a", net: "#e0af68", llm: "#bb9af7", mcp: "#73daca", http: "#7dcfff", tls: "#2ac3de",
  stdio: "#ff9e64", system: "#a9b1d6", session: "#f7768e", other: "#7c85a3",
};

export function kindOf(topic) {
  for (const [name, prefix] of KINDS) if (topic.startsWith(prefix)) return name;
  return "other";
}

export class ApiError extends Error {}

export async function api(path, params = {}) {
  const url = new URL(path, location.origin);
  for (const [k, v] of Object.entries(params)) {
    if (v === null || v === undefined || v === "" || (Array.isArray(v) && !v.length)) continue;
    url.searchParams.set(k, Array.isArray(v) ? v.join(",") : String(v));
  }
  const resp = await fetch(url, { credentials: "same-origin", headers: { Accept: "application/json" } });
  if (!resp.ok) {
    let msg = `${resp.status} ${resp.statusText}`;
    try { msg = (await resp.json()).error || msg; } catch { /* not JSON */ }
    throw new ApiError(msg);
  }
  return resp.json();
}

// h("div.a.b", {title: "x", onclick: f, dataset: {k: 1}}, child, "text", [more])
export function h(sel, attrs, ...children) {
  const [tag, ...classes] = sel.split(".");
  const el = document.createElement(tag || "div");
  if (classes.length) el.className = classes.join(" ");
  if (attrs) {
    for (const [k, v] of Object.entries(attrs)) {
      if (v === null || v === undefined || v === false) continue;
      if (k === "dataset") Object.assign(el.dataset, v);
      else if (k === "style" && typeof v === "object") {
        for (const [prop, val] of Object.entries(v)) {
          if (prop.startsWith("--")) el.style.setProperty(prop, val); else el.style[prop] = val;
        }
      }
      else if (k.startsWith("on")) el.addEventListener(k.slice(2), v);
      else if (k === "class") el.className += (el.className ? " " : "") + v;
      else if (k === "text") el.textContent = v;
      else el.setAttribute(k, v === true ? "" : v);
    }
  }
  append(el, children);
  return el;
}

function append(el, children) {
  for (const c of children) {
    if (c === null || c === undefined || c === false) continue;
    if (Array.isArray(c)) append(el, c);
    else el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
}

// An axis label for a time in seconds: HH:MM, with seconds (or ms) when the span is short.
export function clock(sec, span) {
  const d = new Date(sec * 1000);
  const hm = `${pad(d.getHours())}:${pad(d.getMinutes())}`;
  if (span > 1800) return hm;
  if (span > 20) return `${hm}:${pad(d.getSeconds())}`;
  return `${pad(d.getMinutes())}:${pad(d.getSeconds())}.${pad(d.getMilliseconds(), 3).slice(0, span > 2 ? 1 : 3)}`;
}

// A uPlot x axis over a time scale in seconds whose labels never run into each other: the tick
// increment is the smallest one whose ticks lie at least a label's width (measured in the axis font
// with the fonts the page has now) plus a gap apart, and each increment has its own format: ms,
// seconds, HH:MM (a midnight tick shows its date), dates, months, years. uPlot calls `space` with
// the plot's width and range and takes the first increment whose ticks are at least that far apart,
// so `space` returns exactly the spacing of the increment chosen here.
const MINUTE = 60, HOUR = 3600, DAY = 86400, MONTH = 30 * DAY, YEAR = 365 * DAY;
const TIME_INCRS = [
  0.001, 0.002, 0.005, 0.01, 0.02, 0.025, 0.05, 0.1, 0.2, 0.25, 0.5,
  1, 2, 5, 10, 15, 30, MINUTE, 2 * MINUTE, 5 * MINUTE, 10 * MINUTE, 15 * MINUTE, 30 * MINUTE,
  HOUR, 2 * HOUR, 3 * HOUR, 4 * HOUR, 6 * HOUR, 8 * HOUR, 12 * HOUR,
  DAY, 2 * DAY, 3 * DAY, 4 * DAY, 5 * DAY, 7 * DAY, 10 * DAY, 15 * DAY,
  MONTH, 2 * MONTH, 3 * MONTH, 4 * MONTH, 6 * MONTH, YEAR, 2 * YEAR, 5 * YEAR, 10 * YEAR, 25 * YEAR, 50 * YEAR, 100 * YEAR,
];
const MONTHS = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"];
const LABEL_GAP = 14;  // CSS px of blank between two labels

const decimals = (incr) => { let d = 0; while (d < 3 && Math.abs(Math.round(incr * 10 ** d) - incr * 10 ** d) > 1e-9) d++; return d; };
const hhmm = (d) => `${pad(d.getHours())}:${pad(d.getMinutes())}`;
const hhmmss = (d) => `${hhmm(d)}:${pad(d.getSeconds())}`;
const monthDay = (d) => `${MONTHS[d.getMonth()]} ${d.getDate()}`;

// One tick's label for a tick increment of `incr` seconds.
export function timeLabel(sec, incr) {
  const d = new Date(Math.round(sec * 1000));
  if (incr < 1) return `${hhmmss(d)}.${pad(d.getMilliseconds(), 3).slice(0, decimals(incr))}`;
  if (incr < MINUTE) return hhmmss(d);
  if (incr < DAY) return d.getHours() === 0 && d.getMinutes() === 0 ? monthDay(d) : hhmm(d);
  if (incr < MONTH) return monthDay(d);
  if (incr < YEAR) return `${MONTHS[d.getMonth()]} ${d.getFullYear()}`;
  return String(d.getFullYear());
}

let measureCtx = null;
// The widths (CSS px) of a label's parts in `font`, with the fonts the page has now.
function metrics(font) {
  measureCtx ||= document.createElement("canvas").getContext("2d");
  measureCtx.font = font;
  const w = (s) => measureCtx.measureText(s).width;
  return { digit: Math.max(...[..."0123456789"].map(w)), month: Math.max(...MONTHS.map(w)), colon: w(":"), dot: w("."), space: w(" ") };
}

// The widest label of an increment's format (every digit as wide as the font's widest).
function labelWidth(m, incr) {
  const date = m.month + m.space + 2 * m.digit;
  if (incr < 1) return (6 + decimals(incr)) * m.digit + 2 * m.colon + m.dot;
  if (incr < MINUTE) return 6 * m.digit + 2 * m.colon;
  if (incr < DAY) return Math.max(4 * m.digit + m.colon, date);
  if (incr < MONTH) return date;
  if (incr < YEAR) return m.month + m.space + 4 * m.digit;
  return 4 * m.digit;
}

// Axis options (merge into the axis): the font must be the axis's own `font`, in whole CSS pixels
// (uPlot scales the size for the screen and mangles fractional sizes such as 10.5px).
export function timeAxis(font) {
  return {
    font,
    incrs: TIME_INCRS,
    space: (u, axisIdx, min, max, dim) => {
      const range = max - min;
      if (!(range > 0) || !(dim > 0)) return 50;
      const m = metrics(font);
      for (const incr of TIME_INCRS) {
        const px = dim * incr / range;  // as uPlot computes it
        if (px >= labelWidth(m, incr) + LABEL_GAP) return px * (1 - 1e-9);
      }
      return dim;
    },
    values: (u, splits, axisIdx, space, incr) => splits.map((v) => timeLabel(v, incr)),
  };
}

// Replace el's children with `children`, under h()'s rules: null, undefined and false are skipped, arrays
// flattened. (The DOM's own append writes null as the text "null": "nullnull" where two optional parts were missing.)
export function fill(el, ...children) {
  while (el.firstChild) el.removeChild(el.firstChild);
  append(el, children);
  return el;
}

// Add `children` at the end of el, under the same rules.
export function add(el, ...children) {
  append(el, children);
  return el;
}

export function debounce(fn, ms) {
  let t = null;
  return (...args) => { clearTimeout(t); t = setTimeout(() => fn(...args), ms); };
}

const pad = (n, w = 2) => String(n).padStart(w, "0");

export const fmt = {
  time(ns) {
    if (ns === null || ns === undefined) return "—";
    const d = new Date(Number(ns) / 1e6);
    return `${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())}.${pad(d.getMilliseconds(), 3)}`;
  },
  datetime(ns) {
    if (ns === null || ns === undefined) return "—";
    const d = new Date(Number(ns) / 1e6);
    return `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())} ${fmt.time(ns)}`;
  },
  dur(ms) {
    if (ms === null || ms === undefined || Number.isNaN(ms)) return "—";
    if (ms < 1) return `${(ms * 1000).toFixed(0)} µs`;
    if (ms < 1000) return `${ms.toFixed(ms < 10 ? 1 : 0)} ms`;
    if (ms < 60_000) return `${(ms / 1000).toFixed(2)} s`;
    const m = Math.floor(ms / 60_000);
    return `${m}m ${Math.round((ms % 60_000) / 1000)}s`;
  },
  num(n) { return n === null || n === undefined ? "—" : Number(n).toLocaleString("en-US"); },
  compact(n) {
    if (n === null || n === undefined) return "—";
    if (Math.abs(n) >= 1e6) return `${(n / 1e6).toFixed(n >= 1e7 ? 0 : 1)}M`;
    if (Math.abs(n) >= 1e4) return `${(n / 1e3).toFixed(n >= 1e5 ? 0 : 1)}k`;
    return Number(n).toLocaleString("en-US");
  },
  usd(v) {
    if (v === null || v === undefined) return "—";
    if (v === 0) return "$0";
    // A cheap call still shows its cost, not $0.0000.
    if (v < 0.0001) return v < 0.000001 ? "<$0.000001" : `$${v.toFixed(6)}`;
    return v < 0.01 ? `$${v.toFixed(4)}` : `$${v.toFixed(v < 10 ? 3 : 2)}`;
  },
  bytes(n) {
    if (n === null || n === undefined) return "—";
    const units = ["B", "KB", "MB", "GB"];
    let i = 0;
    while (n >= 1024 && i < units.length - 1) { n /= 1024; i++; }
    return `${i ? n.toFixed(1) : n} ${units[i]}`;
  },
};

// Text with every occurrence of needle (case-insensitive) wrapped in <mark>.
export function marked(text, needle) {
  const frag = document.createDocumentFragment();
  text = String(text ?? "");
  if (!needle) { frag.append(text); return frag; }
  const lower = text.toLowerCase(), n = needle.toLowerCase();
  let i = 0;
  for (;;) {
    const j = lower.indexOf(n, i);
    if (j < 0) break;
    frag.append(text.slice(i, j), h("mark", null, text.slice(j, j + n.length)));
    i = j + n.length;
  }
  frag.append(text.slice(i));
  return frag;
}

const esc = (s) => s.replace(/[&<>"]/g, (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;" })[c]);

// Pretty JSON with token colours; matches of needle marked. Returns a <pre>.
export function jsonView(value, needle = "") {
  const text = JSON.stringify(value, null, 2) ?? "null";
  const re = /("(?:\\.|[^"\\])*")(\s*:)?|\b(true|false)\b|\bnull\b|-?\d+(?:\.\d+)?(?:[eE][+-]?\d+)?/g;
  let out = "", last = 0, m;
  while ((m = re.exec(text))) {
    out += esc(text.slice(last, m.index));
    const [tok] = m;
    let cls = "n";
    if (m[1]) cls = m[2] ? "k" : "s";
    else if (m[3]) cls = "b";
    else if (tok === "null") cls = "z";
    out += `<span class="${cls}">${esc(m[1] && m[2] ? m[1] : tok)}</span>${m[1] && m[2] ? esc(m[2]) : ""}`;
    last = m.index + tok.length;
  }
  out += esc(text.slice(last));
  if (needle) {
    // Mark matches inside text nodes only (never inside tags).
    const n = esc(needle).replace(/[.*+?^${}()|[\]\\]/g, "\\$&");
    out = out.replace(/(^|>)([^<]+)/g, (all, gt, body) => gt + body.replace(new RegExp(n, "gi"), (x) => `<mark>${x}</mark>`));
  }
  const pre = h("pre.json");
  pre.innerHTML = out;
  return pre;
}

// {"$bytes": "..."} -> the text, for display.
export function textOf(v) {
  if (v && typeof v === "object" && !Array.isArray(v)) {
    if ("$bytes" in v) return v.$bytes;
    if ("$base64" in v) return `<binary ${v.$base64.length} b64 chars>`;
  }
  if (v === null || v === undefined) return "";
  return typeof v === "string" ? v : JSON.stringify(v, null, 2);
}

export function toast(message, isError = false) {
  const el = document.getElementById("toast");
  el.textContent = message;
  el.className = "toast" + (isError ? " err" : "");
  el.hidden = false;
  clearTimeout(toast._t);
  toast._t = setTimeout(() => { el.hidden = true; }, 4000);
}

export function kindChips(counts, selected, onToggle) {
  const wrap = h("div.chips");
  for (const k of KIND_NAMES) {
    if (!counts[k]) continue;
    const on = !selected.size || selected.has(k);
    const chip = h(`button.chip.k-${k}${on ? ".on" : ".off"}`, { title: `Show ${k} events`, dataset: { kind: k } },
      h("span.sw"), k, h("span.n", null, fmt.compact(counts[k])));
    chip.addEventListener("click", () => onToggle(k));
    wrap.append(chip);
  }
  return wrap;
}

export function kindCounts(topics) {
  const out = {};
  for (const [t, n] of Object.entries(topics || {})) { const k = kindOf(t); out[k] = (out[k] || 0) + n; }
  return out;
}

export function topicsFor(kinds) {
  return [...kinds].flatMap((k) => KIND_PREFIXES[k] || []);
}
