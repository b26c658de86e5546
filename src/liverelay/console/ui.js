// DOM helpers shared by the pages: element building (no HTML strings from data),
// formatting, and API errors placed next to the field they concern.

const SVG_NS = "http://www.w3.org/2000/svg";

function append(node, child) {
  if (child === null || child === undefined || child === false) return;
  if (Array.isArray(child)) {
    for (const c of child) append(node, c);
  } else if (child instanceof Node) {
    node.appendChild(child);
  } else {
    node.appendChild(document.createTextNode(String(child)));
  }
}

function setAttrs(node, attrs) {
  for (const [key, value] of Object.entries(attrs || {})) {
    if (value === null || value === undefined || value === false) continue;
    if (key.startsWith("on") && typeof value === "function") {
      node.addEventListener(key.slice(2).toLowerCase(), value);
    } else if (key === "class") {
      node.setAttribute("class", value);
    } else if (key === "value" || key === "checked" || key === "selected") {
      node[key] = value;
    } else {
      node.setAttribute(key, value === true ? "" : String(value));
    }
  }
}

export function h(tag, attrs, ...children) {
  const node = document.createElement(tag);
  setAttrs(node, attrs);
  append(node, children);
  return node;
}

export function svg(tag, attrs, ...children) {
  const node = document.createElementNS(SVG_NS, tag);
  setAttrs(node, attrs);
  append(node, children);
  return node;
}

export function replace(node, ...children) {
  node.replaceChildren();
  append(node, children);
}

let uid = 0;
export function nextId(prefix) {
  uid += 1;
  return `${prefix}-${uid}`;
}

// A labelled control: <div class="field"><label for=id>text</label>control</div>.
export function field(labelText, control, hint) {
  if (!control.id) control.id = nextId("f");
  return h(
    "div",
    { class: "field" },
    h("label", { for: control.id }, labelText),
    control,
    hint ? h("small", { class: "hint" }, hint) : null,
  );
}

export function button(text, onClick, attrs = {}) {
  return h("button", { type: "button", ...attrs, onclick: onClick }, text);
}

// "Are you sure?" in place of `holder`'s contents (the button that asked and its neighbours):
// the question, a danger button that runs `action`, and Cancel. Both put the contents back
// first (so a failed action leaves the row as it was, with its error shown by `action`);
// Cancel returns the focus to the control that asked.
export function confirmInline(holder, question, yesText, action) {
  const original = [...holder.childNodes];
  const opener = document.activeElement;
  const restore = () => replace(holder, original);
  replace(
    holder,
    h(
      "span",
      { class: "confirm", role: "group", "aria-label": question },
      h("span", {}, question),
      button(yesText, async () => {
        restore();
        await action();
      }, { class: "danger" }),
      button("Cancel", () => {
        restore();
        if (opener instanceof HTMLElement && holder.contains(opener)) opener.focus();
      }),
    ),
  );
  holder.querySelector("button").focus();
}

export function fmtBytes(n) {
  if (!Number.isFinite(n)) return "–";
  const units = ["B", "KiB", "MiB", "GiB", "TiB"];
  let v = n;
  let i = 0;
  while (v >= 1024 && i < units.length - 1) {
    v /= 1024;
    i += 1;
  }
  return `${v.toFixed(i ? 1 : 0)} ${units[i]}`;
}

export function fmtBps(bps) {
  if (!Number.isFinite(bps)) return "–";
  if (bps >= 1e6) return `${(bps / 1e6).toFixed(2)} Mbit/s`;
  if (bps >= 1e3) return `${(bps / 1e3).toFixed(0)} kbit/s`;
  return `${Math.round(bps)} bit/s`;
}

export function fmtDuration(seconds) {
  if (!Number.isFinite(seconds)) return "–";
  let s = Math.max(0, Math.floor(seconds));
  const d = Math.floor(s / 86400);
  s -= d * 86400;
  const hh = Math.floor(s / 3600);
  s -= hh * 3600;
  const mm = Math.floor(s / 60);
  s -= mm * 60;
  if (d) return `${d}d ${hh}h ${mm}m`;
  if (hh) return `${hh}h ${mm}m ${s}s`;
  if (mm) return `${mm}m ${s}s`;
  return `${s}s`;
}

