// Process tree: the agent's process hierarchy; under each process its LLM calls, MCP calls and tool
// runs in time order, then its files and connections. The right pane details the selected process,
// or one MCP call with the LLM calls it is tied to (/processes?mcp=EVENT_ID).
import { api, fmt, h, fill, debounce } from "./util.js";
import { loadMcp, mcpWhat, renderMcpDetail, statusPill } from "./mcp.js";

export class ProcessesView {
  constructor(root, state) {
    this.root = root;
    this.state = state;
    this.expanded = new Set();
    this.openLists = new Set();  // "<key>:files" / "<key>:conns" shown under a node
    this.details = new Map();  // node key -> /api/processes/<pid>?start_ns=...
    this.selected = null;
    this.needle = "";
  }

  async init() {
    this.search = h("input", { type: "search", placeholder: "Find a process, argument or file…", spellcheck: "false" });
    this.search.addEventListener("input", debounce(() => { this.needle = this.search.value.trim().toLowerCase(); this.renderTree(); }, 150));
    this.summary = h("span.count-label");
    this.treeEl = h("div.tree", { id: "proc-tree" });
    this.detailEl = h("div.scroll", { id: "proc-detail" });
    this.root.append(h("div.split", null,
      h("div.pane.left", null,
        h("div.pane-head", null, h("h2", null, "Process tree"), h("label.search", null, this.search), h("div.spacer"), this.summary),
        h("div.scroll", null, this.treeEl)),
      h("div.pane.right", null, this.detailEl)));
    await this.load();
    const first = this.nodes.find((n) => n.agent) || this.roots[0];
    if (first) this.select(first.key);
    window.agentsight.ready.processes = performance.now();
    this.state.bus.addEventListener("events", (e) => {
      if (e.detail.some((r) => /^(process|llm|file|net|mcp)\./.test(r.topic))) this.reloadSoon();
    });
  }

  reloadSoon() {
    if (this._t) return;
    this._t = setTimeout(async () => {
      this._t = null; this.details.clear(); await this.load();
      if (this.mcpShown) this.showMcp(this.mcpShown); else if (this.selected) this.select(this.selected);
    }, 1000);
  }

  async load() {
    const [procs, calls, mcp] = await Promise.all([api("/api/processes"), api("/api/llm/calls", { limit: 10000 }),
      loadMcp().catch(() => ({ calls: [] }))]);
    this.sessions = procs.sessions;
    this.mcpCalls = mcp.calls;
    this.mcpByPid = new Map();
    for (const c of mcp.calls) {
      if (!this.mcpByPid.has(c.pid)) this.mcpByPid.set(c.pid, []);
      this.mcpByPid.get(c.pid).push(c);
    }
    this.callsByPid = new Map();
    for (const c of calls.calls) {
      if (!this.callsByPid.has(c.pid)) this.callsByPid.set(c.pid, []);
      this.callsByPid.get(c.pid).push(c);
    }
    this.buildTree(procs.processes);
    if (!this._expandedOnce) {
      this._expandedOnce = true;
      const many = this.nodes.length > 150;
      for (const n of this.nodes) if (!many ? n.depth < 4 : (n.depth === 0 || n.agent)) this.expanded.add(n.key);
    }
    this.renderTree();
  }

