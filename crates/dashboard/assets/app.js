// sweep's dashboard: one page, three views (#/ sweeps, #/sweep/NAME, #/trial/ID), drawn from the
// JSON API with plain DOM and SVG. Text from the store (prompts, answers, logs) is only ever set
// as text, never parsed as HTML.
"use strict";

const POLL_MS = 3000;
const main = document.getElementById("main");
const tip = document.getElementById("tip");
let view = null; // the current view's { stop() }

// ---------------------------------------------------------------- helpers

function el(tag, attrs, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === undefined || v === null || v === false) continue;
    if (k.startsWith("on")) node.addEventListener(k.slice(2), v);
    else node.setAttribute(k, v === true ? "" : v);
  }
  for (const c of children.flat()) {
    if (c === null || c === undefined || c === false) continue;
    node.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return node;
}

// replaceChildren, skipping null and false (which it would write out as text).
function fill(node, ...children) {
  node.replaceChildren(...children.flat().filter((c) => c !== null && c !== undefined && c !== false));
}

function svg(tag, attrs, ...children) {
  const node = document.createElementNS("http://www.w3.org/2000/svg", tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === undefined || v === null) continue;
    if (k.startsWith("on")) node.addEventListener(k.slice(2), v);
    else node.setAttribute(k, v);
  }
  for (const c of children.flat()) {
    if (c === null || c === undefined) continue;
    node.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return node;
}

async function api(path) {
  const response = await fetch(path, { headers: { Accept: "application/json" } });
  const body = await response.json().catch(() => ({ error: `${response.status} ${response.statusText}` }));
  if (!response.ok) throw new Error(body.error || response.statusText);
  return body;
}

function fmt(x) {
  if (x === null || x === undefined) return "";
  if (typeof x !== "number") return String(x);
  if (Number.isInteger(x)) return String(x);
  const a = Math.abs(x);
  if (a !== 0 && (a < 1e-3 || a >= 1e5)) return x.toExponential(2).replace(/\.?0+e/, "e");
  return x.toPrecision(4).replace(/\.?0+$/, "");
}

function duration(s) {
  if (s === null || s === undefined) return "";
  if (s < 90) return `${s.toFixed(0)} s`;
  if (s < 5400) return `${(s / 60).toFixed(0)} min`;
  return `${(s / 3600).toFixed(1)} h`;
}

function paramText(params) {
  return Object.entries(params).map(([k, v]) => `${k}=${fmt(v)}`).join(", ");
}

function stateBadge(status) {
  return el("span", { class: `state s-${status}` }, status);
}

function progressBar(counts) {
  const total = counts.total || 1;
  return el("div", { class: "bar", title: ["completed", "running", "pending", "interrupted", "failed"].map((s) => `${counts[s]} ${s}`).join(", ") },
    ["completed", "running", "interrupted", "failed", "pending"].map((s) =>
      el("span", { class: `s-${s}`, style: `width:${(100 * counts[s]) / total}%` })));
}

function showTip(event, text) {
  tip.textContent = text;
  tip.hidden = false;
  const x = Math.min(event.clientX + 14, window.innerWidth - tip.offsetWidth - 8);
  const y = Math.min(event.clientY + 14, window.innerHeight - tip.offsetHeight - 8);
  tip.style.left = `${x}px`;
  tip.style.top = `${y}px`;
}
function hideTip() { tip.hidden = true; }

function crumbs(...parts) {
  const c = document.getElementById("crumbs");
  fill(c, ...parts.flatMap((p, i) => (i ? [" / ", p] : [p])));
}

function failure(where, error) {
  return el("p", { class: "error" }, `${where}: ${error.message}`);
}

// Colours: Tableau 10 for up to ten values, else a blue-to-orange ramp over the sorted values.
const PALETTE = ["#4e79a7", "#f28e2b", "#e15759", "#76b7b2", "#59a14f", "#edc948", "#b07aa1", "#ff9da7", "#9c755f", "#bab0ac"];
function colourScale(values) {
  const distinct = [...new Set(values.map((v) => JSON.stringify(v ?? null)))]
    .map((s) => JSON.parse(s))
    .sort((a, b) => (typeof a === "number" && typeof b === "number" ? a - b : String(a).localeCompare(String(b))));
  const index = new Map(distinct.map((v, i) => [JSON.stringify(v), i]));
  const n = distinct.length;
  const colour = (v) => {
    const i = index.get(JSON.stringify(v ?? null)) ?? 0;
    if (n <= PALETTE.length) return PALETTE[i];
    const t = n === 1 ? 0 : i / (n - 1);
    const mix = (a, b) => Math.round(a + (b - a) * t);
    return `rgb(${mix(49, 230)},${mix(104, 120)},${mix(196, 40)})`;
  };
  return { colour, distinct };
}

