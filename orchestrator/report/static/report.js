// The sweep report page: inflate plotly.js and the data (gzip + base64, see html_page.py), then
// draw the key answers, filters, charts (small multiples: a panel per workload or GPU, each series
// one colour and one legend entry), sortable tables and the per-cell drill-down. No network.
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
const kindOf = (p) => p.simulated ? "simulated †" : `measured (${p.engine}${p.device === "cpu" ? ", CPU" : ""})`;
const LAYOUT = { margin: { l: 60, r: 10, t: 36, b: 44 }, legend: { font: { size: 10 } }, hovermode: "closest" };
const CONFIG = { displaylogo: false, responsive: true };
const FIRST_CHARTS = 1;  // drawn before the page says it is ready; the rest right after, one per frame
const TABLE_ROWS = 50;  // rows a table shows until "show all" (sorting sorts them all)

// ------------------------------------------------------------------ filters
const AXES = [["model", "model"], ["quantization", "quantization"], ["gpu", "GPU"], ["workload", "workload"], ["kind", "engine"]];
const INLINE_VALUES = 4;  // an axis with more values gets a drop-down list, so the bar stays one or two lines
const PANELS = [["workload", "workload"], ["gpu", "GPU"], ["none", "none"]];  // the first is the default
function axisBox(key, title, values, state, onChange) {
  const box = el("fieldset", { "data-axis": key }, el("legend", {}, title));
  const summary = el("summary", {});
  const sync = () => { summary.textContent = state.size === values.length ? `all ${values.length}` : `${state.size} of ${values.length}`; };
  const inputs = values.map((v) => el("input", { type: "checkbox", value: v, checked: "", on: { change: (e) => { e.target.checked ? state.add(v) : state.delete(v); sync(); onChange(); } } }));
  const labels = values.map((v, i) => el("label", {}, inputs[i], ` ${v}`));
  if (values.length <= INLINE_VALUES) { box.append(...labels); return box; }
  const every = (on) => el("button", { type: "button", on: { click: () => {
    inputs.forEach((cb, i) => { cb.checked = on; on ? state.add(values[i]) : state.delete(values[i]); });
    sync(); onChange();
  } } }, on ? "all" : "none");
  box.append(el("details", { class: "pick" }, summary, el("div", { class: "menu" }, el("div", {}, every(true), every(false)), ...labels)));
  sync();
  return box;
}
function filterBar(points, onChange) {
  const state = {};
  const bar = el("section", { id: "filters", class: "filters" });
  for (const [key, title] of AXES) {
    const values = [...new Set(points.map((p) => p[key]))].sort();
    state[key] = new Set(values);
    bar.append(axisBox(key, title, values, state[key], onChange));
  }
  const flagged = el("input", { type: "checkbox", id: "hide-flagged", on: { change: onChange } });
  bar.append(el("fieldset", {}, el("legend", {}, "flags"), el("label", { title: "S W E T X: see report.md" }, flagged, " hide flagged points")));
  const panels = el("select", { id: "panels-by", on: { change: onChange } }, ...PANELS.map(([v, t]) => el("option", { value: v }, t)));
  bar.append(el("fieldset", {}, el("legend", {}, "panels by"), panels));
  document.addEventListener("click", (e) => {  // an open drop-down closes on a click elsewhere
    for (const d of bar.querySelectorAll("details.pick[open]")) if (!d.contains(e.target)) d.open = false;
  });
  const keep = (p) => AXES.every(([k]) => state[k].has(p[k])) && !(flagged.checked && p.flags);
  return { bar, keep, panelBy: () => panels.value };
}

// ------------------------------------------------------------------ series: one name, colour and marker each
// plotly's "Dark24": distinct on white; past 24 series the marker changes, so no two look alike
const PALETTE = ["#2E91E5", "#E15F99", "#1CA71C", "#FB0D0D", "#DA16FF", "#222A2A", "#B68100", "#750D86", "#EB663B", "#511CFB", "#00A08B", "#FB00D1",
  "#FC0080", "#B2828D", "#6C7C32", "#778AAE", "#862A16", "#A777F1", "#620042", "#1616A7", "#DA60CA", "#6C4516", "#0D2A63", "#AF0038"];