// A time (RFC 3339 text or Unix seconds) in the operator's time zone.
export function fmtTime(value) {
  if (value === null || value === undefined || value === "") return "–";
  const date = typeof value === "number" ? new Date(value * 1000) : new Date(value);
  if (Number.isNaN(date.getTime())) return String(value);
  return date.toLocaleString(undefined, { dateStyle: "short", timeStyle: "medium" });
}

export function timeZone() {
  return Intl.DateTimeFormat().resolvedOptions().timeZone || "local time";
}

// <input type=datetime-local> value <-> Unix seconds, in the browser's time zone.
export function localInputToUnix(value) {
  if (!value) return null;
  const ms = new Date(value).getTime();
  return Number.isNaN(ms) ? null : Math.floor(ms / 1000);
}

export function unixToLocalInput(seconds) {
  const d = new Date(seconds * 1000);
  const pad = (n) => String(n).padStart(2, "0");
  return `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())}T${pad(d.getHours())}:${pad(d.getMinutes())}`;
}

export function errorBox(err, forField) {
  const code = err.code || "Error";
  return h(
    "p",
    { class: "error", role: "alert", "data-code": code, "data-for": forField || "" },
    h("strong", {}, code),
    " ",
    err.detail !== undefined ? err.detail : err.message,
  );
}

export function clearErrors(scope) {
  for (const node of scope.querySelectorAll(".error")) node.remove();
}

function escapeRe(text) {
  return text.replace(/[.*+?^${}()|[\]\\]/g, "\\$&");
}

// Shows an API error beside the control it concerns: the element of `scope` whose
// data-field (a wire path such as "SrcAddrS" or "GroupDetails[1].Group") the message
// names, the longest match first; else at `fallback`. Nothing typed is touched.
export function placeError(scope, err, fallback) {
  clearErrors(scope);
  const message = err.detail || "";
  const candidates = [...scope.querySelectorAll("[data-field]")]
    .map((el) => [el.getAttribute("data-field"), el])
    .sort((a, b) => b[0].length - a[0].length);
  let target = null;
  let name = "";
  for (const [path, el] of candidates) {
    const starts = new RegExp(`^${escapeRe(path)}(?![\\w\\[])`);
    if (starts.test(message)) {
      target = el;
      name = path;
      break;
    }
  }
  if (!target) {
    for (const [path, el] of candidates) {
      if (new RegExp(`(^|[^\\w.])${escapeRe(path)}(?![\\w\\[])`).test(message)) {
        target = el;
        name = path;
        break;
      }
    }
  }
  const box = errorBox(err, name || "form");
  if (target) {
    const holder = target.closest(".field") || target;
    holder.after(box);
  } else {
    fallback.append(box);
  }
  return box;
}

export function tableOf(columns, rows, attrs = {}) {
  // Each cell names its column (data-label): on narrow screens rows become cards.
  for (const row of rows) {
    [...row.children].forEach((cell, i) => {
      if (columns[i]) cell.setAttribute("data-label", columns[i]);
    });
  }
  return h(
    "div",
    { class: "table-wrap", tabindex: "0", role: "region", "aria-label": attrs.label || "table" },
    h(
      "table",
      attrs,
      h("thead", {}, h("tr", {}, columns.map((c) => h("th", { scope: "col" }, c)))),
      h("tbody", {}, rows.length ? rows : h("tr", {}, h("td", { class: "empty", colspan: columns.length }, "Nothing here yet."))),
    ),
  );
}

export function copyButton(text, label) {
  return button(
    "Copy",
    async (ev) => {
      const target = ev.currentTarget;
      try {
        await navigator.clipboard.writeText(text);
        target.textContent = "Copied";
      } catch {
        target.textContent = "Select and copy";
      }
    },
    { "aria-label": `Copy ${label}` },
  );
}

// Runs `work` now and every `ms`, never two at once; returns the stop function.
export function every(ms, work) {
  let busy = false;
  let stopped = false;
  const tick = async () => {
    if (busy || stopped) return;
    busy = true;
    try {
      await work();
    } finally {
      busy = false;
    }
  };
  tick();
  const timer = setInterval(tick, ms);
  return () => {
    stopped = true;
    clearInterval(timer);
  };
}
