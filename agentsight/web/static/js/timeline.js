// Timeline: one lane per (process, source) on a zoomable, pannable axis (vis-timeline),
// an overview of the whole recording (uPlot) that shows and sets the visible window,
// filters by kind, process, source and text. Windows with too many events come back
// from the server as counts per bucket ("bins") and turn into events as you zoom in.
import { api, fmt, h, fill, clock, debounce, kindChips, kindCounts, topicsFor, jsonView, KIND_NAMES, KIND_COLORS, kindOf } from "./util.js";

const KIND_RGB = {
  process: "122,162,247", file: "158,206,106", net: "224,175,104", llm: "187,154,247", mcp: "115,218,202", http: "125,207,255", tls: "42,195,222",
  stdio: "255,158,100", system: "169,177,214", session: "247,118,142", other: "124,133,163",
};
const SOURCE_ORDER = ["process", "sessions", "llm", "mcp", "http", "sse", "ssl", "stdio", "system"];
const LABELS = 60;  // at most this many events loaded: stack them with their labels; more: one row of marks per lane

const escHtml = (s) => String(s).replace(/[&<>"']/g, (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" })[c]);

export class TimelineView {
  constructor(root, state) {
    this.root = root;
    this.state = state;
    this.filter = { kinds: new Set(), pids: [], sources: new Set(), text: "" };
    this.laneMeta = new Map();  // lane key -> {pid, comm, source, count, first_ns, last_ns}
    this.procs = [];
    this.seq = 0;
    this.stacked = false;
    this.mode = "events";
    this.loaded = null;  // [start_ns, end_ns] of the items held
    this.follow = true;
    this.filteredCounts = null;
  }

  async init() {
    const t0 = performance.now();
    this.build();
    const T = window.agentsight.steps = {};
    const lanes = await (this.state.prefetch?.lanes || api("/api/lanes"));
    this.state.prefetch = null;
    T.fetch = performance.now() - t0;
    this.setLanes(lanes.lanes);
    T.lanes = performance.now() - t0;
    // Ask for the first window (the lanes that will fit on screen) while vis builds the timeline.
    const first = this.fetchWindow(this.fitWindow(), this.firstLanes());
    const overview = this.loadOverview();
    this.makeTimeline();
    this.fit(false);
    T.make = performance.now() - t0;
    const [data, lanesAsked] = await first;
    T.fetched = performance.now() - t0;
    this.lanesKey = lanesAsked.join(",");
    this.render(data);
    T.rendered = performance.now() - t0;
    await overview;
    T.load = performance.now() - t0;
    await new Promise((r) => requestAnimationFrame(() => requestAnimationFrame(r)));
    T.paint = performance.now() - t0;
    window.agentsight.ready.timeline = performance.now();
    window.agentsight.ready.timelineInit = performance.now() - t0;
    // The process list (for the process filter) is not needed to draw: fetch it afterwards.
    this.loadProcs();
    this.state.bus.addEventListener("events", (e) => this.onLive(e.detail));
    this.state.bus.addEventListener("reset", () => this.reloadAll());
    window.addEventListener("resize", debounce(() => this.resizeOverview(), 100));
  }

