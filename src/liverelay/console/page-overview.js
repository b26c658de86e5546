// Overview: version, uptime, streams, viewers by protocol, bytes, relays by state and a
// chart of the bitrate in/out over the last minutes (from DescribeNodeStatus samples).
import { call } from "./api.js";
import { every, fmtBps, fmtBytes, fmtDuration, h, replace, svg, errorBox } from "./ui.js";

const WINDOW_S = 300; // the chart's span
const PERIOD_MS = 2000;
// Samples survive page changes so the chart keeps its history while the tab is open.
const samples = [];

function stat(label, value, id) {
  return h("div", { class: "card stat", "data-stat": id }, h("div", { class: "label" }, label), h("div", { class: "value" }, value));
}

function listOf(obj) {
  const entries = Object.entries(obj || {}).filter(([, v]) => v);
  if (!entries.length) return "none";
  return entries.map(([k, v]) => `${k} ${v}`).join(" · ");
}

function chart(points) {
  const width = 1000;
  const height = 220;
  const pad = 90; // room for the scale's labels
  const now = Date.now() / 1000;
  const max = Math.max(1, ...points.map((p) => Math.max(p.in, p.out)));
  const x = (t) => pad + ((t - (now - WINDOW_S)) / WINDOW_S) * (width - pad - 4);
  const y = (v) => height - 18 - (v / max) * (height - 30);
  const line = (key) => points.map((p) => `${x(p.t).toFixed(1)},${y(p[key]).toFixed(1)}`).join(" ");
  return svg(
    "svg",
    { class: "chart", viewBox: `0 0 ${width} ${height}`, role: "img", "aria-label": "Bitrate in and out, last 5 minutes" },
    svg("line", { class: "axis", x1: pad, y1: height - 18, x2: width, y2: height - 18 }),
    svg("line", { class: "axis", x1: pad, y1: 8, x2: pad, y2: height - 18 }),
    svg("text", { x: pad - 6, y: 16, "text-anchor": "end" }, fmtBps(max)),
    svg("text", { x: pad - 6, y: height - 18, "text-anchor": "end" }, "0"),
    svg("text", { x: pad, y: height - 4 }, "−5 min"),
    svg("text", { x: width - 30, y: height - 4 }, "now"),
    points.length > 1 ? svg("polyline", { class: "in", fill: "none", "stroke-width": 2, points: line("in") }) : null,
    points.length > 1 ? svg("polyline", { class: "out", fill: "none", "stroke-width": 2, points: line("out") }) : null,
  );
}

export async function mount(main, ctx) {
  const cards = h("div", { class: "cards" });
  const chartBox = h("div", { class: "card" });
  const errors = h("div", { "aria-live": "polite" });
  main.append(errors, cards, h("h2", {}, "Bitrate"), chartBox);

  const refresh = async () => {
    let node;
    try {
      node = await call("DescribeNodeStatus");
    } catch (err) {
      replace(errors, errorBox(err));
      return;
    }
    replace(errors);
    ctx.node = node;
    const t = Date.now() / 1000;
    const last = samples[samples.length - 1];
    const point = { t, bytesIn: node.BytesIn, bytesOut: node.BytesOut, in: 0, out: 0 };
    if (last && t > last.t) {
      point.in = Math.max(0, ((node.BytesIn - last.bytesIn) * 8) / (t - last.t));
      point.out = Math.max(0, ((node.BytesOut - last.bytesOut) * 8) / (t - last.t));
    }
    samples.push(point);
    while (samples.length && samples[0].t < t - WINDOW_S) samples.shift();
    const current = samples.length > 1 ? point : null;
    replace(
      cards,
      stat("Version", node.Version, "version"),
      stat("Uptime", fmtDuration(node.UptimeS), "uptime"),
      stat("Streams live", `${node.StreamsLive} (${listOf(node.StreamsBySourceType)})`, "streams"),
      stat("Viewers by protocol", listOf(node.ViewersByProtocol), "viewers"),
      stat("Bytes in / out", `${fmtBytes(node.BytesIn)} / ${fmtBytes(node.BytesOut)}`, "bytes"),
      stat("Relays by state", listOf(node.RelaysByState), "relays"),
    );
    replace(
      chartBox,
      h(
        "p",
        { class: "hint" },
        h("span", { class: "legend-in" }, "■ in "),
        current ? fmtBps(current.in) : "–",
        "  ",
        h("span", { class: "legend-out" }, "■ out "),
        current ? fmtBps(current.out) : "–",
      ),
      chart(samples.slice(1)),
    );
  };
  return every(PERIOD_MS, refresh);
}