  buildTree(procs) {
    this.nodes = procs.map((p, i) => ({ ...p, key: `${p.pid}@${p.start_ns ?? i}`, children: [], depth: 0 }));
    const byPid = new Map();
    for (const n of this.nodes) {
      if (!byPid.has(n.pid)) byPid.set(n.pid, []);
      byPid.get(n.pid).push(n);
    }
    this.roots = [];
    for (const n of this.nodes) {
      const cands = (byPid.get(n.ppid) || []).filter((p) => p !== n && (p.start_ns ?? 0) <= (n.start_ns ?? Infinity));
      const parent = cands[cands.length - 1];
      if (parent && n.ppid !== n.pid) { parent.children.push(n); n.parent = parent; } else this.roots.push(n);
    }
    const setDepth = (n, d) => { n.depth = d; n.children.sort(byStart).forEach((c) => setDepth(c, d + 1)); };
    this.roots.sort(byStart).forEach((n) => setDepth(n, 0));
    // The agent badge goes on a session's root (or any process making LLM calls), not on every tool it runs.
    // A reused pid's LLM calls belong to the run that was alive then (the last one started before).
    for (const n of this.nodes) { n.calls = []; n.mcp = []; n.session_agent = n.agent; }
    for (const [pid, calls] of this.mcpByPid) {
      const runs = (byPid.get(pid) || []).slice().sort(byStart);
      for (const c of calls) {
        let run = runs[0];
        const t = c.ts_request_ns ?? c.ts_response_ns ?? 0;
        for (const r of runs) if ((r.start_ns ?? 0) <= t) run = r;
        if (run) run.mcp.push(c);
      }
    }
    for (const [pid, calls] of this.callsByPid) {
      const runs = (byPid.get(pid) || []).slice().sort(byStart);
      if (!runs.length) continue;
      for (const c of calls) {
        let run = runs[0];
        for (const r of runs) if ((r.start_ns ?? 0) <= c.ts_ns) run = r;
        run.calls.push(c);
      }
    }
    for (const n of this.nodes) {
      const inherited = n.parent && n.parent.session_agent === n.agent;
      n.badge = n.agent && (!inherited || n.calls.length) ? n.agent : (n.calls.length ? "llm-client" : null);
    }
    for (const n of this.nodes) n.agent = n.badge;
    this.byKey = new Map(this.nodes.map((n) => [n.key, n]));
    const failed = this.nodes.filter((n) => n.exit_code).length;
    this.summary.textContent = `${fmt.num(this.nodes.length)} processes${failed ? ` · ${failed} failed` : ""}`;
  }

  matches(n) {
    if (!this.needle) return true;
    const hay = `${n.comm} ${n.pid} ${(n.argv || []).join(" ")} ${n.filename || ""}`.toLowerCase();
    return hay.includes(this.needle) || n.children.some((c) => this.matches(c));
  }

  renderTree() {
    const out = [];
    const walk = (n) => {
      if (!this.matches(n)) return;
      out.push(this.nodeRow(n));
      if (!this.expanded.has(n.key) && !this.needle) return;
      const kids = [...n.children.map((c) => ({ t: c.start_ns ?? 0, node: c })), ...n.calls.map((c) => ({ t: c.ts_ns - (c.duration_ms || 0) * 1e6, call: c })),
        ...n.mcp.map((c) => ({ t: c.ts_request_ns ?? c.ts_response_ns ?? 0, mcp: c }))]
        .sort((a, b) => a.t - b.t);
      for (const k of kids) {
        if (k.node) walk(k.node);
        else if (this.needle) continue;
        else if (k.mcp) out.push(this.mcpRow(k.mcp, n.depth + 1));
        else out.push(this.callRow(k.call, n.depth + 1));
      }
      if (this.needle) return;
      const c = n.counts || {};
      if (c.files) out.push(...this.listRows(n, "files", c.files));
      if (c.connections) out.push(...this.listRows(n, "conns", c.connections));
    };
    this.roots.forEach(walk);
    fill(this.treeEl, ...(out.length ? out : [h("div.empty", null, this.needle ? "No process matches" : "No processes recorded yet")]));
  }

  nodeRow(n) {
    const hasKids = n.children.length || n.calls.length || n.mcp.length || (n.counts && (n.counts.files || n.counts.connections));
    const open = this.expanded.has(n.key);
    const caret = h(`span.caret${hasKids ? "" : ".leaf"}`, { title: open ? "Collapse" : "Expand" }, open ? "▾" : "▸");
    caret.addEventListener("click", (e) => { e.stopPropagation(); this.toggle(n.key); });
    const args = (n.argv || []).slice(1).join(" ");
    const c = n.counts || {};
    const row = h(`div.node-row${this.selected === n.key ? ".sel" : ""}`, { style: { paddingLeft: `${10 + n.depth * 20}px` }, dataset: { pid: String(n.pid), comm: n.comm || "" } },
      caret,
      h(`span.status.${statusClass(n)}`, { title: statusText(n) }),
      h("span.comm", null, n.comm || "?"),
      h("span.pid", null, String(n.pid)),
      h("span.argv", { title: (n.argv || []).join(" ") }, args),
      h("span.meta", null,
        n.agent ? h("span.pill.llm", { title: "Agent session" }, n.agent) : null,
        c.llm_calls ? h("span.pill.llm", { title: "LLM calls" }, `${c.llm_calls} LLM`) : null,
        n.mcp.length ? h("span.pill.mcp", { title: "MCP calls" }, `${n.mcp.length} MCP`) : null,
        c.files ? h("span.pill", { title: "Files opened" }, `${c.files} ${c.files === 1 ? "file" : "files"}`) : null,
        c.connections ? h("span.pill", { title: "Connections" }, `${c.connections} conn`) : null,
        exitPill(n)),
      h("span.dur", null, n.duration_ms != null ? fmt.dur(n.duration_ms) : (n.end_ns ? "" : "running")));
    row.addEventListener("click", () => this.select(n.key));
    row.addEventListener("dblclick", () => this.toggle(n.key));
    return row;
  }

