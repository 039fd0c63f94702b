// LLM calls: totals, tokens over time (uPlot), the list of calls and one call in full:
// system prompt, messages with tool calls and results, tools offered, the answer, usage, cost, timing,
// and the MCP calls that ran its tool calls or whose results it carried (the thread to MCP).
import { api, fmt, h, fill, jsonView, textOf, timeAxis } from "./util.js";
import { loadMcp, mcpWhat, statusPill } from "./mcp.js";

export class LlmView {
  constructor(root, state) {
    this.root = root;
    this.state = state;
    this.calls = [];
    this.selected = null;
  }

  async init() {
    this.statsEl = h("div.stats", { id: "llm-stats" });
    this.chartEl = h("div.chart", { id: "llm-chart" }, h("div.chart-title", null, "Tokens over time (cumulative)",
      h("span.chart-legend", null, [["input", "#7aa2f7"], ["cache read", "#2ac3de"], ["output (right axis)", "#bb9af7"]]
        .map(([l, c]) => h("span", { style: { "--c": c } }, l)))));
    this.tbody = h("tbody");
    this.listEl = h("div.scroll", null, h("table.grid", { id: "llm-table" },
      h("thead", null, h("tr", null, h("th", { style: { width: "108px" } }, "Time"), h("th", null, "Model"),
        h("th", { style: { width: "110px" } }, "Process"), h("th.num", { style: { width: "64px" } }, "In"),
        h("th.num", { style: { width: "56px" } }, "Out"), h("th.num", { style: { width: "72px" } }, "Cost"),
        h("th.num", { style: { width: "68px" } }, "TTFT"), h("th.num", { style: { width: "72px" } }, "Duration"),
        h("th", { style: { width: "112px" } }, "Status"))),
      this.tbody));
    this.detailEl = h("div.scroll", { id: "llm-detail" });
    this.root.append(this.statsEl, this.chartEl, h("div.split", null,
      h("div.pane.left", null, this.listEl),
      h("div.pane.right", null, this.detailEl)));
    await this.load();
    window.agentsight.ready.llm = performance.now();
    this.state.bus.addEventListener("events", (e) => {
      if (e.detail.some((r) => r.topic === "llm.call" || r.topic === "mcp.call")) this.loadSoon();
    });
    window.addEventListener("resize", () => this.chart?.setSize({ width: this.chartEl.clientWidth - 24, height: 176 }));
  }

  loadSoon() {
    if (this._t) return;
    this._t = setTimeout(() => { this._t = null; this.load(); }, 400);
  }

  async load() {
    const [calls, mcp] = await Promise.all([api("/api/llm/calls", { limit: 10000 }), loadMcp().catch(() => null)]);
    this.calls = calls.calls;
    this.mcp = mcp || { calls: [], summary: { calls: 0, tool_calls: 0, failed: 0, linked: 0 } };
    this.renderStats();
    this.renderChart();
    this.renderList();
    if (!this.selected && !location.search && this.calls.length) this.select(this.calls[0].id);
    else this.routed();
  }

  routed() {
    const q = new URLSearchParams(location.search);
    if (q.get("id")) this.select(Number(q.get("id")));
    else if (q.get("event")) {
      const c = this.calls.find((x) => x.event_id === Number(q.get("event")));
      if (c) this.select(c.id);
    }
  }

  renderStats() {
    const c = this.calls;
    const sum = (k) => c.reduce((a, x) => a + (x[k] || 0), 0);
    const ttfts = c.map((x) => x.ttft_ms).filter((x) => x != null).sort((a, b) => a - b);
    const durs = c.map((x) => x.duration_ms).filter((x) => x != null).sort((a, b) => a - b);
    const med = (xs) => xs.length ? xs[Math.floor(xs.length / 2)] : null;
    const models = new Set(c.map((x) => x.model).filter(Boolean));
    const stat = (label, value, title) => h("div.stat", { title }, h("div.v", null, value), h("div.l", null, label));
    fill(this.statsEl,
      stat("Calls", fmt.num(c.length)),
      stat("Input tokens", fmt.compact(sum("input_tokens")), fmt.num(sum("input_tokens"))),
      stat("Output tokens", fmt.compact(sum("output_tokens")), fmt.num(sum("output_tokens"))),
      stat("Cache read", fmt.compact(sum("cache_read_tokens")), fmt.num(sum("cache_read_tokens"))),
      stat("Cost", fmt.usd(sum("cost_usd")), "Estimate from genai-prices"),
      stat("Median TTFT", fmt.dur(med(ttfts))),
      stat("Median duration", fmt.dur(med(durs))),
      stat("Models", String(models.size), [...models].join(", ")),
    );
    const m = this.mcp.summary;
    if (m.calls) {
      this.statsEl.append(h("div.stat", { id: "llm-stat-mcp", title: `${m.tool_calls} tool calls, ${m.failed} failed, ${m.linked} tied to the LLM call that asked` },
        h("div.v", null, fmt.num(m.calls)), h("div.l", null, "MCP calls")));
    }
  }

