"""verify-proof's other duties (docs/LEDGER.md "Proofs"): `ledger prove --checkpoint`
with witness cosignatures, `--witness-key` / `--min-witnesses`, bad input (exit 2, no
traceback), and every one-bit flip of every field of a valid proof failing with the
same error type (ProofError). Ledgers from the real firmware and the real reconcile
(tests/host/proofkit.py); the attacks themselves are in test_proof_attacks.py.
"""

from __future__ import annotations

import copy
import json
import random
import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hashtrail.cli import main
from hashtrail.formats import note
from hashtrail.ledger.ledger_db import Ledger
from hashtrail.ledger.proof import ProofError, check_inclusion_proof
from ledgerkit import COLLECTOR
from proofkit import FirmwareLedger, cli, firmware_ledger, prove, verify_proof


@pytest.fixture(scope="module", params=[True, False], ids=["per-entry-signed",
                                                           "checkpoint-signed"])
def fw(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
       ) -> FirmwareLedger:
    return firmware_ledger(tmp_path_factory.mktemp("fwproof"), bool(request.param))


# -- --checkpoint, witnesses, usage ----------------------------------------------------------

def _witness(tmp: Path, name: str) -> tuple[Path, str]:
    w = note.Signer.generate(name)
    kf = tmp / f"{name}.key"
    kf.write_text(w.to_string())
    return kf, w.verifier().cosigner_string()


def test_prove_against_a_cosigned_checkpoint(fw: FirmwareLedger, tmp_path: Path,
                                             capsys: pytest.CaptureFixture[str]) -> None:
    led = str(fw.path)
    code, out, _ = cli(capsys, "ledger", "checkpoint", "--ledger", led)
    cp = tmp_path / "cp.txt"
    cp.write_text(out if out.endswith("\n") else out + "\n")
    k1, w1 = _witness(tmp_path, "witness-one")
    _k2, w2 = _witness(tmp_path, "witness-two")
    cos = tmp_path / "cosigned.txt"
    code, out, err = cli(capsys, "ledger", "cosign", "--ledger", led, "--key", str(k1),
                          "--state", str(tmp_path / "w1.state"), "--verifier-key",
                          fw.verifier_key, str(cp), "--out", str(cos), "--json")
    assert code == 0, err
    assert json.loads(out)["cosigner_key"] == w1
    doc = prove(capsys, fw.path, fw.device_id, 5, "--checkpoint", str(cos))
    assert doc["checkpoint"] == cos.read_text()
    code, out, err = verify_proof(capsys, tmp_path, doc, fw.verifier_key, "--witness-key", w1)
    assert code == 0 and "witnesses: witness-one" in out, err
    code, out, err = verify_proof(capsys, tmp_path, doc, fw.verifier_key, "--witness-key", w1,
                             "--witness-key", w2, "--min-witnesses", "1")
    assert code == 0, err
    # fails closed: both trusted witnesses required (the default), one cosigned
    code, _, err = verify_proof(capsys, tmp_path, doc, fw.verifier_key, "--witness-key", w1,
                           "--witness-key", w2)
    assert code == 1 and "step 'witnesses'" in err and "1 valid cosignature" in err
    # the latest stored checkpoint carries no cosignature
    plain = prove(capsys, fw.path, fw.device_id, 5)
    code, _, err = verify_proof(capsys, tmp_path, plain, fw.verifier_key, "--witness-key", w1)
    assert code == 1 and "step 'witnesses'" in err
    # more required than keys given: a usage error
    code, _, err = verify_proof(capsys, tmp_path, doc, fw.verifier_key, "--witness-key", w1,
                           "--min-witnesses", "2")
    assert code == 2 and "Traceback" not in err
    # a cosignature line that claims witness-one but does not verify: refused
    bad = cos.read_text().splitlines(keepends=True)
    last = bad[-1]
    raw = bytearray(note._unb64(last.split(" ")[2].strip(), "x"))
    raw[-1] ^= 1
    bad[-1] = last.rsplit(" ", 1)[0] + " " + note._b64(bytes(raw)) + "\n"
    code, _, err = verify_proof(capsys, tmp_path, dict(doc, checkpoint="".join(bad)),
                           fw.verifier_key, "--witness-key", w1)
    assert code == 1 and "step 'witnesses'" in err and "does not verify" in err