  callRow(c, depth) {
    const row = h("div.act-row.k-llm", { style: { paddingLeft: `${30 + depth * 20}px` }, dataset: { call: String(c.id) }, title: "Open this LLM call" },
      h("span.ico", null, "AI"),
      h("span.what", null, h("b", null, c.model || "?"), ` · ${fmt.num(c.input_tokens)} → ${fmt.num(c.output_tokens)} tokens · ${fmt.usd(c.cost_usd)}`,
        c.stop_reason ? h("span.dim", null, ` · ${c.stop_reason}`) : null),
      h("span.right", null, `${fmt.time(c.ts_ns)} · ${fmt.dur(c.duration_ms)}`));
    row.addEventListener("click", () => this.state.navigate(`/llm?id=${c.id}`));
    return row;
  }

  mcpRow(c, depth) {
    const row = h(`div.act-row.k-mcp${this.mcpShown === c.event_id ? ".sel" : ""}`, { style: { paddingLeft: `${30 + depth * 20}px` }, dataset: { mcp: String(c.event_id) }, title: "Open this MCP call" },
      h("span.ico", null, "MCP"),
      h("span.what", null, h("b", null, mcpWhat(c)), ` · ${c.server}`, c.tool_call_id ? h("span.dim", null, ` · asked by the model (${c.tool_call_id})`) : null),
      h("span.right", null, statusPill(c.status), ` ${fmt.time(c.ts_request_ns ?? c.ts_response_ns)} · ${fmt.dur(c.latency_ms)}`));
    row.addEventListener("click", () => {
      history.replaceState(null, "", `/processes?mcp=${c.event_id}`);
      this.showMcp(c.event_id);
    });
    return row;
  }

  // One MCP call in the right pane, its process selected in the tree.
  async showMcp(eventId) {
    const c = (this.mcpCalls || []).find((x) => x.event_id === Number(eventId));
    if (!c) return;
    this.mcpShown = c.event_id;
    const node = this.nodes.find((n) => n.mcp.includes(c));
    if (node) {
      this.selected = node.key;
      for (let p = node.parent; p; p = p.parent) this.expanded.add(p.key);
      this.expanded.add(node.key);
    }
    this.renderTree();
    await renderMcpDetail(this.detailEl, c, this.state);
  }

  listRows(n, which, count) {
    const id = `${n.key}:${which}`;
    const open = this.openLists.has(id);
    const depth = n.depth + 1;
    const head = h(`div.act-row.${which === "files" ? "k-file" : "k-net"}`, { style: { paddingLeft: `${30 + depth * 20}px` }, dataset: { list: which, pid: String(n.pid) } },
      h("span.ico", null, which === "files" ? "F" : "N"),
      h("span.what", null, h("b", null, `${fmt.num(count)} ${which === "files" ? (count === 1 ? "file opened" : "files opened") : (count === 1 ? "connection" : "connections")}`),
        h("span.dim", null, open ? "  ▾" : "  ▸")));
    head.addEventListener("click", async () => {
      if (open) this.openLists.delete(id); else { this.openLists.add(id); await this.detail(n); }
      this.renderTree();
    });
    const rows = [head];
    if (open) {
      const d = this.details.get(n.key);
      const list = d ? (which === "files" ? d.files : d.connections) : [];
      for (const r of list.slice(0, 60)) {
        rows.push(h("div.act-row", { style: { paddingLeft: `${54 + depth * 20}px` } },
          h("span.what.mono", null, which === "files" ? r.path : `${r.address}:${r.port}`),
          h("span.right", null, which === "files" && r.count > 1 ? `×${r.count} · ${fmt.time(r.ts_ns)}` : fmt.time(r.ts_ns))));
      }
      if (list.length > 60) rows.push(h("div.act-row.dim", { style: { paddingLeft: `${54 + depth * 20}px` } }, `… ${list.length - 60} more (see the details pane)`));
    }
    return rows;
  }

