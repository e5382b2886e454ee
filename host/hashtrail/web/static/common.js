// Shared by the fleet view's pages. Every string that came from a device or the
// ledger goes into the DOM through `el` (textContent or attributes set one by one),
// never as HTML: a label like "<script>..." shows as those characters.
"use strict";

const HT = (() => {
  const KEY_STORE = "hashtrail.ledgerKey";
  const COLLECTOR_STORE = "hashtrail.collectorKeys";

  // el("td", {class: "x", title: t}, "text", childNode, ...)
  function el(tag, attrs, ...children) {
    const e = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (v === undefined || v === null || v === false) continue;
      if (k === "on") for (const [ev, fn] of Object.entries(v)) e.addEventListener(ev, fn);
      else if (k === "class") e.className = v;
      else e.setAttribute(k, String(v));
    }
    for (const c of children) {
      if (c === undefined || c === null) continue;
      e.append(c instanceof Node ? c : document.createTextNode(String(c)));
    }
    return e;
  }

  function time(t) {
    if (t === null || t === undefined) return "-";
    return new Date(t * 1000).toISOString().replace("T", " ").slice(0, 19);
  }

  async function getText(url) {
    const r = await fetch(url, { headers: { Accept: "application/json" } });
    if (!r.ok) throw new Error(`${url}: ${r.status} ${(await r.text()).trim()}`);
    return r.text();
  }
  const getJSON = async (url) => JSON.parse(await getText(url));

  function pinnedKey(store = KEY_STORE) {
    try { return localStorage.getItem(store) || ""; } catch (e) { return ""; }
  }
  function pinKey(text, store = KEY_STORE) {
    try { localStorage.setItem(store, text.trim()); } catch (e) { /* private mode */ }
  }

  // a key field with its "pin" button (kept in this browser)
  function pinBox(host, id, store, label, placeholder) {
    const input = el("input", { id, type: "text", size: 90, spellcheck: "false", placeholder });
    input.value = pinnedKey(store);
    const saved = el("span", { class: "muted", id: `${id}-saved` });
    const save = el("button", { id: `${id}-pin`, type: "button", on: { click: () => {
      pinKey(input.value, store);
      saved.textContent = input.value.trim() ? "pinned (kept in this browser)" : "cleared";
    } } }, "pin");
    host.append(el("label", { for: id }, label), input, " ", save, " ", saved);
    return input;
  }

  // the "ledger key you trust" field, on every page that checks proofs
  function keyBox(host) {
    return pinBox(host, "ledger-key", KEY_STORE, "Ledger key you trust: ",
                  "<name>+<key id>+<base64 key>, as `hashtrail ledger init` printed it");
  }

  // the collector keys the user trusts to have enrolled devices (verify-proof
  // --collector-key): optional; with one pinned, an enrollment signed by another key or
  // by none fails the proof
  function collectorBox(host) {
    return pinBox(host, "collector-key", COLLECTOR_STORE, "Collector keys you trust (optional): ",
                  "<name>+<key id>+<base64 key> as `hashtrail export --show-key` prints it; several apart by spaces");
  }

  // the steps of a proof check, passed or failed, with the verdict first. What the
  // enrollment rests on is said once, in its step (its detail is that line), marked
  // as signed (good) or the operator's statement (warn)
  function renderCheck(host, res, title) {
    host.replaceChildren();
    host.append(el("div", { class: "verdict " + (res.ok ? "pass" : "fail"), "data-verdict": res.ok ? "pass" : "fail" },
      (res.ok ? "PROOF VERIFIED" : "PROOF FAILED") + (title ? ": " + title : "")));
    const ol = el("ol", { class: "steps" });
    for (const s of res.steps) {
      const e = s.step === "enrollment" && s.ok ? res.enrollment : null;
      const detail = e ? el("span", { class: "enrollment " + (e.signer ? "good" : "warn"),
                                      "data-enrollment": e.trusted ? "trusted" : e.signer ? "signed" : "unsigned" }, s.detail)
        : s.detail;
      ol.append(el("li", { class: s.ok ? "pass" : "fail", "data-step": s.step, "data-ok": s.ok ? "1" : "0" },
        el("span", { class: "mark" }, s.ok ? "\u2713 passed" : "\u2717 failed"), " ",
        el("strong", {}, s.step), ": ", detail));
    }
    host.append(ol);
  }

  function statusClass(d) {
    if (d.problems && d.problems.length) return "bad";
    if (d.alarm || d.status === "forked") return "bad";
    if (d.status === "revoked") return "warn";
    if (d.pending || d.status !== "ok") return "warn";
    return "good";
  }

  function mark(name) {
    performance.mark(name);
    return new Promise((resolve) => requestAnimationFrame(() => setTimeout(() => {
      performance.mark(name + "-painted");
      const m = performance.getEntriesByName(name + "-painted")[0];
      window.__hashtrail = window.__hashtrail || {};
      window.__hashtrail[name] = m.startTime;
      resolve(m.startTime);
    }, 0)));
  }

  // a time axis over one instant (checkpoints signed in one second, a single reading)
  // spans a minute either side instead of uPlot's default of years
  // (uPlot has already widened such an axis to a day by then: the data tell)
  function timeRange(u, min, max) {
    const xs = u.data[0];
    return xs.length && xs[0] === xs[xs.length - 1] ? [xs[0] - 60, xs[0] + 60] : [min, max];
  }

  return { el, time, timeRange, getJSON, getText, pinnedKey, pinKey, keyBox, collectorBox, renderCheck, statusClass, mark };
})();