def test_prove_refuses_a_checkpoint_of_another_ledger_or_tree(
        fw: FirmwareLedger, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with Ledger.open_signing(fw.path) as led:
        size, root, origin = led.size, led.root(), led.origin
        signer = led.require_signer()
        older = note.sign_checkpoint(note.Checkpoint(origin, 3, led.root(3)), [signer])
    other = note.Signer.generate(origin)
    cases = {
        "another key": note.sign_checkpoint(note.Checkpoint(origin, size, root), [other]),
        "another tree": note.sign_checkpoint(note.Checkpoint(origin, size, bytes(32)),
                                             [signer]),
        "bigger tree": note.sign_checkpoint(note.Checkpoint(origin, size + 1, root),
                                            [signer]),
        "too old": older,
        "another origin": note.sign_checkpoint(note.Checkpoint("elsewhere.example/log", size,
                                                               root), [signer]),
    }
    with Ledger.open(fw.path) as led:
        stored = led.checkpoints()
    for why, data in cases.items():
        f = tmp_path / "cp.txt"
        f.write_bytes(data)
        code, out, err = cli(capsys, "ledger", "prove", "--ledger", str(fw.path), "--device",
                              fw.device_id, "--seq", "5", "--checkpoint", str(f))
        assert code == 1 and out == "" and "Traceback" not in err, (why, err)
        assert ("not signed by this ledger" in err) == (why == "another key"), err
    # an older checkpoint of this very tree that covers the entry: fine
    f.write_bytes(older)
    doc = prove(capsys, fw.path, fw.device_id, 1, "--checkpoint", str(f))
    assert doc["tree_size"] == 3
    code, _, err = verify_proof(capsys, tmp_path, doc, fw.verifier_key)
    assert code == 0, err
    with Ledger.open(fw.path) as led:             # prove reads; it never signs
        assert led.checkpoints() == stored


def test_bad_input_is_exit_2_without_traceback(fw: FirmwareLedger, tmp_path: Path,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    doc = prove(capsys, fw.path, fw.device_id, 4)
    p = tmp_path / "p.json"
    variants: list[str] = ["not json", "[]", json.dumps({k: v for k, v in doc.items()
                                                         if k != "device"}),
                           json.dumps(dict(doc, root=doc["root"].upper())),
                           json.dumps(dict(doc, leaf="0x" + doc["leaf"])),
                           json.dumps(dict(doc, leaf_index=str(doc["leaf_index"]))),
                           json.dumps(dict(doc, extra=1)),
                           json.dumps(dict(doc, format="hashtrail-proof/1")),
                           # a field twice: two readers could take either copy
                           json.dumps(doc)[:-1] + ', "leaf_index": 0}']
    for text in variants:
        p.write_text(text)
        code, out, err = cli(capsys, "ledger", "verify-proof", "--verifier-key",
                              fw.verifier_key, str(p))
        assert code == 2 and out == "" and "Traceback" not in err, (text[:60], err)
    p.write_bytes(b"\xff" + json.dumps(doc).encode())       # not UTF-8
    assert cli(capsys, "ledger", "verify-proof", "--verifier-key", fw.verifier_key,
               str(p))[0] == 2
    p.write_text(json.dumps(doc))
    for bad in (fw.device_id.upper(), " " + fw.device_id, "0x" + fw.device_id,
                fw.device_id[:-1]):
        code, _, err = cli(capsys, "ledger", "verify-proof", "--verifier-key",
                            fw.verifier_key, "--device", bad, str(p))
        assert code == 2 and "32 lower-case hex characters" in err, err
        code, _, err = cli(capsys, "ledger", "prove", "--ledger", str(fw.path), "--device",
                            bad, "--seq", "4")
        assert code == 2 and "32 lower-case hex characters" in err, err


# -- every bit of every field ----------------------------------------------------------------

def _flip_bits(data: bytes, limit: int, rng: random.Random) -> Iterator[bytes]:
    """Every one-bit flip of `data` when it has at most `limit` bits, else `limit`
    distinct random ones."""
    n = len(data) * 8
    bits = range(n) if n <= limit else rng.sample(range(n), limit)
    for b in bits:
        out = bytearray(data)
        out[b >> 3] ^= 0x80 >> (b & 7)
        yield bytes(out)


def _flip_text(text: str, limit: int, rng: random.Random) -> Iterator[str]:
    """One-bit flips of a text's UTF-8 bytes that are still UTF-8 (a JSON string)."""
    for b in _flip_bits(text.encode(), limit, rng):
        try:
            yield b.decode("utf-8")
        except UnicodeDecodeError:
            continue


def _mutants(doc: dict[str, Any], rng: random.Random) -> Iterator[tuple[str, Any]]:
    """(field, mutated document) for one-bit flips of every field the proof's checks
    rest on. Short fields exhaustively, long ones (leaf, device checkpoint, chain,
    signed checkpoint) sampled."""
    short, long = 65 * 8, 384

    def put(path: tuple[Any, ...], value: Any) -> dict[str, Any]:
        d = copy.deepcopy(doc)
        t: Any = d
        for k in path[:-1]:
            t = t[k]
        t[path[-1]] = value
        return d

    hexes: list[tuple[Any, ...]] = [("leaf",), ("root",), ("device", "id"), ("device", "pub"),
                                    ("device", "fingerprint")]
    hexes += [("path", i) for i in range(len(doc["path"]))]
    ds = doc["device_signature"]
    if ds["kind"] == "entry":
        hexes.append(("device_signature", "sig"))
    else:
        hexes.append(("device_signature", "cose"))
        hexes += [("device_signature", "chain", i) for i in range(len(ds["chain"]))]
    for path in hexes:
        v = doc
        for k in path:
            v = v[k]
        raw = bytes.fromhex(v)
        lim = short if len(raw) <= 65 else long
        for m in _flip_bits(raw, lim, rng):
            yield "/".join(map(str, path)), put(path, m.hex())
    for key in ("leaf_index", "tree_size"):
        for b in range(64):
            yield key, put((key,), doc[key] ^ (1 << b))
    for path in [("format",), ("type",), ("verifier_key",), ("device_signature", "kind")]:
        v = doc
        for k in path:
            v = v[k]
        for t in _flip_text(v, short, rng):
            yield "/".join(path), put(path, t)
    for t in _flip_text(doc["checkpoint"], 4 * long, rng):
        yield "checkpoint", put(("checkpoint",), t)


def test_every_bit_flip_of_a_proof_fails(fw: FirmwareLedger, tmp_path: Path,
                                         capsys: pytest.CaptureFixture[str]) -> None:
    """A valid proof under a witness-cosigned checkpoint, checked with that witness
    required: each one-bit flip of any field fails with a ProofError (the same error
    type for every step, bad input included)."""
    led = str(fw.path)
    _code, out, _ = cli(capsys, "ledger", "checkpoint", "--ledger", led)
    cp = tmp_path / "cp.txt"
    cp.write_text(out if out.endswith("\n") else out + "\n")
    k1, w1 = _witness(tmp_path, "witness-bits")
    cos = tmp_path / "cos.txt"
    assert main(["ledger", "cosign", "--ledger", led, "--key", str(k1), "--state",
                 str(tmp_path / "st"), "--verifier-key", fw.verifier_key, str(cp),
                 "--out", str(cos)]) == 0
    seq = fw.tip - 2       # a checkpoint-signed device: a chain of links to its checkpoint
    doc = prove(capsys, fw.path, fw.device_id, seq, "--checkpoint", str(cos))
    if doc["device_signature"]["kind"] == "checkpoint":
        assert doc["device_signature"]["chain"]
    trusted = note.Verifier.from_string(fw.verifier_key)
    wkeys = [note.Verifier.from_string(w1)]
    pc = check_inclusion_proof(doc, trusted, wkeys, 1, fw.device_id)
    assert pc.witnesses == ("witness-bits",)
    rng = random.Random(10)
    counts: dict[str, int] = {}
    steps: set[str] = set()
    for field, mutant in _mutants(doc, rng):
        counts[field.split("/")[0]] = counts.get(field.split("/")[0], 0) + 1
        try:
            check_inclusion_proof(mutant, trusted, wkeys, 1, fw.device_id)
        except ProofError as e:
            steps.add(e.step)
            continue
        pytest.fail(f"a one-bit flip of {field} verifies")
    assert counts["leaf"] >= 384 and counts["device"] == 8 * (16 + 65 + 32)
    assert counts["checkpoint"] > 1000 and counts["path"] == 256 * len(doc["path"])
    assert {"input", "device key", "leaf", "device signature", "inclusion", "checkpoint",
            "ledger signature", "witnesses"} <= steps, steps


def test_an_enrollment_edited_in_the_proof_is_refused(fw: FirmwareLedger, tmp_path: Path,
                                                      capsys: pytest.CaptureFixture[str]
                                                      ) -> None:
    """docs/LEDGER.md: the collector signs the enrollment a /3 proof carries. A label,
    board, firmware or time changed in the proof is refused at step 'enrollment', with
    or without --collector-key; the honest proof names the collector key."""
    doc = prove(capsys, fw.path, fw.device_id, 2)
    ckey = COLLECTOR.verifier()
    who = f"{ckey.name}+{ckey.key_id.hex()}"
    code, out, err = verify_proof(capsys, tmp_path, doc, fw.verifier_key)
    assert code == 0, err
    assert f"enrollment signed by collector {who} (the proof's key; give --collector-key" \
        in out
    code, out, err = verify_proof(capsys, tmp_path, doc, fw.verifier_key, "--collector-key",
                                  ckey.to_string())
    assert code == 0, err
    assert f"enrollment signed by collector {who}, a key you trust: label 'cold room 1'" \
        in out
    for k, v in (("label", "someone else's room"), ("board", "esp32s3"), ("fw", "9.9.9"),
                 ("enrolled_at", 1_600_000_000)):
        bad = copy.deepcopy(doc)
        bad["enrollment"][k] = v
        for extra in ((), ("--collector-key", ckey.to_string())):
            code, out, err = verify_proof(capsys, tmp_path, bad, fw.verifier_key, *extra)
            assert code == 1 and out == "", (k, out)
            assert err.startswith("hashtrail: error: proof refused at step 'enrollment': the "
                                  f"enrollment signature by collector {who} does not verify"), err


def test_an_unsigned_enrollment_is_the_operators_statement(
        fw: FirmwareLedger, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """An enrollment without a collector signature (signature null in a /3 proof, or a
    hashtrail-proof/2) verifies as the operator's statement, and says so; with
    --collector-key it is refused: the user asked for a collector's word."""
    doc = prove(capsys, fw.path, fw.device_id, 2)
    unsigned = copy.deepcopy(doc)
    unsigned["enrollment"]["signature"] = None
    unsigned["enrollment"]["label"] = "someone else's room"
    old = copy.deepcopy(unsigned)
    old["format"] = "hashtrail-proof/2"
    del old["enrollment"]["signature"]
    for d in (unsigned, old):
        code, out, err = verify_proof(capsys, tmp_path, d, fw.verifier_key)
        assert code == 0, err
        assert "enrollment not signed (the operator's statement): label " \
               "\"someone else's room\"" in out
        code, out, err = verify_proof(capsys, tmp_path, d, fw.verifier_key, "--collector-key",
                                      COLLECTOR.verifier().to_string())
        assert code == 1 and "step 'enrollment': the enrollment is not signed by a " \
            "collector" in err, err
    # a /2 proof with a signature field is not a /2 proof
    bad = copy.deepcopy(doc)
    bad["format"] = "hashtrail-proof/2"
    code, _, err = verify_proof(capsys, tmp_path, bad, fw.verifier_key)
    assert code == 2 and "enrollment has unknown fields ['signature']" in err, err


def test_prove_refuses_an_entry_without_the_devices_word(
        fw: FirmwareLedger, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A device whose entry 0 declares policy 1 signs every entry: a ledger row without
    that signature is damage, and `ledger prove` says so instead of proving it. For a
    checkpoint-signed device, the same when no stored device checkpoint covers it."""
    path = tmp_path / "l.db"
    path.write_bytes(fw.path.read_bytes())
    signed = any(r.sig for r in fw.records)
    with sqlite3.connect(path) as db:      # the file, edited by hand
        if signed:
            db.execute("UPDATE entries SET sig=NULL WHERE device_id=? AND seq=5",
                       (fw.device_id,))
        else:
            db.execute("DELETE FROM dev_checkpoints WHERE device_id=?", (fw.device_id,))
    db.close()
    code, out, err = cli(capsys, "ledger", "prove", "--ledger", str(path), "--device",
                         fw.device_id, "--seq", "5")
    want = "holds no signature for seq 5" if signed else "no device checkpoint in the " \
        "ledger covers"
    assert code == 1 and out == "" and want in err, err
