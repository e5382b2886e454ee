"""Reconcile chains made by the REAL firmware, not by tools/devchain.py.

The device's log (firmware/lib/devlog.py, via tests/firmware/devhelp.make_image) runs
under the MicroPython unix port on a littlefs image; the host reads the image with
littlefs-python, parses the flash records (records.py), files them in a collector store
exactly as received, exports a bundle and reconciles it through the real CLI into a
ledger file. Entries must be accepted, proofs must verify offline, and an edited entry
must be refused with device id, seq and reason. Both device modes: checkpoint-signed
and per-entry-signed chains.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from fwimage import BLOCK, device_image, log_records
from hashtrail.cli import main
from hashtrail.devicecheck import DeviceKey
from hashtrail.imagefs import read_image
from hashtrail.records import MAGIC_CHECKPOINT, Record
from hashtrail.store import RawEntry, Store, device_id_of

READINGS = 40


class DeviceChain:
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
    return DeviceChain(files["/ht/key"][36:101], recs, last)


@pytest.fixture(scope="module", params=[False, True], ids=["checkpoint-signed",
                                                             "per-entry-signed"])
def chain(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
          ) -> DeviceChain:
    return _firmware_chain(tmp_path_factory.mktemp("fw"), bool(request.param))


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
    assert code == (0 if chain.signed else 1)            # a held entry is an anomaly
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
