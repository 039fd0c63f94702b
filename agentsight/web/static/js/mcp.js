// MCP calls in the page: the list (/api/mcp/calls, one brief row per call with the LLM calls it is tied
// to), a one-line summary of a call, and one call in full (the mcp.call event: arguments, result, error)
// with the thread back to the model: the LLM call that asked for the tool and the one that got its result.
import { api, fmt, h, fill, jsonView } from "./util.js";

export async function loadMcp() {
  return api("/api/mcp/calls");
}

export function statusPill(status) {
  const cls = status === "ok" ? "good" : status === "unfinished" ? "accent" : "bad";
  return h(`span.pill.${cls}`, { dataset: { status: status || "" } }, status || "?");
}

// "read_text_file" / "resources/read file:///x" / "initialize": what a call was about.
export function mcpWhat(c) {
  if (c.tool) return c.tool;
  return [c.method || "(request not seen)", c.uri || c.prompt || ""].join(" ").trim();
}

export function mcpLine(c) {
  return `${c.server} · ${c.method === "tools/call" ? "tool " : ""}${mcpWhat(c)} · ${c.status} · ${fmt.dur(c.latency_ms)}`;
}

// One MCP call in full, into `el`. `row` is its /api/mcp/calls row; the record comes from its event.
export async function renderMcpDetail(el, row, state) {
  const ev = await api(`/api/events/${row.event_id}`).catch(() => null);
  const d = (ev && ev.data) || {};
  const server = d.server || {};
  const client = d.client || {};
  const link = d.llm || {};
  const kv = [
    ["Server", server.argv ? server.argv.join(" ") : (server.url || row.server)],
    ["Server name", [server.name, server.version].filter(Boolean).join(" ") || "—"],
    ["Transport", `${d.transport || row.transport}${d.mcp_session ? ` · session ${d.mcp_session}` : ""}`],
    ["Client", `${client.name || client.comm || "?"}${client.pid ? ` [${client.pid}]` : ""}`],
    ["Request", `${d.direction === "server" ? "server → client" : "client → server"} · id ${d.id ?? "—"}`],
    ["Sent", fmt.datetime(d.ts_request_ns)],
    ["Latency", fmt.dur(d.latency_ms)],
  ];
  const thread = [];
  if (link.tool_call_id) {
    const asked = row.asked_by_llm_id;
    thread.push(h("div.thread-step", { dataset: { step: "asked" } }, "Asked for by the model as ",
      h("b", null, link.tool_name || "?"), ` (${link.tool_call_id})`,
      asked ? [" in ", navLink(state, `/llm?id=${asked}`, `LLM call #${asked}`)] : " (that LLM call was not captured)",
      link.match === "name" ? h("span.dim", null, " · matched by name, its arguments differ") : null));
  }
  if (row.result_in_llm_id) {
    thread.push(h("div.thread-step", { dataset: { step: "result" } }, "Its result went back to the model in ",
      navLink(state, `/llm?id=${row.result_in_llm_id}`, `LLM call #${row.result_in_llm_id}`)));
  }
  const section = (title, body) => h("div.section", null, h("h3", null, title), body);
  fill(el,
    h("div.detail-head", { id: "mcp-detail", dataset: { event: String(row.event_id) } },
      h("h2", null, h("span.pill.mcp", null, "MCP"), ` ${row.server} `, h("span.mono", null, mcpWhat(row)),
        statusPill(row.status), d.truncated ? h("span.pill.warn", null, "cut by the capture") : null)),
    thread.length ? section("Thread", h("div.thread", { id: "mcp-thread" }, thread)) : null,
    h("dl.kv", null, kv.map(([k, v]) => [h("dt", null, k), h("dd", null, v)])),
    d.arguments != null ? section("Arguments", jsonView(d.arguments))
      : (d.params != null ? section("Params", jsonView(d.params)) : null),
    d.error ? h("div.part.err", null, h("div.ph", null, h("b", null, "error")), jsonView(d.error)) : null,
    d.result != null ? section("Result", jsonView(d.result)) : null,
    d.partial ? section("Captured part of a cut message", h("pre", null, d.partial)) : null,
    (d.notes || []).length ? section("Notes", h("ul", null, d.notes.map((n) => h("li", null, n)))) : null,
  );
}

// A link the page's router follows (app.js handles every a[data-nav]).
function navLink(state, path, text) {
  return h("a", { href: path, "data-nav": true }, text);
}