const SYMBOLS = ["circle", "square", "diamond", "triangle-up", "x", "star"];
const OTHER = { color: "#888", symbol: "circle", rank: 999 };  // a row with no point (none expected)
function seriesName(p, by) {  // what the legend calls p's series: what its panel does not already say
  const base = `${p.model}/${p.quantization}/${p.gpu}`;
  const series = by === "gpu" && p.series.toLowerCase().startsWith(base.toLowerCase()) ? `${p.model}/${p.quantization}${p.series.slice(base.length)}` : p.series;
  return `${series}${by === "workload" ? "" : ` · ${p.workload}`}${p.simulated ? " †" : ""}`;
}
function seriesStyles(points, by) {  // from every point, not those shown: a filter never recolours a series
  const names = [...new Set(points.map((p) => seriesName(p, by)))].sort((a, b) => a.endsWith("†") - b.endsWith("†") || a.localeCompare(b));
  return new Map(names.map((n, i) => [n, { color: PALETTE[i % PALETTE.length], symbol: SYMBOLS[Math.floor(i / PALETTE.length) % SYMBOLS.length], rank: i }]));
}
function groups(points, ctx) {  // series name -> its points by batch size; series in legend order
  const out = new Map();
  for (const p of points) { const k = ctx.name(p); if (!out.has(k)) out.set(k, []); out.get(k).push(p); }
  for (const v of out.values()) v.sort((a, b) => a.batch_size - b.batch_size);
  return [...out].sort(([a], [b]) => ctx.style(a).rank - ctx.style(b).rank);
}
const hover = (name, p, ...lines) => `<b>${name}</b><br>${p.workload} · ${p.kind}<br>${lines.join("<br>")}<extra></extra>`;

