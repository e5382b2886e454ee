"""Every enrollment provable to the collector that made it (issue 10; docs/BUNDLE.md
"Enrollment signatures", docs/LEDGER.md "Proofs", docs/THREATS.md).

End to end through the real CLI, on both ledger backends (`ledger_at`: a SQLite file and
a PostgreSQL database): two collector stores enroll devices, `hashtrail export` signs
each enrollment with the store's key, the ledger trusts both collectors and reconciles
their bundles, `ledger prove` carries the enrollment signature and `ledger verify-proof
--collector-key` checks it against the key the user brings. Then the ledger operator,
who holds the ledger and can run any SQL on it, edits a stored label, says another
collector enrolled a device, or copies another device's signature: `verify --ledger`
names the device and `verify-proof --collector-key` refuses the proof at step
'enrollment'. On the code before enrollment signatures (main at cbeab31) each attack
test fails: its ledger has no signature to check, and every proof verified.
"""

from __future__ import annotations

import base64
import hashlib
import io
import json
import sqlite3
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from hashtrail.collector import bundle as bundle_mod
from hashtrail.collector.store import RawEntry, Store
from hashtrail.formats import note
from ledgerkit import Device
from proofkit import cli, verify_proof

At = Callable[[str], str]
ENROLLED_AT = 1_700_000_100


@dataclass
class World:
    led: str                # the ledger: a file path or a PostgreSQL URL
    vkey: str               # the ledger's verifier key
    site_a: str             # collector verifier keys, as `export --show-key` prints them
    site_b: str
    a: str                  # device ids: a and b enrolled by site A, c by site B
    b: str
    c: str
    tmp: Path


def _device(secret: int) -> Device:
    d = Device(secret, per_entry_sig=True)
    d.readings(6)
    return d


def _store(path: Path, devs: list[tuple[Device, str]]) -> None:
    with Store.open(path) as st:
        for d, label in devs:
            st.enroll(d.id_hex, d.pub, label=label, board="esp32", fw="1.2.0",
                      enrolled_at=ENROLLED_AT)
            st.quarantine(d.id_hex, [RawEntry(s, b, g) for s, b, g in d.entries])


def _ok(capsys: pytest.CaptureFixture[str], *argv: str) -> str:
    code, out, err = cli(capsys, *argv)
    assert code == 0, (argv, out, err)
    return out


def _world(ledger_at: At, tmp: Path, capsys: pytest.CaptureFixture[str],
           old: bool = False) -> World:
    """Sites A (devices a, b) and B (device c), exported (`old`: as collectors did before
    enrollment signatures) and reconciled into a ledger that trusts both."""
    a, b, c = _device(501), _device(502), _device(503)
    _store(tmp / "site-a.db", [(a, "cold room A"), (b, "cold room B")])
    _store(tmp / "site-b.db", [(c, "freezer C")])
    keys = []
    for site in ("site-a", "site-b"):
        keys.append(_ok(capsys, "export", "--store", str(tmp / f"{site}.db"),
                        "--show-key").strip())
        if old:
            _old_export(tmp / f"{site}.db", tmp / f"{site}.jsonl")
        else:
            _ok(capsys, "export", "--store", str(tmp / f"{site}.db"), "--out",
                str(tmp / f"{site}.jsonl"))
    led = ledger_at("l")
    init = json.loads(_ok(capsys, "ledger", "init", "--ledger", led, "--origin",
                          "enroll.example/ledger", "--json"))
    _ok(capsys, "ledger", "trust", "--ledger", led, keys[0], "--name", "site A")
    _ok(capsys, "ledger", "trust", "--ledger", led, keys[1], "--name", "site B")
    _ok(capsys, "reconcile", "--ledger", led, str(tmp / "site-a.jsonl"),
        str(tmp / "site-b.jsonl"))
    return World(led, init["verifier_key"], keys[0], keys[1], a.id_hex, b.id_hex, c.id_hex,
                 tmp)


