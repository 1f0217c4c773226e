// Per-request energy charts: appended to report.js only for a store that attributed the window's energy
// to requests (data.request_energy, see request_energy.py). It runs right after report.js, before the
// data is inflated, and adds its charts to the page's: panels, filters and series colours as the others.
const ENERGY_SCATTER = 6000;  // points in each energy scatter, in all (every n-th past it)
function energyCells(data) {  // -> [{point, workload, gpu, cell, e}] for the cells of the points shown
  if (data.energyCells) return data.energyCells;
  const byCell = new Map();
  for (const p of rows(data.points)) for (const c of p.cell_id.split(",")) byCell.set(c, { ...p, kind: kindOf(p) });
  data.energyCells = Object.entries(data.request_energy || {}).filter(([cell]) => byCell.has(cell))
    .map(([cell, e]) => ({ point: byCell.get(cell), workload: byCell.get(cell).workload, gpu: byCell.get(cell).gpu, cell, e }));
  return data.energyCells;
}
function energyCdfTraces(cs, ctx) {  // one line per cell, its series' colour; the legend names each series once
  const ys = (n) => Array.from({ length: n }, (_, i) => i / Math.max(n - 1, 1));
  return cs.filter((c) => c.e.cdf_j.length).map((c) => {
    const name = ctx.name(c.point), s = ctx.style(name);
    return { x: c.e.cdf_j, y: ys(c.e.cdf_j.length), name, legendgroup: name, legendrank: s.rank, mode: "lines", type: "scatter",
      customdata: c.e.cdf_j.map(() => c.cell), line: { color: s.color, dash: c.point.simulated ? "dash" : "solid", width: 1.5 },
      hovertemplate: hover(name, c.point, `batch size ${c.point.batch_size}, ${c.e.n} requests: %{y:.0%} cost ≤ %{x:.4g} J`) };
  });
}
function energyScatterTraces(cs, key, title, ctx) {  // per series: its cells' sampled requests
  const total = cs.reduce((n, c) => n + c.e.energy_j.length, 0), step = Math.max(1, Math.ceil(total / ENERGY_SCATTER));
  const bySeries = new Map();
  for (const c of cs) {
    const name = ctx.name(c.point);
    if (!bySeries.has(name)) bySeries.set(name, { x: [], y: [], cell: [], text: [], point: c.point });
    const t = bySeries.get(name);
    c.e.energy_j.forEach((v, i) => {
      if (i % step || v === null || c.e[key][i] === null) return;
      t.x.push(c.e[key][i]); t.y.push(v); t.cell.push(c.cell); t.text.push(c.point.batch_size);
    });
  }
  return [...bySeries].filter(([, t]) => t.x.length).sort(([a], [b]) => ctx.style(a).rank - ctx.style(b).rank).map(([name, t]) => {
    const s = ctx.style(name);
    return { x: t.x, y: t.y, customdata: t.cell, text: t.text, name, legendgroup: name, legendrank: s.rank, mode: "markers", type: "scatter",
      marker: { color: s.color, symbol: t.point.simulated ? `${s.symbol}-open` : s.symbol, size: 4, opacity: 0.5 },
      hovertemplate: hover(name, t.point, `batch size %{text}: ${title} %{x}, %{y:.4g} J`) };
  });
}
const energyRows = (d, keep) => energyCells(d).filter((c) => keep(c.point));
const positiveEnergy = (d) => energyCells(d).every((c) => !c.e.cdf_j.length || c.e.cdf_j[0] > 0);  // cdf_j[0]: the least
const energyChart = (chart, axis) => {  // a log energy axis only where no request was attributed 0 J (log drops it)
  const out = { ...chart, [axis]: LOG, rows: energyRows };
  out.when = (d) => { out[axis] = positiveEnergy(d) ? LOG : {}; return energyCells(d).length > 0; };
  return out;
};
CHARTS.push(
  energyChart({ id: "chart-request-energy-cdf", title: "Per-request energy, gross: CDF per cell (measured ok requests)", x: "energy per request (J)", y: "share of requests", yaxis: { range: [0, 1] },
    traces: (d, cs, ctx) => energyCdfTraces(cs, ctx) }, "xaxis"),
  energyChart({ id: "chart-request-energy-input", title: "Per-request energy against input tokens (sampled)", x: "input tokens", xaxis: {}, y: "energy per request (J)",
    traces: (d, cs, ctx) => energyScatterTraces(cs, "input_tokens", "input tokens", ctx) }, "yaxis"),
  energyChart({ id: "chart-request-energy-output", title: "Per-request energy against output tokens (sampled)", x: "output tokens", xaxis: {}, y: "energy per request (J)",
    traces: (d, cs, ctx) => energyScatterTraces(cs, "output_tokens", "output tokens", ctx) }, "yaxis"),
);