// ------------------------------------------------------------------ charts
function seriesTraces(points, metric, ctx) {
  const traces = [];
  for (const [name, ps] of groups(points, ctx)) {
    const y = ps.map((p) => p[metric]);
    if (y.every((v) => v === null)) continue;
    const lo = ps.map((p) => p[`${metric}_ci95_low`]), hi = ps.map((p) => p[`${metric}_ci95_high`]);
    const hasCi = lo.some((v) => v !== null && v !== undefined);
    const s = ctx.style(name);
    traces.push({
      x: ps.map((p) => p.batch_size), y, name, mode: "lines+markers", type: "scatter", legendgroup: name, legendrank: s.rank,
      customdata: ps.map((p) => p.cell_id.split(",")[0]),
      line: { color: s.color, dash: ps[0].simulated ? "dash" : "solid" }, marker: { color: s.color, symbol: s.symbol },
      error_y: hasCi ? { type: "data", array: y.map((v, i) => hi[i] === null ? 0 : hi[i] - v), arrayminus: y.map((v, i) => lo[i] === null ? 0 : v - lo[i]), visible: true } : undefined,
      hovertemplate: hover(name, ps[0], `batch size %{x}: ${ctx.y} %{y:.4g}`),
    });
  }
  return traces;
}
const FIT_SERIES = 8;  // more series in a chart than this: its fitted laws start hidden (a legend click shows them)
function fitTraces(points, fits, metric, scale, ctx) {
  // every fitted law of the panel in one trace (gaps between them): one trace draws far faster than many
  const shown = new Set(points.map((p) => `${p.series}|${p.workload}`));
  const x = [], y = [], text = [];
  for (const f of rows(fits)) {
    if (f.metric !== metric || !shown.has(`${f.series}|${f.workload}`) || f.c === null) continue;
    const law = `fit ${f.series} · ${f.workload}: ${fmt(f.c * scale)}·BS^${fmt(f.exponent)} (R² ${fmt(f.r2)})`;
    for (let b = f.bs_min; b <= f.bs_max * 1.0001; b *= 1.25) { x.push(b); y.push(scale * f.c * Math.pow(b, f.exponent)); text.push(law); }
    x.push(null); y.push(null); text.push("");
  }
  return x.length ? [{ x, y, text, name: "fitted scaling laws", legendgroup: "fits", visible: ctx.series > FIT_SERIES ? "legendonly" : true, mode: "lines", type: "scatter", line: { dash: "dot", width: 1, color: "#888" }, hovertemplate: "%{text}<extra></extra>" }] : [];
}
function paretoTraces(points, ctx) {
  const pts = points.filter((p) => p.output_throughput_tok_s !== null && p.e2e_p50_ms !== null);
  const traces = groups(pts, ctx).map(([name, ps]) => {
    const s = ctx.style(name);
    return { x: ps.map((p) => p.output_throughput_tok_s), y: ps.map((p) => p.e2e_p50_ms), customdata: ps.map((p) => p.cell_id.split(",")[0]), name, legendgroup: name, legendrank: s.rank, mode: "markers", type: "scatter",
      marker: { color: s.color, symbol: ps[0].simulated ? `${s.symbol}-open` : s.symbol }, text: ps.map((p) => p.batch_size),
      hovertemplate: hover(name, ps[0], "batch size %{text}: %{x:.4g} tok/s, E2E p50 %{y:.4g} ms") };
  });
  const front = pts.filter((p) => !pts.some((q) => q.output_throughput_tok_s >= p.output_throughput_tok_s && q.e2e_p50_ms <= p.e2e_p50_ms && (q.output_throughput_tok_s > p.output_throughput_tok_s || q.e2e_p50_ms < p.e2e_p50_ms))).sort((a, b) => a.output_throughput_tok_s - b.output_throughput_tok_s);
  if (front.length) traces.push({ x: front.map((p) => p.output_throughput_tok_s), y: front.map((p) => p.e2e_p50_ms), name: "Pareto front", legendgroup: "front", mode: "lines", type: "scatter", line: { color: "#000", width: 1 } });
  return traces;
}
function rooflineTraces(data, rs, ctx) {  // rs: the panel's roofline rows; the roofs of their GPUs
  const traces = groups(rs.filter((r) => r.intensity_flop_per_byte !== null), ctx).map(([name, ps]) => {
    const s = ctx.style(name);
    return { x: ps.map((p) => p.intensity_flop_per_byte), y: ps.map((p) => p.achieved_tflops), text: ps.map((p) => `batch size ${p.batch_size}, ${p.bound}-bound`), name, legendgroup: name, legendrank: s.rank, mode: "lines+markers", type: "scatter",
      line: { color: s.color, dash: ps[0].simulated ? "dash" : "solid" }, marker: { color: s.color, symbol: s.symbol },
      hovertemplate: hover(name, ps[0], "%{text}: %{x:.4g} FLOP/byte, %{y:.4g} TFLOP/s") };
  });
  const gpus = new Set(rs.map((r) => r.gpu));
  for (const roof of rows(data.roofs).filter((r) => gpus.has(r.gpu))) {
    const xs = [0.5, roof.ridge_flop_per_byte, 4096], name = `roof ${roof.gpu} ${roof.activation_dtype}`;
    traces.push({ x: xs, y: xs.map((i) => Math.min(roof.peak_tflops, roof.bandwidth_gb_s * i / 1000)), name, legendgroup: name, mode: "lines", type: "scatter", line: { dash: "dot", color: "#444" } });
  }
  return traces;
}
function batchTitle(ps) {  // "batch size" and what it means for the engines shown (max-num-seqs, a static batch…)
  const knobs = new Map();
  for (const p of ps) if (p.batch_knob) { if (!knobs.has(p.batch_knob)) knobs.set(p.batch_knob, new Set()); knobs.get(p.batch_knob).add(p.engine); }
  if (!knobs.size || (knobs.size === 1 && knobs.has("batch size"))) return "batch size";
  if (knobs.size === 1) return `batch size (${[...knobs.keys()][0]})`;
  return `batch size (${[...knobs].map(([k, engines]) => `${[...engines].sort().join(", ")}: ${k}`).join("; ")})`;
}
// TTFT against prompt length: the measured ok requests of the drill-down rows (a cell's requests, evenly
// spaced), at most MAX_SCATTER in all; one colour per prefix caching setting, in every panel
const MAX_SCATTER = 6000;
const CACHING = [[false, "prefix caching off", "#d03030"], [true, "prefix caching on", "#1ca71c"], [null, "prefix caching unknown", "#888"]];
function requestRows(data, points) {  // -> [{point, workload, gpu, cell, caching, input, uncached, ttft}]
  const byCell = new Map();
  for (const p of points) for (const c of p.cell_id.split(",")) byCell.set(c, p);
  const out = [];
  for (const [cell, c] of Object.entries(data.cells || {})) {
    const p = byCell.get(cell), r = c.requests;
    if (!p || !r.input_tokens) continue;
    r.ttft_ms.forEach((ttft, i) => {
      if (r.phase[i] !== "measured" || r.status[i] !== "ok" || ttft === null || r.input_tokens[i] === null) return;
      const cached = r.cached_tokens ? r.cached_tokens[i] : null;
      out.push({ point: p, workload: p.workload, gpu: p.gpu, cell, caching: c.prefix_caching ?? null, input: r.input_tokens[i], uncached: cached === null ? null : r.input_tokens[i] - cached, ttft });
    });
  }
  const step = Math.ceil(out.length / MAX_SCATTER);
  return step > 1 ? out.filter((_, i) => i % step === 0) : out;
}
function cachingTraces(rs, key, title) {
  return CACHING.map(([value, name, color]) => {
    const mine = rs.filter((r) => r.caching === value && r[key] !== null);
    return { x: mine.map((r) => r[key]), y: mine.map((r) => r.ttft), customdata: mine.map((r) => r.cell), text: mine.map((r) => label(r.point)), name, legendgroup: name,
      mode: "markers", type: "scatter", marker: { color, size: 4, opacity: 0.5 }, hovertemplate: `<b>%{text}</b><br>${name}<br>${title} %{x}, TTFT %{y:.4g} ms<extra></extra>` };
  }).filter((t) => t.x.length);
}
const LOG = { type: "log", nticks: 5 };  // a log axis in a small panel: no row of minor digits
const BATCH = { type: "log", dtick: Math.log10(2) };
const CHARTS = [  // x, y: the axis titles (x: of the panel's points where a function); traces: of one panel
  { id: "chart-throughput", title: "Output throughput", x: batchTitle, xaxis: BATCH, y: "output throughput (tok/s)", yaxis: LOG, traces: (d, ps, ctx) => [...seriesTraces(ps, "output_throughput_tok_s", ctx), ...fitTraces(ps, d.fits, "output_throughput_tok_s", 1, ctx)] },
  { id: "chart-energy", title: "Energy per output token, gross: the GPU's whole draw", x: batchTitle, xaxis: BATCH, y: "energy per output token (J)", yaxis: LOG, traces: (d, ps, ctx) => [...seriesTraces(ps, "energy_per_output_token_j", ctx), ...fitTraces(ps, d.fits, "energy_per_1k_output_tokens_j", 0.001, ctx)] },
  { id: "chart-energy-net", title: "Energy per output token, net: above the idle baseline", x: batchTitle, xaxis: BATCH, y: "net energy per output token (J)", yaxis: LOG, traces: (d, ps, ctx) => seriesTraces(ps, "net_energy_per_output_token_j", ctx) },
  { id: "chart-ttft", title: "Time to first token (p50)", x: batchTitle, xaxis: BATCH, y: "TTFT p50 (ms)", yaxis: LOG, traces: (d, ps, ctx) => seriesTraces(ps, "ttft_p50_ms", ctx) },
  { id: "chart-tpot", title: "Time per output token (p50)", x: batchTitle, xaxis: BATCH, y: "TPOT p50 (ms)", yaxis: {}, traces: (d, ps, ctx) => seriesTraces(ps, "tpot_p50_ms", ctx) },
  { id: "chart-pareto", title: "Latency–throughput and its Pareto front", x: "output throughput (tok/s)", xaxis: LOG, y: "E2E latency p50 (ms)", yaxis: LOG, traces: (d, ps, ctx) => paretoTraces(ps, ctx) },
  { id: "chart-roofline", title: "Roofline: achieved TFLOP/s vs arithmetic intensity", x: "arithmetic intensity (FLOP / byte)", xaxis: LOG, y: "achieved TFLOP/s", yaxis: LOG,
    rows: (d, keep) => rows(d.roofline).filter(keep), traces: (d, rs, ctx) => rooflineTraces(d, rs, ctx) },
  { id: "chart-ttft-input", title: "TTFT against input length (measured ok requests, sampled)", x: "input tokens", xaxis: {}, y: "TTFT (ms)", yaxis: LOG,
    when: (d) => new Set(d.requestRows.map((r) => r.input)).size > 1, rows: (d, keep) => d.requestRows.filter((r) => keep(r.point)), traces: (d, rs) => cachingTraces(rs, "input", "input tokens") },
  { id: "chart-ttft-uncached", title: "TTFT against uncached prompt tokens (input − cached, where the engine reported cached tokens)", x: "uncached prompt tokens", xaxis: {}, y: "TTFT (ms)", yaxis: LOG,
    when: (d) => d.requestRows.some((r) => r.uncached !== null), rows: (d, keep) => d.requestRows.filter((r) => r.uncached !== null && keep(r.point)), traces: (d, rs) => cachingTraces(rs, "uncached", "uncached prompt tokens") },
];