function legend(scale, name) {
  if (!name) return el("div");
  const shown = scale.distinct.slice(0, 12);
  return el("div", { class: "legend" }, el("span", {}, `${name}:`),
    shown.map((v) => el("span", {}, el("i", { style: `background:${scale.colour(v)}` }), fmt(v))),
    scale.distinct.length > shown.length ? el("span", {}, `… ${scale.distinct.length - shown.length} more`) : null);
}

// A numeric axis: linear, or logarithmic when every value is positive and they span 100×.
function axisScale(values, lo, hi) {
  const nums = values.filter((v) => typeof v === "number" && Number.isFinite(v));
  let min = Math.min(...nums), max = Math.max(...nums);
  if (!nums.length) { min = 0; max = 1; }
  const log = min > 0 && max / min >= 100;
  const f = log ? Math.log10 : (x) => x;
  let a = f(min), b = f(max);
  if (a === b) { a -= 0.5; b += 0.5; }
  const pad = (b - a) * 0.05;
  a -= pad; b += pad;
  const map = (v) => lo + ((f(v) - a) / (b - a)) * (hi - lo);
  const ticks = [];
  if (log) {
    for (let e = Math.ceil(a); e <= Math.floor(b); e++) ticks.push(10 ** e);
  } else {
    // Round steps (1, 2 or 5 × 10^k), about five of them.
    const span = max - min || Math.abs(max) || 1;
    const raw = span / 6, power = 10 ** Math.floor(Math.log10(raw));
    const step = [1, 2, 5, 10].map((m) => m * power).find((s) => s >= raw);
    for (let t = Math.ceil(min / step) * step; t <= max + step * 1e-9; t += step) ticks.push(Number(t.toPrecision(12)));
    if (!ticks.length) ticks.push(min);
  }
  return { map, ticks, log };
}

// ---------------------------------------------------------------- views

function route() {
  if (view) view.stop();
  hideTip();
  const hash = decodeURIComponent(location.hash.slice(1) || "/");
  const [, kind, arg] = hash.split("/");
  if (kind === "sweep" && arg) view = sweepView(arg);
  else if (kind === "trial" && arg) view = trialView(arg);
  else view = sweepsView();
}
window.addEventListener("hashchange", route);
window.addEventListener("load", route);

function poller(tick) {
  let stopped = false;
  let timer = null;
  const live = document.getElementById("live");
  const run = async () => {
    if (stopped) return;
    try {
      const again = await tick();
      live.textContent = again ? `live · updated ${new Date().toLocaleTimeString()}` : "";
      if (again && !stopped) timer = setTimeout(run, POLL_MS);
    } catch (e) {
      live.textContent = `cannot reach the server (${e.message}); retrying`;
      if (!stopped) timer = setTimeout(run, POLL_MS * 2);
    }
  };
  run();
  return { stop() { stopped = true; clearTimeout(timer); live.textContent = ""; } };
}

function sweepsView() {
  crumbs("sweeps");
  return poller(async () => {
    const { sweeps } = await api("/api/sweeps");
    fill(main,
      el("h1", {}, "Sweeps"),
      sweeps.length === 0
        ? el("p", { class: "muted" }, "No sweeps in this store yet: `sweep run GRID.toml` starts one.")
        : el("table", { id: "sweeps" },
          el("thead", {}, el("tr", {}, ["sweep", "progress", "trials", "completed", "running", "pending", "failed", "created"].map((h) => el("th", {}, h)))),
          el("tbody", {}, sweeps.map((s) => el("tr", {},
            el("td", {}, el("a", { href: `#/sweep/${encodeURIComponent(s.name)}` }, s.name)),
            el("td", {}, progressBar(s.counts)),
            ["total", "completed", "running", "pending", "failed"].map((k) => el("td", { class: "num" }, s.counts[k])),
            el("td", {}, new Date(s.created_at).toLocaleString())))))
    );
    return sweeps.some((s) => s.counts.running + s.counts.pending + s.counts.interrupted > 0);
  });
}