  renderChart() {
    const c = this.calls;
    for (const el of this.chartEl.querySelectorAll(".uplot")) el.remove();
    this.chart = null;
    if (!c.length) return;
    const xs = [], inp = [], out = [], cache = [];
    let a = 0, b = 0, d = 0;
    for (const x of c) {
      a += x.input_tokens || 0; b += x.output_tokens || 0; d += x.cache_read_tokens || 0;
      xs.push(x.ts_ns / 1e9); inp.push(a); out.push(b); cache.push(d);
    }
    if (xs.length === 1) { xs.unshift(xs[0] - 1); inp.unshift(0); out.unshift(0); cache.unshift(0); }
    const font = "11px Inter, sans-serif";
    const axis = { stroke: "#646e82", grid: { stroke: "#1a202c", width: 1 }, ticks: { stroke: "#1a202c" }, font };
    const stepped = uPlot.paths.stepped({ align: 1 });
    const chart = this.chart = new uPlot({
      width: Math.max(300, this.chartEl.clientWidth - 24), height: 176,
      padding: [22, 12, 0, 4],
      legend: { show: false },
      cursor: { points: { size: 6 }, drag: { x: false, y: false } },
      scales: { x: { time: true }, tok: {}, out: {} },
      axes: [
        { ...axis, ...timeAxis(font) },
        { ...axis, scale: "tok", size: 52, values: (u, v) => v.map((x) => fmt.compact(x)) },
        { ...axis, scale: "out", side: 1, size: 48, grid: { show: false }, values: (u, v) => v.map((x) => fmt.compact(x)) },
      ],
      series: [
        { value: (u, v) => (v == null ? "—" : fmt.time(v * 1e9)) },
        { label: "input", scale: "tok", stroke: "#7aa2f7", width: 2, fill: "rgba(122,162,247,.10)", paths: stepped, value: (u, v) => fmt.num(v) },
        { label: "cache read", scale: "tok", stroke: "#2ac3de", width: 1.5, dash: [4, 4], paths: stepped, value: (u, v) => fmt.num(v) },
        { label: "output (right axis)", scale: "out", stroke: "#bb9af7", width: 2, paths: stepped, value: (u, v) => fmt.num(v) },
      ],
    }, [xs, inp, cache, out], this.chartEl);
    // Drawn before Inter arrived, the labels were spaced and drawn for the fallback font: again with Inter.
    if (document.fonts && !document.fonts.check(font)) {
      document.fonts.load(font).then(() => { if (this.chart === chart) chart.redraw(false, true); }, () => {});
    }
  }

  renderList() {
    const rows = this.calls.map((c) => {
      const ok = c.status_code === 200 || c.status_code === null;
      const tr = h(`tr${this.selected === c.id ? ".sel" : ""}`, { dataset: { id: String(c.id) } },
        h("td.mono", null, fmt.time(c.ts_ns)),
        h("td", { title: `${c.provider || ""} ${c.api || ""}` }, c.model || "?"),
        h("td", null, `${c.comm} `, h("span.dim", null, String(c.pid))),
        h("td.num", null, fmt.num(c.input_tokens)),
        h("td.num", null, fmt.num(c.output_tokens)),
        h("td.num", null, fmt.usd(c.cost_usd)),
        h("td.num", null, fmt.dur(c.ttft_ms)),
        h("td.num", null, fmt.dur(c.duration_ms)),
        h("td", null, h(`span.pill.${ok ? "good" : "bad"}`, null, c.status_code ?? "?"), c.stop_reason ? h("span.dim", null, ` ${c.stop_reason}`) : null));
      tr.addEventListener("click", () => {
        history.replaceState(null, "", `/llm?id=${c.id}`);
        this.select(c.id);
      });
      return tr;
    });
    fill(this.tbody, ...(rows.length ? rows : [h("tr", null, h("td.empty", { colspan: "9" }, "No LLM calls recorded yet"))]));
  }

