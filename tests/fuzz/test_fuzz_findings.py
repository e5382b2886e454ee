"""What the fuzzers found, pinned as plain regression tests with the minimal input.

Fixed bugs are ordinary tests. Bugs in modules still being edited by their owners are
xfail(strict=True): they fail today, and turn into an XPASS (a suite failure) the day
they are fixed, so the mark is removed with the fix. The fuzz properties skip exactly
these known cases so that they keep looking for new ones.
"""

from __future__ import annotations

import copy

import cbor2
import pytest
from fuzzseeds import seeds
from hashtrail import devicecheck, entry, keys
from hashtrail.commands.ledger import check_proof
from hashtrail.errors import FormatError, HashtrailError
from hashtrail.note import Verifier


def test_load_pub_with_a_name_too_long_for_the_filesystem_is_a_format_error() -> None:
    # Found by the `pubkey` target: 260 hex characters (two keys pasted together) made
    # Path.is_file() raise OSError ENAMETOOLONG: a traceback instead of a message.
    pub = seeds().pub
    with pytest.raises(FormatError):
        keys.load_pub((pub + pub).hex())
    with pytest.raises(FormatError):
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


@pytest.mark.xfail(strict=True, reason="commands/ledger.py check_proof calls "
                   "doc['checkpoint'].encode() and Verifier.from_string(doc['verifier_key'])"
                   " without type checks: a proof whose checkpoint or verifier_key is null "
                   "(or a number) crashes verify-proof with AttributeError. "
                   "Owner: commands/ledger.py (being edited).")
@pytest.mark.parametrize("field", ["checkpoint", "verifier_key"])
def test_proof_with_a_null_checkpoint_is_a_format_error(field: str) -> None:
    doc = copy.deepcopy(seeds().inclusion_proof)
    doc[field] = None
    with pytest.raises(HashtrailError):
        check_proof(doc)


@pytest.mark.xfail(strict=True, reason="check_proof binds size and root to a signed "
                   "checkpoint only `if 'checkpoint' in doc`: deleting the checkpoint "
                   "from a proof (or writing a proof for a made-up root) still prints "
                   "'inclusion OK'. Fail closed: an inclusion proof needs its signed "
                   "checkpoint. Owner: commands/ledger.py (being edited).")
def test_inclusion_proof_without_its_signed_checkpoint_does_not_verify() -> None:
    doc = copy.deepcopy(seeds().inclusion_proof)
    del doc["checkpoint"]
    with pytest.raises(HashtrailError):
        check_proof(doc)


def test_inclusion_proof_with_a_checkpoint_from_another_key_does_not_verify() -> None:
    from hashtrail.note import Signer

    doc = copy.deepcopy(seeds().inclusion_proof)
    doc["verifier_key"] = Signer.generate("fuzz.example/log").verifier().to_string()
    with pytest.raises(HashtrailError):
        check_proof(doc)
    Verifier.from_string(seeds().verifier_key)  # the seed's own key still parses


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


_DC_BUG = pytest.mark.xfail(strict=True, reason="devicecheck.parse_entry (ledger path): "
                            "`sorted(m)` raises TypeError on a bytes/text key, and a `true` "
                            "key is taken for key 1 (True == 1). Owner: devicecheck.py "
                            "(being edited); fix: refuse maps whose keys are not all ints.")


@pytest.mark.parametrize("key", [pytest.param(k, marks=_DC_BUG) if k in (b"k", "k") or
                                 k is True else k for k in KEYS], ids=repr)
def test_ledger_entry_map_with_a_key_of_another_type_is_a_format_error(key: object) -> None:
    with pytest.raises(FormatError):
        devicecheck.parse_entry(_entry_with_extra_key(key))


def test_checkpoint_with_a_true_key_is_a_format_error() -> None:
    from hashtrail import checkpoint

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