function sweepView(name) {
  crumbs(el("a", { href: "#/" }, "sweeps"), name);
  const enc = encodeURIComponent(name);
  const state = {
    objectives: null, colourBy: "", perTrial: false, curve: "",
    table: { status: "", sort: "ordinal", desc: false, offset: 0, limit: 50, where: "" },
    lastCounts: "",
  };
  const summary = el("div", { class: "panel", id: "summary" });
  const frontPanel = el("div", { class: "panel", id: "front" });
  const pcPanel = el("div", { class: "panel", id: "parallel" });
  const curvesPanel = el("div", { class: "panel", id: "curves" });
  const tablePanel = el("div", { class: "panel", id: "trials" });
  fill(main, el("h1", {}, name), summary, el("div", { class: "grid2" }, frontPanel, curvesPanel), pcPanel, tablePanel);
  let info = null;
  let front = null;

  async function drawFront() {
    const objectives = state.objectives.join(",");
    const query = `objectives=${encodeURIComponent(objectives)}${state.perTrial ? "&per_trial=true" : ""}`;
    try {
      front = await api(`/api/sweeps/${enc}/front?${query}`);
    } catch (e) {
      fill(frontPanel, el("h2", {}, "Pareto front"), frontControls(), failure("front", e));
      fill(pcPanel);
      return;
    }
    fill(frontPanel, el("h2", {}, "Pareto front"), frontControls(), frontPlot(front, state, info), frontNote(front));
    fill(pcPanel, el("h2", {}, "Parallel coordinates"), parallelPlot(front, state, info));
    drawCurves();
  }

  function frontControls() {
    const objectiveSelect = (i) => {
      const [metric, dir] = state.objectives[i].split(":");
      const metricSel = el("select", { "aria-label": `objective ${i + 1}`, onchange: (e) => { state.objectives[i] = `${e.target.value}:${dir}`; drawFront(); } },
        info.metrics.map((m) => el("option", { value: m, selected: m === metric }, m)));
      const dirSel = el("select", { "aria-label": `direction ${i + 1}`, onchange: (e) => { state.objectives[i] = `${metric}:${e.target.value}`; drawFront(); } },
        ["min", "max"].map((d) => el("option", { value: d, selected: d === dir }, d)));
      return [el("label", {}, i === 0 ? "x" : "y"), metricSel, dirSel];
    };
    const colour = el("select", { id: "colour-by", onchange: (e) => { state.colourBy = e.target.value; drawFront(); } },
      el("option", { value: "" }, "(none)"), info.params.map((p) => el("option", { value: p, selected: p === state.colourBy }, p)));
    const perTrial = el("input", { type: "checkbox", checked: state.perTrial, onchange: (e) => { state.perTrial = e.target.checked; drawFront(); } });
    return el("div", { class: "controls" }, objectiveSelect(0), objectiveSelect(1), el("label", {}, "colour by"), colour,
      el("label", {}, perTrial, " per trial"));
  }

  function frontNote(f) {
    const excluded = Object.entries(f.excluded).map(([why, n]) => `${n} ${why}`).join(", ");
    const hv = f.hypervolume ? `hypervolume ${fmt(f.hypervolume.value)} (reference ${f.hypervolume.reference.map(fmt).join(", ")})` : "";
    return el("p", { class: "muted" },
      `${f.ranked} configuration(s) from ${f.trials_read} trial(s)`,
      f.left_out ? `, ${f.left_out} of the lowest ranks not drawn` : "",
      excluded ? `; left out: ${excluded}` : "", hv ? `; ${hv}` : "",
      ". ± is one standard deviation over seeds; hover a point for its 95 % interval.");
  }

  async function drawCurves() {
    const firsts = (front?.configurations || []).filter((c) => c.rank === 1).slice(0, 12);
    if (!firsts.length) {
      fill(curvesPanel, el("h2", {}, "Learning curves"), el("p", { class: "muted" }, "No configuration on the front yet."));
      return;
    }
    // One line per run: configurations a shared run reported have that run's curves.
    const fetched = await Promise.all(firsts.map((c) => api(`/api/trials/${c.trials[0]}/curves`)
      .then((r) => [r.run, r.curves, c]).catch(() => [c.trials[0], {}, c])));
    const runs = new Map();
    for (const [run, curves, c] of fetched) {
      if (!runs.has(run)) runs.set(run, [run, curves, []]);
      runs.get(run)[2].push(c);
    }
    const all = [...runs.values()].slice(0, 6);
    const names = [...new Set(all.flatMap(([, c]) => Object.keys(c)))].sort();
    if (!names.length) {
      fill(curvesPanel, el("h2", {}, "Learning curves"), el("p", { class: "muted" }, "The front's trials reported no curves (metric events)."));
      return;
    }
    // The fine-tuning loss first, where the trainer reports one.
    const preferred = ["train_loss", "loss"].find((n) => names.includes(n)) || names[0];
    if (!names.includes(state.curve)) state.curve = preferred;
    const select = el("select", { onchange: (e) => { state.curve = e.target.value; drawCurves(); } },
      names.map((n) => el("option", { value: n, selected: n === state.curve }, n)));
    const series = all.map(([run, c, configs]) => ({
      id: run,
      label: configs.length > 1 ? `run ${run.slice(0, 8)} (${configs.length} front points)` : paramText(configs[0].params),
      points: c[state.curve] || [],
    }));
    fill(curvesPanel, el("h2", {}, "Learning curves"),
      el("div", { class: "controls" }, el("label", {}, "metric"), select, el("span", { class: "muted" }, "of the runs behind the front (a shared run reports several points)")),
      linePlot(series, state.curve));
  }

  async function drawTable() {
    const t = state.table;
    const q = new URLSearchParams({ status: t.status, sort: t.sort, desc: t.desc, offset: t.offset, limit: t.limit, where: t.where });
    let page;
    try {
      page = await api(`/api/sweeps/${enc}/trials?${q}`);
    } catch (e) {
      fill(tablePanel, el("h2", {}, "Trials"), tableControls(), failure("trials", e));
      return;
    }
    const metrics = (state.objectives || []).map((o) => o.split(":")[0]);
    const header = (label, sort, cls) => el("th", {
      class: `sortable ${cls || ""}`, title: "sort",
      onclick: () => { if (t.sort === sort) t.desc = !t.desc; else { t.sort = sort; t.desc = false; } t.offset = 0; drawTable(); },
    }, label, t.sort === sort ? (t.desc ? " ▼" : " ▲") : "");
    const table = el("table", { id: "trial-table" },
      el("thead", {}, el("tr", {}, header("#", "ordinal", "num"), el("th", {}, "trial"), header("state", "status"),
        info.params.map((p) => el("th", {}, p)), metrics.map((m) => header(m, `metric:${m}`, "num")),
        el("th", { class: "num" }, "attempts"), el("th", { class: "num" }, "time"), el("th", {}, "why it failed"))),
      el("tbody", {}, page.rows.map((r) => el("tr", { class: "trial-row" },
        el("td", { class: "num" }, r.ordinal),
        el("td", {}, el("a", { href: `#/trial/${r.id}` }, r.id)),
        el("td", {}, stateBadge(r.status)),
        info.params.map((p) => el("td", {}, fmt(r.params[p]))),
        metrics.map((m) => el("td", { class: "num" }, fmt(r.metrics[m]))),
        el("td", { class: "num" }, r.attempts),
        el("td", { class: "num" }, duration(r.duration_s)),
        el("td", {}, r.error || "")))));
    const last = Math.min(t.offset + page.rows.length, page.total);
    const pager = el("div", { class: "controls" },
      el("button", { disabled: t.offset === 0, onclick: () => { t.offset = Math.max(0, t.offset - t.limit); drawTable(); } }, "← previous"),
      el("span", {}, page.total ? `${t.offset + 1}–${last} of ${page.total}` : "no trials"),
      el("button", { disabled: last >= page.total, onclick: () => { t.offset += t.limit; drawTable(); } }, "next →"));
    fill(tablePanel, el("h2", {}, "Trials"), tableControls(), el("div", { class: "scroll" }, table), pager);
  }

  function tableControls() {
    const t = state.table;
    const status = el("select", { id: "status-filter", onchange: (e) => { t.status = e.target.value; t.offset = 0; drawTable(); } },
      el("option", { value: "" }, "every state"),
      ["pending", "running", "completed", "failed", "interrupted"].map((s) => el("option", { value: s, selected: s === t.status }, s)));
    const where = el("input", { id: "where", size: 40, placeholder: "where: learning_rate>=1e-4,seed=0", value: t.where });
    const form = el("form", { onsubmit: (e) => { e.preventDefault(); t.where = where.value; t.offset = 0; drawTable(); } }, where);
    return el("div", { class: "controls" }, status, form);
  }

  function drawSummary() {
    const c = info.counts;
    fill(summary,
      el("div", { class: "controls" }, progressBar(c),
        el("span", {}, `${c.completed} completed, ${c.running} running, ${c.pending} pending, ${c.failed} failed, ${c.interrupted} interrupted of ${c.total}`),
        info.eta_s !== null ? el("span", { class: "muted", id: "eta" }, `· about ${duration(info.eta_s)} to go at the pace seen since the dashboard started watching`) : null),
      info.running.length
        ? el("div", {}, el("span", { class: "muted" }, "running: "),
          info.running.map((r) => el("span", {}, el("a", { href: `#/trial/${r.trial}` }, r.trial.slice(0, 8)),
            ` step ${r.step} `, el("span", { class: "muted" }, Object.entries(r.metrics).map(([k, v]) => `${k}=${fmt(v)}`).join(" ")), "  ")))
        : null,
      el("details", {}, el("summary", { class: "muted" }, `grid: ${info.grid_path}`), el("pre", {}, info.grid_toml)));
  }

  const c0 = (i) => i.counts.total;
  return poller(async () => {
    info = await api(`/api/sweeps/${enc}`);
    if (!state.objectives) state.objectives = info.objectives.length >= 2 ? [...info.objectives] : null;
    drawSummary();
    const counts = JSON.stringify(info.counts);
    if (counts !== state.lastCounts) {
      const first = !state.lastCounts;
      state.lastCounts = counts;
      let frontDrawn;
      if (state.objectives) {
        // Over a large sweep the first front takes a while (every trial is read once; then it
        // is kept until trials finish): the table does not wait for it.
        if (first) fill(frontPanel, el("h2", {}, "Pareto front"), el("p", { class: "muted" }, `Ranking the configurations of ${c0(info)} trials…`));
        frontDrawn = drawFront();
      } else {
        fill(frontPanel, el("h2", {}, "Pareto front"), el("p", { class: "muted" }, "A front needs trials that report two metrics; none yet."));
      }
      await Promise.all([frontDrawn, drawTable()]);
    }
    const c = info.counts;
    return c.running + c.pending + c.interrupted > 0;
  });
}

