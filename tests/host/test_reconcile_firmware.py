"""Reconcile chains made by the REAL firmware, not by tools/devchain.py.

The device's log (firmware/lib/hashtrail/devlog.py, via tests/firmware/devhelp.make_image) runs
under the MicroPython unix port on a littlefs image; the host reads the image with
littlefs-python, parses the flash records (records.py), files them in a collector store
exactly as received, exports a bundle and reconciles it through the real CLI into a
ledger file. Entries must be accepted, proofs must verify offline, and an edited entry
must be refused with device id, seq and reason. Both device modes: checkpoint-signed
and per-entry-signed chains.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import cbor2
import pytest
from fwimage import BLOCK, device_image, log_records
from hashtrail.chain.devicecheck import DeviceKey
from hashtrail.cli import main
from hashtrail.collector.store import RawEntry, Store, device_id_of
from hashtrail.device.imagefs import read_image
from hashtrail.formats.records import MAGIC_CHECKPOINT, Record, parse_records
from ledgerkit import Device
from mutation_vectors import by_name

READINGS = 40


class DeviceChain:
    secret = 0      # the device's private scalar (read off its flash image), if known

    def __init__(self, pub: bytes, records: list[Record], last_seq: int) -> None:
        self.pub, self.records, self.last_seq = pub, records, last_seq
        self.device_id = device_id_of(pub)
        key = DeviceKey(pub)
        self.signed = any(r.sig is not None for r in records)
        # the ledger accepts up to the last entry a device signature covers; the device
        # appends an "acknowledged" entry after its last checkpoint, which waits
        self.covered = max([key.checkpoint(r.body).seq for r in records
                            if r.magic == MAGIC_CHECKPOINT]
                           + [r.seq for r in records if r.is_entry and r.sig is not None])


def _firmware_chain(tmp: Path, sign: bool) -> DeviceChain:
    """Run devlog on the unix port and read back what it left on the flash image."""
    image, last, _head = device_image(tmp, sign, READINGS)
    files = read_image(image, BLOCK)
    recs, problems = log_records(files)
    assert problems == []
    ch = DeviceChain(files["/ht/key"][36:101], recs, last)
    ch.secret = int.from_bytes(files["/ht/key"][4:36], "big")   # HTK1 || d || pub || crc
    return ch


_CHAINS: dict[bool, DeviceChain] = {}


def _chain(tmp_path_factory: pytest.TempPathFactory, sign: bool) -> DeviceChain:
    """One firmware run per mode for the whole module."""
    if sign not in _CHAINS:
        _CHAINS[sign] = _firmware_chain(tmp_path_factory.mktemp("fw"), sign)
    return _CHAINS[sign]


@pytest.fixture(scope="module", params=[False, True], ids=["checkpoint-signed",
                                                             "per-entry-signed"])
def chain(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
          ) -> DeviceChain:
    return _chain(tmp_path_factory, bool(request.param))


def _bundle(tmp: Path, ch: DeviceChain, name: str,
            edit: tuple[int, int] | None = None, trusted_by: str | None = None) -> Path:
    """Collector side: file the device records as received, then `hashtrail export`.
    `edit` = (seq, byte offset from the end) flips one bit of that entry's body;
    `trusted_by` = a ledger that then trusts this collector's key (so it may enroll)."""
    key = DeviceKey(ch.pub)
    with Store.open(tmp / f"{name}.db") as st:
        st.enroll(ch.device_id, ch.pub, label="fw-unix", board="unix", fw="0.1.0")
        entries = []
        for r in ch.records:
            if r.magic == MAGIC_CHECKPOINT:
                cp = key.checkpoint(r.body)
                st.add_checkpoint(ch.device_id, r.body, cp.nonce, seq=cp.seq, head=cp.head)
                continue
            body = bytearray(r.body)
            if edit is not None and r.seq == edit[0]:
                body[-edit[1]] ^= 0x01
            entries.append(RawEntry(r.seq, bytes(body), r.sig))
        st.quarantine(ch.device_id, entries)
    out = tmp / f"{name}.jsonl"
    assert main(["export", "--store", str(tmp / f"{name}.db"), "--out", str(out),
                 "--name", name]) == 0
    if trusted_by is not None:
        with Store.open(tmp / f"{name}.db") as st:
            key = st.signer.verifier().to_string()
        assert main(["ledger", "trust", "--ledger", trusted_by, key, "--name", name]) == 0
    return out


