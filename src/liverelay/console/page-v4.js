// Fixed relays (V4): list with paging, create and update (up to 10 source URLs in
// order, a start/end window in the operator's time zone, or permanent), delete with
// confirmation. Limits are the API's: its errors show beside the field concerned.
import { call } from "./api.js";
import { listVhosts } from "./page-domains.js";
import {
  button,
  clearErrors,
  confirmInline,
  errorBox,
  field,
  fmtTime,
  h,
  localInputToUnix,
  placeError,
  replace,
  tableOf,
  timeZone,
  unixToLocalInput,
} from "./ui.js";

const PAGE_SIZE = 20;

export async function mount(main, ctx) {
  const errors = h("div", { "aria-live": "polite" });
  const vhostSelect = h("select", { name: "vhost" });
  const list = h("div");
  const pager = h("div", { class: "actions" });
  const formBox = h("section", { "aria-label": "Fixed relay form" });
  main.append(errors, h("div", { class: "card" }, h("div", { class: "row" }, field("Vhost", vhostSelect)), list, pager), formBox);
  let page = 1;

  // -- form ---------------------------------------------------------------------
  let editing = null; // the relay being updated, or null for a new one
  const app = h("input", { name: "App", "data-field": "App", value: "live", spellcheck: "false", required: true });
  const stream = h("input", { name: "Stream", "data-field": "Stream", spellcheck: "false", required: true });
  const sources = h("div", { class: "sources" });
  const sourcesSet = h("fieldset", { "data-field": "SrcAddrS" }, h("legend", {}, "Source URLs, tried in order"), sources);
  const permanent = h("input", { type: "radio", name: "schedule", value: "permanent", checked: true, id: "sched-permanent" });
  const windowed = h("input", { type: "radio", name: "schedule", value: "window", id: "sched-window" });
  const start = h("input", { type: "datetime-local", name: "StartTime", "data-field": "StartTime", disabled: true });
  const end = h("input", { type: "datetime-local", name: "EndTime", "data-field": "EndTime", disabled: true });
  const scheduleSet = h(
    "fieldset",
    { "data-field": "Window" },
    h("legend", {}, `Schedule (${timeZone()})`),
    h("div", { class: "row" }, h("label", { class: "inline" }, permanent, "Permanent"), h("label", { class: "inline" }, windowed, "From … to …")),
    h("div", { class: "row" }, field("Start", start), field("End", end)),
  );
  const syncSchedule = () => {
    start.disabled = end.disabled = permanent.checked;
  };
  permanent.addEventListener("change", syncSchedule);
  windowed.addEventListener("change", syncSchedule);
  const title = h("h2");
  const submit = h("button", { type: "submit" });
  const done = h("p", { class: "hint", "aria-live": "polite" });
  const form = h(
    "form",
    { class: "card", "aria-labelledby": "v4-form-title" },
    title,
    h("div", { class: "row" }, field("App", app), field("Stream", stream)),
    sourcesSet,
    scheduleSet,
    h("div", { class: "actions" }, submit, button("New relay", () => resetForm())),
    done,
  );
  title.id = "v4-form-title";
  formBox.append(form);

  const sourceInputs = () => [...sources.querySelectorAll("input")];
  const renderSources = (values) => {
    replace(sources);
    values.forEach((value, i) => {
      const input = h("input", { type: "url", name: `src-${i}`, value, placeholder: "rtmp://origin:1935/live/stream", "data-field": `SrcAddrS[${i}]`, spellcheck: "false" });
      const moveBy = (delta) => {
        const all = sourceInputs().map((el) => el.value);
        const to = i + delta;
        if (to < 0 || to >= all.length) return;
        const [item] = all.splice(i, 1);
        all.splice(to, 0, item);
        renderSources(all);
      };
      sources.append(
        h(
          "div",
          { class: "src-row" },
          field(`Source ${i + 1}`, input),
          button("↑", () => moveBy(-1), { "aria-label": `Move source ${i + 1} up`, disabled: i === 0 }),
          button("↓", () => moveBy(1), { "aria-label": `Move source ${i + 1} down`, disabled: i === values.length - 1 }),
          button("Remove", () => renderSources(sourceInputs().map((el) => el.value).filter((_, j) => j !== i)), {
            "aria-label": `Remove source ${i + 1}`,
            class: "danger",
            disabled: values.length === 1,
          }),
        ),
      );
    });
    sources.append(button("Add source URL", () => renderSources([...sourceInputs().map((el) => el.value), ""])));
  };

  const resetForm = () => {
    editing = null;
    clearErrors(form);
    title.textContent = "Create a fixed relay";
    submit.textContent = "Create relay";
    app.readOnly = stream.readOnly = false;
    app.value = "live";
    stream.value = "";
    renderSources([""]);
    permanent.checked = true;
    start.value = end.value = "";
    syncSchedule();
    done.textContent = "";
  };

  const editRelay = (relay) => {
    editing = relay;
    clearErrors(form);
    title.textContent = `Update ${relay.App}/${relay.Stream}`;
    submit.textContent = "Save changes";
    app.value = relay.App;
    stream.value = relay.Stream;
    app.readOnly = stream.readOnly = true;
    renderSources(relay.SrcAddrS.length ? relay.SrcAddrS : [""]);
    if (relay.StartTime && relay.EndTime) {
      windowed.checked = true;
      start.value = unixToLocalInput(relay.StartTime);
      end.value = unixToLocalInput(relay.EndTime);
    } else {
      permanent.checked = true;
      start.value = end.value = "";
    }
    syncSchedule();
    done.textContent = "";
    app.focus();
  };

  form.addEventListener("submit", async (ev) => {
    ev.preventDefault();
    clearErrors(form);
    done.textContent = "";
    const body = {
      Vhost: vhostSelect.value,
      App: app.value.trim(),
      Stream: stream.value.trim(),
      SrcAddrS: sourceInputs()
        .map((el) => el.value.trim())
        .filter(Boolean),
    };
    if (windowed.checked) {
      const s = localInputToUnix(start.value);
      const e = localInputToUnix(end.value);
      if (s !== null) body.StartTime = s;
      if (e !== null) body.EndTime = e;
    }
    try {
      if (editing) {
        await call("UpdateRelaySourceV4", body);
        done.textContent = `Saved ${body.App}/${body.Stream}.`;
      } else {
        const result = await call("CreateRelaySourceV4", body);
        done.textContent = `Created ${body.App}/${body.Stream} (task ${result.TaskId}).`;
      }
      await refresh();
    } catch (err) {
      placeError(form, err, form);
    }
  });

  // -- list ---------------------------------------------------------------------
  const refresh = async () => {
    let result;
    try {
      result = await call("ListRelaySourceV4", { Vhost: vhostSelect.value, Page: page, Size: PAGE_SIZE });
      replace(errors);
    } catch (err) {
      replace(errors, errorBox(err));
      return;
    }
    const rows = result.List.map((relay) => {
      const actions = h("div", { class: "actions" });
      const del = button(
        "Delete",
        () =>
          confirmInline(actions, `Delete ${relay.Stream}?`, "Yes, delete", async () => {
            try {
              await call("DeleteRelaySourceV4", { Vhost: relay.Vhost, App: relay.App, Stream: relay.Stream });
              if (editing && editing.Stream === relay.Stream && editing.App === relay.App) resetForm();
              await refresh();
            } catch (err) {
              replace(errors, errorBox(err));
            }
          }),
        { class: "danger", "aria-label": `Delete ${relay.App}/${relay.Stream}` },
      );
      const edit = button("Edit", () => editRelay(relay), { "aria-label": `Edit ${relay.App}/${relay.Stream}` });
      actions.append(edit, del);
      const when = relay.StartTime && relay.EndTime ? `${fmtTime(relay.StartTime)} → ${fmtTime(relay.EndTime)}` : "permanent";
      return h(
        "tr",
        { "data-stream": `${relay.App}/${relay.Stream}` },
        h("td", {}, `${relay.App}/${relay.Stream}`, h("div", { class: "hint" }, `task ${relay.TaskId}`)),
        h("td", {}, h("ol", {}, relay.SrcAddrS.map((u) => h("li", { class: "url" }, u)))),
        h("td", {}, when),
        h("td", {}, actions),
      );
    });
    replace(list, tableOf(["Stream", "Sources", "Window", "Actions"], rows, { label: "Fixed relays" }));
    const pages = Math.max(1, result.Pagination.PageTotal);
    replace(
      pager,
      button("Previous page", () => {
        page -= 1;
        refresh();
      }, { disabled: page <= 1 }),
      h("span", { class: "hint" }, `page ${page} of ${pages} · ${result.Pagination.TotalCount} relays`),
      button("Next page", () => {
        page += 1;
        refresh();
      }, { disabled: page >= pages }),
    );
  };

  const data = await listVhosts(ctx);
  replace(vhostSelect, data.vhosts.map((v) => h("option", { value: v, selected: v === ctx.node.DefaultVhost }, v)));
  vhostSelect.addEventListener("change", () => {
    page = 1;
    refresh();
  });
  resetForm();
  await refresh();
  return null;
}