  // ------------------------------------------------------------------ layout
  build() {
    const info = this.state.info;
    this.search = h("input", { type: "search", placeholder: "Filter events by text…", id: "tl-search", spellcheck: "false" });
    this.search.addEventListener("input", debounce(() => { this.filter.text = this.search.value.trim(); this.refilter(); }, 250));
    this.kindBox = h("div");
    this.procSel = h("select.sel", { id: "tl-proc", title: "Show one process and its children" });
    this.procSel.addEventListener("change", () => {
      const pid = Number(this.procSel.value);
      this.filter.pids = pid ? this.subtree(pid) : [];
      this.refilter();
    });
    this.sourceBox = h("div.chips", { id: "tl-sources" });
    this.countLabel = h("span.count-label", { id: "tl-count" });
    this.followBtn = h("button.btn.on", { title: "Keep the newest events in view as they arrive", onclick: () => this.toggleFollow() }, "Follow");
    const toolbar = h("div.toolbar",
      null,
      h("label.search", null, this.search),
      this.kindBox,
      this.procSel,
      this.sourceBox,
      h("div.spacer"),
      this.countLabel,
      h("div.group", null,
        h("button.btn.icon", { title: "Zoom out", onclick: () => this.tl.zoomOut(0.5) }, "−"),
        h("button.btn.icon", { title: "Zoom in", onclick: () => this.tl.zoomIn(0.5) }, "+"),
        h("button.btn", { title: "Show the whole recording", id: "tl-fit", onclick: () => this.fit(true) }, "Fit")),
      this.followBtn,
    );
    this.overviewEl = h("div.overview", { id: "tl-overview" });
    this.tlEl = h("div.tl", { id: "tl" });
    this.statusEl = h("div.tl-status");
    this.tlEl.append(this.statusEl);
    this.detailEl = h("div.tl-detail", { id: "tl-detail", hidden: true });
    this.root.append(toolbar, h("div.tl-wrap", null, this.overviewEl, this.tlEl, this.detailEl));
    this.renderKinds(kindCounts(info.topics));
  }

  renderKinds(counts) {
    fill(this.kindBox, kindChips(counts, this.filter.kinds, (k) => {
      const s = this.filter.kinds;
      if (s.has(k)) s.delete(k); else s.add(k);
      this.renderKinds(kindCounts(this.state.info.topics));
      this.refilter();
    }));
  }

  async loadProcs() {
    this.procs = (await api("/api/processes")).processes;
    this.renderProcSelect();
  }

  subtree(pid) {
    const kids = new Map();
    for (const p of this.procs) {
      if (p.ppid === null || p.ppid === undefined) continue;
      if (!kids.has(p.ppid)) kids.set(p.ppid, []);
      kids.get(p.ppid).push(p.pid);
    }
    const out = new Set([pid]);
    const stack = [pid];
    while (stack.length) for (const c of kids.get(stack.pop()) || []) if (!out.has(c)) { out.add(c); stack.push(c); }
    return [...out];
  }

  setLanes(lanes) {
    this.laneMeta = new Map(lanes.map((l) => [`${l.pid}:${l.source}`, l]));
    this.renderProcSelect();
    this.renderSources();
  }

  renderProcSelect() {
    const cur = this.procSel.value;
    const seen = new Set();
    const opts = [h("option", { value: "" }, "All processes")];
    const comm = new Map(this.procs.map((p) => [p.pid, p.comm]));
    // Lanes come in process-tree order: list processes the same way.
    for (const l of [...this.laneMeta.values()].sort((a, b) => a.order - b.order)) {
      if (seen.has(l.pid) || !l.pid) continue;
      seen.add(l.pid);
      opts.push(h("option", { value: String(l.pid) }, `${"\u2002".repeat(Math.min(l.depth || 0, 4))}${comm.get(l.pid) || l.comm || "?"} [${l.pid}]`));
    }
    fill(this.procSel, ...opts);
    this.procSel.value = cur;
  }

  renderSources() {
    const counts = {};
    for (const l of this.laneMeta.values()) counts[l.source] = (counts[l.source] || 0) + l.count;
    fill(this.sourceBox);
    for (const s of Object.keys(counts).sort((a, b) => rankSource(a) - rankSource(b))) {
      const on = !this.filter.sources.size || this.filter.sources.has(s);
      const chip = h(`button.chip${on ? ".on" : ".off"}`, { dataset: { source: s }, title: `Lanes from source ${s}` }, s,
        h("span.n", null, fmt.compact(counts[s])));
      chip.addEventListener("click", () => {
        const f = this.filter.sources;
        if (f.has(s)) f.delete(s); else f.add(s);
        this.renderSources();
        this.refilter();
      });
      this.sourceBox.append(chip);
    }
  }

  groupsData() {
    const out = [];
    for (const [key, l] of this.laneMeta) {
      out.push({
        id: key, pid: l.pid, comm: l.comm, source: l.source, count: l.count,
        depth: l.depth || 0, order: l.order ?? 1e9 + out.length,
        visible: this.laneVisible(key, l),
      });
      out[out.length - 1].content = this.laneHtml(out[out.length - 1]);
    }
    return out;
  }

