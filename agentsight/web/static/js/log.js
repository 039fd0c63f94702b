// Log: every raw event, one line each (virtualised list, paged from the server as you scroll),
// searchable by text and kind; the selected event as formatted JSON. New events stream in live.
import { api, fmt, h, fill, debounce, kindChips, kindCounts, topicsFor, jsonView, marked } from "./util.js";

const ROW_H = 28;
const PAGE = 500;

export class LogView {
  constructor(root, state) {
    this.root = root;
    this.state = state;
    this.rows = [];
    this.more = false;
    this.total = 0;
    this.kinds = new Set();
    this.text = "";
    this.selected = null;
    this.follow = true;
    this.seq = 0;
  }

  async init() {
    this.search = h("input", { type: "search", id: "log-search", placeholder: "Search all event data…", spellcheck: "false" });
    this.search.addEventListener("input", debounce(() => { this.text = this.search.value.trim(); this.reload(); }, 250));
    this.kindBox = h("div");
    this.countEl = h("span.count-label", { id: "log-count" });
    this.followBtn = h("button.btn.on", { title: "Scroll to new events as they arrive", onclick: () => { this.follow = !this.follow; this.followBtn.classList.toggle("on", this.follow); if (this.follow) this.toEnd(); } }, "Follow");
    this.list = h("div.vlist", { id: "log-list", tabindex: "0" });
    this.spacer = h("div.spacer-v");
    this.list.append(this.spacer);
    this.list.addEventListener("scroll", () => this.onScroll());
    this.list.addEventListener("keydown", (e) => this.onKey(e));
    this.detailHead = h("div.pane-head", null, h("h2", null, "Event"));
    this.detailBody = h("div.scroll", { id: "log-detail" }, h("div.empty", null, "Select an event to see it as JSON"));
    this.root.append(
      h("div.toolbar", null, h("label.search", null, this.search), this.kindBox, h("div.spacer"), this.countEl, this.followBtn),
      h("div.split", null,
        h("div.pane.left", { style: { flex: "1 1 58%" } }, this.list),
        h("div.pane.right", { style: { flex: "1 1 42%" } }, this.detailHead, this.detailBody)));
    this.renderKinds();
    new ResizeObserver(() => this.paint()).observe(this.list);
    await this.reload();
    window.agentsight.ready.log = performance.now();
    this.state.bus.addEventListener("events", (e) => this.onLive(e.detail));
    this.state.bus.addEventListener("reset", () => this.reload());
  }

  renderKinds() {
    fill(this.kindBox, kindChips(kindCounts(this.state.info.topics), this.kinds, (k) => {
      if (this.kinds.has(k)) this.kinds.delete(k); else this.kinds.add(k);
      this.renderKinds();
      this.reload();
    }));
  }

  query(extra) {
    return { topics: topicsFor(this.kinds), text: this.text, format: "brief", ...extra };
  }

  async reload(afterId = 0) {
    const seq = ++this.seq;
    const data = await api("/api/events", this.query({ after_id: afterId, limit: PAGE, total: 1 }));
    if (seq !== this.seq) return;
    this.rows = data.events;
    this.more = data.more;
    this.total = data.total;
    this.offset = afterId;
    this.list.scrollTop = 0;
    this.renderCount();
    this.paint(true);
  }

  async loadMore() {
    if (!this.more || this.loading) return;
    this.loading = true;
    const seq = this.seq;
    const last = this.rows.length ? this.rows[this.rows.length - 1].id : 0;
    try {
      const data = await api("/api/events", this.query({ after_id: last, limit: PAGE }));
      if (seq !== this.seq) return;
      this.rows.push(...data.events);
      this.more = data.more;
      this.paint(true);
    } finally {
      this.loading = false;
    }
  }

  renderCount() {
    const what = this.text || this.kinds.size ? "matching events" : "events";
    this.countEl.textContent = `${fmt.num(this.total)} ${what}${this.rows.length < this.total ? ` · ${fmt.num(this.rows.length)} loaded` : ""}`;
  }

  onScroll() {
    this.paint();
    const nearEnd = this.list.scrollTop + this.list.clientHeight > this.rows.length * ROW_H - 600;
    if (nearEnd) this.loadMore();
  }

  paint(force = false) {
    const top = this.list.scrollTop, height = this.list.clientHeight || 600;
    const first = Math.max(0, Math.floor(top / ROW_H) - 8);
    const last = Math.min(this.rows.length, Math.ceil((top + height) / ROW_H) + 8);
    if (!force && this._range && this._range[0] === first && this._range[1] === last && this._n === this.rows.length) return;
    this._range = [first, last];
    this._n = this.rows.length;
    this.spacer.style.height = `${this.rows.length * ROW_H}px`;
    for (const el of [...this.list.querySelectorAll(".lrow")]) el.remove();
    if (!this.rows.length) {
      if (!this.list.querySelector(".empty")) this.list.append(h("div.empty", null, this.text ? `Nothing matches “${this.text}”` : "No events yet"));
      return;
    }
    this.list.querySelector(".empty")?.remove();
    const frag = document.createDocumentFragment();
    for (let i = first; i < last; i++) frag.append(this.rowEl(this.rows[i], i));
    this.list.append(frag);
  }

