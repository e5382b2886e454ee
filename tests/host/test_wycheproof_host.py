"""Host signature checks agree with every Wycheproof ecdsa_secp256r1_sha256_p1363 case,
and bad public keys are refused by keys.py before any verification.

Why all three paths: the host checks device signatures in three places, and each must
give Wycheproof's verdict on the same bytes:
- `checkpoint.check_signature(pub, message, sig)`: COSE checkpoints, in collect
  (`verify_checkpoint`) and in the chain verifier's checkpoint records;
- the chain verifier's per-entry signature check (`chainverify`, digest = entry hash),
  which collect runs on every pulled record;
- `devicecheck.DeviceKey.signed(digest, sig)`: what reconcile and `verify --ledger` use.
All three now end in `keys.DeviceKey.signed`; each is still called the way its caller
calls it, so a path that stops going through it is caught.
The cases come from the loader the device test uses (tests/firmware/vectors_p256.py),
with its verdict mapping (strict: "acceptable" counts as invalid).
"""

from __future__ import annotations

import hashlib
import sys
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric import ec
from hashtrail.chain import chainverify, devicecheck
from hashtrail.errors import FormatError, InputError
from hashtrail.formats import checkpoint, keys

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "firmware"))
import vectors_p256

CASES = vectors_p256.wycheproof_cases()


def _entry_sig_ok(pub: bytes, digest: bytes, sig: bytes) -> bool:
    """The per-entry check exactly as verify_chain runs it for a record's signature."""
    walker = chainverify._Walker(keys.DeviceKey(pub), None,
                                 chainverify.ChainReport(keys.device_id(pub)))
    return walker.key.signed(digest, sig)


def test_every_wycheproof_case_through_every_host_verification_path() -> None:
    import json

    total = json.loads(vectors_p256.WYCHEPROOF.read_text())["numberOfTests"]
    assert len(CASES) == total  # the whole file, not a sample
    disagree: list[str] = []
    valid = 0
    for tc, pub_hex, msg, sig, result in CASES:
        want = vectors_p256.expected_verdict(result) == 1
        valid += want
        pub = bytes.fromhex(pub_hex)
        digest = hashlib.sha256(msg).digest()
        got = {
            "checkpoint": checkpoint.check_signature(pub, msg, sig),
            "entry": _entry_sig_ok(pub, digest, sig) if len(sig) == 64 else False,
            "ledger": devicecheck.DeviceKey(pub).signed(digest, sig),
        }
        disagree += [f"tcId {tc} ({result}) via {k}: {v}" for k, v in got.items() if v != want]
    assert not disagree, "\n".join(disagree)
    assert valid > 50  # valid signatures exist too: a verifier refusing all would fail


def test_entry_signatures_are_64_bytes_by_construction() -> None:
    # The per-entry path above is only given 64-byte signatures because the record
    # layer cannot carry anything else: a record's signature is exactly 64 bytes.
    from hashtrail.formats.records import MAGIC_ENTRY, SIG_LEN, format_record, parse_records

    with pytest.raises(FormatError):
        format_record(MAGIC_ENTRY, 0, b"\xa0", b"\x00" * 65)
    recs, probs = parse_records(format_record(MAGIC_ENTRY, 0, b"\xa0", b"\x01" * 64))
    assert not probs and recs[0].sig is not None and len(recs[0].sig) == SIG_LEN


# -- public keys ----------------------------------------------------------------------

def _small_x_point() -> tuple[int, int]:
    """A curve point with x < 2**256 - p, so that x + p still fits 32 bytes."""
    for x in range(1, 100):
        rhs = (x ** 3 - 3 * x + keys.B) % keys.P
        y = pow(rhs, (keys.P + 1) // 4, keys.P)
        if y * y % keys.P == rhs:
            return x, y
    raise AssertionError("no small-x point")


def _enc(x: int, y: int) -> bytes:
    return b"\x04" + x.to_bytes(32, "big") + y.to_bytes(32, "big")


X, Y = _small_x_point()
GOOD = bytes.fromhex(CASES[0][1])
GX, GY = int.from_bytes(GOOD[1:33], "big"), int.from_bytes(GOOD[33:], "big")
BAD_KEYS = {
    "x-plus-p": _enc(X + keys.P, Y),
    "y-plus-p": _enc(X, Y + keys.P) if Y + keys.P < 1 << 256 else _enc(X + keys.P, Y),
    "x-equals-p": _enc(keys.P, GY),
    "all-ff": b"\x04" + b"\xff" * 64,
    "off-curve": _enc(GX, (GY + 1) % keys.P),
    "zero-point": _enc(0, 0),
    "infinity-sec1": b"\x00",
    "infinity-65-zero-bytes": b"\x00" * 65,
    "compressed": bytes([2 + (GY & 1)]) + GOOD[1:33],
    "hybrid": bytes([6 + (GY & 1)]) + GOOD[1:],
    "prefix-05": b"\x05" + GOOD[1:],
    "short-64": GOOD[:64],
    "long-66": GOOD + b"\x00",
    "empty": b"",
}


def test_cryptography_alone_takes_an_out_of_range_coordinate_from_integers() -> None:
    # The reason keys.py checks ranges by hand: built from integers, cryptography (this
    # version) accepts x + p for a point whose x is small, i.e. a non-canonical encoding.
    try:
        ec.EllipticCurvePublicNumbers(X + keys.P, Y, ec.SECP256R1()).public_key()
    except ValueError:
        pytest.skip("this cryptography version refuses x >= p from integers too")
    with pytest.raises(FormatError, match="out of range"):
        keys.check_pub(_enc(X + keys.P, Y))


@pytest.mark.parametrize("name", sorted(BAD_KEYS))
def test_bad_public_key_is_refused_before_any_verification(name: str) -> None:
    pub = BAD_KEYS[name]
    with pytest.raises(FormatError):
        keys.check_pub(pub)
    with pytest.raises(FormatError):
        keys.ec_public_key(pub)
    # Every verification entry point refuses the key itself, whatever the signature:
    sig = CASES[0][3]
    with pytest.raises(FormatError):
        checkpoint.check_signature(pub, CASES[0][2], sig)
    with pytest.raises(FormatError):
        chainverify.verify_chain(pub, [])
    with pytest.raises(FormatError):
        devicecheck.DeviceKey(pub)
    with pytest.raises(InputError):     # the CLI argument: bad input, exit 2
        keys.load_pub(pub.hex())


def test_the_small_x_point_itself_is_a_valid_key() -> None:
    # Control: the same point, canonically encoded, is accepted, so the refusals above
    # are about the encoding, not the point.
    pub = _enc(X, Y)
    assert keys.check_pub(pub) == pub
    devicecheck.DeviceKey(pub)
