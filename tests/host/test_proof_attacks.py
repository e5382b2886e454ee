"""Attack 3 of issue 10: the ledger operator makes up a reading (docs/LEDGER.md "Proofs").

The ledgers here are real ledgers, SQLite files and PostgreSQL databases, filled by the
real reconcile from chains the real firmware wrote (tests/host/proofkit.py). The
operator then does what anyone holding the ledger and key can do: append a leaf for
the real, enrolled device with entry bytes the device never signed, and sign a new
checkpoint. `ledger prove` + `ledger
verify-proof --verifier-key` must refuse it at the device-signature step. A made-up
device key is another id and key fingerprint, which verify-proof prints and
`--device REAL_ID` refuses. Each of these tests fails on the code before proofs carried
the device's word (there, verify-proof printed "inclusion OK" for the made-up entry);
they import hashtrail.proof only inside the checks that need it, so that stays visible.
"""

from __future__ import annotations

import hashlib
import io
import json
import random
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pgtest
import pytest
from hashtrail.collector.bundle import parse_bundle, write_bundle
from hashtrail.collector.store import Enrollment, RawEntry
from hashtrail.formats import merkle, note
from hashtrail.formats.checkpoint import parse_checkpoint
from hashtrail.ledger.ledger_db import Ledger
from hashtrail.ledger.reconcile import reconcile
from ledgerkit import COLLECTOR, Device
from proofkit import (
    LABEL,
    FirmwareLedger,
    accepted_row,
    cli,
    copy_of,
    device_checkpoints,
    firmware_ledger,
    operator_appends,
    prove,
    signed_bundle,
    verify_proof,
)


@pytest.fixture(scope="module", params=[
    pytest.param((sign, backend), id=f"{name}-{backend}",
                 marks=[pytest.mark.postgresql] if backend == "postgresql" else [])
    for sign, name in ((True, "per-entry-signed"), (False, "checkpoint-signed"))
    for backend in ("sqlite", "postgresql")])
def fw(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
       ) -> Iterator[FirmwareLedger]:
    """The firmware-made ledger, on both backends (a PostgreSQL database and the copies
    the tests make of it are dropped after the module)."""
    sign, backend = request.param
    tmp = tmp_path_factory.mktemp("fwproof")
    if backend == "sqlite":
        yield firmware_ledger(tmp, sign)
        return
    pgtest.require_server()
    with pgtest.databases() as dbs:
        yield firmware_ledger(tmp, sign, pgtest.new_database(dbs), dbs)


