"""A proof from `hashtrail ledger prove`, checked end to end WITHOUT hashtrail's verifier.

`independent_check` below uses only `cryptography`, `hashlib`, `json` and `base64`,
written from the specs, not from hashtrail's code: the device key hashes to the
device id (docs/FORMATS.md "Device identity"); the leaf (docs/LEDGER.md "Leaf
bytes") names that id and seq and carries SHA-256 of the entry; the device's ECDSA
P-256 signature (r || s, turned into DER) over the entry hash; the RFC 9162 §2.1.3.2
inclusion path; and the Ed25519 signature of the C2SP signed-note checkpoint by the
ledger key the verifier trusts (key id = SHA-256(name || 0x0A || 0x01 || pub)[:4]).
The proof comes from the real CLI over a ledger that the real reconcile filled from
chains the real firmware wrote (per-entry signed). The same checker refuses the
operator's made-up entry (test_proof_attacks.py): so it is not a checker that passes
anything.
"""

from __future__ import annotations

import base64
import hashlib
import json
from pathlib import Path
from typing import Any

import pytest
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.ed25519 import (
    Ed25519PrivateKey,
    Ed25519PublicKey,
)
from cryptography.hazmat.primitives.asymmetric.utils import Prehashed, encode_dss_signature
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat


class Refused(Exception):
    pass


def _node(left: bytes, right: bytes) -> bytes:
    return hashlib.sha256(b"\x01" + left + right).digest()


def independent_check(doc: dict[str, Any], ledger_vkey: str) -> tuple[str, str, int]:
    """(device id, key fingerprint, seq) the proof proves; Refused otherwise."""
    if doc["format"] not in ("hashtrail-proof/3", "hashtrail-proof/2") \
            or doc["type"] != "inclusion":
        raise Refused("format")
    # the device key hashes to the device id
    pub = bytes.fromhex(doc["device"]["pub"])
    fingerprint = hashlib.sha256(pub).hexdigest()
    device_id = fingerprint[:32]
    if (doc["device"]["id"], doc["device"]["fingerprint"]) != (device_id, fingerprint):
        raise Refused("device key")
    # the leaf: "HTL1" || id (16) || seq (u64 BE) || SHA-256(entry) || entry
    leaf = bytes.fromhex(doc["leaf"])
    entry = leaf[60:]
    if leaf[:4] != b"HTL1" or leaf[4:20].hex() != device_id \
            or hashlib.sha256(entry).digest() != leaf[28:60]:
        raise Refused("leaf")
    seq = int.from_bytes(leaf[20:28], "big")
    # the device's own signature over the entry hash (ECDSA P-256, SHA-256)
    dsig = doc["device_signature"]
    if dsig["kind"] != "entry":
        raise Refused("this checker reads per-entry signatures only")
    sig = bytes.fromhex(dsig["sig"])
    der = encode_dss_signature(int.from_bytes(sig[:32], "big"),
                               int.from_bytes(sig[32:], "big"))
    key = ec.EllipticCurvePublicKey.from_encoded_point(ec.SECP256R1(), pub)
    try:
        key.verify(der, leaf[28:60], ec.ECDSA(Prehashed(hashes.SHA256())))
        key.verify(der, entry, ec.ECDSA(hashes.SHA256()))     # the same, hashed by OpenSSL
    except InvalidSignature:
        raise Refused("device signature") from None
    # RFC 9162 §2.1.3.2 inclusion
    index, size = doc["leaf_index"], doc["tree_size"]
    fn, sn = index, size - 1
    r = hashlib.sha256(b"\x00" + leaf).digest()
    for p in (bytes.fromhex(h) for h in doc["path"]):
        if sn == 0:
            raise Refused("inclusion")
        if fn & 1 or fn == sn:
            r = _node(p, r)
            while not fn & 1 and fn != 0:
                fn, sn = fn >> 1, sn >> 1
        else:
            r = _node(r, p)
        fn, sn = fn >> 1, sn >> 1
    if sn != 0 or r != bytes.fromhex(doc["root"]) or not 0 <= index < size:
        raise Refused("inclusion")
    # the signed checkpoint: c2sp.org/tlog-checkpoint in a c2sp.org/signed-note
    text, _, sigs = doc["checkpoint"].partition("\n\n")
    text += "\n"
    origin, size_line, root_b64 = text.split("\n")[:3]
    if int(size_line) != size or base64.b64decode(root_b64) != r:
        raise Refused("checkpoint")
    name, kid_hex, key_b64 = ledger_vkey.split("+", 2)
    raw = base64.b64decode(key_b64)
    if raw[0] != 0x01 or origin != name:
        raise Refused("ledger key")
    ed_pub = raw[1:]
    kid = hashlib.sha256(name.encode() + b"\n" + b"\x01" + ed_pub).digest()[:4]
    if kid.hex() != kid_hex:
        raise Refused("ledger key")
    ok = False
    for line in sigs.splitlines():
        who, b64 = line.removeprefix("\u2014 ").split(" ")
        blob = base64.b64decode(b64)
        if who == name and blob[:4] == kid:
            try:
                Ed25519PublicKey.from_public_bytes(ed_pub).verify(blob[4:], text.encode())
            except InvalidSignature:
                raise Refused("ledger signature") from None
            ok = True
    if not ok:
        raise Refused("ledger signature")
    return device_id, fingerprint, seq


