// The sweep report page: inflate plotly.js and the data (gzip + base64, see html_page.py), then
// draw filters, charts, sortable tables and the per-cell drill-down. No network.
"use strict";
window.reportReady = false;

async function inflate(id) {  // base64 gzip -> text, decoded natively (a data: URL is no network)
  const b64 = document.getElementById(id).textContent.trim();
  const body = (await fetch(`data:application/octet-stream;base64,${b64}`)).body;
  return await new Response(body.pipeThrough(new DecompressionStream("gzip"))).text();
}

const el = (tag, attrs = {}, ...kids) => {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (k === "on") for (const [ev, fn] of Object.entries(v)) e.addEventListener(ev, fn);
    else e.setAttribute(k, v);
  }
  for (const k of kids) e.append(k);
  return e;
};
const rows = (cols) => { const n = Object.values(cols)[0]?.length || 0; return Array.from({ length: n }, (_, i) => Object.fromEntries(Object.entries(cols).map(([k, v]) => [k, v[i]]))); };
const fmt = (v) => v === null || v === undefined ? "—" : typeof v === "number" ? (Math.abs(v) >= 100 ? v.toLocaleString("en", { maximumFractionDigits: 0 }) : +v.toPrecision(3)) : v === true ? "yes" : v === false ? "no" : String(v);
const label = (p) => `${p.series} · ${p.workload}${p.simulated ? " †" : ""}`;
const LAYOUT = { margin: { l: 60, r: 10, t: 36, b: 44 }, legend: { font: { size: 10 } }, hovermode: "closest" };
const CONFIG = { displaylogo: false, responsive: true };
const MAX_LEGEND = 40;  // more series than this: no legend (hover names them; filter to see one)
const FIRST_CHARTS = 1;  // drawn before the page says it is ready; the rest right after, one per frame
const TABLE_ROWS = 50;  // rows a table shows until "show all" (sorting sorts them all)

// ------------------------------------------------------------------ filters
const AXES = [["model", "model"], ["quantization", "quantization"], ["gpu", "GPU"], ["workload", "workload"], ["kind", "engine"]];
function filterBar(points, onChange) {
  const state = {};
  const bar = el("section", { id: "filters", class: "filters" });
  for (const [key, title] of AXES) {
    const values = [...new Set(points.map((p) => p[key]))].sort();
    state[key] = new Set(values);
    const box = el("fieldset", { "data-axis": key }, el("legend", {}, title));
    for (const v of values) {
      const cb = el("input", { type: "checkbox", value: v, checked: "", on: { change: (e) => { e.target.checked ? state[key].add(v) : state[key].delete(v); onChange(); } } });
      box.append(el("label", {}, cb, ` ${v}`));
    }
    bar.append(box);
  }
  const flagged = el("input", { type: "checkbox", id: "hide-flagged", on: { change: onChange } });
  bar.append(el("fieldset", {}, el("legend", {}, "flags"), el("label", {}, flagged, " hide flagged points (S W E T X)")));
  const keep = (p) => AXES.every(([k]) => state[k].has(p[k])) && !(flagged.checked && p.flags);
  return { bar, keep };
}

