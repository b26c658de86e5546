// Streams: every stream on the node (published, V3-pulled, V4-relayed), a preview with
// copyable play URLs, kill / forbid / resume, and the ended streams, all through
// Volcengine's stream actions.
import { call } from "./api.js";
import { startPreview } from "./player.js";
import {
  button,
  clearErrors,
  confirmInline,
  copyButton,
  errorBox,
  every,
  field,
  fmtBps,
  fmtDuration,
  fmtTime,
  h,
  localInputToUnix,
  placeError,
  replace,
  tableOf,
  timeZone,
} from "./ui.js";

const PAGE_SIZE = 50;

function listenerBase(template) {
  // "http://127.0.0.1:8080/{app}/{stream}.flv" -> URL object of the listener.
  const url = new URL(template.replace("{app}", "a").replace("{stream}", "s"));
  if (url.hostname === "0.0.0.0" || url.hostname === "[::]" || url.hostname === "::") url.hostname = location.hostname;
  return url;
}

export function playUrls(node, row) {
  const http = listenerBase(node.Listeners.http);
  const rtmp = listenerBase(node.Listeners.rtmp);
  // A stream of the default vhost is reached by the node's address; another vhost's
  // streams by one of its domains (the node picks the vhost from the Host).
  const host = row.Vhost === node.DefaultVhost ? http.hostname : row.Domain;
  const path = `${encodeURIComponent(row.App)}/${encodeURIComponent(row.Stream)}`;
  const hostport = (url) => `${host}${url.port ? `:${url.port}` : ""}`;
  return {
    rtmp: `rtmp://${row.Vhost === node.DefaultVhost ? rtmp.hostname : row.Domain}${rtmp.port ? `:${rtmp.port}` : ""}/${path}`,
    flv: `${http.protocol}//${hostport(http)}/${path}.flv`,
    hls: `${http.protocol}//${hostport(http)}/${path}.m3u8`,
  };
}

function viewersText(byProtocol) {
  const entries = Object.entries(byProtocol || {});
  return entries.length ? entries.map(([k, v]) => `${k} ${v}`).join(", ") : "0";
}