  laneVisible(key, l) {
    const f = this.filter;
    if (f.pids.length && !f.pids.includes(l.pid)) return false;
    if (f.sources.size && !f.sources.has(l.source)) return false;
    if (this.filteredCounts && !this.filteredCounts[key]) return false;
    return true;
  }

  // ------------------------------------------------------------------ the timeline
  makeTimeline() {
    this.items = new vis.DataSet();
    this.groups = new vis.DataSet(this.groupsData());
    const info = this.state.info;
    const options = {
      stack: false,
      showCurrentTime: false,
      orientation: { axis: "top", item: "top" },
      zoomMin: 5,
      zoomMax: 1000 * 3600 * 24 * 30,
      margin: { item: { horizontal: 2, vertical: 6 }, axis: 6 },
      groupOrder: "order",
      verticalScroll: true,
      horizontalScroll: false,
      zoomKey: "",
      height: "100%",
      selectable: true,
      showTooltips: true,
      tooltip: { followMouse: true, overflowMethod: "cap", delay: 150 },
      format: { minorLabels: { millisecond: "ss.SSS", second: "HH:mm:ss", minute: "HH:mm", hour: "HH:mm" },
                majorLabels: { millisecond: "HH:mm:ss", second: "ddd D MMM HH:mm", minute: "ddd D MMM", hour: "ddd D MMM" } },
      xss: { disabled: true },
    };
    if (info.start_ns && info.end_ns) {
      options.min = new Date(info.start_ns / 1e6 - 3600_000);
    }
    this.tl = new vis.Timeline(this.tlEl, this.items, this.groups, options);
    this.tl.on("rangechanged", debounce((p) => { if (p.byUser) this.follow = this.followAtEnd(); this.syncFollowBtn(); this.load(); }, 120));
    this.tl.on("rangechange", () => this.drawWindow());
    this.tl.on("select", (p) => this.onSelect(p.items[0]));
    this.tl.on("click", (p) => this.onStripClick(p));
    this.tl.on("mouseMove", (p) => this.onStripHover(p));
    // A window too big for every lane only holds the lanes in view: scrolling down loads the others.
    this.tl.on("changed", debounce(() => {
      if (this.scope !== "lanes") return;
      const key = this.visibleLanes().join(",");
      if (key !== this.lanesKey) this.load();
    }, 150));
  }

  // Item and lane contents are HTML strings built here with every value escaped (vis's own
  // filter is off): vis keeps a string it has drawn, where a template's new element each
  // redraw would make it rebuild and measure every item again.
  laneHtml(g) {
    const l = this.laneMeta.get(g.id);
    const total = l ? l.count : g.count;
    const fc = this.filteredCounts;
    const count = fc ? `${fmt.compact(fc[g.id] || 0)} / ${fmt.compact(total)}` : fmt.compact(total);
    return `<div class="lane depth-${Math.min(g.depth, 3)}" data-lane="${escHtml(g.id)}">`
      + `<div class="l1"><span class="comm">${escHtml(g.comm || "?")}</span><span class="pid">${g.pid || ""}</span></div>`
      + `<div class="l2 k-${sourceKind(g.source)}"><span class="src">${escHtml(g.source)}</span>`
      + `<span class="cnt" data-count="${total}">${count}</span></div></div>`;
  }

  fitWindow() {
    const i = this.state.info;
    const s = (i.start_ns || Date.now() * 1e6) / 1e6, e = (i.end_ns || Date.now() * 1e6) / 1e6;
    const pad = Math.max((e - s) * 0.03, 5);
    return [s - pad, e + pad];
  }

  fit(animate) {
    const [s, e] = this.fitWindow();
    this.tl.setWindow(new Date(s), new Date(e), { animation: animate ? { duration: 250 } : false });
  }

  followAtEnd() {
    const w = this.tl.getWindow();
    return !!this.state.info.end_ns && w.end.getTime() >= this.state.info.end_ns / 1e6;
  }

  toggleFollow() {
    this.follow = !this.follow;
    this.syncFollowBtn();
    if (this.follow) this.scrollToEnd();
  }

  syncFollowBtn() { this.followBtn.classList.toggle("on", this.follow); }

