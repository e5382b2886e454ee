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
    load_proof,
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


def _raw_signed_at(doc: dict[str, Any], at: int, written: str | None = None) -> str:
    """`doc`'s JSON text with enrolled_at `at` (spelled `written`, when given), carrying
    COLLECTOR's raw Ed25519 signature over the enrollment text with `at` (a time the
    signer may refuse to make)."""
    d = copy.deepcopy(doc)
    e = d["enrollment"]
    text = (f"hashtrail enrollment v1\ndevice {d['device']['id']}\npub {d['device']['pub']}"
            f"\nlabel {e['label']}\nboard {e['board']}\nfw {e['fw']}\nenrolled_at {at}\n")
    e["enrolled_at"] = at
    e["signature"]["sig"] = COLLECTOR.sign(text.encode("utf-8")).hex()
    out = json.dumps(d)
    return out if written is None else _respell(out, f'"enrolled_at": {at}',
                                                f'"enrolled_at": {written}')


def _respell(text: str, old: str, new: str) -> str:
    assert text.count(old) == 1, old
    return text.replace(old, new)


def _text_cases(fl: FleetLedger) -> list[tuple[str, str]]:
    """Proof texts whose reading JSON.parse cannot tell from another's (a number's
    spelling, a field named twice) and fields the page once took more loosely than
    Python (types, large integers, a chain's length)."""
    docs = _proofs(fl)
    good, cp = docs["xss"], docs["cp"]
    at = good["enrollment"]["enrolled_at"]
    text = json.dumps(good)
    unsigned = {**copy.deepcopy(good), "format": "hashtrail-proof/2"}
    del unsigned["enrollment"]["signature"]
    no_key = copy.deepcopy(good)
    del no_key["verifier_key"]
    long_chain = copy.deepcopy(cp)
    long_chain["device_signature"]["chain"] = [""] * ((1 << 20) + 1)
    return [
        ("the honest proof's text", text),
        ("enrolled_at written as a float", json.dumps(_edit(good, enrolled_at=float(at)))),
        ("enrolled_at written with an exponent",
         _respell(text, f'"enrolled_at": {at}', f'"enrolled_at": {at}e0')),
        ("enrolled_at written as a float, /2",
         json.dumps({**_edit(unsigned, enrolled_at=float(at))})),
        ("enrolled_at NaN", _respell(text, f'"enrolled_at": {at}', '"enrolled_at": NaN')),
        ("enrolled_at written -0, signed over 0", _raw_signed_at(good, 0, "-0")),
        ("enrolled_at 2^60, signed by the collector", _raw_signed_at(good, 1 << 60)),
        ("enrolled_at 2^63 - 1, signed by the collector", _raw_signed_at(good, (1 << 63) - 1)),
        ("enrolled_at 2^63, raw-signed by the collector", _raw_signed_at(good, 1 << 63)),
        ("enrolled_at 2^60, unsigned", json.dumps({**_edit(unsigned, enrolled_at=1 << 60)})),
        ("leaf_index written as a float",
         json.dumps({**good, "leaf_index": float(good["leaf_index"])})),
        ("tree_size written as a float",
         json.dumps({**good, "tree_size": float(good["tree_size"])})),
        ("the enrollment names label twice, the signed one last",
         _respell(text, '"label": ', '"label": "another room", "label": ')),
        ("the proof names tree_size twice",
         _respell(text, '"tree_size": ', '"tree_size": 1, "tree_size": ')),
        ("an enrollment field named __proto__",
         _respell(text, '"label": ', '"__proto__": {}, "label": ')),
        ("device id as a list", json.dumps({**good, "device": {
            **good["device"], "id": [good["device"]["id"]]}})),
        ("device fingerprint as a list", json.dumps({**good, "device": {
            **good["device"], "fingerprint": [good["device"]["fingerprint"]]}})),
        ("no verifier_key (the pinned key is meant)", json.dumps(no_key)),
        ("a chain of 2^20 + 1 entries", json.dumps(long_chain)),
        ("a collector key name with a lone surrogate", _respell(
            text, f'"key": "{good["enrollment"]["signature"]["key"][0]}',
            '"key": "\\ud800')),
        ("not JSON", text[:-1]),
        ("extra data after the proof", text + " {}"),
    ]


def _python_text(text: str, key: str, collectors: list[str]
                 ) -> tuple[str, str | None, bool]:
    """`_python` on a proof's text, read as `verify-proof` reads a file."""
    try:
        doc = load_proof(text)
    except ProofError as err:
        return "fail", err.step, False
    return _python(doc, key, collectors)


def _agree(what: str, res: dict[str, Any], want: tuple[str, str | None, bool]) -> None:
    """The page's result `res` is the Python checker's `want` (same step, signer, trust)."""
    failed = [s["step"] for s in res["steps"] if not s["ok"]]
    where = (what, want, res["steps"])
    if want[0] == "pass":
        assert res["ok"] and failed == [], where
        e = res["enrollment"]
        assert (e["signer"], e["trusted"]) == want[1:], where
    elif want[1] == "input":
        assert not res["ok"] and failed[0] == "input", where
    else:
        assert not res["ok"] and failed == [want[1]], where