// ------------------------------------------------------------------ small multiples
const MAX_COLUMNS = 3, PANEL_HEIGHT = 300, LEGEND_ROW = 19;
function panelKeys(ps, by) {  // one panel per value of `by` among the points shown (one panel: by none, or none shown)
  const keys = by === "none" ? [] : [...new Set(ps.map((p) => p[by]))].sort();
  return keys.length ? keys : [null];
}
function legendLayout(traces, width) {
  // below the panels, in columns as wide as the longest name: its rows are known before plotly draws it
  const seen = new Set();
  for (const t of traces) { const g = t.legendgroup || t.name; t.showlegend = !seen.has(g); seen.add(g); }
  const names = traces.filter((t) => t.showlegend).map((t) => t.name);
  const text = 6 + 5.6 * Math.max(...names.map((n) => n.length), 1);  // px at font size 10
  const perRow = Math.max(1, Math.floor((width - 20) / (text + 40)));  // + the line sample
  const rowsN = Math.ceil(names.length / perRow);
  return { legend: { orientation: "h", entrywidth: text, x: 0, xanchor: "left", yref: "container", y: 0, yanchor: "bottom", font: { size: 10 }, tracegroupgap: 0 }, height: rowsN * LEGEND_ROW + 8 };
}
function figure(chart, data, ps, keep, by, ctx, width) {
  const items = chart.rows ? chart.rows(data, keep) : ps;
  const keys = panelKeys(ps, by), title = PANELS.find(([v]) => v === by)[1];
  const cols = Math.min(keys.length, MAX_COLUMNS), gridRows = Math.ceil(keys.length / cols);
  const layout = { ...LAYOUT, title: { text: chart.title }, grid: { rows: gridRows, columns: cols, pattern: "independent", xgap: 0.16, ygap: 0.3 }, annotations: [] };
  const traces = [];
  keys.forEach((key, i) => {
    const n = i ? String(i + 1) : "", sub = key === null ? items : items.filter((p) => p[by] === key);
    for (const t of chart.traces(data, sub, { ...ctx, y: chart.y })) traces.push({ ...t, xaxis: `x${n}`, yaxis: `y${n}` });
    layout[`xaxis${n}`] = { ...chart.xaxis, automargin: true, title: { text: typeof chart.x === "function" ? chart.x(sub.length ? sub : items) : chart.x } };
    layout[`yaxis${n}`] = { ...chart.yaxis, automargin: true, title: { text: chart.y } };
    if (key !== null) layout.annotations.push({ text: `<b>${title}: ${key}</b>`, xref: `x${n} domain`, yref: `y${n} domain`, x: 0.5, y: 1, yanchor: "bottom", showarrow: false, font: { size: 12 } });
  });
  const legend = legendLayout(traces, width);
  layout.legend = legend.legend;
  layout.margin = { ...LAYOUT.margin, t: 60, b: 50 + legend.height };
  layout.height = gridRows * PANEL_HEIGHT + layout.margin.t + layout.margin.b;
  return { traces, layout };
}

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
    el("div", { id: "drill-timeline", class: "chart" }), el("div", { id: "drill-dist", class: "chart" }),
    ...(c.lengths ? [el("p", { class: "lengths" }, lengthsText(c)), el("div", { id: "drill-lengths", class: "chart" })] : []), el("div", { id: "drill-power", class: "chart" }));
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
  if (c.lengths) drillLengths(c);
  Plotly.newPlot("drill-power", [{ x: c.power.t_s, y: c.power.power_w, mode: "lines", type: "scatter", name: "power (W)" }],
    { ...LAYOUT, title: { text: "Power (shaded: measured window; dashed: idle baseline)" }, xaxis: { title: "s" }, yaxis: { title: "W" },
      shapes: [{ type: "rect", xref: "x", yref: "paper", x0: 0, x1: c.window_s, y0: 0, y1: 1, fillcolor: "#9c9", opacity: 0.2, line: { width: 0 } },
        ...(c.idle_power_w !== null ? [{ type: "line", xref: "paper", x0: 0, x1: 1, y0: c.idle_power_w, y1: c.idle_power_w, line: { dash: "dash", color: "#777" } }] : [])] }, CONFIG);
  box.scrollIntoView({ block: "start" });
}

