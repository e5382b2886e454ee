"""`hashtrail demo` end to end: its claims re-checked from the files it leaves behind.

The demo's own report is not trusted: the ledger is re-verified from its SQLite file,
the entry counts come from the two collector stores, the keyless rewrite is found again
on the device's littlefs image (links and CRCs whole, signatures checked with the
cryptography package), and the proof file goes through `ledger verify-proof`.
The Ctrl-C test checks that no MicroPython process survives an interrupted demo.
"""

from __future__ import annotations

import hashlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import Prehashed, encode_dss_signature
from hashtrail.chain.chainverify import verify_chain
from hashtrail.cli import main as cli
from hashtrail.collector.store import Store
from hashtrail.device.boards import load_board
from hashtrail.device.imagefs import read_image
from hashtrail.formats import manifest, note
from hashtrail.formats.entry import (
    KIND_ACK,
    KIND_LOG_ALTERED,
    KIND_UPDATE,
    entry_hash,
    parse_entry,
)
from hashtrail.formats.records import MAGIC_ENTRY, Record, log_segments, parse_segments
from hashtrail.ledger.firmware import firmware_history
from hashtrail.ledger.ledger_db import Ledger
from hashtrail.ledger.ledger_verify import verify_ledger

pytestmark = pytest.mark.e2e

DEMO = [sys.executable, "-m", "hashtrail.cli", "demo"]


def _processes_using(path: Path) -> list[str]:
    """Command lines of live processes that mention `path` (the demo's device images)."""
    found = []
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            cmd = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
        except OSError:
            continue
        if "micropython" in cmd and str(path) in cmd:
            found.append(cmd)
    return found


def _flash_chain(image: Path) -> dict[int, tuple[bytes, bytes | None]]:
    """seq -> (entry bytes, per-entry signature) of every entry record on a device's
    littlefs image."""
    files = read_image(image.read_bytes(), load_board("unix").block_size)
    out: dict[int, tuple[bytes, bytes | None]] = {}
    recs, problems = parse_segments(log_segments(files))
    assert problems == [], problems  # the rewrite kept every record's CRC valid
    out.update((r.seq, (r.body, r.sig)) for r in recs if r.is_entry)
    return out


def _sig_ok(pub: bytes, entry: bytes, sig: bytes | None) -> bool:
    """A per-entry signature (r || s over SHA-256 of the entry), checked with the
    cryptography package, not hashtrail's verifier."""
    if sig is None:
        return False
    key = ec.EllipticCurvePublicKey.from_encoded_point(ec.SECP256R1(), pub)
    der = encode_dss_signature(int.from_bytes(sig[:32], "big"), int.from_bytes(sig[32:], "big"))
    try:
        key.verify(der, hashlib.sha256(entry).digest(), ec.ECDSA(Prehashed(hashes.SHA256())))
    except InvalidSignature:
        return False
    return True


