"""What the fuzzers found, pinned as plain regression tests with the minimal input.

Every finding here is fixed, so every test is a plain regression test. A new finding in
a module still being edited by its owner goes in as xfail(strict=True): it fails today
and turns into an XPASS (a suite failure) the day it is fixed, so the mark goes with the
fix; the fuzz properties may skip exactly such a pinned case meanwhile.
"""

from __future__ import annotations

import copy

import cbor2
import pytest
from fuzzseeds import seeds
from hashtrail.chain import devicecheck
from hashtrail.errors import FormatError, HashtrailError, InputError
from hashtrail.formats import entry, keys
from hashtrail.formats.note import Verifier
from hashtrail.ledger.proof_file import check_proof


def test_load_pub_with_a_name_too_long_for_the_filesystem_is_bad_input() -> None:
    # Found by the `pubkey` target: 260 hex characters (two keys pasted together) made
    # Path.is_file() raise OSError ENAMETOOLONG: a traceback instead of a message. Now
    # bad input (InputError, exit 2) like every other unusable --pubkey.
    pub = seeds().pub
    with pytest.raises(InputError):
        keys.load_pub((pub + pub).hex())
    with pytest.raises(InputError):
        keys.load_pub("04\x00" + "ab" * 64)  # NUL in a path: ValueError in pathlib


def _version_true_entry() -> bytes:
    m = cbor2.loads(seeds().entries[0])
    m[0] = True
    return bytes(cbor2.dumps(m, canonical=True))


def test_host_entry_parser_refuses_version_true() -> None:
    with pytest.raises(FormatError):
        entry.parse_entry(_version_true_entry())


def test_ledger_entry_parser_refuses_version_true() -> None:
    # Found by `entry-parsers-agree`: `m[0] != 1` let CBOR `true` (True == 1 in Python)
    # through the ledger's parser while the collector's refused it; devicecheck's owner
    # now checks `type(m[0]) is int`.
    with pytest.raises(FormatError):
        devicecheck.parse_entry(_version_true_entry())


# Found by `proof-doc`: check_proof called doc['checkpoint'].encode() and
# Verifier.from_string(doc['verifier_key']) without type checks (AttributeError).
@pytest.mark.parametrize("field", ["checkpoint", "verifier_key"])
def test_proof_with_a_null_checkpoint_is_a_format_error(field: str) -> None:
    doc = copy.deepcopy(seeds().inclusion_proof)
    doc[field] = None
    with pytest.raises(HashtrailError):
        check_proof(doc, Verifier.from_string(seeds().verifier_key))


# Found by `proof-doc`: size and root were bound to a signed checkpoint only when the
# proof carried one; deleting it still printed "inclusion OK". Fail closed.
def test_inclusion_proof_without_its_signed_checkpoint_does_not_verify() -> None:
    doc = copy.deepcopy(seeds().inclusion_proof)
    del doc["checkpoint"]
    with pytest.raises(HashtrailError):
        check_proof(doc, Verifier.from_string(seeds().verifier_key))


def test_inclusion_proof_with_a_checkpoint_from_another_key_does_not_verify() -> None:
    from hashtrail.formats.note import Signer

    doc = copy.deepcopy(seeds().inclusion_proof)
    other = Signer.generate("fuzz.example/log").verifier()
    doc["verifier_key"] = other.to_string()
    with pytest.raises(HashtrailError):           # trusting the key the proof names
        check_proof(doc, other)
    with pytest.raises(HashtrailError):           # trusting the real key
        check_proof(doc, Verifier.from_string(seeds().verifier_key))


def _entry_with_extra_key(key: object) -> bytes:
    m = cbor2.loads(seeds().entries[5])
    if key is True:  # True == 1: replace key 1 by `true`, keeping 9 keys
        m = {(True if k == 1 else k): v for k, v in m.items()}
    else:
        m[key] = 0
    return bytes(cbor2.dumps(m, canonical=True))


KEYS = [b"k", "k", True, -1, 1.5]


@pytest.mark.parametrize("key", KEYS, ids=repr)
def test_entry_map_with_a_key_of_another_type_is_a_format_error(key: object) -> None:
    # Found by `entry-parsers-agree`: `sorted(m)` over an int key and a bytes key raised
    # TypeError (a traceback); and a `true` key passed for key 1 because True == 1.
    with pytest.raises(FormatError):
        entry.parse_entry(_entry_with_extra_key(key))


@pytest.mark.parametrize("key", KEYS, ids=repr)
def test_ledger_entry_map_with_a_key_of_another_type_is_a_format_error(key: object) -> None:
    # Same finding on the ledger's parser (devicecheck): TypeError from `sorted(m)` on a
    # bytes/text key, and `true` taken for key 1; it now refuses non-int keys.
    with pytest.raises(FormatError):
        devicecheck.parse_entry(_entry_with_extra_key(key))


def test_checkpoint_with_a_true_key_is_a_format_error() -> None:
    from hashtrail.formats import checkpoint

    raw = seeds().checkpoints[0]
    tag = cbor2.loads(raw)
    prot, unprot, payload, sig = tag.value
    p = cbor2.loads(payload)
    p = {(True if k == 1 else k): v for k, v in p.items()}
    forged = bytes(cbor2.dumps(cbor2.CBORTag(18, [prot, unprot,
                                                  bytes(cbor2.dumps(p, canonical=True)), sig]),
                               canonical=True))
    with pytest.raises(FormatError):
        checkpoint.parse_checkpoint(forged)
