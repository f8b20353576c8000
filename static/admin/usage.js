// Usage over time: GET .../usage/series?from=&to=&step= (SPEC section 10),
// drawn with uPlot: peak occupancy against the pool's seats, denials and the
// peak queue, and calls; the same figures as CSV (Accept: text/csv).
//
// Each chart's uPlot instance is kept in presenceAdmin.usage.charts, so that
// what is drawn can be read back (`.data`).

import { $, clearErrors, h, num, options, showError } from "./dom.js";

const DAY = 86_400_000;
const COLORS = { seats: "#93a6b9", occupied: "#4c9bf0", denials: "#ff6b6b", queued: "#f7d06b", calls: "#ffb547" };

const view = {
  answer: null, // the last answer of usage/series
  query: null,
  charts: {}, // pool id -> {occupancy, demand, calls}: uPlot instances
  resize: null,
};

export function init(ctx) {
  window.presenceAdmin.usage = view;
  const today = localDate(new Date());
  $("usage-to").value = today;
  $("usage-from").value = localDate(new Date(Date.now() - 6 * DAY));
  ctx.on("pools", () => {
    const select = $("usage-pool");
    const chosen = select.value;
    options(select, [["", "All pools"], ...ctx.pools.map((p) => [p.id, p.name])]);
    select.value = ctx.pools.some((p) => p.id === chosen) ? chosen : "";
  });
  $("usage-form").addEventListener("submit", (event) => {
    event.preventDefault();
    load(ctx);
  });
  $("usage-csv").addEventListener("click", () => download(ctx));
  view.resize = new ResizeObserver(() => fit());
  view.resize.observe($("usage-charts"));
}

export async function show(ctx) {
  await load(ctx);
}

export function hide() {
  destroy();
}

function localDate(date) {
  const two = (n) => String(n).padStart(2, "0");
  return `${date.getFullYear()}-${two(date.getMonth() + 1)}-${two(date.getDate())}`;
}

// The form as a query: local midnights, `to` inclusive (up to the next midnight).
function query(form) {
  const from = form.elements.from.value;
  const to = form.elements.to.value;
  if (!from) throw { field: "from", message: "Choose the first day." };
  if (!to) throw { field: "to", message: "Choose the last day." };
  const start = new Date(`${from}T00:00`);
  const end = new Date(new Date(`${to}T00:00`).getTime() + DAY);
  if (end <= start) throw { field: "to", message: "The last day comes before the first." };
  return {
    from: start.toISOString(),
    to: end.toISOString(),
    step: form.elements.step.value,
    pool: form.elements.pool.value,
    days: `${from}_${to}`,
  };
}

async function load(ctx) {
  const form = $("usage-form");
  clearErrors(form);
  let q;
  try {
    q = query(form);
  } catch (error) {
    showError(form, error);
    return;
  }
  let answer;
  try {
    answer = await ctx.api.get(ctx.path("usage", "series"), [["from", q.from], ["to", q.to], ["step", q.step]]);
  } catch (error) {
    if (!error.code) throw error;
    showError(form, error);
    return;
  }
  view.answer = answer;
  view.query = q;
  render(ctx, answer, q);
}

async function download(ctx) {
  const form = $("usage-form");
  clearErrors(form);
  try {
    const q = query(form);
    await ctx.api.download(ctx.path("usage", "series"), [["from", q.from], ["to", q.to], ["step", q.step]], "text/csv",
      `usage-${ctx.domainId}-${q.days}-${q.step === "86400" ? "daily" : "hourly"}.csv`);
  } catch (error) {
    if (!error.message) throw error;
    showError(form, error);
  }
}

function destroy() {
  for (const set of Object.values(view.charts)) for (const chart of Object.values(set)) chart.destroy();
  view.charts = {};
}

function render(ctx, answer, q) {
  destroy();
  const box = $("usage-charts");
  const shown = answer.filter((entry) => !q.pool || entry.pool === q.pool);
  if (!shown.length) {
    box.replaceChildren(h("p", { class: "empty", text: "No pool to show." }));
    return;
  }
  box.replaceChildren(...shown.map((entry) => poolBlock(ctx, entry)));
  // Charts are made once their boxes have a width.
  for (const entry of shown) view.charts[entry.pool] = charts(ctx, entry);
}