def _sql(led: str, stmt: str, *args: Any) -> list[tuple[Any, ...]]:
    """The operator's own SQL on its ledger (either backend)."""
    if led.startswith("postgresql://"):
        import psycopg
        with psycopg.connect(led, autocommit=True) as c:
            cur = c.execute(stmt.replace("?", "%s"), args)
            return [tuple(r) for r in cur.fetchall()] if cur.description else []
    with sqlite3.connect(led) as db:
        rows = db.execute(stmt, args).fetchall()
    db.close()
    return rows


def _verify_ledger(capsys: pytest.CaptureFixture[str], w: World) -> tuple[int, Any]:
    code, out, _ = cli(capsys, "verify", "--ledger", w.led, "--verifier-key", w.vkey,
                       "--json")
    return code, json.loads(out)


def _proof(capsys: pytest.CaptureFixture[str], w: World, did: str) -> dict[str, Any]:
    doc: dict[str, Any] = json.loads(_ok(capsys, "ledger", "prove", "--ledger", w.led,
                                         "--device", did, "--seq", "3", "--json"))
    return doc


def _kid(vkey: str) -> str:
    v = note.Verifier.from_string(vkey)
    return f"{v.name}+{v.key_id.hex()}"


def _problems(rep: Any, did: str) -> list[str]:
    return [p for p in rep["problems"] if p.startswith(f"devices (device {did}): ")]


# -- the honest path -----------------------------------------------------------------------

