// The ledger: its key, tree size over its signed checkpoints, the witnesses whose
// cosignatures it stores, the collectors it trusts; and a proof file checked in the page.
"use strict";

(() => {
  const { el, time } = HT;

  function growth(l) {
    const sec = el("section", { id: "growth" }, el("h2", {}, "Tree size over signed checkpoints"));
    const cps = l.checkpoints.slice().sort((a, b) => a.created - b.created || a.size - b.size);
    if (cps.length < 1) { sec.append(el("p", { class: "muted" }, "no signed checkpoint")); return { sec, draw: () => {} }; }
    const box = el("div", { id: "growth-chart" });
    sec.append(box);
    const draw = () => new uPlot({
      title: "tree size", width: Math.max(400, Math.min(1200, box.clientWidth || 900)), height: 220,
      scales: { x: { time: true, range: HT.timeRange } }, tzDate: (ts) => uPlot.tzDate(new Date(ts * 1000), "Etc/UTC"),
      series: [{ label: "signed at (UTC)", value: (u, v) => v == null ? "-" : time(v) },
               { label: "tree size", stroke: "#1f6feb", points: { show: true } }],
    }, [cps.map((c) => c.created), cps.map((c) => c.size)], box);
    return { sec, draw };
  }

  function table(headers, rows, id) {
    return el("table", { class: "data", id },
      el("thead", {}, el("tr", {}, ...headers.map((h) => el("th", {}, h)))),
      el("tbody", {}, ...rows.map((r) => el("tr", {}, ...r.map((c) => el("td", {}, c))))));
  }

  function proofFile() {
    const sec = el("section", { id: "check-file" }, el("h2", {}, "Check a proof file"));
    const keyRow = el("p", { class: "controls" });
    const key = HT.keyBox(keyRow);
    const collectorRow = el("p", { class: "controls" });
    const collectors = HT.collectorBox(collectorRow);
    const text = el("textarea", { id: "proof-text", rows: 8, cols: 100, spellcheck: "false",
                                  placeholder: "paste a proof (hashtrail ledger prove --json), or choose a file" });
    const file = el("input", { type: "file", id: "proof-file", accept: ".json,application/json" });
    file.addEventListener("change", async () => { if (file.files[0]) text.value = await file.files[0].text(); });
    const out = el("div", { id: "file-result", class: "proof", "aria-live": "polite" });
    const go = el("button", { type: "button", id: "check-proof", on: { click: async () => {
      // the text, not JSON.parse's object: the check reads it as Python does
      HT.renderCheck(out, await HashtrailProof.check(text.value, key.value, null, collectors.value));
    } } }, "check");
    sec.append(keyRow, collectorRow, text, el("p", {}, file, " ", go), out);
    return sec;
  }

  async function main() {
    const m = document.getElementById("main");
    let l;
    try { l = await HT.getJSON("/api/ledger"); } catch (e) {
      m.replaceChildren(el("p", { class: "error" }, String(e)));
      return;
    }
    document.getElementById("title").textContent = `Ledger ${l.origin}`;
    const dl = el("dl", { class: "facts" });
    const fact = (k, v, cls) => dl.append(el("dt", {}, k), el("dd", { class: cls }, v));
    fact("origin", l.origin);
    fact("verifier key (as this server states it)", l.verifier_key, "mono");
    fact("tree size", l.size);
    fact("root", l.root, "mono");
    fact("latest checkpoint", el("a", { href: "/checkpoint" }, "/checkpoint"));
    const g = growth(l);
    const wit = el("section", { id: "witnesses" }, el("h2", {}, "Witnesses and their latest cosignatures"));
    if (!l.witnesses.length) wit.append(el("p", { class: "muted" }, "no witness cosignature here (witnesses keep theirs; `serve --witness` serves a cosigned checkpoint, `ledger publish --witness` gathers them on the published one)"));
    else wit.append(table(["witness", "key id", "tree size", "cosigned at (UTC)", "on"], l.witnesses.map((w) => [w.name, w.key_id, w.size, time(w.timestamp), w.served ? "the checkpoint served now" : "a stored checkpoint"]), "witness-table"));
    const cps = el("section", { id: "checkpoints" }, el("h2", {}, "Signed checkpoints"),
      table(["tree size", "signed at (UTC)", "signatures"], l.checkpoints.slice().reverse().map((c) =>
        [c.size, time(c.created), c.signatures.map((s) => `${s.name} (${s.kind}, key id ${s.key_id})`).join("; ")]), "checkpoint-table"));
    const cols = el("section", { id: "collectors" }, el("h2", {}, "Trusted collectors"),
      l.collectors.length ? table(["name", "key", "trusted since (UTC)"], l.collectors.map((c) => [c.name, c.key, time(c.added_at)]), "collector-table")
        : el("p", { class: "muted" }, "none"));
    m.replaceChildren(dl, g.sec, wit, cps, cols, proofFile());
    g.draw();
    await HT.mark("ledger");
  }

  document.addEventListener("DOMContentLoaded", main);
})();