function totals(points) {
  const sum = (key) => points.reduce((s, p) => s + p[key], 0);
  const max = (key) => points.reduce((m, p) => Math.max(m, p[key]), 0);
  return {
    peak: max("peak_occupied"), hours: sum("seat_seconds") / 3600, denials: sum("denials"),
    queue: max("peak_queued"), calls: sum("calls"),
  };
}

function poolBlock(ctx, entry) {
  const t = totals(entry.points);
  const pool = ctx.pools.find((p) => p.id === entry.pool);
  const seats = entry.seats ?? pool?.seats;
  const fact = (label, value) => h("div", {}, h("dt", { text: label }), h("dd", { text: value }));
  const chartBox = (kind, title) => h("figure", { class: "chart", dataset: { chart: kind } },
    h("figcaption", { text: title }), h("div", { class: "plot" }));
  return h("section", { class: "usage-pool panel", dataset: { pool: entry.pool }, "aria-label": `Usage of ${ctx.poolName(entry.pool)}` },
    h("h3", {}, ctx.poolName(entry.pool), " ", h("code", { class: "pool-id", text: entry.pool })),
    h("dl", { class: "facts" },
      fact("Seats", seats == null ? "—" : num(seats)),
      fact("Peak occupied", num(t.peak)),
      fact("Seat hours", num(Math.round(t.hours * 10) / 10)),
      fact("Denials", num(t.denials)),
      fact("Peak queue", num(t.queue)),
      fact("Calls", num(t.calls))),
    h("div", { class: "chart-grid" },
      chartBox("occupancy", "Peak occupancy and seats"),
      chartBox("demand", "Denied logins and peak queue"),
      chartBox("calls", "Calls")));
}

function charts(ctx, entry) {
  const block = document.querySelector(`.usage-pool[data-pool="${CSS.escape(entry.pool)}"]`);
  const xs = entry.points.map((p) => Date.parse(p.at) / 1000);
  const col = (key) => entry.points.map((p) => p[key]);
  const pool = ctx.pools.find((p) => p.id === entry.pool);
  const seats = entry.seats ?? pool?.seats ?? null;
  const stepped = uPlot.paths.stepped({ align: 1 });
  const bars = uPlot.paths.bars({ size: [0.7, 40] });
  const make = (kind, series, data) => {
    const plot = block.querySelector(`[data-chart="${kind}"] .plot`);
    return new uPlot(chartOptions(plot, series), data, plot);
  };
  return {
    occupancy: make("occupancy", [
      { label: "Peak occupied", stroke: COLORS.occupied, fill: "rgba(76,155,240,0.18)", width: 2, paths: stepped },
      { label: "Seats", stroke: COLORS.seats, width: 1.5, dash: [6, 4], paths: stepped },
    ], [xs, col("peak_occupied"), xs.map(() => seats)]),
    demand: make("demand", [
      { label: "Denials", stroke: COLORS.denials, fill: "rgba(255,107,107,0.55)", paths: bars },
      { label: "Peak queue", stroke: COLORS.queued, width: 2, paths: stepped },
    ], [xs, col("denials"), col("peak_queued")]),
    calls: make("calls", [
      { label: "Calls", stroke: COLORS.calls, fill: "rgba(255,181,71,0.55)", paths: bars },
    ], [xs, col("calls")]),
  };

  function chartOptions(plot, series) {
    return {
      width: Math.max(240, plot.clientWidth),
      height: 190,
      series: [{}, ...series.map((s) => ({ points: { show: false }, ...s }))],
      scales: { y: { range: (u, min, max) => [0, Math.max(1, Math.ceil(max * 1.1))] } },
      axes: [
        { stroke: "#93a6b9", grid: { stroke: "#223242" }, ticks: { stroke: "#223242" } },
        { stroke: "#93a6b9", grid: { stroke: "#223242" }, ticks: { stroke: "#223242" }, size: 40,
          incrs: [1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000, 10000] },
      ],
      legend: { live: true },
      cursor: { points: { size: 6 } },
    };
  }
}

function fit() {
  for (const set of Object.values(view.charts)) {
    for (const chart of Object.values(set)) {
      const width = Math.max(240, chart.root.parentElement.clientWidth);
      if (Math.abs(width - chart.width) > 2) chart.setSize({ width, height: chart.height });
    }
  }
}