def test_export_signs_each_enrollment_and_the_proof_carries_it(
        ledger_at: At, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    w = _world(ledger_at, tmp_path, capsys)
    lines = [json.loads(x) for x in (tmp_path / "site-a.jsonl").read_text().splitlines()]
    enrollments = [x for x in lines if x.get("type") == "enrollment"]
    assert len(enrollments) == 2 and all(len(x["sig"]) == 88 for x in enrollments)
    code, rep = _verify_ledger(capsys, w)
    assert code == 0 and rep["problems"] == [] and rep["notes"] == [], rep
    assert {d["device_id"]: d["enrollment_signed_by"] for d in rep["devices"]} == \
        {w.a: "site A", w.b: "site A", w.c: "site B"}
    for did, key, label in ((w.a, w.site_a, "cold room A"), (w.c, w.site_b, "freezer C")):
        doc = _proof(capsys, w, did)
        assert doc["format"] == "hashtrail-proof/3"
        e = doc["enrollment"]
        assert (e["label"], e["collector"], e["signature"]["key"]) == \
            (label, "site A" if key == w.site_a else "site B", key)
        code, out, err = verify_proof(capsys, tmp_path, doc, w.vkey, "--collector-key", key,
                                      "--device", did)
        assert code == 0, err
        assert f"enrollment signed by collector {_kid(key)}, a key you trust: label " \
               f"{label!r}, board esp32" in out
        # the key may come from a file, as for `ledger trust`
        (tmp_path / "c.vkey").write_text(key + "\n")
        code, out, _ = verify_proof(capsys, tmp_path, doc, w.vkey, "--collector-key",
                                    str(tmp_path / "c.vkey"), "--json")
        res = json.loads(out)["proof"]
        assert code == 0 and (res["enrollment_signer"], res["enrollment_trusted"]) == \
            (_kid(key), True)
    # the other collector's key is not the one that enrolled a
    code, _, err = verify_proof(capsys, tmp_path, _proof(capsys, w, w.a), w.vkey,
                                "--collector-key", w.site_b)
    assert code == 1 and "step 'enrollment': the enrollment is signed by collector key " \
        f"{_kid(w.site_a)}, not by a --collector-key you trust" in err, err


# -- the operator's attacks ----------------------------------------------------------------

def test_operator_who_edits_a_stored_label_is_caught(
        ledger_at: At, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    w = _world(ledger_at, tmp_path, capsys)
    for column, value in (("label", "cold room Z"), ("board", "esp32s3"), ("fw", "9.9.9"),
                          ("enrolled_at", 1_600_000_000)):
        before = _sql(w.led, f"SELECT {column} FROM devices WHERE device_id=?", w.a)[0][0]
        _sql(w.led, f"UPDATE devices SET {column}=? WHERE device_id=?", value, w.a)
        code, rep = _verify_ledger(capsys, w)
        assert code == 1 and rep["ok"] is False
        assert _problems(rep, w.a) == [
            f"devices (device {w.a}): the enrollment signature by collector site A "
            f"({_kid(w.site_a)}) does not verify over the stored enrollment: its label, "
            "board, firmware or time was changed after the collector signed it, or the "
            "signature is another enrollment's"], rep["problems"]
        assert len(rep["problems"]) == 1
        doc = _proof(capsys, w, w.a)
        assert doc["enrollment"][column] == value     # the operator's edit is in the proof
        for extra in ((), ("--collector-key", w.site_a)):
            code, out, err = verify_proof(capsys, tmp_path, doc, w.vkey, *extra)
            assert code == 1 and out == ""
            assert err.startswith("hashtrail: error: proof refused at step 'enrollment': the "
                                  f"enrollment signature by collector {_kid(w.site_a)} does "
                                  f"not verify over device {w.a}'s enrollment"), err
        _sql(w.led, f"UPDATE devices SET {column}=? WHERE device_id=?", before, w.a)
    assert _verify_ledger(capsys, w)[0] == 0


def test_operator_who_swaps_the_collector_is_caught(
        ledger_at: At, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """The operator says site B enrolled device a (site A did): the signature is site
    A's, so under site B's key it does not verify. Re-signed with a collector key of
    the operator's own, it verifies under that key only: verify-proof with the key the
    user trusts refuses it (the ledger trusts whatever collector its operator adds, so
    verify --ledger cannot)."""
    w = _world(ledger_at, tmp_path, capsys)
    _sql(w.led, "UPDATE devices SET enroll_key=? WHERE device_id=?", w.site_b, w.a)
    code, rep = _verify_ledger(capsys, w)
    assert code == 1 and _problems(rep, w.a) == [
        f"devices (device {w.a}): the enrollment signature by collector site B "
        f"({_kid(w.site_b)}) does not verify over the stored enrollment: its label, board, "
        "firmware or time was changed after the collector signed it, or the signature is "
        "another enrollment's"], rep["problems"]
    doc = _proof(capsys, w, w.a)
    assert doc["enrollment"]["collector"] == "site B"
    for extra in ((), ("--collector-key", w.site_b), ("--collector-key", w.site_a)):
        code, _, err = verify_proof(capsys, tmp_path, doc, w.vkey, *extra)
        assert code == 1 and "step 'enrollment': the enrollment signature by collector " \
            f"{_kid(w.site_b)} does not verify" in err, (extra, err)
    # a collector key that no ledger trusts, named as the signer
    stranger = note.Signer.generate("collector-stranger")
    _sql(w.led, "UPDATE devices SET enroll_key=? WHERE device_id=?",
         stranger.verifier().to_string(), w.a)
    code, rep = _verify_ledger(capsys, w)
    assert code == 1 and _problems(rep, w.a) == [
        f"devices (device {w.a}): enrollment signed by collector key "
        f"{_kid(stranger.verifier().to_string())}, which this ledger does not trust"]
    # the operator's own collector key, trusted by its ledger, re-signs a new label
    from hashtrail.formats.enrollment import sign_enrollment
    pub = bytes(_sql(w.led, "SELECT pub FROM devices WHERE device_id=?", w.a)[0][0])
    own = note.Signer.generate("collector-operator")
    _ok(capsys, "ledger", "trust", "--ledger", w.led, own.verifier().to_string(), "--name",
        "site A")
    sig = sign_enrollment(own, w.a, pub, "operator's room", "esp32", "1.2.0", ENROLLED_AT)
    _sql(w.led, "UPDATE devices SET enroll_key=?, enroll_sig=?, label=? WHERE device_id=?",
         own.verifier().to_string(), sig, "operator's room", w.a)
    doc = _proof(capsys, w, w.a)
    code, out, err = verify_proof(capsys, tmp_path, doc, w.vkey)
    assert code == 0 and f"enrollment signed by collector {_kid(own.verifier().to_string())}" \
        " (the proof's key; give --collector-key to require one you trust)" in out, err
    code, _, err = verify_proof(capsys, tmp_path, doc, w.vkey, "--collector-key", w.site_a)
    assert code == 1 and "step 'enrollment': the enrollment is signed by collector key " \
        f"{_kid(own.verifier().to_string())}, not by a --collector-key you trust" in err, err


def test_operator_who_copies_another_devices_signature_is_caught(
        ledger_at: At, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Device b's genuine enrollment signature (same collector), put on device a, with
    and without b's label: the signature names b's id and key, so it fails for a."""
    w = _world(ledger_at, tmp_path, capsys)
    sig_b, label_b = _sql(w.led, "SELECT enroll_sig, label FROM devices WHERE device_id=?",
                          w.b)[0]
    for label in ("cold room A", label_b):
        _sql(w.led, "UPDATE devices SET enroll_sig=?, label=? WHERE device_id=?",
             bytes(sig_b), label, w.a)
        code, rep = _verify_ledger(capsys, w)
        assert code == 1 and len(_problems(rep, w.a)) == 1 and \
            "does not verify over the stored enrollment" in _problems(rep, w.a)[0]
        assert _problems(rep, w.b) == []
        doc = _proof(capsys, w, w.a)
        code, _, err = verify_proof(capsys, tmp_path, doc, w.vkey, "--collector-key",
                                    w.site_a)
        assert code == 1 and f"step 'enrollment': the enrollment signature by collector " \
            f"{_kid(w.site_a)} does not verify over device {w.a}'s enrollment" in err, err


def test_operator_who_strips_the_signature_is_left_with_its_own_statement(
        ledger_at: At, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """With the signature and key removed, the enrollment reads as unsigned, as one
    from before these signatures: `verify --ledger` cannot tell the two apart (a note,
    exit 0), the proof says "not signed (the operator's statement)", and a verifier who
    brings the collector's key refuses it."""
    w = _world(ledger_at, tmp_path, capsys)
    _sql(w.led, "UPDATE devices SET enroll_sig=NULL, enroll_key=NULL, label=? WHERE "
                "device_id=?", "cold room Z", w.a)
    code, rep = _verify_ledger(capsys, w)
    assert code == 0 and rep["notes"] == [
        "1 device(s) enrolled without a collector's signature (enrolled before collectors "
        "signed enrollments): their label, board and firmware are the operator's statement"]
    doc = _proof(capsys, w, w.a)
    assert doc["enrollment"]["signature"] is None
    code, out, _ = verify_proof(capsys, tmp_path, doc, w.vkey)
    assert code == 0 and "enrollment not signed (the operator's statement): label " \
        "'cold room Z'" in out
    code, _, err = verify_proof(capsys, tmp_path, doc, w.vkey, "--collector-key", w.site_a)
    assert code == 1 and "step 'enrollment': the enrollment is not signed by a collector" \
        in err, err


def test_an_enrollment_time_past_year_9999_is_shown_in_unix_seconds(
        ledger_at: At, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A proof may state any integer as the enrollment time: one past year 9999 is
    shown as unix seconds (as the page shows it), not a traceback (gmtime refused 2^60
    with OSError)."""
    w = _world(ledger_at, tmp_path, capsys)
    _sql(w.led, "UPDATE devices SET enroll_sig=NULL, enroll_key=NULL, enrolled_at=? WHERE "
                "device_id=?", 1 << 60, w.a)
    code, out, err = verify_proof(capsys, tmp_path, _proof(capsys, w, w.a), w.vkey)
    assert code == 0 and "enrollment not signed (the operator's statement): label " \
        f"'cold room A', board esp32, enrolled at unix time {1 << 60}" in out, (out, err)


# -- where devices are listed: `devices list` and the fleet view ----------------------------

def _listed(capsys: pytest.CaptureFixture[str], w: World) -> tuple[dict[str, Any], str]:
    """`devices list --json` by device id, and the text `devices list` prints."""
    rows = json.loads(_ok(capsys, "devices", "list", "--ledger", w.led, "--json"))
    return {r["device"]: r["enrollment"] for r in rows}, \
        _ok(capsys, "devices", "list", "--ledger", w.led)


def _fleet(w: World) -> dict[str, Any]:
    """The fleet view's rows (web/data.py, what /api/fleet serves) by device id, with
    what verify says of each enrollment."""
    from hashtrail.ledger.ledger_db import Ledger
    from hashtrail.web import data
    with Ledger.open(w.led) as led:
        f = data.build_fleet(led)
    return {r["id"]: (r["enrollment"], r["enrollment_signed_by"]) for r in f.rows}


def _line(text: str, did: str) -> str:
    return next(x for x in text.splitlines() if x.startswith(did))


def test_device_lists_say_whose_word_the_enrollment_is(
        ledger_at: At, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """`devices list` (text and --json) and the fleet view's rows name the collector key
    that signed each enrollment; an edited label reads as a signature that does not
    verify, a stripped signature as the operator's word, never as signed."""
    w = _world(ledger_at, tmp_path, capsys)
    signed = {w.a: (w.site_a, "site A"), w.b: (w.site_a, "site A"),
              w.c: (w.site_b, "site B")}
    js, text = _listed(capsys, w)
    fleet = _fleet(w)
    for did, (key, name) in signed.items():
        want = {"state": "signed", "signer": _kid(key), "collector": name,
                "text": f"enrollment signed by collector {_kid(key)}"}
        assert js[did] == want and fleet[did] == (want, name)
        assert _line(text, did).endswith(f"  ok       enrollment signed by collector "
                                         f"{_kid(key)}"), text
    # the operator edits a's label and strips b's signature
    _sql(w.led, "UPDATE devices SET label=? WHERE device_id=?", "cold room Z", w.a)
    _sql(w.led, "UPDATE devices SET enroll_sig=NULL, enroll_key=NULL WHERE device_id=?", w.b)
    js, text = _listed(capsys, w)
    fleet = _fleet(w)
    bad = {"state": "invalid", "signer": None, "collector": None,
           "text": "enrollment signature does not verify (operator's word; see verify)"}
    unsigned = {"state": "unsigned", "signer": None, "collector": None,
                "text": "unsigned enrollment (operator's word)"}
    assert (js[w.a], js[w.b]) == (bad, unsigned)
    assert (fleet[w.a], fleet[w.b]) == ((bad, None), (unsigned, None))
    assert _line(text, w.a).endswith(bad["text"]) and \
        _line(text, w.b).endswith("unsigned enrollment (operator's word)")
    assert "signed by" not in _line(text, w.a) + _line(text, w.b)
    # a signature by a collector key the ledger does not trust is not "signed" either
    stranger = note.Signer.generate("collector-stranger")
    _sql(w.led, "UPDATE devices SET enroll_key=? WHERE device_id=?",
         stranger.verifier().to_string(), w.c)
    assert _listed(capsys, w)[0][w.c] == bad and _fleet(w)[w.c] == (bad, None)


def test_lists_and_verify_decide_by_one_rule(ledger_at: At, tmp_path: Path,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    """`devices list` (enrollment_state) and `verify --ledger` (_enrollments) decide each
    enrollment by the one function (enrollment_state.check_enrollment): every way the
    operator touches one, the list says invalid exactly for the devices verify names,
    with verify's reason; unsigned is a note in verify, signed the collector's name."""
    from hashtrail.ledger.enrollment_state import enrollment_state, trusted_map
    from hashtrail.ledger.ledger_db import Ledger
    w = _world(ledger_at, tmp_path, capsys)
    stranger = note.Signer.generate("collector-stranger").verifier().to_string()
    edits = [
        ("UPDATE devices SET label=? WHERE device_id=?", "cold room Z", w.a),
        ("UPDATE devices SET enroll_key=? WHERE device_id=?", stranger, w.b),
        ("UPDATE devices SET enroll_key=? WHERE device_id=?", "not a key", w.b),
        ("UPDATE devices SET enroll_sig=NULL WHERE device_id=?", w.c),
        ("UPDATE devices SET enroll_sig=NULL, enroll_key=NULL WHERE device_id=?", w.c),
        ("UPDATE devices SET enrolled_at=enrolled_at+1 WHERE device_id=?", w.a),
    ]
    for stmt, *args in [("SELECT 1",), *edits]:
        _sql(w.led, stmt, *args)
        code, rep = _verify_ledger(capsys, w)
        with Ledger.open(w.led) as led:
            trusted = trusted_map(led.trusted_collectors())
            states = {d.device_id: enrollment_state(d, trusted) for d in led.devices()}
        devices = {d["device_id"]: d for d in rep["devices"]}
        for did, st in states.items():
            assert _problems(rep, did) == ([f"devices (device {did}): {st.reason}"]
                                           if st.state == "invalid" else []), (stmt, did)
            assert devices[did]["enrollment_signed_by"] == st.collector, (stmt, did)
        assert code == (1 if any(s.state == "invalid" for s in states.values()) else 0)
        n = sum(s.state == "unsigned" for s in states.values())
        assert any(x.startswith(f"{n} device(s) enrolled without") for x in rep["notes"]) \
            == bool(n), (stmt, rep["notes"])


def test_the_fleet_view_sees_an_edited_enrollment_at_once(
        ledger_at: At, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """The fleet view verifies again only when its state key changes: an edit of any
    signed enrollment field, of the signature, or of the trusted collectors changes it
    (before, only a label edit did, and a board edited under a running server kept
    showing as verified)."""
    from hashtrail.ledger.ledger_db import Ledger
    from hashtrail.web import data
    w = _world(ledger_at, tmp_path, capsys)

    def key() -> Any:
        with Ledger.open(w.led) as led:
            return data.state_key(led)
    k0 = key()
    for column, value in (("board", "esp32s3"), ("fw", "9.9.9"),
                          ("enrolled_at", 1_600_000_000), ("enroll_sig", b"\0" * 64),
                          ("enroll_key", w.site_b)):
        before = _sql(w.led, f"SELECT {column} FROM devices WHERE device_id=?", w.a)[0][0]
        _sql(w.led, f"UPDATE devices SET {column}=? WHERE device_id=?", value, w.a)
        assert key() != k0, column
        _sql(w.led, f"UPDATE devices SET {column}=? WHERE device_id=?", before, w.a)
        assert key() == k0, column
    other = note.Signer.generate("collector-other").verifier().to_string()
    _ok(capsys, "ledger", "trust", "--ledger", w.led, other, "--name", "other")
    assert key() != k0


# -- bundles and ledgers from before enrollment signatures -------------------------------------

def _old_export(store: Path, out: Path) -> None:
    """What `hashtrail export` wrote before enrollment signatures: the same bundle,
    signed as a whole by the collector, with no `sig` on its enrollment lines."""
    with Store.open(store, create=False) as st:
        b = bundle_mod.from_store(st)
        signer = st.signer
    buf = io.StringIO()
    bundle_mod.write_bundle(b, buf)         # no signer: no signature anywhere
    data = buf.getvalue()
    sig = signer.sign(bundle_mod.signed_message(hashlib.sha256(data.encode()).digest()))
    out.write_text(data + json.dumps({"key": signer.verifier().to_string(),
                                      "sig": base64.b64encode(sig).decode(),
                                      "type": "signature"},
                                     sort_keys=True, separators=(",", ":")) + "\n")


def test_an_old_bundle_still_enrolls_unsigned_and_a_fresh_export_signs_it(
        ledger_at: At, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    d = _device(601)
    store = tmp_path / "site.db"
    _store(store, [(d, "old room")])
    _old_export(store, tmp_path / "old.jsonl")
    assert '"sig"' not in next(x for x in (tmp_path / "old.jsonl").read_text().splitlines()
                               if '"enrollment"' in x)
    key = _ok(capsys, "export", "--store", str(store), "--show-key").strip()
    led = ledger_at("l")
    vkey = json.loads(_ok(capsys, "ledger", "init", "--ledger", led, "--origin", "o.example/l",
                          "--json"))["verifier_key"]
    _ok(capsys, "ledger", "trust", "--ledger", led, key, "--name", "site")
    out = _ok(capsys, "reconcile", "--ledger", led, str(tmp_path / "old.jsonl"))
    assert "enrolled 1" in out
    w = World(led, vkey, key, key, d.id_hex, d.id_hex, d.id_hex, tmp_path)
    code, rep = _verify_ledger(capsys, w)
    assert code == 0 and rep["devices"][0]["enrollment_signed_by"] is None
    assert rep["notes"][0].startswith("1 device(s) enrolled without a collector's signature")
    code, out, _ = verify_proof(capsys, tmp_path, _proof(capsys, w, d.id_hex), vkey)
    assert code == 0 and "enrollment not signed (the operator's statement)" in out
    # the collector, upgraded, exports again: the ledger takes its signature of the
    # enrollment it already holds
    _ok(capsys, "export", "--store", str(store), "--out", str(tmp_path / "new.jsonl"))
    out = _ok(capsys, "reconcile", "--ledger", led, str(tmp_path / "new.jsonl"))
    assert "enrollment signatures added to 1 device(s) enrolled unsigned before" in out
    code, rep = _verify_ledger(capsys, w)
    assert code == 0 and rep["notes"] == [] and \
        rep["devices"][0]["enrollment_signed_by"] == "site"
    code, out, err = verify_proof(capsys, tmp_path, _proof(capsys, w, d.id_hex), vkey,
                                  "--collector-key", key)
    assert code == 0 and f"enrollment signed by collector {_kid(key)}, a key you trust" \
        in out, err


def test_a_ledger_from_before_enrollment_signatures_upgrades(
        ledger_at: At, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A ledger whose `devices` has no signature columns (SQLite schema 6, PostgreSQL 5,
    as the code before left it) gets them on open, NULL: its devices read as unsigned,
    it verifies (with the note), and the next export of their collector signs them."""
    w = _world(ledger_at, tmp_path, capsys, old=True)
    pg = w.led.startswith("postgresql://")
    for col in ("enroll_key", "enroll_sig"):
        _sql(w.led, f"ALTER TABLE devices DROP COLUMN {col}")
    _sql(w.led, "UPDATE meta SET value=? WHERE key='schema'", "5" if pg else "6")
    code, rep = _verify_ledger(capsys, w)      # opening it migrates it
    assert code == 0 and rep["notes"][0].startswith("3 device(s) enrolled without")
    assert _sql(w.led, "SELECT value FROM meta WHERE key='schema'") == [("9" if pg else "10",)]
    assert _sql(w.led, "SELECT COUNT(*) FROM devices WHERE enroll_sig IS NULL AND "
                       "enroll_key IS NULL") == [(3,)]
    code, out, _ = verify_proof(capsys, tmp_path, _proof(capsys, w, w.a), w.vkey)
    assert code == 0 and "enrollment not signed (the operator's statement)" in out
    _ok(capsys, "export", "--store", str(tmp_path / "site-a.db"), "--out",
        str(tmp_path / "again.jsonl"))
    out = _ok(capsys, "reconcile", "--ledger", w.led, str(tmp_path / "again.jsonl"))
    assert "enrollment signatures added to 2 device(s)" in out
    code, rep = _verify_ledger(capsys, w)
    assert code == 0 and rep["notes"][0].startswith("1 device(s) enrolled without")
    code, out, err = verify_proof(capsys, tmp_path, _proof(capsys, w, w.b), w.vkey,
                                  "--collector-key", w.site_a)
    assert code == 0, err


# -- the bundle's enrollment lines (docs/BUNDLE.md "Enrollment signatures") ---------------------

def _resigned(lines: list[str], signer: note.Signer) -> bytes:
    """Data lines signed again as a whole by `signer` (a collector that signed them so)."""
    data = "".join(lines)
    sig = signer.sign(bundle_mod.signed_message(hashlib.sha256(data.encode()).digest()))
    return (data + json.dumps({"key": signer.verifier().to_string(),
                               "sig": base64.b64encode(sig).decode(), "type": "signature"},
                              sort_keys=True, separators=(",", ":")) + "\n").encode()


def test_bundle_enrollment_signatures_are_checked_by_the_parser(tmp_path: Path) -> None:
    """An enrollment signature that does not verify under the bundle's key refuses the
    whole bundle, even when the bundle signature itself verifies; without a signature
    line the enrollment signatures are left unchecked and the bundle is unsigned."""
    from hashtrail.errors import VerificationError

    d = _device(701)
    _store(tmp_path / "s.db", [(d, "room")])
    with Store.open(tmp_path / "s.db", create=False) as st:
        signer = st.signer
        buf = io.StringIO()
        bundle_mod.write_bundle(bundle_mod.from_store(st), buf, signer)
    lines = buf.getvalue().splitlines(keepends=True)
    b = bundle_mod.parse_bundle(io.BytesIO("".join(lines).encode()))
    assert b.signer is not None and b.enrollments[0].sig is not None
    i = next(k for k, x in enumerate(lines) if '"type":"enrollment"' in x)
    edited = json.loads(lines[i])
    edited["label"] = "another room"
    lines[i] = json.dumps(edited, sort_keys=True, separators=(",", ":")) + "\n"
    with pytest.raises(VerificationError, match=f"line {i + 1}: the enrollment signature of "
                       f"device {d.id_hex} by collector {signer.name} does not verify"):
        bundle_mod.parse_bundle(io.BytesIO(_resigned(lines[:-1], signer)))
    unsigned = bundle_mod.parse_bundle(io.BytesIO("".join(lines[:-1]).encode()))
    assert unsigned.signer is None and unsigned.enrollments[0].label == "another room"


def test_a_label_no_note_text_can_carry_is_exported_unsigned(
        ledger_at: At, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A DEL in a label (the bundle admits it, a signed-note text does not): that one
    enrollment goes unsigned, the others signed, and the ledger shows it as such."""
    d, e = _device(702), _device(703)
    _store(tmp_path / "s.db", [(d, "room\x7f1"), (e, "room 2")])
    key = _ok(capsys, "export", "--store", str(tmp_path / "s.db"), "--show-key").strip()
    _ok(capsys, "export", "--store", str(tmp_path / "s.db"), "--out", str(tmp_path / "b.jsonl"))
    sigs = {x["device"]: "sig" in x for x in map(json.loads, (tmp_path / "b.jsonl")
                                                 .read_text().splitlines())
            if x.get("type") == "enrollment"}
    assert sigs == {d.id_hex: False, e.id_hex: True}
    led = ledger_at("l")
    vkey = json.loads(_ok(capsys, "ledger", "init", "--ledger", led, "--origin", "o.example/l",
                          "--json"))["verifier_key"]
    _ok(capsys, "ledger", "trust", "--ledger", led, key)
    _ok(capsys, "reconcile", "--ledger", led, str(tmp_path / "b.jsonl"))
    w = World(led, vkey, key, key, d.id_hex, e.id_hex, e.id_hex, tmp_path)
    code, rep = _verify_ledger(capsys, w)
    assert code == 0 and {x["device_id"]: x["enrollment_signed_by"] for x in rep["devices"]} \
        == {d.id_hex: None, e.id_hex: key.split("+")[0]}