function lengthsText(c) {  // the cell's measured ok requests' lengths: p50 / p90 / max over all of them
  const l = c.lengths, stats = (v) => `p50 ${fmt(v[0])}, p90 ${fmt(v[1])}, max ${fmt(v[2])}`;
  const cached = l.cached_tokens ? `; cached tokens ${stats(l.cached_tokens)}` : "";
  const caching = c.prefix_caching === null || c.prefix_caching === undefined ? "" : ` Prefix caching ${c.prefix_caching ? "on" : "off"}.`;
  return `Lengths of its ${l.n} measured ok requests: input tokens ${stats(l.input_tokens)}; output tokens ${stats(l.output_tokens)}${cached}.${caching}`;
}
function drillLengths(c) {  // input and output length distributions of the measured ok requests shown
  const r = c.requests, good = (i) => r.phase[i] === "measured" && r.status[i] === "ok";
  const pick = (col) => (col || []).filter((v, i) => v !== null && good(i));
  const input = pick(r.input_tokens), output = pick(r.output_tokens);
  Plotly.newPlot("drill-lengths", [
    { x: input, type: "histogram", name: `input tokens, n=${input.length}`, opacity: 0.6 },
    { x: output, type: "histogram", name: `output tokens, n=${output.length}`, opacity: 0.6, xaxis: "x2", yaxis: "y2" },
  ], { ...LAYOUT, title: { text: "Input and output length distributions (of the measured ok requests shown)" }, grid: { rows: 1, columns: 2, pattern: "independent" },
    xaxis: { title: { text: "input tokens" } }, xaxis2: { title: { text: "output tokens" } }, yaxis: { title: { text: "requests" } } }, CONFIG);
}