def test_demo_outcomes_hold_in_its_files(tmp_path: Path) -> None:
    d = tmp_path / "demo"
    t0 = time.monotonic()
    p = subprocess.run([*DEMO, "--dir", str(d), "--json"], capture_output=True, text=True,
                       timeout=120)
    elapsed = time.monotonic() - t0
    assert p.returncode == 0, p.stderr[-3000:]
    assert "Traceback" not in p.stderr
    rep = json.loads(p.stdout)
    assert rep["ok"] and elapsed < 60
    assert _processes_using(d) == []

    # Both collectors contributed; the ledger holds each distinct entry exactly once.
    stores = [Store.open(d / f"collector-{x}.db", create=False) for x in "AB"]
    try:
        by_name = {e.label: e for e in stores[0].enrollments()}
        assert sorted(by_name) == ["dev0", "dev1", "dev2"]
        distinct = 0
        only = {0: 0, 1: 0}
        for e in by_name.values():
            sets = [{r.seq for r in s.accepted_records(e.device_id)} for s in stores]
            distinct += len(sets[0] | sets[1])
            only[0] += len(sets[0] - sets[1])
            only[1] += len(sets[1] - sets[0])
        assert only[0] > 0 and only[1] > 0  # each filled what the other lacked
        victim = by_name["dev1"]
        victim_held = set().union(*({r.seq for r in st.accepted_records(victim.device_id)}
                                    for st in stores))
        anchor = stores[0].anchor(victim.device_id)
        quarantined = {r.seq: r.body for r in stores[0].quarantined(victim.device_id)}
    finally:
        for s in stores:
            s.close()
    with Ledger.open(d / "ledger.db") as led:
        vkey = led.verifier.to_string()
        # (step 4's union is what its ledger held; step 8 collected and added more; the
        # tamper step's bundle may add the victim's device-signed entries from before
        # the edited one, which collector A refused with the rest of that collection)
        t = rep["tamper"]
        assert led.size == distinct + t["ledger_tip_after"] - t["ledger_tip_before"]
        assert rep["entries_union"] == rep["ledger_size"] < distinct
        vr = verify_ledger(led)
        assert vr.problems == [] and all(x.problems == [] for x in vr.devices)
        tip = led.device(victim.device_id)
        assert tip is not None
        # what the ledger holds back of the tampered device is listed as its anomaly
        held = next(x for x in vr.devices if x.device_id == victim.device_id)
        assert held.pending > 0 and any("held" in a for a in held.anomalies)

    # The keyless rewrite: on dev1's flash, reading k (no collector had it, no device
    # checkpoint covered it) was edited, the prev link of every later entry and every
    # record CRC recomputed, the signatures left as they were: every record and every
    # link on the flash checks, and only the device's signatures can tell.
    t = rep["tamper"]
    k = t["edited_seq"]
    assert t["device_id"] == victim.device_id and t["caught"]
    assert t["crc_valid_after_edit"] and t["links_valid_after_edit"]
    flash = _flash_chain(d / "devices" / "dev1.lfs")
    body = {s: b for s, (b, _) in flash.items()}
    assert all(parse_entry(body[s]).prev == entry_hash(body[s - 1])
               for s in body if s - 1 in body)
    assert t["relinked_upto"] > k and all(s in body for s in range(k, t["relinked_upto"] + 1))
    assert t["reading"] == "temp" and k not in victim_held  # no collector has it
    files = read_image((d / "devices" / "dev1.lfs").read_bytes(), load_board("unix").block_size)
    checkpoints = [r.seq for r in parse_segments(log_segments(files))[0] if not r.is_entry]
    temp = next(r for r in parse_entry(body[k]).body if r[0] == t["reading"])[2]
    assert temp == pytest.approx(t["new_value"], abs=1e-3) and \
        abs(t["new_value"] - t["old_value"]) > 1
    # ... the device signed every entry; the rewritten ones kept signatures over other
    # bytes (cryptography says so), the ones before k and the device's own after still verify
    assert all(sig is not None for _, sig in flash.values())
    assert all(_sig_ok(victim.pub, b, g) for s, (b, g) in flash.items() if s < k)
    assert not any(_sig_ok(victim.pub, b, g) for s, (b, g) in flash.items()
                   if k <= s <= t["relinked_upto"])
    # ... the device itself reported it at boot, from seq k, before any collector looked,
    # and its log-altered entry on flash says so
    assert t["device_reported_seq"] == k
    assert f"device {victim.device_id} reports its log altered from seq {k} (" in p.stderr
    alerts = [parse_entry(b) for b in body.values() if parse_entry(b).kind == KIND_LOG_ALTERED]
    assert [e.body[1] for e in alerts] == [k]
    # no device checkpoint covered the edited entry before the device's report
    assert not [c for c in checkpoints if k <= c < alerts[0].seq]
    # ... collector A refused, naming the device, seq k and the reason: entry k's own
    # signature; it accepted nothing and acknowledged nothing (no ack entry after k)
    assert (t["caught_code"], t["caught_seq"]) == ("entry_bad_sig", k)
    assert t["findings"][0]["device_id"] == victim.device_id
    assert t["collector_refused"] and not t["collector_acked"]
    assert victim.device_id in t["collector_message"] and \
        f"seq {k}: entry_bad_sig" in t["collector_message"]
    assert not any(parse_entry(b).kind == KIND_ACK for s, b in body.items() if s > k)
    assert quarantined[k] == body[k]  # the collector kept the edited bytes as received
    assert anchor is not None and anchor.seq == t["anchor_before"] == t["anchor_after"] < k
    # ... and the ledger, given A's bundle, holds nothing from k on and still verifies
    assert tip.tip_seq == t["ledger_tip_after"] < k
    assert rep["ledger_intact_after_tamper"]
    # The host's verifier over the flash as it is: nothing before k is a finding; the
    # first is entry k's signature; the chain links check (no link finding anywhere).
    recs = [Record(MAGIC_ENTRY, s, b, g, "flash", 0) for s, (b, g) in sorted(flash.items())]
    findings = verify_chain(victim.pub, recs).findings
    assert (findings[0].seq, findings[0].code) == (k, "entry_bad_sig")
    assert all(f.seq is not None and f.seq >= k for f in findings)
    assert not any(f.code == "link_mismatch" for f in findings)

    # Step 6's proof is checked down to the device's own signature: its per-entry
    # signature over the entry in the leaf, with the enrolled key (cryptography again).
    doc = json.loads((d / "proof.json").read_text())
    pc = rep["proof_check"]
    proved = by_name["dev0"]
    assert rep["proof_ok"] and pc["signature_kind"] == "entry"
    assert (pc["device_id"], pc["fingerprint"]) == (
        proved.device_id, hashlib.sha256(proved.pub).hexdigest())
    leaf = bytes.fromhex(doc["leaf"])
    assert _sig_ok(proved.pub, leaf[60:], bytes.fromhex(doc["device_signature"]["sig"]))
    assert "signed by the device: its own per-entry signature" in p.stderr
    # ... and its enrollment down to the signature of collector A, which enrolled it
    assert pc["enrollment_trusted"] and pc["enrollment_signer"].startswith("collector-")
    assert f"enrollment signed by collector {pc['enrollment_signer']}, a key you trust: " \
        "label 'dev0'" in p.stderr
    assert rep["proof_tampered_refused"]
    assert "the same proof with one leaf bit flipped: refused" in p.stderr
    assert "a made-up proof signed with the forger's own key: refused" in p.stderr

    # Step 7: the same entry's proof, fetched from the ledger served as tlog-tiles on a
    # loopback port, checked down to the same device signature; the server is gone after.
    assert rep["served_proof_ok"] is True
    assert rep["served_url"].startswith("http://127.0.0.1:")
    assert f"--url {rep['served_url']} --device {proved.device_id} --seq " in p.stderr
    assert "same entry, leaf and tree as the proof file of step 6: yes" in p.stderr
    # ... a witness cosigned the served checkpoint over HTTP, and a mirror proved every
    # tile of that tree: its replica's checkpoint opens with the ledger key, same tree
    assert rep["witness_ok"] is True and "witness.demo.hashtrail.example/w1" in p.stderr
    assert rep["mirror_size"] == pc["tree_size"]
    replica_cp = (d / "replica" / "checkpoint").read_bytes()
    got, _ = note.open_checkpoint(replica_cp, [note.Verifier.from_string(vkey)])
    assert (got.size, got.root.hex()) == (pc["tree_size"], pc["root"])
    port = int(rep["served_url"].rstrip("/").rsplit(":", 1)[1])
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(("127.0.0.1", port), timeout=5).close()

    # The proof the demo printed checks with the CLI, offline, against the ledger's key
    # (and only with it: no key given fails closed).
    assert cli(["ledger", "verify-proof", "--verifier-key", vkey, str(d / "proof.json")]) == 0
    assert cli(["ledger", "verify-proof", str(d / "proof.json")]) == 2

    # Step 8: a signed release installed on dev0: its update entry is on dev0's flash,
    # signed by dev0, naming the package's manifest; the ledger's firmware history lists
    # it and its proof checks with the CLI. The old release offered again (counter 1
    # after 2) was refused: no second update entry, dev0 logged on under 0.2.0.
    u = rep["update"]
    dev0 = by_name["dev0"]
    assert u["ok"] and u["device_id"] == dev0.device_id
    pkg = manifest.parse_package((d / "firmware-0.2.0.htu").read_bytes()).manifest
    flash0 = _flash_chain(d / "devices" / "dev0.lfs")
    ups = [e for e in (parse_entry(b) for b, _ in flash0.values()) if e.kind == KIND_UPDATE]
    k = u["update_seq"]
    assert [(e.seq, e.fw, e.body) for e in ups] == [
        (k, "0.2.0", {1: "0.1.0", 2: "0.2.0", 3: 2, 4: pkg.hash})]
    assert _sig_ok(dev0.pub, *flash0[k])
    assert all(parse_entry(b).fw == "0.2.0" for s, (b, _) in flash0.items() if s > k)
    assert "security counter 1 is not above the installed 2 (rollback)" in p.stderr
    assert u["rollback_refused"] and u["still_logging"] and max(flash0) > k + 2
    with Ledger.open(d / "ledger.db") as led:
        (hist,) = firmware_history(led, dev0.device_id)
    assert hist.fw == "0.2.0" and [(x.seq, x.counter, x.manifest, x.findings)
                                   for x in hist.updates] == [(k, 2, pkg.hash, ())]
    proof = json.loads((d / "proof-update.json").read_text())
    assert bytes.fromhex(proof["leaf"])[60:] == flash0[k][0]
    assert cli(["ledger", "verify-proof", "--verifier-key", vkey,
                str(d / "proof-update.json")]) == 0


def test_ctrl_c_stops_every_device(tmp_path: Path) -> None:
    d = tmp_path / "demo"
    p = subprocess.Popen([*DEMO, "--dir", str(d)], stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, text=True)
    try:
        assert p.stdout is not None
        for line in p.stdout:
            if line.startswith("[3/10]"):
                break
        assert len(_processes_using(d)) == 3  # the devices are up
        p.send_signal(signal.SIGINT)
        _, err = p.communicate(timeout=30)
    finally:
        if p.poll() is None:
            p.kill()
    assert p.returncode == 130 and "interrupted" in err and "Traceback" not in err
    assert _processes_using(d) == []


def test_refuses_a_folder_in_use(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "ledger.db").write_text("someone's ledger")
    assert cli(["demo", "--dir", str(tmp_path)]) == 1
    assert "not empty" in capsys.readouterr().err
    assert (tmp_path / "ledger.db").read_text() == "someone's ledger"
    with pytest.raises(SystemExit) as ex:      # a usage error, before anything is made
        cli(["demo", "--dir", str(tmp_path / "new"), "--devices", "0"])
    assert ex.value.code == 2 and "--devices" in capsys.readouterr().err
    assert not (tmp_path / "new").exists()