def independent_enrollment_text(doc: dict[str, Any]) -> bytes:
    """The bytes the collector signed (docs/BUNDLE.md "Enrollment signatures"), from the
    proof's device and enrollment fields: seven lines, each ending in a newline, UTF-8.
    Also what the page's proof check (proofcheck.js) must rebuild, byte for byte."""
    e = doc["enrollment"]
    return "".join(f"{line}\n" for line in (
        "hashtrail enrollment v1", f"device {doc['device']['id']}",
        f"pub {doc['device']['pub']}", f"label {e['label']}", f"board {e['board']}",
        f"fw {e['fw']}", f"enrolled_at {e['enrolled_at']}")).encode("utf-8")


def independent_enrollment_check(doc: dict[str, Any], collector_vkey: str) -> str:
    """The collector's signature over the proof's enrollment, checked from docs/BUNDLE.md
    "Enrollment signatures" alone: the proof's key must be `collector_vkey` (a C2SP
    note verifier key, `<name>+<key id hex>+<base64(0x01 || Ed25519 key)>`), and its
    Ed25519 signature must cover the seven-line text built here from the proof's device
    and enrollment fields. Returns the collector key's name; Refused otherwise."""
    e = doc["enrollment"]
    sig = e.get("signature")
    if sig is None:
        raise Refused("enrollment not signed")
    if sig["key"] != collector_vkey:
        raise Refused("enrollment signed by another key")
    name, kid_hex, key_b64 = collector_vkey.split("+", 2)
    raw = base64.b64decode(key_b64)
    if raw[0] != 0x01 or hashlib.sha256(name.encode() + b"\n\x01" + raw[1:]).digest()[:4] \
            != bytes.fromhex(kid_hex):
        raise Refused("collector key")
    try:
        Ed25519PublicKey.from_public_bytes(raw[1:]).verify(bytes.fromhex(sig["sig"]),
                                                           independent_enrollment_text(doc))
    except InvalidSignature:
        raise Refused("enrollment signature") from None
    return name


