// One device: what verify says of it, each sensor plotted over device time (uPlot: drag
// to zoom, double-click to reset, a range picker), the accepted entries as a paged table
// with a proof check per entry, anomalies, held entries and fork evidence to download.
"use strict";

(() => {
  const { el, time } = HT;
  const PAGE = 50;
  const id = decodeURIComponent(location.pathname.split("/")[2] || "");
  const charts = [];
  let proofOut, keyInput, collectorInput;

  function header(info) {
    const d = info.device || {};
    document.getElementById("title").textContent = `Device ${info.label || "(no label)"}`;
    const dl = el("dl", { class: "facts" });
    const fact = (k, v, cls) => dl.append(el("dt", {}, k), el("dd", { class: cls }, v));
    fact("label", info.label, "label");
    fact("device id", info.id, "mono");
    fact("key fingerprint", d.fingerprint, "mono");
    fact("firmware", d.fw);
    fact("board", d.board);
    if (d.enrollment) fact("enrollment", d.enrollment.text, "enrollment " + { signed: "good", unsigned: "warn", invalid: "bad" }[d.enrollment.state]);
    fact("entries", d.entries);
    fact("first / last reading (UTC)", `${time(d.first_t)} / ${time(d.last_t)}`);
    fact("last collection (UTC)", d.last_collection ? `${time(d.last_collection.t)} (device checkpoint at seq ${d.last_collection.seq})` : "-");
    fact("status", d.status, "status " + HT.statusClass(d));
    if (d.revoked_at) fact("revoked", `${time(d.revoked_at)} UTC: ${d.revoked_reason || ""}`);
    return dl;
  }

  function findings(info) {
    const d = info.device || { problems: [], anomalies: [], unprotected: [] };
    const sec = el("section", { id: "anomalies" }, el("h2", {}, "Problems and anomalies"));
    const ul = el("ul", {});
    for (const p of d.problems) ul.append(el("li", { class: "bad" }, "problem: ", p));
    for (const a of d.anomalies) ul.append(el("li", { class: d.alarm ? "bad" : "warn" }, d.alarm ? "alarm: " : "expected anomaly: ", a));
    for (const u of d.unprotected) ul.append(el("li", { class: "warn" }, `seqs ${u.first}..${u.last}: unprotected until ${u.by} ${u.until}`));
    if (!ul.children.length) ul.append(el("li", { class: "good" }, "none"));
    sec.append(ul);
    if (info.held.length) {
      sec.append(el("p", {}, `${info.held.length} entries held back (not accepted): seqs `,
        info.held.map((h) => h.seq).join(", "), " \u2014 ",
        el("a", { href: `/api/device/${id}/held`, download: `held-${id}.json` }, "download them")));
    }
    const ev = el("section", { id: "evidence" }, el("h2", {}, "Fork evidence"));
    if (!info.evidence.length) ev.append(el("p", { class: "muted" }, "none kept"));
    else {
      const l = el("ul", {});
      for (const e of info.evidence) {
        l.append(el("li", { class: "bad" }, `fork at seq ${e.seq}: both signed statements \u2014 `,
          el("a", { href: `/api/device/${id}/evidence/${e.digest}`, download: `fork-${id}-${e.seq}.json`, class: "evidence" }, "download evidence"),
          " (check it with `hashtrail ledger check-evidence FILE`)"));
      }
      ev.append(l);
    }
    return [sec, ev];
  }

  function plots(r) {
    const sec = el("section", { id: "plots" }, el("h2", {}, "Readings over device time"));
    if (!r.t.length) {
      sec.append(el("p", { class: "muted" }, "no timed readings"));
      return { sec, draw: () => {} };
    }
    const preset = el("select", { id: "range" },
      ...[["all", "all time"], ["3600", "last hour"], ["86400", "last day"], ["604800", "last 7 days"], ["2592000", "last 30 days"]]
        .map(([v, t]) => el("option", { value: v }, t)));
    const from = el("input", { id: "from", type: "datetime-local", step: 1 });
    const to = el("input", { id: "to", type: "datetime-local", step: 1 });
    const t0 = r.t[0], t1 = r.t[r.t.length - 1];
    const local = (t) => new Date(t * 1000).toISOString().slice(0, 19);
    const parse = (s) => Date.parse(s + "Z") / 1000;
    from.value = local(t0); to.value = local(t1);
    const setRange = (lo, hi) => {
      for (const u of charts) u.setScale("x", { min: lo, max: hi });
      from.value = local(lo); to.value = local(hi);
    };
    preset.addEventListener("change", () => {
      if (preset.value === "all") setRange(t0, t1);
      else setRange(Math.max(t0, t1 - Number(preset.value)), t1);
    });
    const apply = el("button", { type: "button", id: "apply-range", on: { click: () => {
      const lo = parse(from.value), hi = parse(to.value);
      if (lo < hi) setRange(lo, hi);
    } } }, "apply");
    sec.append(el("p", { class: "controls" }, el("label", {}, "time range (UTC) ", preset), " from ", from, " to ", to, " ", apply,
      el("span", { class: "muted" }, ` \u2014 ${r.t.length} readings; drag on a plot to zoom, double-click to reset`
        + (r.untimed ? `; ${r.untimed} readings without device time not plotted` : ""))));
    const box = el("div", { id: "charts" });
    sec.append(box);
    const draw = () => {
      const width = Math.max(400, Math.min(1200, box.clientWidth || 900));
      const sync = uPlot.sync("hashtrail-" + id);
      for (const s of r.series) {
        const title = s.unit ? `${s.name} (${s.unit})` : s.name;
        const holder = el("div", { class: "chart", "data-series": s.name });
        box.append(holder);
        const opts = {
          title, width, height: 220, scales: { x: { time: true, range: HT.timeRange } }, tzDate: (ts) => uPlot.tzDate(new Date(ts * 1000), "Etc/UTC"),
          cursor: { sync: { key: sync.key } },
          series: [{ label: "device time (UTC)", value: (u, v) => v == null ? "-" : time(v) },
                   { label: title, stroke: "#1f6feb", width: 1, spanGaps: false }],
          axes: [{}, { label: s.unit || "" }],
          hooks: { setScale: [(u, key) => {
            if (key !== "x") return;
            const { min, max } = u.scales.x;
            if (min != null && max != null) { from.value = local(min); to.value = local(max); }
          }] },
        };
        charts.push(new uPlot(opts, [r.t, s.v], holder));
      }
    };
    return { sec, draw };
  }

  function entriesTable() {
    const sec = el("section", { id: "entries" }, el("h2", {}, "Entries (newest first)"));
    const tbody = el("tbody", {});
    const info = el("span", { class: "muted", id: "page-info" });
    let offset = 0, total = 0;
    const prev = el("button", { type: "button", id: "prev", on: { click: () => load(Math.max(0, offset - PAGE)) } }, "\u2190 newer");
    const next = el("button", { type: "button", id: "next", on: { click: () => load(offset + PAGE) } }, "older \u2192");
    async function load(off) {
      const page = await HT.getJSON(`/api/device/${id}/entries?offset=${off}&limit=${PAGE}`);
      offset = page.offset; total = page.total;
      tbody.replaceChildren(...page.entries.map((e) => el("tr", { "data-seq": e.seq },
        el("td", { class: "num" }, e.seq),
        el("td", {}, time(e.t)),
        el("td", {}, e.kind),
        el("td", { class: "values" }, e.values.length ? e.values.map((v) => `${v.n} = ${v.v}${v.u ? " " + v.u : ""}`).join("; ") : e.detail),
        el("td", {}, e.signed ? "own signature" : "checkpoint"),
        el("td", { class: "num" }, e.leaf_index),
        el("td", { class: "mono", title: e.entry_hash }, e.entry_hash.slice(0, 12) + "\u2026"),
        el("td", {},
          el("button", { type: "button", class: "verify", "data-seq": e.seq, on: { click: () => verifyEntry(e.seq) } }, "verify"), " ",
          el("a", { href: `/api/proof/${id}/${e.seq}?download=1`, download: `proof-${id}-${e.seq}.json` }, "proof")))));
      info.textContent = total ? `entries ${Math.max(0, total - off - page.entries.length)}..${total - off - 1} of ${total}` : "no entries";
      prev.disabled = off <= 0;
      next.disabled = off + PAGE >= total;
    }
    sec.append(el("p", { class: "controls" }, prev, " ", next, " ", info),
      el("table", { class: "data", id: "entries-table" },
        el("thead", {}, el("tr", {}, ...["seq", "device time (UTC)", "kind", "values", "signed by", "leaf", "entry hash", ""].map((h) => el("th", {}, h)))),
        tbody));
    return { sec, load };
  }

  async function verifyEntry(seq) {
    proofOut.replaceChildren(el("p", { class: "muted" }, `checking the proof of seq ${seq}\u2026`));
    proofOut.scrollIntoView({ block: "nearest" });
    // the proof's text: the check reads it as Python does (proofcheck.js parseJSON)
    let text;
    try { text = await HT.getText(`/api/proof/${id}/${seq}`); } catch (e) {
      proofOut.replaceChildren(el("p", { class: "error" }, String(e)));
      return;
    }
    const res = await HashtrailProof.check(text, keyInput.value, id, collectorInput.value);
    HT.renderCheck(proofOut, res, `device ${id} seq ${seq}`);
  }

  // The plot does not wait for what verify says of the device (/api/device): each part
  // of the page is filled as its JSON arrives.
  async function main() {
    const m = document.getElementById("main");
    const fail = (e) => m.replaceChildren(el("p", { class: "error" }, String(e)));
    const infoP = HT.getJSON(`/api/device/${id}`), readP = HT.getJSON(`/api/device/${id}/readings`);
    infoP.catch(() => {}); readP.catch(() => {});
    const headBox = el("div", { id: "device-facts" }), plotBox = el("div", {}), findBox = el("div", {});
    const keyRow = el("p", { class: "controls" }), collectorRow = el("p", { class: "controls" });
    keyInput = HT.keyBox(keyRow);
    collectorInput = HT.collectorBox(collectorRow);
    proofOut = el("div", { id: "proof-result", class: "proof", "aria-live": "polite" });
    const t = entriesTable();
    m.replaceChildren(headBox, plotBox, findBox,
      el("section", { id: "proof" }, el("h2", {}, "Proof check in this page"),
        el("p", { class: "muted" }, "\u201cverify\u201d fetches the entry's inclusion proof and checks it here with WebCrypto: the device's own P-256 signature, the Merkle path, the checkpoint's Ed25519 signature by the ledger key you pin, and the enrolling collector's Ed25519 signature over the enrollment (by a collector key you pin, if you pin one)."),
        keyRow, collectorRow, proofOut),
      t.sec);
    let readings;
    try { readings = await readP; } catch (e) { return fail(e); }
    const p = plots(readings);
    plotBox.replaceWith(p.sec);
    p.draw();
    await HT.mark("plot");
    let info;
    try { info = await infoP; } catch (e) { return fail(e); }
    headBox.replaceChildren(header(info));
    findBox.replaceWith(...findings(info));
    await t.load(0);
  }

  document.addEventListener("DOMContentLoaded", main);
})();