// ------------------------------------------------------------------ charts
function groups(points) {
  const out = new Map();
  for (const p of points) { const k = label(p); if (!out.has(k)) out.set(k, []); out.get(k).push(p); }
  for (const v of out.values()) v.sort((a, b) => a.batch_size - b.batch_size);
  return out;
}
function seriesTraces(points, metric, opts = {}) {
  const traces = [];
  for (const [name, ps] of groups(points)) {
    const y = ps.map((p) => p[metric]);
    if (y.every((v) => v === null)) continue;
    const lo = ps.map((p) => p[`${metric}_ci95_low`]), hi = ps.map((p) => p[`${metric}_ci95_high`]);
    const hasCi = lo.some((v) => v !== null && v !== undefined);
    traces.push({
      x: ps.map((p) => p.batch_size), y, name: (opts.prefix || "") + name, mode: "lines+markers", type: "scatter",
      legendgroup: name, customdata: ps.map((p) => p.cell_id.split(",")[0]),
      line: { dash: ps[0].simulated ? "dash" : opts.dash || "solid" },
      error_y: hasCi ? { type: "data", array: y.map((v, i) => hi[i] === null ? 0 : hi[i] - v), arrayminus: y.map((v, i) => lo[i] === null ? 0 : v - lo[i]), visible: true } : undefined,
      hovertemplate: `%{x}: %{y:.4g}<br>${name}<extra></extra>`,
    });
  }
  return traces;
}
function fitTraces(points, fits, metric, scale) {
  // every fitted law of the chart in one trace (gaps between them): one trace draws far faster than many
  const shown = new Set(points.map((p) => `${p.series}|${p.workload}`));
  const x = [], y = [], text = [];
  for (const f of rows(fits)) {
    if (f.metric !== metric || !shown.has(`${f.series}|${f.workload}`) || f.c === null) continue;
    const law = `fit ${f.series} · ${f.workload}: ${fmt(f.c * scale)}·BS^${fmt(f.exponent)} (R² ${fmt(f.r2)})`;
    for (let b = f.bs_min; b <= f.bs_max * 1.0001; b *= 1.25) { x.push(b); y.push(scale * f.c * Math.pow(b, f.exponent)); text.push(law); }
    x.push(null); y.push(null); text.push("");
  }
  return x.length ? [{ x, y, text, name: "fitted scaling laws", mode: "lines", type: "scatter", line: { dash: "dot", width: 1, color: "#888" }, hovertemplate: "%{text}<extra></extra>" }] : [];
}
function paretoTraces(points) {
  const pts = points.filter((p) => p.output_throughput_tok_s !== null && p.e2e_p50_ms !== null);
  const traces = [...groups(pts)].map(([name, ps]) => ({ x: ps.map((p) => p.output_throughput_tok_s), y: ps.map((p) => p.e2e_p50_ms), text: ps.map((p) => `BS ${p.batch_size}`), customdata: ps.map((p) => p.cell_id.split(",")[0]), name, mode: "markers", type: "scatter", legendgroup: name, marker: { symbol: ps[0].simulated ? "circle-open" : "circle" } }));
  const front = pts.filter((p) => !pts.some((q) => q.output_throughput_tok_s >= p.output_throughput_tok_s && q.e2e_p50_ms <= p.e2e_p50_ms && (q.output_throughput_tok_s > p.output_throughput_tok_s || q.e2e_p50_ms < p.e2e_p50_ms))).sort((a, b) => a.output_throughput_tok_s - b.output_throughput_tok_s);
  traces.push({ x: front.map((p) => p.output_throughput_tok_s), y: front.map((p) => p.e2e_p50_ms), name: "Pareto front", mode: "lines", type: "scatter", line: { color: "#000", width: 1 } });
  return traces;
}
function rooflineTraces(data, keep) {
  const r = rows(data.roofline).filter((x) => keep(x) && x.intensity_flop_per_byte !== null);
  const traces = [...groups(r)].map(([name, ps]) => ({ x: ps.map((p) => p.intensity_flop_per_byte), y: ps.map((p) => p.achieved_tflops), text: ps.map((p) => `BS ${p.batch_size}, ${p.bound}-bound`), name, mode: "lines+markers", type: "scatter" }));
  for (const roof of rows(data.roofs)) {
    const xs = [0.5, roof.ridge_flop_per_byte, 4096];
    traces.push({ x: xs, y: xs.map((i) => Math.min(roof.peak_tflops, roof.bandwidth_gb_s * i / 1000)), name: `roof ${roof.gpu} ${roof.activation_dtype}`, mode: "lines", type: "scatter", line: { dash: "dot", color: "#444" } });
  }
  return traces;
}
const axisBs = { title: "batch size (max-num-seqs)", type: "log", dtick: Math.log10(2) };
const CHARTS = [
  ["chart-throughput", "Output throughput (tok/s)", (d, ps) => [...seriesTraces(ps, "output_throughput_tok_s"), ...fitTraces(ps, d.fits, "output_throughput_tok_s", 1)], { xaxis: axisBs, yaxis: { title: "tok/s", type: "log" } }],
  ["chart-energy", "Energy per output token (J), gross: the GPU's whole draw", (d, ps) => [...seriesTraces(ps, "energy_per_output_token_j"), ...fitTraces(ps, d.fits, "energy_per_1k_output_tokens_j", 0.001)], { xaxis: axisBs, yaxis: { title: "J / output token", type: "log" } }],
  ["chart-energy-net", "Energy per output token (J), net: above the idle baseline", (d, ps) => seriesTraces(ps, "net_energy_per_output_token_j"), { xaxis: axisBs, yaxis: { title: "J / output token (net)", type: "log" } }],
  ["chart-ttft", "TTFT p50 (ms)", (d, ps) => seriesTraces(ps, "ttft_p50_ms"), { xaxis: axisBs, yaxis: { title: "ms", type: "log" } }],
  ["chart-tpot", "TPOT p50 (ms)", (d, ps) => seriesTraces(ps, "tpot_p50_ms"), { xaxis: axisBs, yaxis: { title: "ms" } }],
  ["chart-pareto", "Latency–throughput (E2E p50 vs output tok/s) and its Pareto front", (d, ps) => paretoTraces(ps), { xaxis: { title: "output tok/s", type: "log" }, yaxis: { title: "E2E p50 (ms)", type: "log" } }],
  ["chart-roofline", "Roofline (achieved TFLOP/s vs arithmetic intensity)", (d, ps, keep) => rooflineTraces(d, keep), { xaxis: { title: "FLOP / byte", type: "log" }, yaxis: { title: "TFLOP/s", type: "log" } }],
];

