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
from hashtrail.chainverify import verify_chain
from hashtrail.imagefs import read_image
from hashtrail.records import Record


@pytest.mark.parametrize("sign", [False, True], ids=["checkpoints-only", "signed-entries"])
def test_device_image_verifies_on_the_host(tmp_path: Path, sign: bool) -> None:
    image, last, head = device_image(tmp_path, sign)
    files = read_image(image, BLOCK)
    key = files["/ht/key"]
    assert key[:4] == b"HTK1" and len(key) == 105
    pub = key[36:101]
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
    pub = files["/ht/key"][36:101]
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