def test_independent_checker_verifies_the_enrollment_signature(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """The enrollment signature in a CLI proof checks with `cryptography` and the
    documented bytes; an edited label, another device's signature, or a key the
    checker did not bring are refused by it, as by `verify-proof --collector-key`.
    The same bytes, as a C2SP signed note, open with the collector key."""
    from hashtrail.formats import note
    from hashtrail.formats.enrollment import enrollment_note
    from ledgerkit import COLLECTOR
    from proofkit import firmware_ledger, prove, verify_proof

    fw = firmware_ledger(tmp_path / "fw", sign=True)
    vkey = COLLECTOR.verifier().to_string()
    doc = json.loads(json.dumps(prove(capsys, fw.path, fw.device_id, 4)))
    assert independent_enrollment_check(doc, vkey) == "collector-test"
    e = doc["enrollment"]
    signed_note = enrollment_note(COLLECTOR.verifier(), bytes.fromhex(e["signature"]["sig"]),
                                  fw.device_id, fw.pub, e["label"], e["board"], e["fw"],
                                  e["enrolled_at"])
    assert note.open_note(signed_note, [COLLECTOR.verifier()])[1] == ["collector-test"]
    assert signed_note.decode().startswith("hashtrail enrollment v1\ndevice ")
    other = note.Signer("collector-other", bytes(range(1, 33))).verifier().to_string()
    edited = {**doc, "enrollment": {**e, "label": "another room"}}
    from hashtrail.formats.enrollment import sign_enrollment
    from ledgerkit import Device
    d = Device(4242)
    copied = {**doc, "enrollment": {**e, "signature": {**e["signature"], "sig": sign_enrollment(
        COLLECTOR, d.id_hex, d.pub, e["label"], e["board"], e["fw"], e["enrolled_at"]).hex()}}}
    for bad, key, why in ((edited, vkey, "enrollment signature"),
                          (copied, vkey, "enrollment signature"),
                          (doc, other, "another key")):
        with pytest.raises(Refused, match=why):
            independent_enrollment_check(bad, key)
    for bad in (edited, copied):
        assert verify_proof(capsys, tmp_path, bad, fw.verifier_key, "--collector-key",
                            vkey)[0] == 1


def test_independent_checker_accepts_the_cli_proof_and_refuses_a_made_up_one(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from proofkit import copy_ledger, firmware_ledger, operator_appends, prove, verify_proof

    fw = firmware_ledger(tmp_path / "fw", sign=True)
    for seq in (0, 11, fw.tip):
        doc = prove(capsys, fw.path, fw.device_id, seq)
        doc = json.loads(json.dumps(doc))       # exactly what a file would carry
        did, fp, s = independent_check(doc, fw.verifier_key)
        assert (did, fp, s) == (fw.device_id, hashlib.sha256(fw.pub).hexdigest(), seq)
        # hashtrail's verifier agrees on what was proved
        code, out, _ = verify_proof(capsys, tmp_path, doc, fw.verifier_key, "--json")
        res = json.loads(out)["proof"]
        assert code == 0 and (res["device_id"], res["fingerprint"], res["seq"]) == (did, fp, s)
    # the operator's made-up entry with a replayed device signature: both refuse it
    path = copy_ledger(fw, tmp_path / "evil")
    real = prove(capsys, fw.path, fw.device_id, fw.tip)["device_signature"]["sig"]
    seq = operator_appends(path, fw.device_id, bytes.fromhex(real))
    doc = prove(capsys, path, fw.device_id, seq)
    with pytest.raises(Refused, match="device signature"):
        independent_check(doc, fw.verifier_key)
    assert verify_proof(capsys, tmp_path, doc, fw.verifier_key)[0] == 1
    # and a proof under a checkpoint signed by another key
    doc = prove(capsys, fw.path, fw.device_id, 3)
    raw = Ed25519PrivateKey.generate().public_key().public_bytes(Encoding.Raw,
                                                                   PublicFormat.Raw)
    name = "proof.example/ledger"
    kid = hashlib.sha256(name.encode() + b"\n\x01" + raw).digest()[:4]
    b64 = base64.b64encode(b"\x01" + raw).decode()
    other = f"{name}+{kid.hex()}+{b64}"
    with pytest.raises(Refused, match="ledger signature"):
        independent_check(doc, other)
