"""The enrollment's collector signature in the fleet view, in headless Chromium
(tests/e2e/browserkit.py; docs/LEDGER.md "Proofs", README "The fleet view in the
browser").

What must hold: the page's proof check (proofcheck.js) decides every enrollment as
`hashtrail.ledger.proof.check_inclusion_proof` decides it (same step, same signer, same
trust), with no collector key pinned, with the enrolling collector's key pinned and with
another key pinned, on the honest proof and on each way an operator can touch the
enrollment (a field edited, the key swapped, re-signed by its own key, another device's
signature, the signature stripped or removed, malformed fields, texts no enrollment can
carry); the bytes it verifies are the documented ones (checked with `cryptography`
alone); and the fleet table and the device page say what `hashtrail devices list` says
of each enrollment: signed by collector NAME+KEYID, unsigned (operator's word), or a
signature that does not verify. On the code before (the page did not check enrollments),
every test here fails.
"""

from __future__ import annotations

import copy
import json
import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from browserkit import Page, artifacts, require_chromium
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from hashtrail.cli import main
from hashtrail.formats import note
from hashtrail.formats.enrollment import sign_enrollment
from hashtrail.ledger.ledger_db import Ledger
from hashtrail.ledger.proof import (
    ProofCheck,
    ProofError,
    build_inclusion_proof,
    check_inclusion_proof,
)
from ledgerkit import COLLECTOR
from test_proof_independent import independent_enrollment_text
from webkit import FleetLedger, make_fleet_ledger, served

pytest.importorskip("aiohttp")
require_chromium()
pytestmark = pytest.mark.e2e

OPERATOR = note.Signer("collector-operator", bytes(range(100, 132)))
SIGNED = f"enrollment signed by collector collector-test+{COLLECTOR.key_id.hex()}"
UNSIGNED = "unsigned enrollment (operator's word)"
INVALID = "enrollment signature does not verify (operator's word; see verify)"


@pytest.fixture(scope="module")
def fl(tmp_path_factory: pytest.TempPathFactory) -> FleetLedger:
    """The fleet ledger, with the operator's hand on two enrollments: the "cp" device's
    signature stripped, the "forked" device's label edited after the collector signed."""
    f = make_fleet_ledger(tmp_path_factory.mktemp("webe") / "fleet.db")
    db = sqlite3.connect(f.path)
    with db:
        db.execute("UPDATE devices SET enroll_sig=NULL, enroll_key=NULL WHERE device_id=?",
                   (f.ids["cp"],))
        db.execute("UPDATE devices SET label='truck 9' WHERE device_id=?", (f.ids["forked"],))
    db.close()
    return f


@pytest.fixture(scope="module")
def url(fl: FleetLedger) -> Iterator[str]:
    with served(fl.path) as u:
        yield u


def _proofs(fl: FleetLedger) -> dict[str, dict[str, Any]]:
    with Ledger.open(fl.path) as led:
        return {role: build_inclusion_proof(led, fl.ids[role], seq)
                for role, seq in (("xss", 30), ("revoked", 3), ("cp", 7))}


def _resigned(doc: dict[str, Any], signer: note.Signer, **fields: Any) -> dict[str, Any]:
    """`doc` with its enrollment fields changed and signed again by `signer`."""
    d = copy.deepcopy(doc)
    e = d["enrollment"]
    e.update(fields)
    sig = sign_enrollment(signer, d["device"]["id"], bytes.fromhex(d["device"]["pub"]),
                          e["label"], e["board"], e["fw"], e["enrolled_at"])
    e["signature"] = {"key": signer.verifier().to_string(), "sig": sig.hex()}
    return d


def _raw_signed(doc: dict[str, Any], label: str, signed_label: str) -> dict[str, Any]:
    """`doc` with `label`, carrying COLLECTOR's raw Ed25519 signature over the
    enrollment text written with `signed_label` (a text the signer refuses to make)."""
    d = copy.deepcopy(doc)
    e = d["enrollment"]
    text = (f"hashtrail enrollment v1\ndevice {d['device']['id']}\npub {d['device']['pub']}"
            f"\nlabel {signed_label}\nboard {e['board']}\nfw {e['fw']}\nenrolled_at "
            f"{e['enrolled_at']}\n")
    e["label"] = label
    e["signature"]["sig"] = COLLECTOR.sign(text.encode("utf-8")).hex()
    return d