  async select(id) {
    this.selected = id;
    for (const tr of this.tbody.querySelectorAll("tr")) tr.classList.toggle("sel", tr.dataset.id === String(id));
    const call = await api(`/api/llm/calls/${id}`).catch(() => null);
    if (this.selected !== id) return;
    if (!call) { fill(this.detailEl, h("div.empty", null, `No LLM call ${id}`)); return; }
    this.renderDetail(call);
  }

  renderDetail(c) {
    const d = c.data || {};
    const usage = d.usage || {};
    const ok = c.status_code === 200 || c.status_code == null;
    const head = h("div.detail-head", null,
      h("h2", null, c.model || d.model_requested || "unknown model",
        h("span.pill.accent", null, c.provider || "?"), h("span.pill", null, c.api || "?"),
        h(`span.pill.${ok ? "good" : "bad"}`, null, `HTTP ${c.status_code ?? "?"}`),
        c.stream ? h("span.pill", null, "stream") : null),
      h("div.dim", null, `${fmt.datetime(c.ts_ns)} · ${c.comm} [${c.pid}] · ${d.host || c.host || ""}${d.endpoint || ""}`,
        d.user_agent ? ` · ${d.user_agent}` : ""));
    const tiles = h("div.tiles", null,
      tile("Input tokens", fmt.num(c.input_tokens)), tile("Output tokens", fmt.num(c.output_tokens)),
      tile("Cache read", fmt.num(c.cache_read_tokens)), tile("Cache write", fmt.num(c.cache_write_tokens)),
      tile("Cost", fmt.usd(c.cost_usd)), tile("TTFT", fmt.dur(c.ttft_ms)),
      tile("Duration", fmt.dur(c.duration_ms)), tile("Stop reason", c.stop_reason || "—"));
    if (usage.reasoning_tokens) tiles.append(tile("Reasoning tokens", fmt.num(usage.reasoning_tokens)));

    const prompt = [];
    if (d.system) prompt.push(message("system", textOf(d.system), true));
    for (const m of d.messages || []) prompt.push(message(m.role || "?", m.content, false, m.parts));
    const tools = d.tools || [];
    const toolBox = h("div");
    const toolChips = h("div.tools", null, tools.map((t) => {
      const chip = h("span.tool", { title: t.description || "" }, t.name);
      chip.addEventListener("click", () => {
        fill(toolBox, h("div.tool-desc", null, h("div", null, h("b", null, t.name), " — ", t.description || ""),
          h("details.fold", null, h("summary.dim", null, "parameters"), jsonView(t.parameters ?? {}))));
      });
      return chip;
    }));

    const answer = [];
    if (d.reasoning) answer.push(h("div.msg.answer", null, h("div.role", null, "reasoning"), h("div.body.clamp", null, textOf(d.reasoning))));
    if (d.output_text || !(d.tool_calls || []).length) {
      answer.push(h("div.msg.answer", { id: "llm-answer" }, h("div.role", null, "assistant answer"),
        h("div.body", null, textOf(d.output_text) || h("span.dim", null, "(no text)"))));
    }
    for (const t of d.tool_calls || []) answer.push(h("div.msg.answer", null, h("div.role", null, "tool call"), toolCall(t)));
    if (d.error) answer.push(h("div.part.err", null, h("div.ph", null, h("b", null, "error")), jsonView(d.error)));
    const notes = (d.notes || []).length ? h("div.section", null, h("h3", null, "Notes"),
      h("ul", { style: { margin: "0 16px 12px", color: "var(--warn)" } }, d.notes.map((n) => h("li", null, n)))) : null;

    fill(this.detailEl, head, tiles,
      h("div.section", { id: "llm-answer-section" }, h("h3", null, "Answer"), answer),
      this.mcpSection(c, d),
      h("div.section", { id: "llm-prompt" }, h("h3", null, "Prompt", h("span.n", null, `${(d.messages || []).length} messages`)), prompt),
      tools.length ? h("div.section", null, h("h3", null, "Tools offered", h("span.n", null, tools.length)), toolChips, toolBox) : null,
      notes,
      h("div.section", null, h("details.fold", null, h("summary", null, h("h3", { style: { display: "inline-flex" } }, "Raw event data")), jsonView(d))));
  }