// ---------------------------------------------------------------- plots

const W = 620, H = 380, M = { l: 64, r: 16, t: 12, b: 44 };

function axes(g, xs, ys, xLabel, yLabel) {
  const axis = svg("g", { class: "axis" });
  axis.append(svg("line", { x1: M.l, y1: H - M.b, x2: W - M.r, y2: H - M.b }), svg("line", { x1: M.l, y1: M.t, x2: M.l, y2: H - M.b }));
  for (const t of xs.ticks) {
    const x = xs.map(t);
    axis.append(svg("line", { x1: x, x2: x, y1: H - M.b, y2: H - M.b + 4 }), svg("text", { x, y: H - M.b + 16, "text-anchor": "middle" }, fmt(t)));
  }
  for (const t of ys.ticks) {
    const y = ys.map(t);
    axis.append(svg("line", { x1: M.l - 4, x2: M.l, y1: y, y2: y }), svg("text", { x: M.l - 6, y: y + 4, "text-anchor": "end" }, fmt(t)));
  }
  axis.append(svg("text", { x: (M.l + W - M.r) / 2, y: H - 8, "text-anchor": "middle" }, xLabel + (xs.log ? " (log)" : "")),
    svg("text", { x: 14, y: (M.t + H - M.b) / 2, transform: `rotate(-90 14 ${(M.t + H - M.b) / 2})`, "text-anchor": "middle" }, yLabel + (ys.log ? " (log)" : "")));
  g.append(axis);
}