def _edit(doc: dict[str, Any], **fields: Any) -> dict[str, Any]:
    d = copy.deepcopy(doc)
    d["enrollment"].update(fields)
    return d


def _cases(fl: FleetLedger) -> list[tuple[str, dict[str, Any]]]:
    docs = _proofs(fl)
    good, other = docs["xss"], docs["revoked"]
    e, sig = good["enrollment"], good["enrollment"]["signature"]
    no_sig = copy.deepcopy(good)
    del no_sig["enrollment"]["signature"]
    v2 = {**copy.deepcopy(no_sig), "format": "hashtrail-proof/2"}
    return [
        ("the honest proof", good),
        ("a device signing checkpoints only, its signature stripped", docs["cp"]),
        ("label edited", _edit(good, label="another room")),
        ("board edited", _edit(good, board="esp32s3")),
        ("firmware edited", _edit(good, fw="9.9.9")),
        ("enrollment time edited", _edit(good, enrolled_at=e["enrolled_at"] + 1)),
        ("another collector's key named", _edit(good, signature={
            **sig, "key": OPERATOR.verifier().to_string()})),
        ("re-signed by the operator's key", _resigned(good, OPERATOR, label="operator's")),
        ("another device's signature", _edit(good, signature=other["enrollment"]["signature"])),
        ("signature stripped", _edit(good, signature=None)),
        ("signature field removed from a /3", no_sig),
        ("a /2 proof (no signature field)", v2),
        ("a /2 proof with a signature", {**copy.deepcopy(good), "format": "hashtrail-proof/2"}),
        ("collector key with a trailing space", _edit(good, signature={
            **sig, "key": sig["key"] + " "})),
        ("collector key id wrong", _edit(good, signature={
            **sig, "key": sig["key"].replace("+", "+0", 1)[:len(sig["key"])]})),
        ("signature of 63 bytes", _edit(good, signature={**sig, "sig": sig["sig"][:-2]})),
        ("unknown enrollment field", _edit(good, note="x")),
        ("unknown proof field", {**copy.deepcopy(good), "note": "x"}),
        ("unknown device field", {**copy.deepcopy(good), "device": {**good["device"],
                                                                    "label": "x"}}),
        ("unknown device signature field", {**copy.deepcopy(good), "device_signature": {
            **good["device_signature"], "cose": "00"}}),
        ("label not a string", _edit(good, label=7)),
        ("collector not a string", _edit(good, collector=7)),
        ("a label with a control character, raw-signed", _raw_signed(good, "room\x01",
                                                                     "room\x01")),
        ("a label of 201 characters, raw-signed", _raw_signed(good, "x" * 201, "x" * 201)),
        ("a label with a lone surrogate, signed as U+FFFD", _raw_signed(good, "room\ud800",
                                                                        "room\ufffd")),
        ("a label in Unicode, re-signed by the collector",
         _resigned(good, COLLECTOR, label="K\u00fchlraum \u2744 \U0001f9ca")),
        ("a label of 200 emoji (400 UTF-16 units), re-signed by the collector",
         _resigned(good, COLLECTOR, label="\U0001f9ca" * 200)),
    ]


def _python(doc: dict[str, Any], key: str, collectors: list[str]
            ) -> tuple[str, str | None, bool]:
    """("pass", signer, trusted) or ("fail", step, False), as the Python checker says."""
    try:
        pc: ProofCheck = check_inclusion_proof(
            doc, note.Verifier.from_string(key),
            collector_keys=[note.Verifier.from_string(k) for k in collectors])
    except ProofError as err:
        return "fail", err.step, False
    return "pass", pc.enrollment_signer, pc.enrollment_trusted