def test_honest_proof_verifies_down_to_the_device(fw: FirmwareLedger, tmp_path: Path,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    fp = hashlib.sha256(fw.pub).hexdigest()
    for seq in (0, 7, fw.tip):
        doc = prove(capsys, fw.path, fw.device_id, seq)
        assert doc["format"] == "hashtrail-proof/3"
        assert doc["device"] == {"id": fw.device_id, "pub": fw.pub.hex(), "fingerprint": fp}
        assert doc["enrollment"]["signature"]["key"] == COLLECTOR.verifier().to_string()
        assert doc["enrollment"]["collector"] == "test collector"
        kind = doc["device_signature"]["kind"]
        assert kind == ("entry" if any(r.sig for r in fw.records) else "checkpoint")
        if kind == "checkpoint":    # the links from the entry to the covering checkpoint
            n = len(doc["device_signature"]["chain"])
            assert n == 0 if seq == fw.tip else 0 < n < 16
        code, out, err = verify_proof(capsys, tmp_path, doc, fw.verifier_key, "--device",
                                 fw.device_id)
        assert code == 0, err
        assert f"device {fw.device_id} seq {seq}" in out and fp in out
        code, out, _ = verify_proof(capsys, tmp_path, doc, fw.verifier_key, "--json")
        res = json.loads(out)["proof"]
        assert (res["device_id"], res["fingerprint"], res["seq"], res["signature_kind"]) \
            == (fw.device_id, fp, seq, kind)
        assert res["enrollment"]["label"] == LABEL


@pytest.mark.parametrize("how", ["random-sig", "replayed-sig"])
def test_operator_made_up_entry_is_refused_at_the_device_signature(
        fw: FirmwareLedger, tmp_path: Path, capsys: pytest.CaptureFixture[str],
        how: str) -> None:
    """The operator stores a signature with the made-up entry (random bytes, or the
    device's real signature of another entry), so `ledger prove` builds a complete
    proof: Merkle path and ledger checkpoint are genuine, the device signature is not."""
    path, key = copy_of(fw, tmp_path)
    with Ledger.open(path) as led:
        real_sig = accepted_row(led, fw.device_id, fw.tip)[3]
        # the device's newest signature: its last entry's, or its last checkpoint's r||s
        old = real_sig if real_sig is not None else \
            parse_checkpoint(max(device_checkpoints(led, fw.device_id))[1]).signature
    sig = random.Random(3).randbytes(64) if how == "random-sig" else old
    seq = operator_appends(path, fw.device_id, sig, key)
    doc = prove(capsys, path, fw.device_id, seq)
    code, out, err = verify_proof(capsys, tmp_path, doc, fw.verifier_key)
    assert code == 1 and out == "", out
    assert "step 'device signature'" in err and "Traceback" not in err
    assert err.startswith("hashtrail: error: proof refused at step 'device signature': ")
    assert doc["device_signature"] == {"kind": "entry", "sig": sig.hex()}


def test_operator_made_up_entry_without_a_signature(fw: FirmwareLedger, tmp_path: Path,
                                                    capsys: pytest.CaptureFixture[str]) -> None:
    """No signature stored: `ledger prove` cannot find the device's word for it. A proof
    the operator completes by hand with the device's real statements (its newest entry
    signature, or its newest checkpoint with or without the made-up entry as a chain
    link) is refused at the device-signature step."""
    path, key = copy_of(fw, tmp_path)
    honest = prove(capsys, path, fw.device_id, fw.tip)
    seq = operator_appends(path, fw.device_id, None, key)
    code, _, err = cli(capsys, "ledger", "prove", "--ledger", str(path), "--device",
                        fw.device_id, "--seq", str(seq))
    assert code == 1 and ("holds no signature" in err or "no device checkpoint" in err), err
    # the operator's hand-made proof: everything genuine but the device's word
    with Ledger.open(path) as led:
        newest = max(device_checkpoints(led, fw.device_id))
        index = accepted_row(led, fw.device_id, seq)[0]
        cp = led.latest_checkpoint()
        c, _ = note.open_checkpoint(cp, [note.Verifier.from_string(fw.verifier_key)])
        base = dict(honest, leaf=led.leaf(index).hex(), leaf_index=index,
                    tree_size=c.size, root=c.root.hex(), checkpoint=cp.decode(),
                    path=[h.hex() for h in merkle.prove_inclusion(led.node, index, c.size)])
    # the device's newest checkpoint (it covers the entry before the made-up one), and
    # the device's newest per-entry signature when it signs entries
    sigs: list[dict[str, Any]] = [{"kind": "checkpoint", "cose": newest[1].hex(),
                                   "chain": []}]
    if honest["device_signature"]["kind"] == "entry":
        sigs.append(honest["device_signature"])
    from hashtrail.ledger.proof import STEP_DEVICE_SIG, ProofError, check_inclusion_proof
    for dsig in sigs:
        doc = dict(base, device_signature=dsig)
        code, _out, err = verify_proof(capsys, tmp_path, doc, fw.verifier_key)
        assert code == 1 and "step 'device signature'" in err, (dsig["kind"], err)
        with pytest.raises(ProofError) as ei:
            check_inclusion_proof(doc, note.Verifier.from_string(fw.verifier_key))
        assert ei.value.step == STEP_DEVICE_SIG


def test_made_up_device_key_is_another_identity(fw: FirmwareLedger, tmp_path: Path,
                                                capsys: pytest.CaptureFixture[str]) -> None:
    """The operator makes up a device key, enrolls it under the real device's label
    through a collector key of their own, and proves a reading it signed. The proof
    verifies, but for another device id and key fingerprint, which verify-proof prints;
    `--device REAL_ID` refuses it. Claiming the real id with the made-up key is refused
    outright."""
    path, key = copy_of(fw, tmp_path)
    fake = Device(0xF00D, per_entry_sig=True)
    fake.entry(3, {1: fake.pub, 2: 1})
    fake.readings(5)
    operator_collector = note.Signer.generate("collector-operator")
    b = signed_bundle([(fake.id_hex, RawEntry(s, body, sig)) for s, body, sig in fake.entries],
                      [Enrollment(fake.id_hex, fake.pub, LABEL, "unix", "0.1.0", 1)], [])
    # re-sign the bundle with the operator's own collector key, which the ledger trusts
    buf = io.StringIO()
    write_bundle(b, buf, operator_collector)
    b = parse_bundle(io.BytesIO(buf.getvalue().encode("ascii")))
    with Ledger.open_signing(path, key) as led:
        led.trust_collector(operator_collector.verifier(), "operator")
        assert reconcile(led, b).accepted == 6
    doc = prove(capsys, path, fake.id_hex, 3)
    fake_fp = hashlib.sha256(fake.pub).hexdigest()
    code, out, err = verify_proof(capsys, tmp_path, doc, fw.verifier_key)
    assert code == 0 and fake.id_hex in out and fake_fp in out and fw.device_id not in out
    code, out, err = verify_proof(capsys, tmp_path, doc, fw.verifier_key, "--device", fw.device_id)
    assert code == 1 and "step 'device key'" in err and fake.id_hex in err, err
    assert fake_fp in err and len(err.splitlines()) == 2        # the error and its hint
    # the made-up key named as the real device: the key does not hash to that id
    from hashtrail.ledger.proof import (
        STEP_DEVICE_KEY,
        ProofError,
        build_inclusion_proof,
        check_inclusion_proof,
    )
    claimed = dict(doc, device={"id": fw.device_id, "pub": fake.pub.hex(),
                                "fingerprint": fake_fp})
    with pytest.raises(ProofError) as ei:
        check_inclusion_proof(claimed, note.Verifier.from_string(fw.verifier_key),
                              device_id=fw.device_id)
    assert ei.value.step == STEP_DEVICE_KEY
    # the real device's leaf shown with the made-up key: refused too
    with Ledger.open(path) as led:
        real = build_inclusion_proof(led, fw.device_id, 3)
    real["device"] = doc["device"]
    with pytest.raises(ProofError):
        check_inclusion_proof(real, note.Verifier.from_string(fw.verifier_key))


