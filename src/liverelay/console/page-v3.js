// Play-triggered relays (V3): per vhost and app, the ordered groups of origins, edited in
// place (add, remove, reorder servers and groups, params), saved with
// UpdateRelaySourceV3; delete with DeleteRelaySourceV3. The selection is kept in the
// address (#/v3?vhost=..&app=..) so a reload reopens the same config.
import { call } from "./api.js";
import { listVhosts } from "./page-domains.js";
import { button, clearErrors, confirmInline, errorBox, field, h, placeError, replace, tableOf } from "./ui.js";

function hashParams() {
  const query = location.hash.split("?")[1] || "";
  return new URLSearchParams(query);
}

function setHashParams(params) {
  const text = new URLSearchParams(params).toString();
  history.replaceState(null, "", `#/v3${text ? `?${text}` : ""}`);
}

function paramsToText(params) {
  return Object.entries(params || {})
    .map(([k, v]) => `${k}=${v}`)
    .join("\n");
}

function textToParams(text) {
  const out = {};
  for (const line of text.split("\n")) {
    const trimmed = line.trim();
    if (!trimmed) continue;
    const at = trimmed.indexOf("=");
    if (at < 0) out[trimmed] = "";
    else out[trimmed.slice(0, at).trim()] = trimmed.slice(at + 1).trim();
  }
  return out;
}

function move(list, index, delta) {
  const to = index + delta;
  if (to < 0 || to >= list.length) return;
  const [item] = list.splice(index, 1);
  list.splice(to, 0, item);
}

function newServer() {
  return { RelaySourceProtocol: "rtmp", RelaySourceDomain: "", paramsText: "" };
}