// ------------------------------------------------------------------ pages
function rich(text) {  // "**bold**" as <strong>, the rest as text nodes (never parsed as HTML)
  return text.split("**").map((part, i) => (i % 2 ? el("strong", {}, part) : part));
}

const plain = (text) => text.replaceAll("**", "");

function answersBox(groups) {  // the report's key answers, above the charts: a few per group until "show all"
  if (!groups || !groups.length) return el("section", { id: "answers", hidden: "" });
  const total = groups.reduce((n, g) => n + g.items.length, 0);
  const box = el("section", { id: "answers", class: "answers" });
  const more = `show all ${total} answers`;
  const toggle = el("button", { type: "button", id: "answers-all", on: { click: () => { toggle.textContent = box.classList.toggle("open") ? "show fewer" : more; } } }, more);
  box.append(el("h2", {}, "Key answers ", ...(groups.every((g) => g.short.length === g.items.length) ? [] : [toggle])),
    ...groups.map((g) => el("div", { class: "answer-group" }, el("p", { title: plain(g.lead) }, ...rich(g.lead)),
      el("ul", {}, ...g.items.map((t, i) => el("li", g.short.includes(i) ? { title: plain(t) } : { class: "more" }, ...rich(t)))))));
  return box;
}

function reportPage(data) {
  const points = rows(data.points).map((p) => ({ ...p, kind: kindOf(p) }));
  data.roofline.kind = rows(data.roofline).map((r) => points.find((p) => p.series === r.series)?.kind);
  for (const k of ["model", "quantization"]) data.roofline[k] = rows(data.roofline).map((r) => points.find((p) => p.series === r.series)?.[k]);
  data.requestRows = requestRows(data, points);
  const shownCharts = CHARTS.filter((c) => !c.when || c.when(data));
  const cpu = points.some((p) => p.device === "cpu") ? " Engine \"measured (hf, CPU)\": ran on the CPU, not a GPU." : "";
  document.getElementById("subtitle").textContent = `${data.n_ok} ok of ${data.n_cells} cells in ${data.path}. † simulated (dashed): modeled, not measured.${cpu} Latency SLO: ${data.slo}. A legend entry hides its series in every panel (double-click: only it). Click a point or a "view" button for the cell's requests and power.`;
  const app = document.getElementById("app");
  const styles = {};  // panels-by -> series styles, made once each
  let generation = 0;
  const drawOne = (chart, ps) => {
    const by = filters.panelBy(), gd = document.getElementById(chart.id);
    styles[by] ??= seriesStyles(points, by);
    const name = (p) => seriesName(p, by);
    const ctx = { name, style: (n) => styles[by].get(n) || OTHER, series: new Set(ps.map(name)).size };
    const fig = figure(chart, data, ps, filters.keep, by, ctx, gd.clientWidth);
    Plotly.react(gd, fig.traces, fig.layout, CONFIG);
    if (!gd.dataset.clicks) {  // a point opens its cell's drill-down
      gd.dataset.clicks = "1";
      gd.on("plotly_click", (ev) => { const cid = ev.points[0]?.customdata; if (cid) view(cid); });
    }
  };
  const draw = () => {  // the first charts now, the others one per frame (the page stays usable)
    const ps = points.filter(filters.keep), mine = ++generation;
    window.reportAllDrawn = false;
    shownCharts.slice(0, FIRST_CHARTS).forEach((c) => drawOne(c, ps));
    const rest = shownCharts.slice(FIRST_CHARTS);
    const next = () => {
      if (mine !== generation) return;  // a newer filter change redraws everything
      if (!rest.length) { window.reportAllDrawn = true; return; }
      drawOne(rest.shift(), ps);
      requestAnimationFrame(next);
    };
    requestAnimationFrame(next);
  };
  const filters = filterBar(points, draw);
  const charts = el("section", { class: "charts" }, ...shownCharts.map(({ id }) => el("div", { id, class: "chart" })));
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