  scrollToEnd() {
    const w = this.tl.getWindow();
    const span = w.end - w.start;
    const end = this.state.info.end_ns / 1e6;
    if (end > w.end.getTime() - span * 0.05) this.tl.setWindow(new Date(end - span * 0.9), new Date(end + span * 0.1), { animation: false });
  }

  query() {
    return { topics: topicsFor(this.filter.kinds), pids: this.filter.pids, sources: [...this.filter.sources], text: this.filter.text };
  }

  async load() {
    if (!this.tl) return;
    const w = this.tl.getWindow();
    const seq = ++this.seq;
    this.statusEl.textContent = "loading…";
    const [data, lanes] = await this.fetchWindow([w.start.getTime(), w.end.getTime()], this.visibleLanes());
    if (seq !== this.seq) return;
    this.lanesKey = lanes.join(",");
    this.render(data);
  }

  // The window's events (or bins), with a quarter of its span more on each side for panning.
  async fetchWindow([startMs, endMs], lanes) {
    const span = endMs - startMs;
    const start = Math.floor((startMs - span * 0.25) * 1e6);
    const end = Math.ceil((endMs + span * 0.25) * 1e6);
    const data = await api("/api/timeline", { start_ns: start, end_ns: end, width: Math.round(this.tlEl.clientWidth * 1.5), lanes, ...this.query() });
    return [data, lanes];
  }

  // Before vis has laid anything out: the lanes that will be on screen, from their order.
  firstLanes() {
    const rows = Math.ceil((this.tlEl.clientHeight || 800) / 36) + 2;
    return this.groupsData().filter((g) => g.visible).sort((a, b) => a.order - b.order).slice(0, rows).map((g) => g.id);
  }

  visibleLanes() {
    const ids = this.tl.getVisibleGroups ? this.tl.getVisibleGroups() : [];
    return ids.length && ids.length < 400 ? ids.map(String) : [];
  }

  render(data) {
    const next = [];
    this.mode = data.mode;
    this.scope = data.scope;
    this.loaded = [data.start_ns, data.end_ns];
    if (data.mode === "events") {
      for (const it of data.items) next.push(this.eventItem(it));
    } else {
      // One density strip per lane: a hard-stop gradient, one stop per time bucket.
      let max = 1;
      for (const counts of Object.values(data.bins)) for (const c of counts) if (c > max) max = c;
      const n = data.buckets;
      for (const [lane, counts] of Object.entries(data.bins)) {
        const rgb = KIND_RGB[sourceKind(this.laneMeta.get(lane)?.source)] || KIND_RGB.other;
        const stops = [];
        let i = 0;
        while (i < n) {
          let j = i;
          while (j + 1 < n && counts[j + 1] === counts[i]) j++;
          const a = counts[i] ? (0.22 + 0.78 * Math.sqrt(counts[i] / max)).toFixed(2) : "0";
          stops.push(`rgba(${rgb},${a}) ${(i / n * 100).toFixed(3)}% ${((j + 1) / n * 100).toFixed(3)}%`);
          i = j + 1;
        }
        next.push({
          id: `strip-${lane}`, group: lane, type: "range", className: "strip",
          start: new Date(data.start_ns / 1e6), end: new Date((data.start_ns + n * data.bucket_ns) / 1e6),
          style: `background-image: linear-gradient(to right, ${stops.join(", ")})`,
          content: `<span data-lane="${escHtml(lane)}"></span>`,
          strip: { lane, counts, start_ns: data.start_ns, bucket_ns: data.bucket_ns },
        });
      }
    }
    const dense = data.mode === "bins" || next.length > LABELS;
    // Each process's lifetime, as a bar under its events in its process lane (those in view, within reason).
    for (const p of data.lives || []) {
      const key = `${p.pid}:process`;
      if (!this.laneMeta.has(key)) continue;
      const end = p.end_ns || this.state.info.end_ns || p.start_ns;
      const status = p.signal ? (p.signal_name || `signal ${p.signal}`) : p.exit_code == null ? (p.end_ns ? "" : "running") : `exit ${p.exit_code}`;
      next.push({
        id: `life-${p.pid}-${p.start_ns}`, group: key, type: "range", start: new Date(p.start_ns / 1e6), end: new Date(Math.max(end, p.start_ns + 1e6) / 1e6),
        className: `life${p.exit_code || p.signal ? " failed" : ""}`, life: true,
        content: `<span class="life-body">${escHtml((p.argv || []).join(" ") || p.comm)}<span class="st">${escHtml(status)}</span></span>`,
        title: `${escHtml((p.argv || []).join(" ") || p.comm)}<br>${escHtml(status)} · ${fmt.dur(p.duration_ms)}`,
      });
    }
    const keep = new Set(next.map((i) => i.id));
    const stale = this.items.getIds().filter((id) => !keep.has(id));
    this.tlEl.classList.toggle("dense", dense);
    this.tlEl.classList.toggle("bins", data.mode === "bins");
    if (this.stacked !== !dense) {
      this.stacked = !dense;
      this.tl.setOptions({ stack: !dense });
    }
    this.items.remove(stale);
    this.items.update(next);
    const n = data.count;
    this.countLabel.textContent = data.mode === "events"
      ? `${fmt.num(n)} events in view`
      : `${fmt.num(n)} events in view · density per ${fmt.dur(data.bucket_ns / 1e6)}`;
    this.statusEl.textContent = data.mode === "bins" ? "zoom in (or click a strip) to see single events" : "";
  }

