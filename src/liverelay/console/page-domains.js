// Domains: vhosts and their push/pull domains; add (CreateDomainV2) and remove (DeleteDomain).
import { call } from "./api.js";
import { button, clearErrors, confirmInline, errorBox, field, h, placeError, replace, tableOf } from "./ui.js";

export async function listVhosts(ctx) {
  const result = await call("ListDomainDetail", { PageNum: 1, PageSize: 1000 });
  const vhosts = new Set(result.DomainList.map((d) => d.Vhost));
  if (ctx.node && ctx.node.DefaultVhost) vhosts.add(ctx.node.DefaultVhost);
  return { vhosts: [...vhosts].sort(), domains: result.DomainList };
}

export async function mount(main, ctx) {
  const errors = h("div", { "aria-live": "polite" });
  const list = h("div");
  const vhost = h("input", { name: "Vhost", "data-field": "Vhost", required: true, spellcheck: "false" });
  const domain = h("input", { name: "DomainName", "data-field": "Domains[0].DomainName", required: true, spellcheck: "false" });
  const type = h("select", { name: "Type", "data-field": "Domains[0].Type" }, h("option", { value: "push" }, "push"), h("option", { value: "pull-flv" }, "pull (play)"));
  const done = h("p", { class: "hint", "aria-live": "polite" });
  const form = h(
    "form",
    { class: "card", "aria-label": "Add a domain" },
    h("h2", {}, "Add a domain"),
    h("div", { class: "row" }, field("Vhost", vhost), field("Domain", domain), field("Type", type)),
    h("button", { type: "submit" }, "Add domain"),
    done,
  );
  main.append(errors, list, form);

  const refresh = async () => {
    let data;
    try {
      data = await listVhosts(ctx);
    } catch (err) {
      replace(errors, errorBox(err));
      return;
    }
    replace(errors);
    const rows = data.domains
      .slice()
      .sort((a, b) => a.Vhost.localeCompare(b.Vhost) || a.Type.localeCompare(b.Type) || a.Domain.localeCompare(b.Domain))
      .map((d) => {
        const actions = h("div", { class: "actions" });
        const remove = button(
          "Remove",
          () =>
            confirmInline(actions, `Remove ${d.Domain}?`, "Yes, remove", async () => {
              try {
                await call("DeleteDomain", { Domain: d.Domain });
                await refresh();
              } catch (err) {
                replace(errors, errorBox(err));
              }
            }),
          { class: "danger", "aria-label": `Remove ${d.Domain}` },
        );
        actions.append(remove);
        return h(
          "tr",
          { "data-domain": d.Domain },
          h("td", {}, d.Vhost),
          h("td", {}, d.Domain),
          h("td", {}, d.Type === "push" ? "push" : "pull (play)"),
          h("td", {}, d.Status === 0 ? "enabled" : "disabled"),
          h("td", {}, actions),
        );
      });
    const defaultNote = ctx.node.DefaultVhost
      ? h("p", { class: "hint" }, `Streams reached by the node's address (no domain) belong to the vhost ${ctx.node.DefaultVhost}.`)
      : null;
    replace(list, defaultNote, tableOf(["Vhost", "Domain", "Type", "Status", "Actions"], rows, { label: "Domains" }));
  };

  form.addEventListener("submit", async (ev) => {
    ev.preventDefault();
    clearErrors(form);
    done.textContent = "";
    try {
      await call("CreateDomainV2", {
        Vhost: vhost.value.trim(),
        Domains: [{ DomainName: domain.value.trim(), Type: type.value, Region: "cn" }],
      });
      done.textContent = `${domain.value.trim()} added to ${vhost.value.trim()}.`;
      domain.value = "";
      await refresh();
    } catch (err) {
      placeError(form, err, form);
    }
  });
  await refresh();
  return null;
}