// ------------------------------------------------------------------ tables
function sortable(name, table, onView) {
  const head = el("tr");
  const body = el("tbody");
  let order = { col: -1, asc: true }, limit = TABLE_ROWS;
  const cid = table.columns.indexOf("cell_id");
  const fill = () => {
    const shown = table.rows.slice(0, limit).map((r) => {
      const tr = el("tr", {}, ...r.map((v) => el("td", {}, fmt(v))));
      if (onView && cid >= 0) tr.append(el("td", {}, el("button", { class: "view", on: { click: () => onView(String(r[cid]).split(",")[0]) } }, "view")));
      return tr;
    });
    if (table.rows.length > limit) {
      shown.push(el("tr", {}, el("td", { colspan: String(table.columns.length + 1) }, el("button", { class: "more", on: { click: () => { limit = Infinity; fill(); } } }, `show all ${table.rows.length} rows`))));
    }
    body.replaceChildren(...shown);
  };
  table.columns.forEach((c, i) => head.append(el("th", { title: "click to sort", on: { click: () => {
    order = { col: i, asc: order.col === i ? !order.asc : true };
    table.rows.sort((a, b) => (a[i] === null) - (b[i] === null) || (a[i] < b[i] ? -1 : a[i] > b[i] ? 1 : 0) * (order.asc ? 1 : -1));
    fill();
  } } }, c)));
  fill();
  return el("section", { class: "table", "data-table": name }, el("h2", {}, `${name} (${table.rows.length})`), el("table", {}, el("thead", {}, head), body));
}