  eventItem(it) {
    const span = it.start_ns && it.end_ns && it.end_ns > it.start_ns;
    return {
      id: `e${it.id}`, group: it.lane, ev: it,
      type: span ? "range" : "point",
      start: new Date((span ? it.start_ns : it.ts_ns) / 1e6),
      end: span ? new Date(it.end_ns / 1e6) : undefined,
      className: `ev k-${it.kind}`,
      content: `<span class="ev-body k-${it.kind}" data-lane="${escHtml(it.lane)}" data-id="${it.id}"><b>${escHtml(it.topic)}</b>${escHtml(it.label)}</span>`,
      title: `<b>${escHtml(it.topic)}</b> · ${escHtml(it.comm)} [${it.pid}] · ${fmt.time(it.ts_ns)}<br>${escHtml(it.label)}`,
    };
  }

  // ------------------------------------------------------------------ filters
  refilter() {
    this.loadOverview().then(() => {
      this.groups.update(this.groupsData());
      this.redrawLanes();
    });
    this.load();
  }

  redrawLanes() {
    this.groups.update(this.groupsData());
  }

  filterActive() {
    const f = this.filter;
    return !!(f.kinds.size || f.text || f.pids.length || f.sources.size);
  }

  // ------------------------------------------------------------------ overview
  async loadOverview() {
    const T = window.agentsight.steps || {};
    const t0 = performance.now();
    const buckets = Math.max(60, Math.min(400, Math.floor(this.overviewEl.clientWidth / 4)));
    const q = this.query();
    const data = await api("/api/overview", { buckets, ...q });
    this.filteredCounts = this.filterActive() ? data.lane_counts : null;
    T.ovFetch = performance.now() - t0;
    this.drawOverview(data);
    T.ovDraw = performance.now() - t0;
  }

