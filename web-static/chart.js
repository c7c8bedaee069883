// Time-series charts on uPlot (vendor/uPlot.iife.min.js, loaded by the page as a script).
import { el } from './app.js';

export const palette = [
  '#2f7ed8', '#e8871e', '#3a9d5d', '#c0504d', '#8064a2', '#1aa0a8',
  '#b5a000', '#d4589a', '#6d7f8b', '#7cb342', '#5c6bc0', '#a1887f',
];

function cssVar(name, fallback) {
  const v = getComputedStyle(document.documentElement).getPropertyValue(name).trim();
  return v || fallback;
}

/**
 * A time chart in `container`: x is seconds since the epoch, one line per series.
 *   const c = timeChart(box, {height: 260, yLabel: 'records/s'});
 *   c.set(['a', 'b'], [xs, ys_a, ys_b]);
 */
export function timeChart(container, opts = {}) {
  const uPlot = window.uPlot;
  if (!uPlot) {
    container.append(el('p', { class: 'error-text' },
      'The chart library (vendor/uPlot.iife.min.js) is missing: build fabrik after scripts/setup.sh.'));
    return { set() {}, destroy() {}, labels: [] };
  }
  const height = opts.height || 260;
  let plot = null;
  let labels = null;
  let lastData = null;
  const axisColor = cssVar('--muted', '#6b7280');
  const gridColor = cssVar('--grid', 'rgba(0,0,0,0.07)');

  function build(newLabels, data) {
    if (plot) plot.destroy();
    labels = newLabels.slice();
    const series = [{}].concat(labels.map((label, i) => ({
      label,
      stroke: (opts.colors && opts.colors[label]) || palette[i % palette.length],
      width: 1.5,
      points: { show: opts.points ?? false, size: opts.scatter ? 6 : 4, fill: opts.scatter ? ((opts.colors && opts.colors[label]) || palette[i % palette.length]) : undefined },
      paths: opts.scatter ? () => null : undefined,
      spanGaps: opts.spanGaps ?? false,
      value: (u, v) => (v === null || v === undefined ? '–' : (opts.fmt ? opts.fmt(v) : +v.toPrecision(5))),
    })));
    const width = Math.max(200, container.clientWidth || 600);
    plot = new uPlot({
      width,
      height,
      series,
      legend: { show: opts.legend ?? true, live: true },
      cursor: { drag: { x: true, y: false }, points: { size: 6 } },
      scales: {
        // xWindow(): show the last that many seconds up to now, however little data there is.
        x: opts.xWindow
          ? { time: true, range: () => [Date.now() / 1000 - opts.xWindow(), Date.now() / 1000] }
          // One point (or all at one instant) would span years: show a minute around it.
          : { time: true, range: (u, min, max) => (min === max ? [min - 30, max + 30] : [min, max]) },
        y: opts.yRange ? { range: opts.yRange } : { auto: true },
      },
      axes: [
        { stroke: axisColor, grid: { stroke: gridColor, width: 1 }, ticks: { stroke: gridColor } },
        {
          stroke: axisColor, grid: { stroke: gridColor, width: 1 }, ticks: { stroke: gridColor },
          label: opts.yLabel, size: 56,
          values: opts.yValues,
        },
      ],
    }, data, container);
  }

  const ro = new ResizeObserver(() => {
    if (plot) {
      const w = Math.max(200, container.clientWidth);
      if (Math.abs(w - plot.width) > 2) plot.setSize({ width: w, height });
    }
  });
  ro.observe(container);

  return {
    get labels() { return labels || []; },
    /** labels: series names; data: [xs, ...one array per label]. */
    set(newLabels, data) {
      lastData = data;
      const same = labels && labels.length === newLabels.length && labels.every((l, i) => l === newLabels[i]);
      if (!plot || !same) build(newLabels, data);
      else plot.setData(data);
    },
    get data() { return lastData; },
    destroy() { ro.disconnect(); if (plot) plot.destroy(); plot = null; },
  };
}

/** A small line without axes (actor throughput). */
export function sparkline(container, opts = {}) {
  const uPlot = window.uPlot;
  if (!uPlot) return { set() {} };
  const height = opts.height || 80;
  let plot = null;
  const mk = (data) => {
    plot = new uPlot({
      width: Math.max(150, container.clientWidth || 400),
      height,
      legend: { show: false },
      cursor: { show: true, points: { size: 5 }, drag: { x: false, y: false } },
      scales: {
        x: {
          time: true,
          range: (u, min, max) => (opts.windowSeconds
            ? [Date.now() / 1000 - opts.windowSeconds, Date.now() / 1000] : [min, max]),
        },
        y: { range: (u, min, max) => [0, Math.max(1, max * 1.15)] },
      },
      axes: [
        { show: true, stroke: cssVar('--muted', '#6b7280'), size: 26, font: '11px system-ui', space: 90,
          grid: { show: false }, ticks: { show: false },
          values: (u, splits) => splits.map((v) => new Date(v * 1000).toLocaleTimeString([], { hour12: false, hour: '2-digit', minute: '2-digit' })) },
        { show: true, stroke: cssVar('--muted', '#6b7280'), size: 40, font: '10px system-ui',
          grid: { stroke: cssVar('--grid', 'rgba(0,0,0,0.07)') }, ticks: { show: false } },
      ],
      series: [{}, { stroke: opts.color || palette[0], width: 1.5, fill: opts.fill || 'rgba(47,126,216,0.12)', points: { show: false } }],
    }, data, container);
  };
  new ResizeObserver(() => {
    if (plot) plot.setSize({ width: Math.max(150, container.clientWidth), height });
  }).observe(container);
  return {
    set(xs, ys) {
      if (!plot) mk([xs, ys]);
      else plot.setData([xs, ys]);
    },
  };
}