// ------------------------------------------------------------------ drill-down
function drill(data, cellId) {
  const c = data.cells[cellId];
  const box = document.getElementById("drill");
  if (!c) { box.replaceChildren(el("p", {}, `no drill-down data for ${cellId}`)); return; }
  box.replaceChildren(el("h2", {}, `Cell ${cellId}`), el("p", {}, `${c.n_requests} requests (${c.requests.send_s.length} shown), window ${fmt(c.window_s)} s, idle baseline ${fmt(c.idle_power_w)} W. Times from the window's start.`),
    el("div", { id: "drill-timeline", class: "chart" }), el("div", { id: "drill-dist", class: "chart" }), el("div", { id: "drill-power", class: "chart" }));
  const r = c.requests, n = r.send_s.length, idx = [...Array(n).keys()];
  const seg = (from, to, keep, color, name) => { const x = [], y = []; idx.filter(keep).forEach((i) => { x.push(from[i], to[i], null); y.push(i, i, null); }); return { x, y, mode: "lines", type: "scatter", name, line: { color, width: 2 } }; };
  const cancelled = (i) => r.status[i] !== "ok";
  Plotly.newPlot("drill-timeline", [
    seg(r.send_s, r.first_token_s, (i) => !cancelled(i) && r.first_token_s[i] !== null, "#f0a030", "waiting + prefill (to first token)"),
    seg(r.first_token_s, r.end_s, (i) => !cancelled(i) && r.first_token_s[i] !== null, "#3070c0", "decode"),
    seg(r.send_s, r.end_s, cancelled, "#d03030", "cancelled / failed"),
  ], { ...LAYOUT, title: { text: "Request timeline" }, xaxis: { title: "s" }, yaxis: { title: "request" }, shapes: [{ type: "rect", xref: "x", yref: "paper", x0: 0, x1: c.window_s, y0: 0, y1: 1, fillcolor: "#9c9", opacity: 0.15, line: { width: 0 } }] }, CONFIG);
  const ttft = r.ttft_ms.filter((v) => v !== null), tpot = r.tpot_ms.filter((v) => v !== null);  // n: how many of those shown
  Plotly.newPlot("drill-dist", [
    { x: ttft, type: "histogram", name: `TTFT (ms), n=${ttft.length}`, opacity: 0.6 },
    { x: tpot, type: "histogram", name: `TPOT (ms), n=${tpot.length}`, opacity: 0.6, xaxis: "x2", yaxis: "y2" },
  ], { ...LAYOUT, title: { text: `TTFT and TPOT distributions (of the ${n} requests shown)` }, grid: { rows: 1, columns: 2, pattern: "independent" } }, CONFIG);
  Plotly.newPlot("drill-power", [{ x: c.power.t_s, y: c.power.power_w, mode: "lines", type: "scatter", name: "power (W)" }],
    { ...LAYOUT, title: { text: "Power (shaded: measured window; dashed: idle baseline)" }, xaxis: { title: "s" }, yaxis: { title: "W" },
      shapes: [{ type: "rect", xref: "x", yref: "paper", x0: 0, x1: c.window_s, y0: 0, y1: 1, fillcolor: "#9c9", opacity: 0.2, line: { width: 0 } },
        ...(c.idle_power_w !== null ? [{ type: "line", xref: "paper", x0: 0, x1: 1, y0: c.idle_power_w, y1: c.idle_power_w, line: { dash: "dash", color: "#777" } }] : [])] }, CONFIG);
  box.scrollIntoView({ block: "start" });
}

// ------------------------------------------------------------------ pages
function rich(text) {  // "**bold**" as <strong>, the rest as text nodes (never parsed as HTML)
  return text.split("**").map((part, i) => (i % 2 ? el("strong", {}, part) : part));
}

function answersBox(groups) {  // the report's key answers, above the charts
  if (!groups || !groups.length) return el("section", { id: "answers", hidden: "" });
  return el("section", { id: "answers", class: "answers" }, el("h2", {}, "Key answers"),
    ...groups.map((g) => el("div", { class: "answer-group" }, el("p", {}, ...rich(g.lead)),
      el("ul", {}, ...g.items.map((t) => el("li", {}, ...rich(t)))))));
}

