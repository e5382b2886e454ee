"""The fleet view in headless Chromium (tests/e2e/browserkit.py): one browser and one
small served ledger for the module (tests/e2e/webkit.py: a device in each state verify
reports, one labelled with markup).

What must hold in the browser: the fleet table says what `hashtrail verify --json`
says, sorts and filters; the device page plots every sensor (a screenshot is kept as an
artifact, its path printed) and zooms; the proof check in the page passes on a good
proof, for a device signing every entry and one signing checkpoints only, and fails
visibly on every bit-flipped proof at the step the Python checker names; a label or
sensor name holding markup shows as text and never runs (no script flag set, no CSP
violation reported)."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from typing import Any

import pytest
from browserkit import Page, artifacts, require_chromium
from hashtrail.cli import main
from hashtrail.errors import HashtrailError
from hashtrail.formats import note
from hashtrail.ledger.ledger_db import Ledger
from hashtrail.ledger.proof import ProofError, build_inclusion_proof, check_inclusion_proof
from webkit import XSS_LABEL, XSS_SENSOR, FleetLedger, flipped_proofs, make_fleet_ledger, served

pytest.importorskip("aiohttp")
require_chromium()
pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def fl(tmp_path_factory: pytest.TempPathFactory) -> FleetLedger:
    return make_fleet_ledger(tmp_path_factory.mktemp("webb") / "fleet.db")


@pytest.fixture(scope="module")
def url(fl: FleetLedger) -> Iterator[str]:
    with served(fl.path) as u:
        yield u


def _utc(t: int | None) -> str:
    return "-" if t is None else time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(t))


def _inert(p: Page) -> None:
    """Nothing a device wrote ran: no flag set by its markup, no script error, no CSP
    violation (which inline markup would have caused)."""
    assert p.page.evaluate("window.__pwned") is None
    assert p.errors == [], p.errors


def test_fleet_page_shows_what_verify_json_says(
        fl: FleetLedger, url: str, page: Page, capsys: pytest.CaptureFixture[str]) -> None:
    capsys.readouterr()
    main(["verify", "--ledger", str(fl.path), "--json"])
    want = json.loads(capsys.readouterr().out)
    p = page.page
    p.goto(url)
    p.wait_for_selector("#fleet tbody tr")
    rows = p.evaluate("""() => [...document.querySelectorAll('#fleet tbody tr')].map(tr => {
        const c = (k) => tr.querySelector(`[data-col="${k}"]`);
        return {id: tr.dataset.device, label: c('label').textContent,
                label_nodes: c('label').querySelectorAll('script, img').length,
                entries: c('entries').textContent, pending: c('pending').textContent,
                status: c('status').querySelector('.status-text').textContent,
                first: c('first_t').textContent, last: c('last_t').textContent}; })""")
    assert len(rows) == len(want["devices"]) == 4
    got = {r["id"]: r for r in rows}
    for d in want["devices"]:
        r = got[d["device_id"]]
        assert (r["label"], r["entries"], r["pending"], r["status"], r["first"], r["last"]) == \
            (d["label"], str(d["entries"]), str(d["pending"]), d["status"], _utc(d["first_t"]),
             _utc(d["last_t"]))
    assert got[fl.ids["xss"]]["label"] == XSS_LABEL and got[fl.ids["xss"]]["label_nodes"] == 0
    assert p.inner_text("#verdict") == ("OK" if want["ok"] else "PROBLEMS FOUND")
    shot = artifacts() / "web-fleet.png"
    p.screenshot(path=str(shot), full_page=True)
    with capsys.disabled():
        print(f"\n  fleet page screenshot: {shot}")
    # sort by entries, both ways; filter as you type and by state
    p.click('th[data-key="entries"]')
    order = p.eval_on_selector_all("#fleet tbody tr td[data-col=entries]",
                                   "tds => tds.map(t => +t.textContent)")
    assert order == sorted(order)
    p.click('th[data-key="entries"]')
    order = p.eval_on_selector_all("#fleet tbody tr td[data-col=entries]",
                                   "tds => tds.map(t => +t.textContent)")
    assert order == sorted(order, reverse=True)
    p.fill("#filter", "truck")
    assert p.eval_on_selector_all("#fleet tbody tr:not([hidden])",
                                  "trs => trs.map(t => t.dataset.device)") == [fl.ids["forked"]]
    p.fill("#filter", "")
    p.select_option("#which", "held")
    assert p.eval_on_selector_all("#fleet tbody tr:not([hidden])",
                                  "trs => trs.map(t => t.dataset.device)") == [fl.ids["cp"]]
    _inert(page)


def test_device_plot_zooms_and_is_kept_as_a_screenshot(
        fl: FleetLedger, url: str, page: Page, capsys: pytest.CaptureFixture[str]) -> None:
    p = page.page
    p.goto(f"{url}device/{fl.ids['xss']}")
    p.wait_for_selector("#entries-table tbody tr")
    assert p.locator(".chart canvas").count() == 2
    titles = p.eval_on_selector_all(".chart .u-title", "ts => ts.map(t => t.textContent)")
    assert sorted(titles) == sorted(["temp (Cel)", f"{XSS_SENSOR} (%RH)"])
    assert p.inner_text("dd.label") == XSS_LABEL
    shot = artifacts() / "web-device-plot.png"
    p.screenshot(path=str(shot), full_page=True)
    assert shot.stat().st_size > 10_000
    with capsys.disabled():
        print(f"\n  device plot screenshot: {shot}")
    before = (p.input_value("#from"), p.input_value("#to"))
    box = p.locator(".chart .u-over").first.bounding_box()
    assert box is not None
    y = box["y"] + box["height"] / 2
    p.mouse.move(box["x"] + box["width"] * 0.3, y)
    p.mouse.down()
    p.mouse.move(box["x"] + box["width"] * 0.6, y, steps=5)
    p.mouse.up()
    after = (p.input_value("#from"), p.input_value("#to"))
    assert before[0] < after[0] < after[1] < before[1]      # zoomed in, both plots follow
    p.select_option("#range", "all")
    assert (p.input_value("#from"), p.input_value("#to")) == before
    _inert(page)


def _verify_in_page(p: Any, seq: int) -> tuple[str, dict[str, str]]:
    p.click(f'button.verify[data-seq="{seq}"]')
    p.wait_for_selector("#proof-result .verdict")
    verdict = p.get_attribute("#proof-result .verdict", "data-verdict")
    steps = p.eval_on_selector_all("#proof-result li", "ls => Object.fromEntries("
                                   "ls.map(l => [l.dataset.step, l.dataset.ok]))")
    return verdict, steps


def test_proof_check_in_the_page_passes(fl: FleetLedger, url: str, page: Page) -> None:
    p = page.page
    for role in ("xss", "cp"):         # a per-entry signature; a device checkpoint + links
        p.goto(f"{url}device/{fl.ids[role]}")
        p.wait_for_selector("#entries-table tbody tr")
        p.fill("#ledger-key", fl.verifier_key)
        p.click("#ledger-key-pin")
        newest = p.eval_on_selector("button.verify", "b => +b.dataset.seq")
        assert newest == {"xss": 60, "cp": 39}[role]     # held entries are not accepted
        for seq in (newest, 1):
            if not p.locator(f'button.verify[data-seq="{seq}"]').count():
                p.click("#next")                          # the table's older page
                p.wait_for_selector(f'button.verify[data-seq="{seq}"]')
            verdict, steps = _verify_in_page(p, seq)
            assert verdict == "pass", (role, seq, p.inner_text("#proof-result"))
            assert set(steps) == {"input", "device key", "leaf", "device signature",
                                  "inclusion", "checkpoint", "ledger signature",
                                  "enrollment"}
            assert set(steps.values()) == {"1"}
    # the pinned key is kept in the browser: a fresh page has it
    p.goto(f"{url}ledger")
    p.wait_for_selector("#checkpoint-table")
    assert p.input_value("#ledger-key") == fl.verifier_key
    assert p.locator("#growth-chart canvas").count() == 1
    p.screenshot(path=str(artifacts() / "web-ledger.png"), full_page=True)
    _inert(page)


def test_a_bit_flipped_proof_fails_visibly_at_the_step_python_names(
        fl: FleetLedger, url: str, page: Page, capsys: pytest.CaptureFixture[str]) -> None:
    key = note.Verifier.from_string(fl.verifier_key)
    with Ledger.open(fl.path) as led:
        docs = [build_inclusion_proof(led, fl.ids["xss"], 30),
                build_inclusion_proof(led, fl.ids["cp"], 7)]
    cases: list[tuple[str, dict[str, Any], str]] = []
    for doc in docs:
        check_inclusion_proof(doc, key)
        for what, bad in flipped_proofs(doc):
            try:
                check_inclusion_proof(bad, key)
            except ProofError as e:
                cases.append((what, bad, e.step))
            except HashtrailError as e:      # pragma: no cover - every flip is a ProofError
                raise AssertionError(what) from e
            else:
                raise AssertionError(f"python accepted a proof with a flipped {what}")
    assert len(cases) > 30
    p = page.page
    p.goto(f"{url}ledger")
    p.wait_for_selector("#check-proof")
    results = p.evaluate("""async ([cases, key]) => {
        const out = [];
        for (const [what, doc] of cases) out.push(await HashtrailProof.check(doc, key, null));
        return out; }""", [[[w, json.dumps(d)] for w, d, _ in cases], fl.verifier_key])
    for (what, _, step), res in zip(cases, results, strict=True):
        failed = [s["step"] for s in res["steps"] if not s["ok"]]
        assert not res["ok"] and step in failed, (what, step, res["steps"])
    # and in the page itself: the good proof passes, a flipped one fails visibly
    p.fill("#ledger-key", fl.verifier_key)
    for doc, want in ((docs[0], "pass"), (cases[0][1], "fail"), (cases[-1][1], "fail")):
        p.fill("#proof-text", json.dumps(doc))
        p.click("#check-proof")
        p.wait_for_selector(f'#file-result .verdict[data-verdict="{want}"]')
        shown = p.inner_text("#file-result")
        assert shown.startswith("PROOF VERIFIED" if want == "pass" else "PROOF FAILED"), shown
        if want == "fail":
            assert "\u2717 failed" in shown
            shot = artifacts() / "web-proof-flipped.png"
            p.locator("#check-file").screenshot(path=str(shot))
    with capsys.disabled():
        print(f"\n  refused bit-flipped proof screenshot: {artifacts() / 'web-proof-flipped.png'}")
    # a key the user did not pin (another ledger's) fails the ledger signature step
    other = note.Signer.generate("example.com/fleet").verifier().to_string()
    p.fill("#ledger-key", other)
    p.fill("#proof-text", json.dumps(docs[0]))
    p.click("#check-proof")
    p.wait_for_selector('#file-result .verdict[data-verdict="fail"]')
    assert p.get_attribute('#file-result li[data-step="ledger signature"]', "data-ok") == "0"
    assert p.get_attribute('#file-result li[data-step="inclusion"]', "data-ok") == "1"
    _inert(page)