  rowEl(r, i) {
    const el = h(`div.lrow.k-${r.kind}${this.selected === r.id ? ".sel" : ""}${r._fresh && Date.now() - r._fresh < 1200 ? ".fresh" : ""}`,
      { style: { top: `${i * ROW_H}px` }, dataset: { id: String(r.id) } },
      h("span.t", null, fmt.time(r.ts_ns)),
      h("span.tp.topic", null, r.topic),
      h("span.who", null, `${r.comm} `, h("span.pid", null, String(r.pid))),
      h("span.lbl", null, marked(r.label, this.text)));
    el.addEventListener("click", () => this.select(r.id));
    return el;
  }

  onKey(e) {
    if (e.key !== "ArrowDown" && e.key !== "ArrowUp") return;
    e.preventDefault();
    const i = this.rows.findIndex((r) => r.id === this.selected);
    const j = Math.max(0, Math.min(this.rows.length - 1, i + (e.key === "ArrowDown" ? 1 : -1)));
    if (this.rows[j]) {
      this.select(this.rows[j].id);
      const y = j * ROW_H;
      if (y < this.list.scrollTop || y > this.list.scrollTop + this.list.clientHeight - ROW_H) this.list.scrollTop = y - this.list.clientHeight / 2;
    }
  }

  async select(id) {
    this.selected = id;
    this.paint(true);
    const ev = await api(`/api/events/${id}`).catch(() => null);
    if (this.selected !== id) return;
    if (!ev) { fill(this.detailBody, h("div.empty", null, `No event ${id}`)); return; }
    const actions = [];
    if (ev.topic === "llm.call") actions.push(h("a.btn", { href: `/llm?event=${ev.id}`, "data-nav": true }, "Open LLM call"));
    fill(this.detailHead,
      h(`span.topic.k-${ev.kind}`, null, ev.topic),
      h("span", null, `${ev.comm} [${ev.pid}]`),
      h("span.dim", null, `${fmt.datetime(ev.ts_ns)} · ${ev.source} · #${ev.id}`),
      h("div.spacer"), ...actions,
      h("button.btn", { title: "Copy the event as JSON", onclick: () => navigator.clipboard?.writeText(JSON.stringify(ev, null, 2)) }, "Copy"));
    const whole = { id: ev.id, ts_ns: ev.ts_ns, topic: ev.topic, source: ev.source, pid: ev.pid, tid: ev.tid, comm: ev.comm, session: ev.session, data: ev.data };
    fill(this.detailBody, jsonView(whole, this.text));
    this.detailBody.querySelector("mark")?.scrollIntoView({ block: "center" });
  }

  async routed() {
    const id = Number(new URLSearchParams(location.search).get("id"));
    if (!id) return;
    if (!this.rows.some((r) => r.id === id)) {
      this.text = ""; this.search.value = ""; this.kinds.clear(); this.renderKinds();
      await this.reload(Math.max(0, id - 50));
    }
    this.follow = false;
    this.followBtn.classList.remove("on");
    const i = this.rows.findIndex((r) => r.id === id);
    if (i >= 0) this.list.scrollTop = Math.max(0, i * ROW_H - this.list.clientHeight / 2);
    this.select(id);
  }

  onLive(rows) {
    this.renderKinds();
    if (this.more) { this.total += rows.length; this.renderCount(); return; }
    if (this.text) {
      this.countEl.textContent = `${fmt.num(this.total)} matching events · new events arrived (search again to include them)`;
      return;
    }
    const topics = topicsFor(this.kinds);
    const now = Date.now();
    const add = rows.filter((r) => !topics.length || topics.some((t) => r.topic.startsWith(t))).map((r) => ({ ...r, _fresh: now }));
    if (!add.length) return;
    const atEnd = this.list.scrollTop + this.list.clientHeight >= this.rows.length * ROW_H - ROW_H * 2;
    this.rows.push(...add);
    this.total += add.length;
    this.renderCount();
    if (this.follow && atEnd) this.toEnd(); else this.paint(true);
    for (const r of add.slice(-20)) window.agentsight.live.push({ id: r.id, ts_ns: r.ts_ns, shown_ms: Date.now(), view: "log" });
  }

  toEnd() {
    this.paint(true);
    this.list.scrollTop = this.rows.length * ROW_H;
    this.paint(true);
  }

  shown() { this.paint(true); }
}