function frontPlot(front, state, info) {
  const [xo, yo] = front.objectives;
  const [xm, ym] = [xo.split(":")[0], yo.split(":")[0]];
  const configs = front.configurations.filter((c) => c.stats[xm] && c.stats[ym]);
  if (!configs.length) return el("p", { class: "muted" }, "No completed trial reports both objectives yet.");
  const xs = axisScale(configs.map((c) => c.stats[xm].mean), M.l, W - M.r);
  const ys = axisScale(configs.map((c) => c.stats[ym].mean), H - M.b, M.t);
  const scale = colourScale(configs.map((c) => c.params[state.colourBy]));
  const plot = svg("svg", { viewBox: `0 0 ${W} ${H}`, width: W, height: H, id: "front-plot" });
  axes(plot, xs, ys, xo, yo);
  const onFront = configs.filter((c) => c.rank === 1).sort((a, b) => a.stats[xm].mean - b.stats[xm].mean);
  if (onFront.length > 1) {
    plot.append(svg("polyline", { class: "frontline", points: onFront.map((c) => `${xs.map(c.stats[xm].mean)},${ys.map(c.stats[ym].mean)}`).join(" ") }));
  }
  // Lower ranks first, so the front is drawn on top.
  for (const c of [...configs].sort((a, b) => b.rank - a.rank)) {
    const text = [
      paramText(c.params),
      c.front_share ? `rank ${c.rank} · on the front in ${c.front_share[0]}/${c.front_share[1]} seed(s)` : `rank ${c.rank}`,
      ...[xm, ym].map((m) => { const s = c.stats[m]; return `${m}: ${fmt(s.mean)} ± ${fmt(s.std)} sd (n=${s.n}${s.n > 1 ? `, 95 % CI ± ${fmt(s.ci95)}` : ""})`; }),
      `trials: ${c.trials.join(", ")}${c.trial_count > c.trials.length ? ` … (${c.trial_count})` : ""}`,
    ].join("\n");
    plot.append(svg("circle", {
      class: `point${c.rank === 1 ? " front" : ""}`, "data-rank": c.rank,
      cx: xs.map(c.stats[xm].mean), cy: ys.map(c.stats[ym].mean), r: c.rank === 1 ? 6 : 4,
      fill: state.colourBy ? scale.colour(c.params[state.colourBy]) : (c.rank === 1 ? "#1f6feb" : "#9aa4af"),
      onmousemove: (e) => showTip(e, text), onmouseleave: hideTip,
      onclick: () => { location.hash = `#/trial/${c.trials[0]}`; },
    }));
  }
  return el("div", {}, plot, legend(scale, state.colourBy));
}