  drawOverview(data) {
    if (!data.start_ns) { fill(this.overviewEl, h("div.empty", null, "No events recorded yet")); this.overview = null; return; }
    const n = data.buckets;
    const xs = Array.from({ length: n }, (_, i) => (data.start_ns + (i + 0.5) * data.bucket_ns) / 1e9);
    const kinds = KIND_NAMES.filter((k) => data.series[k]);
    const cum = [];
    let run = new Array(n).fill(0);
    for (const k of kinds) {
      run = run.map((v, i) => v + data.series[k][i]);
      cum.push(run);
    }
    const order = kinds.map((k, i) => i).reverse();
    const series = [{}];
    const values = [xs];
    for (const i of order) {
      const c = KIND_COLORS[kinds[i]];
      series.push({ label: kinds[i], stroke: c, fill: c + "b0", width: 0, paths: uPlot.paths.bars({ size: [1, 100], gap: 0, align: 0 }), points: { show: false } });
      values.push(cum[i]);
    }
    const width = Math.max(200, this.overviewEl.clientWidth - 16);
    const opts = {
      width, height: 70,
      legend: { show: false },
      padding: [2, 8, 0, 8],
      cursor: { drag: { x: true, y: false, setScale: false }, points: { show: false }, y: false },
      select: { show: true },
      scales: { x: { time: true, range: [data.start_ns / 1e9, (data.start_ns + n * data.bucket_ns) / 1e9] }, y: { range: (u, lo, hi) => [0, Math.max(1, hi)] } },
      axes: [
        { stroke: "#646e82", grid: { show: false }, ticks: { show: false }, size: 18, font: "10px Inter, sans-serif", gap: 2,
          values: (u, splits) => splits.map((v) => clock(v, u.scales.x.max - u.scales.x.min)) },
        { show: false },
      ],
      series,
      hooks: {
        setSelect: [(u) => {
          if (u.select.width > 3) {
            const a = u.posToVal(u.select.left, "x"), b = u.posToVal(u.select.left + u.select.width, "x");
            this.follow = false;
            this.syncFollowBtn();
            this.tl.setWindow(new Date(a * 1000), new Date(b * 1000), { animation: { duration: 200 } });
          }
          u.setSelect({ left: 0, top: 0, width: 0, height: 0 }, false);
        }],
      },
    };
    fill(this.overviewEl);
    this.overview = new uPlot(opts, values, this.overviewEl);
    this.winEl = h("div.win");
    this.overview.over.append(this.winEl);
    this.overview.over.addEventListener("click", (e) => {
      if (this._dragged) return;
      const t = this.overview.posToVal(e.offsetX, "x") * 1000;
      const w = this.tl.getWindow();
      const span = w.end - w.start;
      this.tl.setWindow(new Date(t - span / 2), new Date(t + span / 2), { animation: { duration: 200 } });
    });
    this.overviewEl.append(h("div.legend-line", null, kinds.map((k) => h("span", { style: { "--c": KIND_COLORS[k] } }, k))));
    this.drawWindow();
  }

  resizeOverview() {
    if (this.overview) this.overview.setSize({ width: Math.max(200, this.overviewEl.clientWidth - 16), height: 70 });
    this.drawWindow();
  }

  drawWindow() {
    if (!this.overview || !this.winEl || !this.tl) return;
    const w = this.tl.getWindow();
    const u = this.overview;
    const left = Math.max(0, u.valToPos(w.start.getTime() / 1000, "x"));
    const right = Math.min(u.over.clientWidth, u.valToPos(w.end.getTime() / 1000, "x"));
    this.winEl.style.left = `${left}px`;
    this.winEl.style.width = `${Math.max(2, right - left)}px`;
  }

  // ------------------------------------------------------------------ selection
  async onSelect(id) {
    if (!id) { this.detailEl.hidden = true; return; }
    const item = this.items.get(id);
    if (!item) return;
    if (item.life || item.strip) { this.tl.setSelection([]); return; }
    const ev = await api(`/api/events/${item.ev.id}`);
    this.showDetail(ev);
  }

  stripAt(p) {
    const item = p.item ? this.items.get(p.item) : null;
    if (!item || !item.strip || !p.time) return null;
    const s = item.strip;
    const i = Math.floor((p.time.getTime() * 1e6 - s.start_ns) / s.bucket_ns);
    if (i < 0 || i >= s.counts.length) return null;
    return { s, i, start_ns: s.start_ns + i * s.bucket_ns, end_ns: s.start_ns + (i + 1) * s.bucket_ns };
  }

  onStripHover(p) {
    const hit = this.stripAt(p);
    if (!hit) { if (this.mode === "bins") this.statusEl.textContent = "zoom in (or click a strip) to see single events"; return; }
    const l = this.laneMeta.get(hit.s.lane);
    this.statusEl.textContent = `${l ? `${l.comm} [${l.pid}] · ${l.source}` : hit.s.lane}: ${fmt.num(hit.s.counts[hit.i])} events, ${fmt.time(hit.start_ns)} – ${fmt.time(hit.end_ns)}`;
  }

