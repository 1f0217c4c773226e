// An active sweep's predicted cells on the throughput and energy charts: appended to report.js only
// for a store with active_sweep.json (data.whole_grid, see whole_grid.py). It runs right after
// report.js, before the data is inflated: each of the two charts then also draws, per series shown,
// its predicted cells as hollow markers with their 90% intervals as error bars, in the series'
// colour and legend group (a legend click hides both), with no line and no drill-down (nothing was
// measured). A predicted cell is drawn only beside a measured point of its series in the panel.
const PREDICTED_METRICS = { "chart-throughput": "output_throughput_tok_s", "chart-energy": "energy_per_output_token_j" };
function predictedTraces(d, ps, metric, ctx) {
  const shown = new Map(ps.map((p) => [`${p.series}|${p.workload}`, p]));
  const bySeries = new Map();
  for (const q of rows(d.whole_grid)) {
    const twin = shown.get(`${q.series}|${q.workload}`);
    if (!twin || q[metric] === null) continue;
    const name = ctx.name(twin);
    if (!bySeries.has(name)) bySeries.set(name, { twin, qs: [] });
    bySeries.get(name).qs.push(q);
  }
  return [...bySeries].sort(([a], [b]) => ctx.style(a).rank - ctx.style(b).rank).map(([name, { twin, qs }]) => {
    qs.sort((a, b) => a.batch_size - b.batch_size);
    const s = ctx.style(name), y = qs.map((q) => q[metric]);
    const lo = qs.map((q) => q[`${metric}_low`]), hi = qs.map((q) => q[`${metric}_high`]);
    return { x: qs.map((q) => q.batch_size), y, name: `${name} (predicted)`, legendgroup: name, legendrank: s.rank, mode: "markers", type: "scatter",
      marker: { color: s.color, symbol: `${s.symbol}-open`, size: 9, line: { width: 1.5 } },
      error_y: { type: "data", array: y.map((v, i) => hi[i] === null ? 0 : hi[i] - v), arrayminus: y.map((v, i) => lo[i] === null ? 0 : v - lo[i]), visible: true, thickness: 1 },
      text: qs.map((q, i) => `predicted † (${q.level}), 90% interval ${fmt(lo[i])}–${fmt(hi[i])}`),
      hovertemplate: hover(name, twin, `batch size %{x}: ${ctx.y} %{y:.4g}<br>%{text}`) };
  });
}
for (const chart of CHARTS) {
  const metric = PREDICTED_METRICS[chart.id];
  if (!metric) continue;
  const measured = chart.traces;
  chart.title += " (hollow: predicted †, 90% interval)";
  chart.traces = (d, ps, ctx) => [...measured(d, ps, ctx), ...predictedTraces(d, ps, metric, ctx)];
}