function parallelPlot(front, state, info) {
  const configs = front.configurations.slice(0, 2000);
  const metrics = front.objectives.map((o) => o.split(":")[0]);
  const params = info.params.filter((p) => new Set(configs.map((c) => JSON.stringify(c.params[p] ?? null))).size > 1);
  const axesList = [...params.map((p) => ({ name: p, value: (c) => c.params[p] })), ...metrics.map((m) => ({ name: m, value: (c) => c.stats[m]?.mean }))];
  if (axesList.length < 2 || !configs.length) return el("p", { class: "muted" }, "Nothing varies yet.");
  const width = Math.max(W, 130 * axesList.length), height = 300, top = 24, bottom = height - 28;
  const plot = svg("svg", { viewBox: `0 0 ${width} ${height}`, width, height, id: "parallel-plot" });
  const step = (width - 80) / (axesList.length - 1);
  const maps = axesList.map((a, i) => {
    const x = 40 + i * step;
    const values = configs.map(a.value);
    const numeric = values.every((v) => v === undefined || v === null || typeof v === "number");
    let map, ticks;
    if (numeric) {
      const s = axisScale(values, bottom, top);
      map = (v) => (typeof v === "number" ? s.map(v) : null);
      // A parameter's few values are its ticks; a metric's axis gets round ones.
      const distinct = [...new Set(values.filter((v) => typeof v === "number"))];
      const own = i < params.length && distinct.length <= 8 ? distinct : s.ticks;
      ticks = own.map((t) => [t, s.map(t)]);
    } else {
      const distinct = [...new Set(values.map((v) => String(v)))].sort();
      const pos = (i2) => (distinct.length === 1 ? (top + bottom) / 2 : bottom - (i2 * (bottom - top)) / (distinct.length - 1));
      map = (v) => pos(distinct.indexOf(String(v)));
      ticks = distinct.map((d, i2) => [d, pos(i2)]);
    }
    const g = svg("g", { class: "axis" }, svg("line", { x1: x, x2: x, y1: top, y2: bottom }),
      svg("text", { x, y: height - 8, "text-anchor": "middle" }, a.name),
      ticks.map(([t, y]) => svg("text", { x: x + 4, y: y + 4 }, fmt(t))));
    plot.append(g);
    return { x, map, value: a.value };
  });
  const scale = colourScale(configs.map((c) => c.params[state.colourBy]));
  for (const c of [...configs].sort((a, b) => b.rank - a.rank)) {
    const pts = maps.map((m) => [m.x, m.map(m.value(c))]).filter(([, y]) => y !== null && Number.isFinite(y));
    plot.append(svg("polyline", {
      class: `pc-line${c.rank === 1 ? " front" : ""}`, points: pts.map((p) => p.join(",")).join(" "),
      stroke: state.colourBy ? scale.colour(c.params[state.colourBy]) : (c.rank === 1 ? "#1f6feb" : "#b8c0c8"),
      onmousemove: (e) => showTip(e, `${paramText(c.params)}\nrank ${c.rank}`), onmouseleave: hideTip,
    }));
  }
  return el("div", { class: "scroll" }, plot, legend(scale, state.colourBy),
    front.configurations.length > configs.length ? el("p", { class: "muted" }, `the best ${configs.length} of ${front.configurations.length} configurations`) : null);
}