  toggle(key) {
    if (this.expanded.has(key)) this.expanded.delete(key); else this.expanded.add(key);
    this.renderTree();
  }

  async detail(n) {
    if (!this.details.has(n.key)) this.details.set(n.key, await api(`/api/processes/${n.pid}`, { start_ns: n.seen_only ? null : n.start_ns }));
    return this.details.get(n.key);
  }

  async select(key) {
    this.selected = key;
    this.mcpShown = null;
    const n = this.byKey.get(key);
    if (!n) return;
    for (const el of this.treeEl.querySelectorAll(".node-row.sel")) el.classList.remove("sel");
    this.renderTree();
    const d = await this.detail(n);
    if (this.selected !== key || this.mcpShown) return;
    this.renderDetail(n, d);
  }

  renderDetail(n, d) {
    const tokens = n.tokens || {};
    const kv = [
      ["Parent", n.parent ? `${n.parent.comm} [${n.parent.pid}]` : (n.ppid != null ? String(n.ppid) : "—")],
      ["Executable", n.filename || "—"],
      ["Started", fmt.datetime(n.start_ns)],
      ["Ended", n.end_ns ? fmt.datetime(n.end_ns) : "still running (or not seen)"],
      ["Duration", fmt.dur(n.duration_ms)],
      ["Exit", statusText(n)],
      ["User", n.uid != null ? String(n.uid) : "—"],
      ["Session", n.session || "—"],
    ];
    const sections = [];
    if (n.calls.length) {
      sections.push(section("LLM calls", n.calls.length, table(
        ["Time", "Model", ["In", "num"], ["Out", "num"], ["Cost", "num"], ["Duration", "num"]],
        n.calls.map((c) => ({ cells: [fmt.time(c.ts_ns), c.model || "?", fmt.num(c.input_tokens), fmt.num(c.output_tokens), fmt.usd(c.cost_usd), fmt.dur(c.duration_ms)],
          onclick: () => this.state.navigate(`/llm?id=${c.id}`) })))));
    }
    if (n.mcp.length) {
      sections.push(section("MCP calls", n.mcp.length, table(
        ["Time", "Call", "Status", ["Latency", "num"], "Asked by"],
        n.mcp.map((c) => ({ cells: [fmt.time(c.ts_request_ns ?? c.ts_response_ns), `${c.server} · ${mcpWhat(c)}`, c.status,
          fmt.dur(c.latency_ms), c.asked_by_llm_id ? `LLM call #${c.asked_by_llm_id}` : (c.tool_call_id || "—")],
        onclick: () => { history.replaceState(null, "", `/processes?mcp=${c.event_id}`); this.showMcp(c.event_id); } })))));
    }
    if (n.children.length) {
      sections.push(section("Tool runs", n.children.length, table(
        ["Command", ["Exit", "num"], ["Duration", "num"]],
        n.children.map((c) => ({ cells: [(c.argv || []).join(" ") || c.comm, exitText(c), fmt.dur(c.duration_ms)], onclick: () => this.select(c.key) })))));
    }
    if (d.files.length) {
      sections.push(section("Files", d.files.length, table(["Path", ["Count", "num"], ["Time", "num"]],
        d.files.slice(0, 500).map((f) => ({ cells: [f.path, String(f.count), fmt.time(f.ts_ns)] })))));
    }
    if (d.connections.length) {
      sections.push(section("Connections", d.connections.length, table(["Address", "Family", ["Time", "num"]],
        d.connections.map((c) => ({ cells: [`${c.address}:${c.port}`, c.family || "", fmt.time(c.ts_ns)] })))));
    }
    const chartBox = d.samples.length > 1 ? h("div", { style: { padding: "4px 12px 12px" } }) : null;
    if (chartBox) sections.push(section("CPU and memory", d.samples.length, chartBox));
    fill(this.detailEl,
      h("div.detail-head", null,
        h("h2", null, n.comm || "?", h("span.pid.dim.mono", null, String(n.pid)), n.agent ? h("span.pill.llm", null, n.agent) : null, exitPill(n)),
        h("div.argv-block", null, (n.argv || []).join(" ") || n.filename || n.comm)),
      n.calls.length ? h("div.tiles", null,
        tile("LLM calls", fmt.num(n.calls.length)), tile("Input tokens", fmt.num(tokens.input)),
        tile("Output tokens", fmt.num(tokens.output)), tile("Cost", fmt.usd(tokens.cost_usd))) : null,
      h("dl.kv", null, kv.map(([k, v]) => [h("dt", null, k), h("dd", null, v)])),
      ...sections);
    if (chartBox) requestAnimationFrame(() => resourceChart(chartBox, d.samples));
  }

