"""Device checkpoints verify with an independent COSE library; every damage fails cleanly.

pycose 1.1.0 cannot decode tagged messages with cbor2 6 (arrays come back as tuples),
so the COSE_Sign1 array is handed to it through `from_cose_obj`: pycose still builds
the Sig_structure and checks the ES256 signature itself.
"""

from __future__ import annotations

from typing import Any

import cbor2
import pytest
from hashtrail.chain.chainverify import verify_chain
from hashtrail.errors import FormatError, VerificationError
from hashtrail.formats.checkpoint import parse_checkpoint, verify_checkpoint
from hashtrail.formats.entry import parse_entry
from hashtrail.formats.records import MAGIC_CHECKPOINT, MAGIC_ENTRY, Record, parse_records
from mutation_vectors import by_name, vectors
from pycose.keys import EC2Key
from pycose.keys.curves import P256
from pycose.messages import Sign1Message


def _records(name: str, magic: int) -> list[Any]:
    out = []
    for s in by_name(name)["segments"]:
        recs, _ = parse_records(bytes.fromhex(s["data"]), s["name"])
        out += [r for r in recs if r.magic == magic]
    return out


def _pycose_ok(raw: bytes, pub: bytes) -> bool:
    tag = cbor2.loads(raw)
    assert tag.tag == 18
    prot, unprot, payload, sig = tag.value
    msg = Sign1Message.from_cose_obj([prot, dict(unprot), payload, sig], True)
    msg.key = EC2Key(crv=P256, x=pub[1:33], y=pub[33:])
    return bool(msg.verify_signature())


PUB = bytes.fromhex(vectors()["pub"])
CHECKPOINTS = _records("happy-path", MAGIC_CHECKPOINT)


def test_device_checkpoints_verify_with_pycose() -> None:
    assert len(CHECKPOINTS) == 4
    for rec in CHECKPOINTS:
        assert _pycose_ok(rec.body, PUB)
        cp = verify_checkpoint(rec.body, PUB)
        assert cp.seq == rec.seq
    nonce_cps = [parse_checkpoint(r.body) for r in CHECKPOINTS if parse_checkpoint(r.body).nonce]
    assert nonce_cps and nonce_cps[0].nonce == b"host-nonce-19"


def test_mutated_checkpoints_fail_in_pycose_too() -> None:
    raw = CHECKPOINTS[0].body
    cp = parse_checkpoint(raw)
    # change one payload byte (the seq) while keeping it canonical: both must reject
    payload = cbor2.loads(cp.payload)
    payload[2] += 1
    forged = cbor2.dumps(cbor2.CBORTag(18, [cp.protected, {}, cbor2.dumps(payload,
                                           canonical=True), cp.signature]))
    assert not _pycose_ok(forged, PUB)
    with pytest.raises(VerificationError):
        verify_checkpoint(forged, PUB)
    other = bytes.fromhex(by_name("wrong-key")["pub"])
    assert not _pycose_ok(raw, other)
    with pytest.raises(VerificationError):
        verify_checkpoint(raw, other)
    with pytest.raises(VerificationError):
        verify_checkpoint(raw, PUB, nonce=b"fresh")


def _every_damage(raw: bytes) -> list[bytes]:
    out = [raw[:n] for n in range(len(raw))]
    for i in range(len(raw)):
        b = bytearray(raw)
        b[i] = (b[i] + 1) & 0xFF
        out.append(bytes(b))
    out.append(raw + b"\x00")
    return out


def test_every_truncation_and_byte_increment_of_a_checkpoint_fails() -> None:
    raw = next(r.body for r in CHECKPOINTS if parse_checkpoint(r.body).nonce)
    for bad in _every_damage(raw):
        with pytest.raises((FormatError, VerificationError)) as ei:
            verify_checkpoint(bad, PUB)
        assert type(ei.value) in (FormatError, VerificationError)


def test_every_truncation_and_byte_increment_of_an_entry_fails() -> None:
    records = _records("happy-path", MAGIC_ENTRY)
    raw = records[12].body
    good = parse_entry(raw)
    assert good.seq == 12
    for bad in _every_damage(raw):
        try:
            e = parse_entry(bad)
        except FormatError:
            continue
        # still a canonical entry: its hash differs, so the chain must break there
        assert e.raw != raw and e.hash != good.hash
        recs = list(records)
        recs[12] = Record(MAGIC_ENTRY, 12, bad, None, "seg", 0)
        assert not verify_chain(PUB, recs).ok
