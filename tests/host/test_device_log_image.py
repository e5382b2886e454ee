"""A littlefs image written by the real firmware (devlog on the MicroPython unix port)
is read with littlefs-python and verified with the host's record parser and chain
verifier: the two sides agree on the flash format byte for byte.

Why: the device's store and the host's verifier are written from docs/FORMATS.md by
different hands; only running one against the other shows they read the same contract.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from fwimage import BLOCK, device_image, log_records
from hashtrail.chain.chainverify import verify_chain
from hashtrail.device.imagefs import read_image
from hashtrail.formats.keys import KEY_PATH, parse_key_file
from hashtrail.formats.records import Record


@pytest.mark.parametrize("sign", [False, True], ids=["checkpoints-only", "signed-entries"])
def test_device_image_verifies_on_the_host(tmp_path: Path, sign: bool) -> None:
    image, last, head = device_image(tmp_path, sign)
    files = read_image(image, BLOCK)
    pub = parse_key_file(files[KEY_PATH]).pub
    assert "/ht/state" in files
    recs, probs = log_records(files)
    assert probs == []
    report = verify_chain(pub, recs, probs)
    assert report.findings == []
    assert (report.first_seq, report.last_seq, report.head) == (0, last, head)
    assert report.entries == last + 1
    nonces = [cp for cp in report.checkpoints if cp.nonce == b"host-nonce-1"]
    assert len(nonces) == 1 and len(report.checkpoints) >= 3
    if sign:
        assert all(r.sig is not None for r in recs if r.is_entry)


def test_edited_entry_in_the_device_image_is_caught(tmp_path: Path) -> None:
    image, _last, _head = device_image(tmp_path, False)
    files = read_image(image, BLOCK)
    pub = parse_key_file(files[KEY_PATH]).pub
    recs, probs = log_records(files)
    victim = next(i for i, r in enumerate(recs) if r.is_entry and r.seq == 20)
    r = recs[victim]
    body = bytearray(r.body)
    body[-3] ^= 0x01  # a reading's value, re-framed with a valid CRC by the attacker
    recs[victim] = Record(r.magic, r.seq, bytes(body), r.sig, r.source, r.offset)
    report = verify_chain(pub, recs, probs)
    assert not report.ok
    assert any(f.seq == 21 and f.code == "link_mismatch" for f in report.findings), \
        report.findings


def test_device_default_signs_every_entry_and_cryptography_agrees(tmp_path: Path) -> None:
    """The firmware default (no sign_entries in the board config): entry 0 records
    policy 1 and every entry's signature verifies with `cryptography` (OpenSSL) as
    ECDSA P-256 over entry_hash, independently of hashtrail's verifier."""
    import hashlib

    import cbor2
    from cryptography.exceptions import InvalidSignature
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import ec, utils

    image, last, _head = device_image(tmp_path, None)
    files = read_image(image, BLOCK)
    pub = parse_key_file(files[KEY_PATH]).pub
    key = ec.EllipticCurvePublicKey.from_encoded_point(ec.SECP256R1(), pub)
    recs, probs = log_records(files)
    assert probs == []
    entries = [r for r in recs if r.is_entry]
    assert [r.seq for r in entries] == list(range(last + 1))
    e0 = cbor2.loads(entries[0].body)
    assert e0[7] == 3 and e0[8] == {1: pub, 2: 1}
    for r in entries:
        assert r.sig is not None, r.seq
        der = utils.encode_dss_signature(int.from_bytes(r.sig[:32], "big"),
                                         int.from_bytes(r.sig[32:], "big"))
        key.verify(der, hashlib.sha256(r.body).digest(),
                   ec.ECDSA(utils.Prehashed(hashes.SHA256())))
    bad = bytearray(entries[-1].body)
    bad[-1] ^= 1
    with pytest.raises(InvalidSignature):
        key.verify(utils.encode_dss_signature(int.from_bytes(entries[-1].sig[:32], "big"),
                                              int.from_bytes(entries[-1].sig[32:], "big")),
                   hashlib.sha256(bytes(bad)).digest(),
                   ec.ECDSA(utils.Prehashed(hashes.SHA256())))