def test_the_page_decides_every_enrollment_as_python_does(fl: FleetLedger, url: str,
                                                          page: Page) -> None:
    cases = _cases(fl)
    pins = [[], [COLLECTOR.verifier().to_string()], [OPERATOR.verifier().to_string()],
            [OPERATOR.verifier().to_string(), COLLECTOR.verifier().to_string()]]
    p = page.page
    p.goto(f"{url}ledger")
    p.wait_for_selector("#check-proof")
    got = p.evaluate("""async ([cases, key, pins]) => {
        const out = [];
        for (const [what, text] of cases)
          for (const pin of pins)
            out.push(await HashtrailProof.check(JSON.parse(text), key, null, pin.join(" ")));
        return out; }""", [[[w, json.dumps(d)] for w, d in cases], fl.verifier_key, pins])
    results = iter(got)
    outcomes = set()
    for what, doc in cases:
        for pin in pins:
            res = next(results)
            want = _python(doc, fl.verifier_key, pin)
            failed = [s["step"] for s in res["steps"] if not s["ok"]]
            where = (what, len(pin), want, res["steps"])
            if want[0] == "pass":
                assert res["ok"] and failed == [], where
                e = res["enrollment"]
                assert (e["signer"], e["trusted"]) == want[1:], where
                assert e["line"].startswith(
                    "enrollment not signed (the operator's statement): " if want[1] is None
                    else f"enrollment signed by collector {want[1]}, a key you trust: "
                    if want[2] else f"enrollment signed by collector {want[1]} (the "
                    "proof's key; pin a collector key to require one you trust): "), where
            elif want[1] == "input":
                assert not res["ok"] and failed[0] == "input", where
            else:
                assert not res["ok"] and failed == [want[1]], where
            outcomes.add((want[0], want[1] if want[0] == "fail" else
                          ("unsigned" if want[1] is None else
                           "trusted" if want[2] else "signed")))
    # every outcome the CLI knows was met
    assert outcomes == {("pass", "unsigned"), ("pass", "signed"), ("pass", "trusted"),
                        ("fail", "enrollment"), ("fail", "input")}
    assert page.errors == [], page.errors


def test_the_bytes_the_page_verifies_are_the_documented_ones(fl: FleetLedger, url: str,
                                                             page: Page) -> None:
    """proofcheck.js's enrollment bytes equal the text built from docs/BUNDLE.md alone
    (test_proof_independent), and the collector's signature verifies over them with
    `cryptography`: for the stored enrollment and for one in Unicode."""
    good = _proofs(fl)["xss"]
    docs = [good, _resigned(good, COLLECTOR, label="K\u00fchlraum \u2744 \U0001f9ca")]
    p = page.page
    p.goto(f"{url}ledger")
    p.wait_for_selector("#check-proof")
    got = p.evaluate("""async (texts) => {
        const out = [];
        for (const t of texts)
          out.push(Array.from(await HashtrailProof.enrollmentBytes(JSON.parse(t))));
        return out; }""", [json.dumps(d) for d in docs])
    pub = Ed25519PublicKey.from_public_bytes(COLLECTOR.pub)
    for doc, raw in zip(docs, got, strict=True):
        assert bytes(raw) == independent_enrollment_text(doc)
        pub.verify(bytes.fromhex(doc["enrollment"]["signature"]["sig"]), bytes(raw))
    assert bytes(got[1]).decode().split("\n")[3] == "label K\u00fchlraum \u2744 \U0001f9ca"


def _devices_list(fl: FleetLedger, capsys: pytest.CaptureFixture[str]) -> dict[str, str]:
    capsys.readouterr()
    assert main(["devices", "list", "--ledger", str(fl.path), "--json"]) == 0
    return {r["device"]: r["enrollment"]["text"] for r in json.loads(capsys.readouterr().out)}


def test_fleet_and_device_pages_say_whose_word_the_enrollment_is(
        fl: FleetLedger, url: str, page: Page, capsys: pytest.CaptureFixture[str]) -> None:
    want = {fl.ids["xss"]: SIGNED, fl.ids["revoked"]: SIGNED, fl.ids["cp"]: UNSIGNED,
            fl.ids["forked"]: INVALID}
    assert _devices_list(fl, capsys) == want
    p = page.page
    p.goto(url)
    p.wait_for_selector("#fleet tbody tr")
    shown = p.evaluate("""() => Object.fromEntries([...document.querySelectorAll(
        '#fleet tbody tr')].map(tr => [tr.dataset.device,
        tr.querySelector('[data-col="enrollment"]').textContent]))""")
    assert shown == want
    p.fill("#filter", "unsigned")
    assert p.eval_on_selector_all("#fleet tbody tr:not([hidden])",
                                  "trs => trs.map(t => t.dataset.device)") == [fl.ids["cp"]]
    for did, text in want.items():
        p.goto(f"{url}device/{did}")
        p.wait_for_selector("dd.enrollment")
        assert p.inner_text("dd.enrollment") == text
    assert page.errors == [], page.errors