function linePlot(series, name) {
  const all = series.flatMap((s) => s.points);
  if (!all.length) return el("p", { class: "muted" }, `No ${name} points.`);
  const xs = axisScale(all.map((p) => p[0]), M.l, W - M.r);
  const ys = axisScale(all.map((p) => p[1]), H - M.b, M.t);
  const plot = svg("svg", { viewBox: `0 0 ${W} ${H}`, width: W, height: H, class: "curves-plot" });
  axes(plot, xs, ys, "step", name);
  series.forEach((s, i) => {
    if (!s.points.length) return;
    plot.append(svg("polyline", {
      class: "curve", stroke: PALETTE[i % PALETTE.length], "data-trial": s.id,
      points: s.points.map(([x, y]) => `${xs.map(x)},${ys.map(y)}`).join(" "),
      onmousemove: (e) => showTip(e, `${s.label}\n${name}: ${fmt(s.points[s.points.length - 1][1])} at step ${s.points[s.points.length - 1][0]}`),
      onmouseleave: hideTip,
    }));
  });
  return el("div", {}, plot, el("div", { class: "legend" }, series.map((s, i) => el("span", {}, el("i", { style: `background:${PALETTE[i % PALETTE.length]}` }), s.label))));
}

// ---------------------------------------------------------------- one trial

function trialView(id) {
  crumbs(el("a", { href: "#/" }, "sweeps"), el("span", { id: "trial-sweep" }), id);
  return poller(async () => {
    const t = await api(`/api/trials/${id}`);
    fill(document.getElementById("trial-sweep"), el("a", { href: `#/sweep/${encodeURIComponent(t.sweep)}` }, t.sweep));
    const [curves, answers] = await Promise.all([
      api(`/api/trials/${id}/curves`).catch((e) => ({ error: e })),
      api(`/api/trials/${id}/answers`).catch((e) => ({ error: e })),
    ]);
    const logView = el("pre", { id: "log-view", hidden: true });
    const logs = el("div", { class: "controls" }, el("span", { class: "muted" }, "logs:"),
      t.logs.length ? t.logs.map((f) => el("a", { href: "#", onclick: async (e) => {
        e.preventDefault();
        const r = await fetch(`/api/trials/${id}/logs/${encodeURIComponent(f)}`);
        logView.textContent = await r.text();
        logView.hidden = false;
      } }, f)) : el("span", { class: "muted" }, `none in ${t.dir}/logs`));
    fill(main,
      el("h1", {}, `trial ${t.id}`),
      el("div", { class: "grid2" },
        el("div", { class: "panel" }, el("h2", {}, "Parameters"),
          el("dl", { class: "kv", id: "params" }, Object.entries(t.params).flatMap(([k, v]) => [el("dt", {}, k), el("dd", {}, fmt(v))])),
          el("h2", { style: "margin-top:12px" }, "State"),
          el("dl", { class: "kv" },
            el("dt", {}, "state"), el("dd", {}, stateBadge(t.status)),
            el("dt", {}, "attempts"), el("dd", {}, t.attempts),
            el("dt", {}, "time"), el("dd", {}, duration(t.duration_s)),
            t.error ? [el("dt", {}, "why it failed"), el("dd", { class: "error" }, t.error)] : null,
            t.completed_by && t.completed_by !== t.id ? [el("dt", {}, "reported by"), el("dd", {}, el("a", { href: `#/trial/${t.completed_by}` }, t.completed_by))] : null,
            t.job_id ? [el("dt", {}, "job"), el("dd", {}, `${t.job_id}${t.node ? ` on ${t.node}` : ""}`)] : null,
            el("dt", {}, "directory"), el("dd", {}, t.dir))),
        el("div", { class: "panel" }, el("h2", {}, "Metrics"),
          Object.keys(t.metrics).length
            ? el("dl", { class: "kv", id: "metrics" }, Object.entries(t.metrics).flatMap(([k, v]) => [el("dt", {}, k), el("dd", {}, fmt(v))]))
            : el("p", { class: "muted" }, "No final metrics yet."))),
      el("div", { class: "panel", id: "trial-curves" }, el("h2", {}, "Learning curves"), trialCurves(curves, t.id)),
      el("div", { class: "panel" }, el("h2", {}, "Attempts"),
        t.run !== t.id ? el("p", { class: "muted" }, "of the run of trial ", el("a", { href: `#/trial/${t.run}` }, t.run), ", which reported this trial's point among others") : null,
        logs, logView,
        el("table", {}, el("thead", {}, el("tr", {}, ["#", "outcome", "exit", "why", "started", "stderr (last lines)"].map((h) => el("th", {}, h)))),
          el("tbody", {}, t.attempts_detail.map((a) => el("tr", {},
            el("td", {}, a.attempt), el("td", {}, a.outcome || "running"),
            el("td", {}, a.signal ? `signal ${a.signal}` : fmt(a.exit_code)), el("td", {}, a.reason || ""),
            el("td", {}, new Date(a.started_at).toLocaleString()),
            el("td", {}, a.stderr_tail ? el("pre", {}, a.stderr_tail) : "")))))),
      el("div", { class: "panel", id: "answers" }, el("h2", {}, "Answers, beside the base model's"), answersTable(answers)));
    return t.status === "running" || t.status === "pending";
  });
}

