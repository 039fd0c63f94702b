// The shell: routing between the four views, the recording summary, and the live stream (SSE).
import { api, fmt, h, fill, add, toast } from "./util.js";
import { TimelineView } from "./timeline.js";
import { ProcessesView } from "./processes.js";
import { LlmView } from "./llm.js";
import { LogView } from "./log.js";

const state = {
  info: null,
  views: {},
  current: null,
  bus: new EventTarget(),  // "events": detail = array of one-line event rows, as pushed
};
// What tests and the benchmark read: when each view first rendered, and live arrivals.
window.agentsight = { ready: {}, live: [], state };

const VIEWS = { timeline: TimelineView, processes: ProcessesView, llm: LlmView, log: LogView };

function route() {
  const seg = location.pathname.split("/")[1] || "timeline";
  return VIEWS[seg] ? seg : "timeline";
}

async function show(name) {
  if (state.current === name) { state.views[name]?.routed?.(); return; }
  for (const [k, el] of Object.entries(sections())) el.hidden = k !== name;
  for (const a of document.querySelectorAll("#tabs a")) a.classList.toggle("active", a.dataset.view === name);
  state.current = name;
  let view = state.views[name];
  if (!view) {
    view = state.views[name] = new VIEWS[name](sections()[name], state);
    await view.init();
  } else {
    view.shown?.();
  }
  view.routed?.();
}

function sections() {
  return Object.fromEntries(Object.keys(VIEWS).map((k) => [k, document.getElementById(`view-${k}`)]));
}

export function navigate(path) {
  if (location.pathname + location.search !== path) history.pushState(null, "", path);
  show(route());
}
state.navigate = navigate;

function renderMeta() {
  const i = state.info;
  const el = fill(document.getElementById("recmeta"));
  if (!i) return;
  const span = i.start_ns && i.end_ns ? fmt.dur((i.end_ns - i.start_ns) / 1e6) : "—";
  fill(el,
    h("span", { title: "Recording file" }, i.file),
    h("span", null, h("b", { id: "meta-events" }, fmt.num(i.counts.events)), " events"),
    i.counts.mcp_calls ? h("span", { title: "MCP calls (stdio and HTTP)" }, h("b", { id: "meta-mcp" }, fmt.num(i.counts.mcp_calls)), " MCP calls") : null,
    h("span", null, h("b", null, span)),
  );
  // Connections whose TLS agentsight could not see: never silent.
  const unseen = i.tls_unseen || [];
  if (unseen.length) {
    const names = [...new Set(unseen.map((u) => u.path.split("/").pop()))].join(", ");
    const conns = unseen.reduce((n, u) => n + u.connections, 0);
    const late = unseen.every((u) => u.late);
    add(el, h("a.pill.warn", {
      id: "tls-unseen", href: `/log?id=${unseen[0].event_id}`, "data-nav": true,
      title: unseen.map((u) => `${u.path}: ${u.connections} connection(s): ${u.reason}`).join("\n"),
    }, `⚠ TLS ${late ? "seen late" : "not visible"}: ${names} (${conns})`));
  }
  document.getElementById("tab-llm-count").textContent = i.counts.llm_calls ? fmt.compact(i.counts.llm_calls) : "";
}

function connectLive() {
  const live = document.getElementById("live");
  const text = live.querySelector(".live-text");
  let source = null;
  let lastId = state.info ? state.info.last_id : 0;
  const open = () => {
    source = new EventSource(`/api/stream?after=${lastId}`);
    source.addEventListener("hello", () => {
      // A recording whose command has ended (record wrote ended_ns) is not going to grow.
      const ended = state.info && state.info.meta && state.info.meta.ended_ns;
      live.classList.toggle("on", !ended);
      text.textContent = ended ? "recorded" : "live";
    });
    source.addEventListener("events", (msg) => {
      const body = JSON.parse(msg.data);
      const rows = body.events;
      if (!rows.length) return;
      lastId = rows[rows.length - 1].id;
      const now = Date.now();
      for (const r of rows.slice(-50)) window.agentsight.live.push({ id: r.id, ts_ns: r.ts_ns, received_ms: now });
      if (window.agentsight.live.length > 500) window.agentsight.live.splice(0, window.agentsight.live.length - 500);
      onLive(rows);
      live.classList.remove("pulse");
      void live.offsetWidth;  // restart the pulse animation
      live.classList.add("pulse");
    });
    source.addEventListener("reset", (msg) => {
      lastId = JSON.parse(msg.data).last_id;
      toast("Many events arrived at once: views reloaded");
      refreshInfo().then(() => state.bus.dispatchEvent(new CustomEvent("reset")));
    });
    source.onerror = () => {
      live.classList.remove("on");
      text.textContent = "offline";
      if (source.readyState === EventSource.CLOSED) {
        source = null;
        setTimeout(open, 2000);
      }
    };
  };
  open();
}

function onLive(rows) {
  const i = state.info;
  if (i) {
    i.counts.events += rows.length;
    i.last_id = rows[rows.length - 1].id;
    if (!i.start_ns) i.start_ns = rows[0].ts_ns;
    i.end_ns = Math.max(i.end_ns || 0, rows[rows.length - 1].ts_ns);
    for (const r of rows) {
      i.topics[r.topic] = (i.topics[r.topic] || 0) + 1;
      if (r.topic === "llm.call") i.counts.llm_calls += 1;
      if (r.topic === "mcp.call") i.counts.mcp_calls = (i.counts.mcp_calls || 0) + 1;
    }
    renderMeta();
    if (rows.some((r) => r.topic === "ssl.unprobed")) refreshInfo();
  }
  state.bus.dispatchEvent(new CustomEvent("events", { detail: rows }));
}

async function refreshInfo() {
  state.info = await api("/api/info");
  renderMeta();
}

async function main() {
  document.addEventListener("click", (ev) => {
    const a = ev.target.closest("a[data-nav]");
    if (!a || ev.metaKey || ev.ctrlKey || ev.shiftKey || ev.button !== 0) return;
    ev.preventDefault();
    navigate(a.getAttribute("href"));
  });
  window.addEventListener("popstate", () => show(route()));
  // The timeline's lanes do not depend on the summary: ask for both at once.
  if (route() === "timeline") state.prefetch = { lanes: api("/api/lanes") };
  try {
    await refreshInfo();
  } catch (err) {
    toast(`Cannot load the recording: ${err.message}`, true);
    return;
  }
  connectLive();
  await show(route());
}

main();