def _verify(p: Any, url: str, did: str, seq: int) -> tuple[str, dict[str, str], str | None]:
    p.goto(f"{url}device/{did}")
    p.wait_for_selector(f'button.verify[data-seq="{seq}"]')
    p.click(f'button.verify[data-seq="{seq}"]')
    p.wait_for_selector("#proof-result .verdict")
    steps = p.eval_on_selector_all("#proof-result li", "ls => Object.fromEntries("
                                   "ls.map(l => [l.dataset.step, l.dataset.ok]))")
    loc = p.locator("#proof-result p.enrollment")
    kind = loc.get_attribute("data-enrollment") if loc.count() else None
    return p.get_attribute("#proof-result .verdict", "data-verdict"), steps, kind


def test_verify_in_the_device_page_shows_the_enrollment_three_ways(
        fl: FleetLedger, url: str, page: Page) -> None:
    """Without a collector key pinned: the signed enrollment is "the proof's key", the
    stripped one the operator's statement, the edited one refused at step enrollment.
    With the collector's key pinned: the signed one is "a key you trust" and the
    stripped one refused. The pinned key is kept in the browser."""
    p = page.page
    p.goto(f"{url}ledger")
    p.wait_for_selector("#ledger-key")
    p.fill("#ledger-key", fl.verifier_key)
    p.click("#ledger-key-pin")
    xss, cp, forked = fl.ids["xss"], fl.ids["cp"], fl.ids["forked"]
    verdict, steps, kind = _verify(p, url, xss, 60)
    assert (verdict, steps["enrollment"], kind) == ("pass", "1", "signed")
    assert (f"enrollment signed by collector collector-test+{COLLECTOR.key_id.hex()} (the "
            "proof's key") in p.inner_text("#proof-result p.enrollment")
    verdict, steps, kind = _verify(p, url, cp, 39)
    assert (verdict, steps["enrollment"], kind) == ("pass", "1", "unsigned")
    assert p.inner_text("#proof-result p.enrollment").startswith(
        "enrollment not signed (the operator's statement): label \"cold room 2\"")
    verdict, steps, kind = _verify(p, url, forked, 5)
    assert (verdict, kind) == ("fail", None)
    assert [s for s, ok in steps.items() if ok == "0"] == ["enrollment"]
    assert "the enrollment signature by collector collector-test+" in \
        p.inner_text('#proof-result li[data-step="enrollment"]')
    # the enrolling collector's key, pinned
    p.fill("#collector-key", COLLECTOR.verifier().to_string())
    p.click("#collector-key-pin")
    verdict, steps, kind = _verify(p, url, xss, 60)
    assert (verdict, kind) == ("pass", "trusted")
    assert "a key you trust" in p.inner_text("#proof-result p.enrollment")
    p.screenshot(path=str(artifacts() / "web-enrollment-trusted.png"), full_page=True)
    assert p.input_value("#collector-key") == COLLECTOR.verifier().to_string()
    verdict, steps, kind = _verify(p, url, cp, 39)
    assert (verdict, kind) == ("fail", None) and steps["enrollment"] == "0"
    assert "the enrollment is not signed by a collector" in \
        p.inner_text('#proof-result li[data-step="enrollment"]')
    # another key pinned: the collector's signature is not one you trust
    p.fill("#collector-key", OPERATOR.verifier().to_string())
    p.click("#collector-key-pin")
    verdict, steps, kind = _verify(p, url, xss, 60)
    assert (verdict, steps["enrollment"]) == ("fail", "0")
    assert "not by a collector key you pinned" in \
        p.inner_text('#proof-result li[data-step="enrollment"]')
    assert page.errors == [], page.errors


def test_the_ledger_page_checks_a_proof_files_enrollment(
        fl: FleetLedger, url: str, page: Page, tmp_path: Path) -> None:
    good = _proofs(fl)["xss"]
    p = page.page
    p.goto(f"{url}ledger")
    p.wait_for_selector("#check-proof")
    p.fill("#ledger-key", fl.verifier_key)
    for doc, want in ((good, "pass"), (_edit(good, label="another room"), "fail")):
        p.fill("#proof-text", json.dumps(doc))
        p.click("#check-proof")
        p.wait_for_selector(f'#file-result .verdict[data-verdict="{want}"]')
        assert p.get_attribute('#file-result li[data-step="enrollment"]', "data-ok") == \
            ("1" if want == "pass" else "0")
    assert page.errors == [], page.errors