def test_the_page_reads_a_proofs_text_as_python_does(fl: FleetLedger, url: str,
                                                     page: Page) -> None:
    """A number written as a float (1700000000.0, 1.7e9) is refused where an integer is
    due, a field named twice is refused, an enrolled_at beyond 2^53 is exact (signed up
    to 2^63 - 1, no text beyond), a device id or fingerprint must be a string, a chain
    at most 2^20 entries: in every case the page decides as `verify-proof` does, in the
    ledger page's "check a proof file" and in the device page's "verify" (the proof as
    the server's bytes). Before, JSON.parse made 1700000000.0 the integer and the page
    passed the enrollment Python refuses."""
    cases = _text_cases(fl)
    p = page.page
    # the ledger page's proof file box, given the text with enrolled_at as a float
    p.goto(f"{url}ledger")
    p.wait_for_selector("#check-proof")
    p.fill("#ledger-key", fl.verifier_key)
    p.click("#ledger-key-pin")
    floated = dict(cases)["enrolled_at written as a float"]
    assert _python_text(floated, fl.verifier_key, []) == ("fail", "input", False)
    p.fill("#proof-text", floated)
    p.click("#check-proof")
    p.wait_for_selector("#file-result .verdict")
    assert p.get_attribute("#file-result .verdict", "data-verdict") == "fail"
    assert "enrollment enrolled_at is not an unsigned integer" in \
        p.inner_text('#file-result li[data-step="input"]')
    # the device page's verify, the server's proof spelling enrolled_at as a float
    did = fl.ids["xss"]
    doc = _proof_text(fl, did, 60)
    at = json.loads(doc)["enrollment"]["enrolled_at"]
    p.route(f"**/api/proof/{did}/60", lambda route: route.fulfill(
        status=200, content_type="application/json",
        body=_respell(doc, f'"enrolled_at": {at}', f'"enrolled_at": {at}.0')))
    verdict, steps, kind = _verify(p, url, did, 60)
    assert (verdict, steps["input"], kind) == ("fail", "0", None)
    # every case, with and without the collector's key pinned
    pins = [[], [COLLECTOR.verifier().to_string()]]
    got = p.evaluate("""async ([cases, key, pins]) => {
        const out = [];
        for (const [what, text] of cases)
          for (const pin of pins)
            out.push(await HashtrailProof.check(text, key, null, pin.join(" ")));
        return out; }""", [cases, fl.verifier_key, pins])
    results = iter(got)
    for what, text in cases:
        for pin in pins:
            res = next(results)
            _agree(what, res, _python_text(text, fl.verifier_key, pin))
            if what.startswith("enrolled_at 2^60") and res["ok"]:    # as verify-proof says
                assert f"enrolled at unix time {1 << 60}" in res["enrollment"]["line"]
    assert page.errors == [], page.errors


def _proof_text(fl: FleetLedger, did: str, seq: int) -> str:
    with Ledger.open(fl.path) as led:
        return json.dumps(build_inclusion_proof(led, did, seq))


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
            out.push(await HashtrailProof.check(text, key, null, pin.join(" ")));
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
          out.push(Array.from(await HashtrailProof.enrollmentBytes(t)));
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
    loc = p.locator("#proof-result .enrollment[data-enrollment]")
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
            "proof's key") in p.inner_text("#proof-result .enrollment[data-enrollment]")
    verdict, steps, kind = _verify(p, url, cp, 39)
    assert (verdict, steps["enrollment"], kind) == ("pass", "1", "unsigned")
    assert p.inner_text("#proof-result .enrollment[data-enrollment]").startswith(
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
    assert "a key you trust" in p.inner_text("#proof-result .enrollment[data-enrollment]")
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


def test_the_proof_result_shows_the_enrollment_once(fl: FleetLedger, url: str,
                                                    page: Page) -> None:
    """What the enrollment rests on is said once in a proof's result, in its step (it
    was said twice: the step's detail and a paragraph under the steps repeating it), on
    the device page's "verify" and the ledger page's proof file check, signed or not."""
    p = page.page
    p.goto(f"{url}ledger")
    p.wait_for_selector("#check-proof")
    p.fill("#ledger-key", fl.verifier_key)
    p.click("#ledger-key-pin")
    docs = _proofs(fl)
    for doc in (docs["xss"], docs["cp"]):
        p.fill("#proof-text", json.dumps(doc))
        p.click("#check-proof")
        p.wait_for_selector('#file-result .verdict[data-verdict="pass"]')
        shown = p.inner_text("#file-result")
        line = p.inner_text('#file-result li[data-step="enrollment"]').split(
            "enrollment: ", 1)[1]
        assert line.startswith("enrollment "), line
        assert shown.count(line) == 1 and shown.count("enrollment signed by") + \
            shown.count("enrollment not signed") == 1, shown
    for role, seq, kind in (("xss", 60, "signed"), ("cp", 39, "unsigned")):
        verdict, _, got = _verify(p, url, fl.ids[role], seq)
        assert (verdict, got) == ("pass", kind)
        shown = p.inner_text("#proof-result")
        line = p.inner_text("#proof-result .enrollment[data-enrollment]")
        assert shown.count(line) == 1, shown
        assert p.locator("#proof-result .enrollment").count() == 1
    assert page.errors == [], page.errors