function reportPage(data) {
  const points = rows(data.points).map((p) => ({ ...p, kind: p.simulated ? "simulated †" : `measured (${p.engine})` }));
  data.roofline.kind = rows(data.roofline).map((r) => points.find((p) => p.series === r.series)?.kind);
  for (const k of ["model", "quantization"]) data.roofline[k] = rows(data.roofline).map((r) => points.find((p) => p.series === r.series)?.[k]);
  document.getElementById("subtitle").textContent = `${data.n_ok} ok of ${data.n_cells} cells in ${data.path}. † simulated (dashed): modeled, not measured. Latency SLO: ${data.slo}. Click a point or a "view" button for the cell's requests and power.`;
  const app = document.getElementById("app");
  let generation = 0;
  const drawOne = ([id, title, traces, axes], ps) => {
    const tr = traces(data, ps, filters.keep);
    const gd = document.getElementById(id);
    Plotly.react(gd, tr, { ...LAYOUT, ...axes, title: { text: title }, showlegend: tr.length <= MAX_LEGEND }, CONFIG);
    if (!gd.dataset.clicks) {  // a point opens its cell's drill-down
      gd.dataset.clicks = "1";
      gd.on("plotly_click", (ev) => { const cid = ev.points[0]?.customdata; if (cid) view(cid); });
    }
  };
  const draw = () => {  // the first charts now, the others one per frame (the page stays usable)
    const ps = points.filter(filters.keep), mine = ++generation;
    window.reportAllDrawn = false;
    CHARTS.slice(0, FIRST_CHARTS).forEach((c) => drawOne(c, ps));
    const rest = CHARTS.slice(FIRST_CHARTS);
    const next = () => {
      if (mine !== generation) return;  // a newer filter change redraws everything
      if (!rest.length) { window.reportAllDrawn = true; return; }
      drawOne(rest.shift(), ps);
      requestAnimationFrame(next);
    };
    requestAnimationFrame(next);
  };
  const filters = filterBar(points, draw);
  const charts = el("section", { class: "charts" }, ...CHARTS.map(([id]) => el("div", { id, class: "chart" })));
  const view = (cid) => drill(data, cid);
  const cellsTable = { columns: ["series", "workload", "batch_size", "flags", "output_throughput_tok_s", "energy_per_output_token_j", "ttft_p50_ms", "tpot_p50_ms", "cell_id"], rows: points.map((p) => [label(p), p.workload, p.batch_size, p.flags, p.output_throughput_tok_s, p.energy_per_output_token_j, p.ttft_p50_ms, p.tpot_p50_ms, p.cell_id]) };
  const tables = [sortable("points", cellsTable, view), ...Object.entries(data.tables).map(([n, t]) => sortable(n, t))];
  app.replaceChildren(answersBox(data.answers), filters.bar, charts, el("section", { id: "drill" }, el("p", {}, "Click a point for its cell's drill-down.")), ...tables);
  draw();
}

function comparePage(data) {
  document.getElementById("subtitle").textContent = data.subtitle;
  const t = rows(data.table);
  const name = (r) => data.keys.map((k) => r[k]).join(" · ") + (r.series_a ? ` [${r.series_a}]` : "");
  const bars = data.metrics.map(([title, m]) => ({ x: t.map(name), y: t.map((r) => r[`change_${m}_pct`]), type: "bar", name: title }));
  const app = document.getElementById("app");
  const errors = data.errors ? [sortable("prediction error: held out and fitted", { columns: Object.keys(data.errors), rows: rows(data.errors).map((r) => Object.values(r)) })] : [];
  app.replaceChildren(el("div", { id: "chart-compare", class: "chart wide" }), ...errors, sortable("matched points", { columns: Object.keys(data.table), rows: t.map((r) => Object.values(r)) }));
  Plotly.newPlot("chart-compare", bars, { ...LAYOUT, barmode: "group", title: { text: `Δ = (B − A) ÷ A, % — B: ${data.label_b}, A: ${data.label_a}` }, yaxis: { title: "%" }, xaxis: { automargin: true } }, CONFIG);
}

(async () => {
  try {
    const t = { start: performance.now() };
    const data = JSON.parse(await inflate("data-gz"));
    t.inflated = performance.now();
    (document.body.dataset.page === "compare" ? comparePage : reportPage)(data);
    t.drawn = performance.now();
    window.reportTimings = t;
    window.reportReady = true;
  } catch (err) {
    document.getElementById("app").replaceChildren(el("p", { class: "error" }, `The page could not be drawn: ${err}`));
    console.error(err);
  }
})();
