// Relay status: the DescribeRelayStatus rows, refreshed every second, filterable, and
// the failover history of a relay from the node's relay events (DescribeRelayEvents).
import { call } from "./api.js";
import { button, errorBox, every, field, fmtBps, fmtTime, h, replace, tableOf } from "./ui.js";

const EVENT_TEXT = {
  relay_started: (e) => `started on source ${e.SourceIndex} ${e.SourceUrl || ""}`,
  origin_failed: (e) => `origin ${e.SourceIndex} failed (${e.Reason || "?"}): ${e.Error || ""}`,
  switched: (e) => `switched (${e.Reason || "failover"}) to source ${e.SourceIndex}: ${e.FromUrl || "?"} → ${e.ToUrl || "?"}`,
  stopped: (e) => `stopped (${e.Reason || "?"})`,
};

function rowKey(row) {
  return `${row.Type}:${row.Vhost}/${row.App}/${row.Stream}`;
}

export async function mount(main) {
  const errors = h("div", { "aria-live": "polite" });
  const filter = h("input", { type: "search", name: "filter", placeholder: "stream, app, vhost, state or origin" });
  const type = h(
    "select",
    { name: "type" },
    h("option", { value: "" }, "all"),
    h("option", { value: "play" }, "play-triggered (V3)"),
    h("option", { value: "fixed" }, "fixed (V4)"),
  );
  const tableBox = h("div");
  const historyBox = h("section", { class: "card", "aria-label": "Failover history", hidden: true });
  main.append(errors, h("div", { class: "row" }, field("Filter", filter), field("Relay type", type)), tableBox, historyBox);
  let selected = null; // the row whose history is shown

  const renderHistory = async () => {
    if (!selected) return;
    let result;
    try {
      result = await call("DescribeRelayEvents", {
        Vhost: selected.Vhost,
        App: selected.App,
        Stream: selected.Stream,
        Type: selected.Type,
        Limit: 100,
      });
    } catch (err) {
      replace(historyBox, errorBox(err));
      return;
    }
    const items = result.EventList.map((e) =>
      h(
        "li",
        { "data-event": e.Event },
        h("time", { datetime: e.Time }, fmtTime(e.Time)),
        " ",
        h("strong", {}, e.Event),
        " ",
        (EVENT_TEXT[e.Event] || (() => ""))(e),
      ),
    );
    replace(
      historyBox,
      h("h2", {}, `History of ${selected.App}/${selected.Stream} (${selected.Type}), newest first`),
      items.length ? h("ol", { class: "history" }, items) : h("p", { class: "hint" }, "No events yet."),
      button("Close history", () => {
        selected = null;
        historyBox.hidden = true;
      }),
    );
    historyBox.hidden = false;
  };

  const refresh = async () => {
    let result;
    try {
      result = await call("DescribeRelayStatus", type.value ? { Type: type.value } : {});
      replace(errors, result.Error ? errorBox({ code: "PartialStatus", message: result.Error }) : null);
    } catch (err) {
      replace(errors, errorBox(err));
      return;
    }
    const needle = filter.value.trim().toLowerCase();
    const rows = result.RelayStatusList.filter(
      (r) =>
        !needle ||
        [r.Vhost, r.App, r.Stream, r.State, r.SourceUrl, r.Type].some((v) => String(v || "").toLowerCase().includes(needle)),
    ).map((r) =>
      h(
        "tr",
        { "data-stream": `${r.App}/${r.Stream}`, "data-type": r.Type, "data-state": r.State },
        h("td", {}, r.Type === "fixed" ? "fixed (V4)" : "play (V3)"),
        h("td", {}, `${r.App}/${r.Stream}`, h("div", { class: "hint" }, r.Vhost)),
        h("td", { class: `state state-${r.State}`, "data-col": "state" }, r.State),
        h(
          "td",
          { "data-col": "source" },
          r.SourceIndex !== null && r.SourceIndex !== undefined ? h("span", { "data-source-index": r.SourceIndex }, `#${r.SourceIndex} `) : "",
          h("span", { class: "url" }, r.SourceUrl || "–"),
        ),
        h("td", { class: "num" }, String(r.Attempts ?? 0)),
        h("td", { class: "url" }, r.LastError || "–"),
        h("td", {}, fmtTime(r.UpSince)),
        h("td", {}, r.NextStart ? fmtTime(r.NextStart) : "–"),
        h("td", { class: "num" }, fmtBps(r.Bitrate)),
        h("td", { class: "num" }, String(r.Viewers ?? 0)),
        h("td", { class: "num", "data-col": "switches" }, String(r.Switches ?? 0)),
        h(
          "td",
          {},
          button(
            "History",
            () => {
              selected = r;
              renderHistory();
            },
            { "aria-label": `History of ${r.App}/${r.Stream}`, "aria-pressed": selected && rowKey(selected) === rowKey(r) ? "true" : "false" },
          ),
        ),
      ),
    );
    replace(
      tableBox,
      h("p", { class: "hint" }, `${rows.length} of ${result.RelayStatusList.length} relays`),
      tableOf(
        ["Type", "Stream", "State", "Source in use", "Attempts", "Last error", "Up since", "Next start", "Bitrate", "Viewers", "Switches", ""],
        rows,
        { label: "Relay status" },
      ),
    );
    if (selected) await renderHistory();
  };
  filter.addEventListener("input", refresh);
  type.addEventListener("change", refresh);
  return every(1000, refresh);
}