def _cli_json(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, Any]:
    capsys.readouterr()
    code = main([*argv, "--json"])
    return code, json.loads(capsys.readouterr().out)


def test_firmware_chain_is_accepted_and_proves(chain: DeviceChain, tmp_path: Path,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    led = str(tmp_path / "ledger.db")
    code, init = _cli_json(capsys, "ledger", "init", "--ledger", led, "--origin",
                           "test.example/fw")
    assert code == 0
    code, out = _cli_json(capsys, "reconcile", "--ledger", led,
                          str(_bundle(tmp_path, chain, "c1", trusted_by=led)))
    (b,) = out["bundles"]
    assert code == 0 and b["findings"] == [], b
    assert b["accepted"] == chain.covered + 1 == out["size"]
    assert b["pending"] == chain.last_seq - chain.covered
    assert b["checkpoints"] >= 3
    if chain.signed:
        assert chain.covered == chain.last_seq
        assert all(r.sig is not None for r in chain.records if r.is_entry)
    else:
        assert chain.last_seq - chain.covered == 1       # the trailing ack entry
    for seq in (0, 7, chain.covered):
        code, proof = _cli_json(capsys, "ledger", "prove", "--ledger", led,
                                "--device", chain.device_id, "--seq", str(seq))
        assert code == 0
        assert bytes.fromhex(proof["leaf"])[4:20].hex() == chain.device_id
        p = tmp_path / f"proof{seq}.json"
        p.write_text(json.dumps(proof))
        key = ["--verifier-key", init["verifier_key"]]    # the operator's, printed by init
        assert main(["ledger", "verify-proof", *key, str(p)]) == 0
        proof["leaf"] = proof["leaf"][:-2] + ("00" if proof["leaf"][-2:] != "00" else "01")
        p.write_text(json.dumps(proof))
        assert main(["ledger", "verify-proof", *key, str(p)]) != 0
    code, rep = _cli_json(capsys, "verify", "--ledger", led)
    dev = rep["devices"][0]
    assert not rep["problems"] and not dev["problems"], rep
    assert dev["entries"] == chain.covered + 1 and dev["pending"] == b["pending"]
    assert code == 0              # a held entry is an expected anomaly, not a problem
    # a second collector with the same records: merged once
    code, out = _cli_json(capsys, "reconcile", "--ledger", led,
                          str(_bundle(tmp_path, chain, "c2")))
    assert code == 0 and out["bundles"][0]["accepted"] == 0
    assert out["bundles"][0]["duplicates"] == chain.covered + 1


def test_edited_firmware_entry_is_refused(chain: DeviceChain, tmp_path: Path,
                                          capsys: pytest.CaptureFixture[str]) -> None:
    signed = chain.signed
    led = str(tmp_path / "ledger.db")
    assert main(["ledger", "init", "--ledger", led, "--origin", "test.example/fw"]) == 0
    # the last byte of seq 20's body: the low byte of its second reading's float value
    code, out = _cli_json(capsys, "reconcile", "--ledger", led,
                          str(_bundle(tmp_path, chain, "evil", edit=(20, 1), trusted_by=led)))
    (b,) = out["bundles"]
    assert code == 1
    found = [(f["device_id"], f["seq"], f["reason"]) for f in b["findings"]]
    if signed:   # the entry's own signature no longer verifies: refused at its seq
        assert (chain.device_id, 20, "entry refused: per-entry signature does not verify") \
            in found
        assert b["accepted"] == 20
    else:        # only the chain shows it: the next entry no longer links to it
        assert any(d == chain.device_id and s == 21 and "does not link" in r
                   for d, s, r in found), found
        assert b["accepted"] < 20
    code, rep = _cli_json(capsys, "verify", "--ledger", led)
    assert rep["devices"][0]["entries"] == b["accepted"]
    assert rep["devices"][0]["pending"] > 0
    # the honest collector's records then complete the chain from where it stopped
    code, out = _cli_json(capsys, "reconcile", "--ledger", led,
                          str(_bundle(tmp_path, chain, "honest")))
    assert out["size"] == chain.covered + 1


def _rewrite(ch: DeviceChain, seq: int, *, edit: bool) -> DeviceChain:
    """A keyless flash attacker: from `seq` on, signatures stripped (and with `edit`,
    entry `seq`'s reading changed and every later prev link recomputed); the
    checkpoints over the old heads removed. Then the device, as the firmware before
    issue 10 did at collection, signs a fresh checkpoint over the head it holds (made
    here with its key, read off the image)."""
    recs: list[Record] = []
    prev = b""
    for r in ch.records:
        if r.magic == MAGIC_CHECKPOINT:
            if DeviceKey(ch.pub).checkpoint(r.body).seq < seq:
                recs.append(r)
            continue
        body = r.body
        if r.seq >= seq and edit:
            m = cbor2.loads(body)
            if r.seq == seq:
                m[8][0][2] = 30.5                   # the temperature reading
            else:
                m[5] = prev
            body = cbor2.dumps(m, canonical=True)
        prev = hashlib.sha256(body).digest()
        recs.append(Record(r.magic, r.seq, body, None if r.seq >= seq else r.sig,
                           r.source, r.offset))
    dev = Device(ch.secret)
    assert dev.pub == ch.pub
    dev.entries = [(r.seq, r.body, r.sig) for r in recs if r.is_entry]
    cose = dev.checkpoint(b"collector-nonce!")
    recs.append(Record(MAGIC_CHECKPOINT, ch.last_seq, cose, None, "fresh", 0))
    out = DeviceChain(ch.pub, recs, ch.last_seq)
    out.secret = ch.secret
    return out


@pytest.mark.parametrize("attack, seq", [("strip", 20), ("edit", 20), ("tail", 0)])
def test_flash_rewrite_signed_afresh(attack: str, seq: int, tmp_path: Path,
                                     tmp_path_factory: pytest.TempPathFactory,
                                     capsys: pytest.CaptureFixture[str]) -> None:
    """The issue's attack 1 on firmware-made chains. A device that signs every entry
    (entry 0: policy 1): refused at the first entry without its own signature, with
    device id, seq and reason, whatever the fresh checkpoint says. A device that signs
    checkpoints only (policy 0): its entries after the last checkpoint made before the
    rewrite are "unprotected until checkpoint N", and the rewrite is accepted: what
    docs/THREATS.md says an attacker can do to them."""
    for sign in (True, False):
        ch = _chain(tmp_path_factory, sign)
        at = seq or ch.last_seq - 2
        evil = _rewrite(ch, at, edit=attack == "edit")
        led = str(tmp_path / f"ledger-{sign}.db")
        assert main(["ledger", "init", "--ledger", led, "--origin", "test.example/fw"]) == 0
        code, out = _cli_json(capsys, "reconcile", "--ledger", led,
                              str(_bundle(tmp_path, evil, f"evil{sign}", trusted_by=led)))
        (b,) = out["bundles"]
        if sign:
            assert code == 1 and b["accepted"] == at == out["size"]
            found = [(f["device_id"], f["seq"], f["reason"]) for f in b["findings"]]
            assert found == [(ch.device_id, at, "entry unsigned: it carries no device "
                              "signature, but this device signs every entry (entry 0); "
                              "held")], found
        else:
            assert code == 0 and b["accepted"] == ch.last_seq + 1, b


def _vector_chain(name: str) -> DeviceChain:
    recs: list[Record] = []
    v = by_name(name)
    for seg in v["segments"]:
        recs += parse_records(bytes.fromhex(seg["data"]), seg["name"])[0]
    return DeviceChain(bytes.fromhex(v["pub"]), recs, max(r.seq for r in recs if r.is_entry))


@pytest.mark.parametrize("name", ["log-altered", "log-altered-signed"])
def test_log_altered_report_is_never_accepted(name: str, tmp_path: Path,
                                              capsys: pytest.CaptureFixture[str]) -> None:
    """The firmware's log-altered entry (27, disowning 24..26; made by the device
    modules, tools/gen_mutations.py) and checkpoints at 29 and 39 after it: the ledger
    takes 0..23 and nothing from 24, however often it is reconciled."""
    ch = _vector_chain(name)
    led = str(tmp_path / "ledger.db")
    assert main(["ledger", "init", "--ledger", led, "--origin", "test.example/fw"]) == 0
    for run in range(2):
        code, out = _cli_json(capsys, "reconcile", "--ledger", led,
                              str(_bundle(tmp_path, ch, f"c{run}",
                                          trusted_by=led if run == 0 else None)))
        (b,) = out["bundles"]
        assert code == 1 and out["size"] == 24
        assert b["accepted"] == (24 if run == 0 else 0)
        assert [(f["device_id"], f["seq"], f["reason"]) for f in b["findings"]] == [
            (ch.device_id, 24, "log altered: the device reports entries 24..26 altered on "
             "its flash (log-altered entry 27): entry 24 does not match its signature; "
             "never accepted")]