  // The MCP calls tied to this call: those that ran the tools it asked for, those whose results it carried.
  mcpSection(c, d) {
    const calls = this.mcp.calls;
    const ran = calls.filter((m) => m.asked_by_llm_id === c.id);
    const fed = calls.filter((m) => m.result_in_llm_id === c.id);
    if (!ran.length && !fed.length) return null;
    const row = (m, how) => h("div.mcp-link", { dataset: { mcp: String(m.event_id), how } },
      h("span.pill.mcp", null, "MCP"),
      how === "ran"
        ? [" tool call ", h("b", null, m.llm_tool_name || m.tool), h("span.dim", null, ` ${m.tool_call_id}`), " ran as "]
        : [" tool result ", h("span.dim", null, `${m.tool_call_id} `), "came from "],
      h("a", { href: `/processes?mcp=${m.event_id}`, "data-nav": true }, `${m.server} · ${mcpWhat(m)}`), " ",
      statusPill(m.status), h("span.dim", null, ` ${fmt.dur(m.latency_ms)}`),
      how === "result" && m.asked_by_llm_id ? h("span.dim", null, [" · asked in ", h("a", { href: `/llm?id=${m.asked_by_llm_id}`, "data-nav": true }, `LLM call #${m.asked_by_llm_id}`)]) : null,
      m.result ? h("div.dim.mono.mcp-result", null, m.result) : null);
    return h("div.section", { id: "llm-mcp" }, h("h3", null, "MCP", h("span.n", null, `${ran.length + fed.length} call${ran.length + fed.length === 1 ? "" : "s"}`)),
      ran.map((m) => row(m, "ran")), fed.map((m) => row(m, "result")));
  }

  shown() { this.chart?.setSize({ width: this.chartEl.clientWidth - 24, height: 176 }); }
}

function tile(label, value) { return h("div.tile", null, h("div.l", null, label), h("div.v", null, value)); }

function message(role, content, clamp, parts) {
  const body = [];
  const textParts = (parts || []).filter((p) => p.type === "text");
  if (!parts || !parts.length || (!textParts.length && content)) {
    if (content) body.push(h(`div.body${clamp ? ".clamp" : ""}`, null, textOf(content)));
  }
  for (const p of parts || []) {
    if (p.type === "text") body.push(h(`div.body${clamp ? ".clamp" : ""}`, null, textOf(p.text)));
    else if (p.type === "tool_call") body.push(toolCall(p));
    else if (p.type === "tool_result") {
      body.push(h(`div.part${p.is_error ? ".err" : ""}`, null,
        h("div.ph", null, "tool result", h("b", null, p.id || ""), p.is_error ? h("span.pill.bad", null, "error") : null),
        h("pre", null, textOf(p.content))));
    } else if (p.type === "reasoning") body.push(h("div.body.clamp.dim", null, textOf(p.text)));
    else body.push(h("div.part", null, h("div.ph", null, h("b", null, p.type || "part")), h("pre", null, JSON.stringify(p, null, 2))));
  }
  return h(`div.msg.${role}`, null, h("div.role", null, role), body.length ? body : h("div.body.dim", null, "(empty)"));
}

function toolCall(t) {
  let args = t.input;
  if (args === undefined || args === null) {
    try { args = JSON.parse(textOf(t.arguments)); } catch { args = textOf(t.arguments); }
  }
  return h("div.part", null, h("div.ph", null, "tool call", h("b", null, t.name || "?"), h("span.dim", null, t.id || "")),
    typeof args === "string" ? h("pre", null, args) : jsonView(args));
}