function trialCurves(curves, id) {
  if (curves.error) return failure("curves", curves.error);
  const names = Object.keys(curves.curves);
  if (!names.length) return el("p", { class: "muted" }, "This trial reported no curves.");
  return el("div", {},
    curves.run !== id ? el("p", { class: "muted" }, `from the run of trial ${curves.run}, which reported this trial's point among others`) : null,
    el("div", { class: "grid2" }, names.map((n) => linePlot([{ id: n, label: n, points: curves.curves[n] }], n))));
}

function answersTable(a) {
  if (a.error) return failure("answers", a.error);
  if (!a.rows.length) return el("p", { class: "muted" }, a.note || "No answers.");
  const sets = [...new Set(a.rows.map((r) => r.set))];
  let shown = { set: "", differ: false };
  const body = el("tbody");
  const draw = () => fill(body, ...a.rows
    .filter((r) => (!shown.set || r.set === shown.set) && (!shown.differ || r.base_label !== r.label))
    .map((r) => el("tr", { class: "answer-row" },
      el("td", {}, r.set, el("div", { class: "muted" }, r.split || "")),
      el("td", { class: "answer" }, r.prompt),
      el("td", { class: "answer" }, r.base_response ?? "", r.base_label ? el("div", { class: `label-${r.base_label}` }, r.base_label) : null),
      el("td", { class: "answer" }, r.response, el("div", { class: `label-${r.label}` }, r.label)))));
  draw();
  const setSel = el("select", { onchange: (e) => { shown.set = e.target.value; draw(); } }, el("option", { value: "" }, "every set"), sets.map((s) => el("option", { value: s }, s)));
  const differ = el("input", { type: "checkbox", onchange: (e) => { shown.differ = e.target.checked; draw(); } });
  return el("div", {},
    el("div", { class: "controls" }, setSel, el("label", {}, differ, " only where the verdicts differ"),
      el("span", { class: "muted" }, a.base ? `base: trial ${a.base}` : (a.note || ""))),
    a.problems.length ? el("p", { class: "error" }, a.problems.join("\n")) : null,
    a.total > a.rows.length ? el("p", { class: "muted" }, `the first ${a.rows.length} of ${a.total}`) : null,
    el("div", { class: "scroll" }, el("table", { id: "answers-table" },
      el("thead", {}, el("tr", {}, ["set", "prompt", "base model", "this trial"].map((h) => el("th", {}, h)))), body)));
}