export async function mount(main, ctx) {
  const errors = h("div", { "aria-live": "polite" });
  const vhostSelect = h("select", { name: "vhost" });
  const configs = h("div");
  const editorBox = h("section", { "aria-label": "Editor" });
  const newApp = h("input", { name: "newApp", placeholder: "live", spellcheck: "false" });
  main.append(
    errors,
    h(
      "div",
      { class: "card" },
      h("div", { class: "row" }, field("Vhost", vhostSelect)),
      configs,
      h(
        "div",
        { class: "row" },
        field("App of a new config (empty = the whole vhost)", newApp),
        button("New config", () => openEditor({ Vhost: vhostSelect.value, App: newApp.value.trim(), GroupDetails: [] }, true)),
      ),
    ),
    editorBox,
  );

  let state = null;

  const renderEditor = () => {
    const form = h("form", { class: "card", "aria-label": `Relay config ${state.Vhost}/${state.App || "*"}` });
    const groupsBox = h("div", { "data-field": "GroupDetails" });
    state.groups.forEach((group, gi) => {
      const gPath = `GroupDetails[${gi}]`;
      const name = h("input", { name: `group-${gi}`, value: group.Group, "data-field": `${gPath}.Group`, spellcheck: "false" });
      name.addEventListener("input", () => {
        group.Group = name.value;
      });
      const servers = h("div", { "data-field": `${gPath}.Servers` });
      group.Servers.forEach((server, si) => {
        const sPath = `${gPath}.Servers[${si}]`;
        const proto = h(
          "select",
          { name: `proto-${gi}-${si}`, "data-field": `${sPath}.RelaySourceProtocol` },
          ["rtmp", "flv"].map((p) => h("option", { value: p, selected: server.RelaySourceProtocol === p }, p)),
        );
        proto.addEventListener("change", () => {
          server.RelaySourceProtocol = proto.value;
        });
        const domain = h("input", {
          name: `domain-${gi}-${si}`,
          value: server.RelaySourceDomain,
          placeholder: "origin.example.com:1935",
          "data-field": `${sPath}.RelaySourceDomain`,
          spellcheck: "false",
        });
        domain.addEventListener("input", () => {
          server.RelaySourceDomain = domain.value;
        });
        const params = h("textarea", { name: `params-${gi}-${si}`, rows: 1, "data-field": `${sPath}.RelaySourceParams`, spellcheck: "false" }, server.paramsText);
        params.addEventListener("input", () => {
          server.paramsText = params.value;
        });
        const where = `server ${si + 1} of group ${group.Group || gi + 1}`;
        servers.append(
          h(
            "div",
            { class: "server", "data-server": si },
            h(
              "div",
              { class: "row" },
              field("Protocol", proto),
              field("Origin (host:port)", domain),
              field("Params (key=value per line)", params),
            ),
            h(
              "div",
              { class: "actions" },
              button("↑", () => (move(group.Servers, si, -1), renderEditor()), { "aria-label": `Move ${where} up`, disabled: si === 0 }),
              button("↓", () => (move(group.Servers, si, 1), renderEditor()), {
                "aria-label": `Move ${where} down`,
                disabled: si === group.Servers.length - 1,
              }),
              button("Remove server", () => (group.Servers.splice(si, 1), renderEditor()), { "aria-label": `Remove ${where}`, class: "danger" }),
            ),
          ),
        );
      });
      const gLabel = `group ${group.Group || gi + 1}`;
      groupsBox.append(
        h(
          "fieldset",
          { class: "group", "data-group": group.Group, "data-field": gPath },
          h("legend", {}, `Group ${gi + 1}`),
          field("Group name", name),
          servers,
          h(
            "div",
            { class: "actions" },
            button("Add server", () => (group.Servers.push(newServer()), renderEditor()), { "aria-label": `Add a server to ${gLabel}` }),
            button("Move group up", () => (move(state.groups, gi, -1), renderEditor()), { "aria-label": `Move ${gLabel} up`, disabled: gi === 0 }),
            button("Move group down", () => (move(state.groups, gi, 1), renderEditor()), {
              "aria-label": `Move ${gLabel} down`,
              disabled: gi === state.groups.length - 1,
            }),
            button("Remove group", () => (state.groups.splice(gi, 1), renderEditor()), { "aria-label": `Remove ${gLabel}`, class: "danger" }),
          ),
        ),
      );
    });
    const saved = h("p", { class: "hint", "aria-live": "polite" });
    const deleteBox = h("span", { class: "actions" });
    const deleteButton = button(
      "Delete config",
      () =>
        confirmInline(deleteBox, `Delete the config of ${state.App || "the whole vhost"}?`, "Yes, delete", async () => {
          try {
            await call("DeleteRelaySourceV3", { Vhost: state.Vhost, App: state.App });
            state = null;
            replace(editorBox);
            setHashParams({ vhost: vhostSelect.value });
            await loadConfigs();
          } catch (err) {
            placeError(form, err, form);
          }
        }),
      { class: "danger" },
    );
    deleteBox.append(deleteButton);
    form.append(
      h("h2", {}, `${state.Vhost} / ${state.App || "(whole vhost)"}`),
      h("p", { class: "hint" }, "Groups are tried in order; within a group, servers in order. Saving replaces the whole config."),
      groupsBox,
      h(
        "div",
        { class: "actions" },
        button("Add group", () => {
          state.groups.push({ Group: `group${state.groups.length + 1}`, Servers: [newServer()] });
          renderEditor();
        }),
        h("button", { type: "submit" }, "Save"),
        deleteBox,
      ),
      saved,
    );
    form.addEventListener("submit", async (ev) => {
      ev.preventDefault();
      clearErrors(form);
      saved.textContent = "";
      const body = {
        Vhost: state.Vhost,
        App: state.App,
        GroupDetails: state.groups.map((g) => ({
          Group: g.Group,
          Servers: g.Servers.map((s) => {
            const server = { RelaySourceProtocol: s.RelaySourceProtocol, RelaySourceDomain: s.RelaySourceDomain.trim() };
            const params = textToParams(s.paramsText);
            if (Object.keys(params).length) server.RelaySourceParams = params;
            return server;
          }),
        })),
      };
      try {
        await call("UpdateRelaySourceV3", body);
        setHashParams({ vhost: state.Vhost, app: state.App });
        await loadConfigs();
        saved.textContent = "Saved.";
      } catch (err) {
        placeError(form, err, form);
      }
    });
    replace(editorBox, form);
  };

  const openEditor = (config, fresh) => {
    clearErrors(main);
    state = {
      Vhost: config.Vhost,
      App: config.App || "",
      groups: (config.GroupDetails || []).map((g) => ({
        Group: g.Group,
        Servers: g.Servers.map((s) => ({
          RelaySourceProtocol: (s.RelaySourceProtocol || "rtmp").toLowerCase(),
          RelaySourceDomain: s.RelaySourceDomain,
          paramsText: paramsToText(s.RelaySourceParams),
        })),
      })),
    };
    if (fresh && !state.groups.length) state.groups.push({ Group: "group1", Servers: [newServer()] });
    setHashParams({ vhost: state.Vhost, app: state.App });
    renderEditor();
  };

  let loaded = [];
  const loadConfigs = async () => {
    try {
      const result = await call("DescribeRelaySourceV3", { Vhost: vhostSelect.value });
      loaded = result.RelaySourceConfigList || [];
      replace(errors);
    } catch (err) {
      loaded = [];
      replace(errors, errorBox(err));
    }
    const rows = loaded.map((c) =>
      h(
        "tr",
        { "data-app": c.App || "" },
        h("td", {}, c.App || "(whole vhost)"),
        h("td", {}, c.GroupDetails.map((g) => `${g.Group}: ${g.Servers.map((s) => s.RelaySourceDomain).join(", ")}`).join(" → ")),
        h("td", {}, button("Edit", () => openEditor(c, false), { "aria-label": `Edit ${c.App || "the whole vhost"}` })),
      ),
    );
    replace(configs, tableOf(["App", "Groups (in order)", ""], rows, { label: "Configs of this vhost" }));
  };

  const data = await listVhosts(ctx);
  const wanted = hashParams();
  replace(
    vhostSelect,
    data.vhosts.map((v) => h("option", { value: v, selected: v === wanted.get("vhost") }, v)),
  );
  vhostSelect.addEventListener("change", async () => {
    replace(editorBox);
    state = null;
    setHashParams({ vhost: vhostSelect.value });
    await loadConfigs();
  });
  await loadConfigs();
  if (wanted.has("app")) {
    const config = loaded.find((c) => (c.App || "") === wanted.get("app"));
    if (config) openEditor(config, false);
  }
  return null;
}