  routed() {
    const q = new URLSearchParams(location.search);
    if (q.get("mcp")) this.showMcp(q.get("mcp"));
  }
}

function byStart(a, b) { return (a.start_ns ?? 0) - (b.start_ns ?? 0); }

function statusClass(n) {
  if (n.signal) return "sig";
  if (n.exit_code === null || n.exit_code === undefined) return n.end_ns ? "" : "run";
  return n.exit_code === 0 ? "ok" : "fail";
}

function exitText(n) {
  if (n.signal) return n.signal_name || `signal ${n.signal}`;
  if (n.exit_code === null || n.exit_code === undefined) return n.end_ns ? "?" : "running";
  return `exit ${n.exit_code}`;
}

function statusText(n) {
  if (n.signal) return `killed by ${n.signal_name || `signal ${n.signal}`}`;
  if (n.exit_code === null || n.exit_code === undefined) return n.end_ns ? "ended" : "running or exit not seen";
  return `exited with code ${n.exit_code}`;
}

function exitPill(n) {
  const cls = n.signal ? "warn" : n.exit_code ? "bad" : n.exit_code === 0 ? "good" : "accent";
  return h(`span.pill.${cls}`, { title: statusText(n), dataset: { exit: String(n.exit_code ?? "") } }, exitText(n));
}

function tile(label, value) { return h("div.tile", null, h("div.l", null, label), h("div.v", null, value)); }

function section(title, n, body) {
  return h("div.section", null, h("h3", null, title, h("span.n", null, fmt.num(n))), body);
}

function table(cols, rows) {
  const head = h("tr", null, cols.map((c) => Array.isArray(c) ? h(`th.${c[1]}`, null, c[0]) : h("th", null, c)));
  const body = rows.map((r) => {
    const tr = h("tr", null, r.cells.map((v, i) => h(Array.isArray(cols[i]) ? `td.${cols[i][1]}` : "td", { title: String(v) }, v)));
    if (r.onclick) tr.addEventListener("click", r.onclick);
    return tr;
  });
  return h("div", { style: { maxHeight: "320px", overflow: "auto" } }, h("table.grid", null, h("thead", null, head), h("tbody", null, body)));
}

function resourceChart(el, samples) {
  const xs = samples.map((s) => s.ts_ns / 1e9);
  const width = Math.max(260, el.clientWidth - 8);
  new uPlot({
    width, height: 150, legend: { show: true, live: false },
    scales: { x: { time: true }, cpu: { range: (u, lo, hi) => [0, Math.max(100, hi)] }, mem: {} },
    axes: [
      { stroke: "#646e82", grid: { stroke: "#1a202c" }, font: "10px Inter, sans-serif" },
      { scale: "cpu", stroke: "#646e82", grid: { stroke: "#1a202c" }, font: "10px Inter, sans-serif", values: (u, v) => v.map((x) => `${x}%`), size: 44 },
      { scale: "mem", side: 1, stroke: "#646e82", grid: { show: false }, font: "10px Inter, sans-serif", values: (u, v) => v.map((x) => fmt.bytes(x)), size: 64 },
    ],
    series: [{},
      { label: "CPU %", scale: "cpu", stroke: "#7aa2f7", width: 1.5, fill: "rgba(122,162,247,.12)" },
      { label: "RSS", scale: "mem", stroke: "#9ece6a", width: 1.5, value: (u, v) => fmt.bytes(v) }],
  }, [xs, samples.map((s) => s.cpu_percent), samples.map((s) => s.rss_bytes)], el);
}