  onStripClick(p) {
    const hit = this.stripAt(p);
    if (!hit) return;
    this.follow = false;
    this.syncFollowBtn();
    const span = (hit.end_ns - hit.start_ns) * 8;
    const mid = (hit.start_ns + hit.end_ns) / 2;
    this.tl.setWindow(new Date((mid - span / 2) / 1e6), new Date((mid + span / 2) / 1e6), { animation: { duration: 250 } });
  }

  showDetail(ev) {
    const actions = [h("a.btn", { href: `/log?id=${ev.id}`, "data-nav": true }, "Open in log")];
    if (ev.topic === "llm.call") actions.unshift(h("a.btn", { href: `/llm?event=${ev.id}`, "data-nav": true }, "Open LLM call"));
    fill(this.detailEl,
      h("div.pane-head", null,
        h(`span.topic.k-${kindOf(ev.topic)}`, null, ev.topic),
        h("span.title", null, `${ev.comm} [${ev.pid}]`),
        h("span.dim", null, `${fmt.datetime(ev.ts_ns)} · source ${ev.source} · #${ev.id}`),
        h("div.spacer"), ...actions,
        h("button.btn.icon", { title: "Close", onclick: () => { this.detailEl.hidden = true; this.tl.setSelection([]); } }, "×")),
      h("div.scroll", null, jsonView(ev.data)));
    this.detailEl.hidden = false;
  }

  // ------------------------------------------------------------------ live
  onLive(rows) {
    let newLane = false;
    const add = [];
    const f = this.filter;
    const topics = topicsFor(f.kinds);
    for (const r of rows) {
      const key = `${r.pid}:${r.source}`;
      const lane = this.laneMeta.get(key);
      if (lane) {
        lane.count += 1;
        lane.last_ns = r.ts_ns;
      } else {
        this.laneMeta.set(key, { pid: r.pid, comm: r.comm, source: r.source, count: 1, first_ns: r.ts_ns, last_ns: r.ts_ns,
          order: 1e9 + this.laneMeta.size, depth: 0 });
        newLane = true;
      }
      if (r.topic.startsWith("process.")) this.procsStale = true;
      if (this.mode !== "events" || f.text) continue;
      if (topics.length && !topics.some((t) => r.topic.startsWith(t))) continue;
      if (f.pids.length && !f.pids.includes(r.pid)) continue;
      if (f.sources.size && !f.sources.has(r.source)) continue;
      add.push(this.eventItem({ ...r, lane: key }));
    }
    if (newLane) { this.lanesStale = true; this.groups.update(this.groupsData()); this.renderSources(); }
    else this.redrawLaneCounts(rows);
    if (add.length) this.items.update(add);
    if (this.follow) this.scrollToEnd();
    this.liveRefresh();
  }

  redrawLaneCounts(rows) {
    const keys = new Set(rows.map((r) => `${r.pid}:${r.source}`));
    this.groups.update(this.groupsData().filter((g) => keys.has(g.id)));
  }

  liveRefresh() {
    if (this._liveTimer) return;
    this._liveTimer = setTimeout(async () => {
      this._liveTimer = null;
      if (this.procsStale || this.lanesStale) {
        this.procsStale = this.lanesStale = false;
        const lanes = (await api("/api/lanes")).lanes;
        this.setLanes(lanes);
        this.groups.update(this.groupsData());
        await this.loadProcs();
      }
      this.renderKinds(kindCounts(this.state.info.topics));
      await this.loadOverview();
      if (this.mode === "bins") this.load();
    }, 1500);
  }

  async reloadAll() {
    const lanes = await api("/api/lanes");
    this.setLanes(lanes.lanes);
    this.loadProcs();
    this.groups.clear();
    this.groups.update(this.groupsData());
    await Promise.all([this.load(), this.loadOverview()]);
  }

  shown() {
    this.resizeOverview();
    this.tl?.redraw();
  }
}

function rankSource(s) {
  const i = SOURCE_ORDER.indexOf(s);
  return i < 0 ? SOURCE_ORDER.length : i;
}

function sourceKind(source) {
  return { process: "process", sessions: "session", llm: "llm", mcp: "mcp", http: "http", sse: "http", ssl: "tls", stdio: "stdio", system: "system" }[source] || "other";
}