export async function mount(main, ctx) {
  let stopPlayer = null;
  const stopPreview = () => {
    if (stopPlayer) {
      stopPlayer();
      stopPlayer = null;
    }
  };
  const errors = h("div", { "aria-live": "polite" });
  const liveTab = button("Live", () => show("live"), { role: "tab", "aria-selected": "true", id: "tab-live" });
  const endedTab = button("Ended", () => show("ended"), { role: "tab", "aria-selected": "false", id: "tab-ended" });
  const livePanel = h("section", { role: "tabpanel", "aria-labelledby": "tab-live" });
  const endedPanel = h("section", { role: "tabpanel", "aria-labelledby": "tab-ended", hidden: true });
  main.append(h("div", { class: "tabs", role: "tablist", "aria-label": "Streams" }, liveTab, endedTab), errors, livePanel, endedPanel);

  // -- live ---------------------------------------------------------------------
  const filter = h("input", { type: "search", name: "filter", placeholder: "part of a stream name" });
  const sourceType = h(
    "select",
    { name: "sourceType" },
    h("option", { value: "" }, "all"),
    h("option", { value: "push" }, "push (published)"),
    h("option", { value: "relay" }, "relay (pulled)"),
  );
  const liveTable = h("div");
  const preview = h("section", { class: "card", "aria-label": "Preview", hidden: true });
  livePanel.append(
    h("div", { class: "row" }, field("Filter by stream name", filter), field("Source type", sourceType)),
    liveTable,
    preview,
  );

  const openPreview = async (row) => {
    stopPreview();
    const urls = playUrls(ctx.node, row);
    const video = h("video", { controls: true, muted: true, autoplay: true, playsinline: true, "aria-label": `Preview of ${row.App}/${row.Stream}` });
    const status = h("p", { class: "hint", "aria-live": "polite" }, "starting…");
    const urlList = h(
      "ul",
      { class: "urls" },
      [
        ["RTMP", urls.rtmp],
        ["HTTP-FLV", urls.flv],
        ["HLS", urls.hls],
      ].map(([label, url]) => h("li", {}, h("strong", {}, label), h("code", { class: "url" }, url), copyButton(url, `${label} URL`))),
    );
    replace(
      preview,
      h("h2", {}, `Preview: ${row.App}/${row.Stream}`),
      video,
      status,
      h("h2", {}, "Play URLs"),
      urlList,
      button("Close preview", () => {
        stopPreview();
        preview.hidden = true;
      }),
    );
    preview.hidden = false;
    try {
      const player = await startPreview(video, { hlsUrl: urls.hls, flvUrl: urls.flv });
      stopPlayer = player.stop;
      status.textContent = `playing ${player.kind === "hls" ? "HLS" : "HTTP-FLV"}`;
      preview.setAttribute("data-kind", player.kind);
    } catch (err) {
      replace(status, errorBox({ code: "PreviewError", message: String(err.message || err) }));
    }
  };

  const address = (row) => ({ Vhost: row.Vhost, App: row.App, Stream: row.Stream });

  const renderLive = (result) => {
    const rows = result.StreamInfoList.map((row) => {
      const actions = h("div", { class: "actions" });
      actions.append(
        button("Preview", () => openPreview(row), { "aria-label": `Preview ${row.App}/${row.Stream}` }),
        button(
          "Cut off",
          () =>
            confirmInline(actions, `Cut ${row.Stream} off?`, "Yes, cut off", async () => {
              try {
                await call("KillStream", address(row));
                refreshLive();
              } catch (err) {
                replace(errors, errorBox(err));
              }
            }),
          { class: "danger", "aria-label": `Cut off ${row.App}/${row.Stream}` },
        ),
        button(
          "Forbid",
          () =>
            confirmInline(actions, `Forbid publishing ${row.Stream}?`, "Yes, forbid", async () => {
              try {
                await call("ForbidStream", address(row));
                refreshLive();
              } catch (err) {
                replace(errors, errorBox(err));
              }
            }),
          { class: "danger", "aria-label": `Forbid publishing ${row.App}/${row.Stream}` },
        ),
      );
      const source = row.SourceType === "relay" ? `relay (${row.RelayType || "?"})` : "push";
      return h(
        "tr",
        { "data-stream": `${row.App}/${row.Stream}` },
        h("td", {}, h("div", {}, `${row.App}/${row.Stream}`), h("small", { class: "hint" }, row.Vhost)),
        h("td", {}, h("div", {}, source), h("small", { class: "hint url" }, row.Source)),
        h("td", {}, [row.VideoCodec, row.AudioCodec].filter(Boolean).join(" + ") || "–"),
        h("td", { class: "num" }, fmtBps(row.BitrateBps)),
        h("td", {}, viewersText(row.ViewersByProtocol)),
        h("td", { class: "num" }, fmtDuration(row.UptimeS)),
        h("td", {}, actions),
      );
    });
    replace(
      liveTable,
      h("p", { class: "hint" }, `${result.RoughCount} live stream${result.RoughCount === 1 ? "" : "s"}`),
      tableOf(["Stream", "Source", "Codecs", "Bitrate", "Viewers", "Uptime", "Actions"], rows, { label: "Live streams" }),
    );
  };

  const refreshLive = async () => {
    // Do not redraw under an open confirmation.
    if (liveTable.querySelector(".confirm")) return;
    try {
      const result = await call("DescribeLiveStreamInfoByPage", {
        PageNum: 1,
        PageSize: 200,
        Stream: filter.value.trim(),
        QueryType: filter.value.trim() ? "fuzzy" : "",
        SourceType: sourceType.value,
      });
      replace(errors);
      renderLive(result);
      await refreshForbidden();
    } catch (err) {
      replace(errors, errorBox(err));
    }
  };
  filter.addEventListener("input", refreshLive);
  sourceType.addEventListener("change", refreshLive);

  // Forbid / resume any stream by name (a forbidden stream is not live, so not listed).
  const fVhost = h("input", { name: "Vhost", "data-field": "Vhost", value: ctx.node.DefaultVhost || "" });
  const fApp = h("input", { name: "App", "data-field": "App", value: "live" });
  const fStream = h("input", { name: "Stream", "data-field": "Stream" });
  const fUntil = h("input", { type: "datetime-local", name: "EndTime", "data-field": "EndTime" });
  const fResult = h("p", { class: "hint", "aria-live": "polite" });
  const forbiddenList = h("div");
  const forbidForm = h(
    "form",
    { class: "card", "aria-label": "Forbid or resume a stream" },
    h("h2", {}, "Forbid or resume publishing"),
    h(
      "div",
      { class: "row" },
      field("Vhost", fVhost),
      field("App", fApp),
      field("Stream", fStream),
      field(`Forbidden until (${timeZone()}, empty = 90 days)`, fUntil),
    ),
    h(
      "div",
      { class: "actions" },
      h("button", { type: "submit", value: "forbid" }, "Forbid"),
      button("Resume", () => submitForbid("resume")),
    ),
    fResult,
    h("h2", {}, "Forbidden now"),
    forbiddenList,
  );
  const refreshForbidden = async () => {
    const result = await call("DescribeForbiddenStreamInfoByPage", { PageNum: 1, PageSize: 100 });
    const rows = result.StreamInfoList.map((row) =>
      h(
        "tr",
        { "data-stream": `${row.App}/${row.Stream}` },
        h("td", {}, `${row.App}/${row.Stream}`, h("div", { class: "hint" }, row.Vhost)),
        h("td", {}, fmtTime(row.CreateTime)),
        h("td", {}, fmtTime(row.EndTime)),
        h(
          "td",
          {},
          button(
            "Resume",
            async () => {
              try {
                await call("ResumeStream", { Vhost: row.Vhost, App: row.App, Stream: row.Stream });
                await refreshForbidden();
              } catch (err) {
                replace(errors, errorBox(err));
              }
            },
            { "aria-label": `Resume ${row.App}/${row.Stream}` },
          ),
        ),
      ),
    );
    replace(forbiddenList, tableOf(["Stream", "Since", "Until", ""], rows, { label: "Forbidden streams" }));
  };
  const submitForbid = async (what) => {
    clearErrors(forbidForm);
    fResult.textContent = "";
    const params = { Vhost: fVhost.value.trim(), App: fApp.value.trim(), Stream: fStream.value.trim() };
    try {
      if (what === "resume") {
        await call("ResumeStream", params);
        fResult.textContent = `${params.App}/${params.Stream} may publish again.`;
      } else {
        const until = localInputToUnix(fUntil.value);
        if (until) params.EndTime = new Date(until * 1000).toISOString();
        await call("ForbidStream", params);
        fResult.textContent = `${params.App}/${params.Stream} is forbidden.`;
      }
      refreshLive();
    } catch (err) {
      placeError(forbidForm, err, forbidForm);
    }
  };
  forbidForm.addEventListener("submit", (ev) => {
    ev.preventDefault();
    submitForbid("forbid");
  });
  livePanel.append(forbidForm);

  // -- ended --------------------------------------------------------------------
  let endedPage = 1;
  const endedTable = h("div");
  const pager = h("div", { class: "actions" });
  endedPanel.append(endedTable, pager);
  const refreshEnded = async () => {
    try {
      const result = await call("DescribeClosedStreamInfoByPage", { PageNum: endedPage, PageSize: PAGE_SIZE, Sort: "desc" });
      replace(errors);
      const rows = result.StreamInfoList.map((row) =>
        h(
          "tr",
          { "data-stream": `${row.App}/${row.Stream}` },
          h("td", {}, `${row.App}/${row.Stream}`, h("div", { class: "hint" }, row.Vhost)),
          h("td", {}, row.SourceType === "relay" ? `relay (${row.RelayType || "?"})` : "push"),
          h("td", {}, fmtTime(row.StartTime)),
          h("td", {}, fmtTime(row.EndTime)),
          h("td", {}, row.Reason),
        ),
      );
      replace(endedTable, tableOf(["Stream", "Source", "Started", "Ended", "Why"], rows, { label: "Ended streams" }));
      const pages = Math.max(1, Math.ceil(result.RoughCount / PAGE_SIZE));
      replace(
        pager,
        button("Previous page", () => {
          endedPage -= 1;
          refreshEnded();
        }, { disabled: endedPage <= 1 }),
        h("span", { class: "hint" }, `page ${endedPage} of ${pages}`),
        button("Next page", () => {
          endedPage += 1;
          refreshEnded();
        }, { disabled: endedPage >= pages }),
      );
    } catch (err) {
      replace(errors, errorBox(err));
    }
  };

  let stopLoop = every(2000, refreshLive);
  const show = (which) => {
    const live = which === "live";
    liveTab.setAttribute("aria-selected", String(live));
    endedTab.setAttribute("aria-selected", String(!live));
    livePanel.hidden = !live;
    endedPanel.hidden = live;
    stopLoop();
    if (!live) stopPreview();
    stopLoop = every(live ? 2000 : 5000, live ? refreshLive : refreshEnded);
  };
  return () => {
    stopLoop();
    stopPreview();
  };
}
