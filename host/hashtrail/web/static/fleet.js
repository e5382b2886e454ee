// The fleet page: every device with what `hashtrail verify --json` says of it
// (/api/fleet), sortable by any column and filtered as you type. Rows are built once;
// sorting and filtering reorder or hide them, so 1,000 devices stay instant.
"use strict";

(() => {
  const { el, time } = HT;
  const COLUMNS = [
    ["label", "label", (d) => d.label],
    ["id", "device id", (d) => d.id],
    ["fingerprint", "key fingerprint", (d) => d.fingerprint],
    ["fw", "firmware", (d) => d.fw],
    ["entries", "entries", (d) => d.entries],
    ["first_t", "first reading (UTC)", (d) => d.first_t ?? -1],
    ["last_t", "last reading (UTC)", (d) => d.last_t ?? -1],
    ["last_collection", "last collection (UTC)", (d) => d.last_collection?.t ?? -1],
    ["pending", "held back", (d) => d.pending],
    ["enrollment", "enrollment", (d) => d.enrollment.text],
    ["status", "status", (d) => d.status],
  ];
  const FILTERS = {
    all: () => true,
    ok: (d) => d.ok && d.status === "ok" && !d.pending,
    attention: (d) => !(d.ok && d.status === "ok" && !d.pending),
    problems: (d) => d.problems.length > 0 || d.alarm,
    forked: (d) => d.status === "forked",
    revoked: (d) => d.status === "revoked",
    held: (d) => d.pending > 0,
    unprotected: (d) => d.status.startsWith("unprotected"),
  };

  function statusCell(d) {
    const td = el("td", { class: "status " + HT.statusClass(d), "data-col": "status" },
      el("span", { class: "status-text" }, d.status));
    if (d.pending) td.append(" ", el("span", { class: "badge warn", title: "entries held back, not accepted" }, `${d.pending} held back`));
    if (d.problems.length) td.append(" ", el("span", { class: "badge bad", title: d.problems.join("\n") }, `${d.problems.length} problem${d.problems.length > 1 ? "s" : ""}`));
    if (d.evidence) td.append(" ", el("a", { class: "badge bad", href: `/device/${d.id}#evidence` }, `fork evidence (${d.evidence})`));
    if (d.anomalies.length) td.append(" ", el("span", { class: "badge", title: d.anomalies.join("\n") }, `${d.anomalies.length} anomal${d.anomalies.length > 1 ? "ies" : "y"}`));
    return td;
  }

  function row(d) {
    const tr = el("tr", { "data-device": d.id },
      el("td", { "data-col": "label" }, el("a", { href: `/device/${d.id}` }, d.label || "(no label)")),
      el("td", { "data-col": "id", class: "mono" }, el("a", { href: `/device/${d.id}` }, d.id)),
      el("td", { "data-col": "fingerprint", class: "mono", title: d.fingerprint }, d.fingerprint.slice(0, 16) + "\u2026"),
      el("td", { "data-col": "fw" }, d.fw),
      el("td", { "data-col": "entries", class: "num" }, d.entries),
      el("td", { "data-col": "first_t" }, time(d.first_t)),
      el("td", { "data-col": "last_t" }, time(d.last_t)),
      el("td", { "data-col": "last_collection", title: d.last_collection ? `device checkpoint at seq ${d.last_collection.seq}` : "no device checkpoint in the ledger" },
        d.last_collection ? time(d.last_collection.t) : "-"),
      el("td", { "data-col": "pending", class: "num" }, d.pending),
      el("td", { "data-col": "enrollment", "data-state": d.enrollment.state,
                 class: { signed: "good", unsigned: "warn", invalid: "bad" }[d.enrollment.state] }, d.enrollment.text),
      statusCell(d));
    tr._search = [d.label, d.id, d.fingerprint, d.fw, d.status, d.board, d.enrollment.text].join(" ").toLowerCase();
    tr._d = d;
    return tr;
  }

  async function main() {
    const m = document.getElementById("main");
    let fleet;
    try { fleet = await HT.getJSON("/api/fleet"); } catch (e) {
      m.replaceChildren(el("p", { class: "error" }, String(e)));
      return;
    }
    document.getElementById("title").textContent = `Fleet of ${fleet.origin}`;
    const summary = el("p", { id: "summary" },
      `${fleet.devices.length} devices, ${fleet.size} ledger entries, ${fleet.checkpoints} signed checkpoints; verified ${time(fleet.verified_at)} UTC in ${fleet.verify_seconds} s: `,
      el("strong", { class: fleet.ok ? "good" : "bad", id: "verdict" }, fleet.ok ? "OK" : "PROBLEMS FOUND"));
    const probs = el("ul", { class: "problems" }, ...fleet.problems.map((p) => el("li", {}, p)));
    const notes = el("ul", { class: "notes" }, ...fleet.notes.map((p) => el("li", {}, p)));
    const filter = el("input", { id: "filter", type: "search", placeholder: "filter: label, id, fingerprint, firmware, status", size: 50 });
    const which = el("select", { id: "which" }, ...Object.keys(FILTERS).map((k) => el("option", { value: k }, k)));
    const shown = el("span", { id: "shown", class: "muted" });
    const head = el("tr", {});
    const tbody = el("tbody", { id: "devices" });
    const rows = fleet.devices.map(row);
    let sortKey = "label", dir = 1;

    function apply() {
      const q = filter.value.trim().toLowerCase(), f = FILTERS[which.value];
      let n = 0;
      for (const tr of rows) {
        const vis = f(tr._d) && (!q || tr._search.includes(q));
        tr.hidden = !vis;
        n += vis;
      }
      shown.textContent = `${n} of ${rows.length} shown`;
    }
    function sort() {
      const get = COLUMNS.find((c) => c[0] === sortKey)[2];
      rows.sort((a, b) => {
        const x = get(a._d), y = get(b._d);
        return (x < y ? -1 : x > y ? 1 : 0) * dir || (a._d.id < b._d.id ? -1 : 1);
      });
      tbody.append(...rows);
      for (const th of head.children) th.setAttribute("aria-sort", th.dataset.key === sortKey ? (dir > 0 ? "ascending" : "descending") : "none");
    }
    for (const [key, title] of COLUMNS) {
      head.append(el("th", { "data-key": key, on: { click: () => {
        dir = sortKey === key ? -dir : 1; sortKey = key; sort();
      } } }, title));
    }
    filter.addEventListener("input", apply);
    which.addEventListener("change", apply);
    sort();
    apply();
    m.replaceChildren(summary, probs, notes,
      el("p", { class: "controls" }, filter, " ", el("label", {}, "show ", which), " ", shown),
      el("table", { id: "fleet", class: "data" }, el("thead", {}, head), tbody),
      el("p", { class: "muted" }, "Status is what `hashtrail verify --json` says (",
        el("a", { href: "/api/verify?download=1" }, "download it"),
        "). Last collection: device time of the newest device checkpoint in the ledger (signed by the device at a collection). Firmware: as the newest entry states it. Enrollment: the label, board and firmware the device was enrolled with are signed by the collector that enrolled it (its key named, checked as verify checks it), or the operator's word (unsigned, or a signature that does not verify)."));
    await HT.mark("fleet");
  }

  document.addEventListener("DOMContentLoaded", main);
})();
