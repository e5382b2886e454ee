"""C2SP signed-note / tlog-checkpoint: round trips, strict rejections, signatures."""

from __future__ import annotations

import base64
import hashlib

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from hashtrail.errors import FormatError, HashtrailError, VerificationError
from hashtrail.formats import note

ROOT = hashlib.sha256(b"root").digest()
CP = note.Checkpoint("example.com/ledger", 12, ROOT)
SIGNER = note.Signer("example.com/ledger", bytes(range(32)))


def _signed() -> bytes:
    return note.sign_checkpoint(CP, [SIGNER])


def test_round_trip_and_layout() -> None:
    data = _signed()
    text = data.decode()
    assert text.startswith(f"example.com/ledger\n12\n{base64.b64encode(ROOT).decode()}\n\n— ")
    cp, names = note.open_checkpoint(data, [SIGNER.verifier()])
    assert cp == CP and names == ["example.com/ledger"]
    assert note.format_note(note.parse_note(data)) == data
    ext = note.Checkpoint("o", 0, ROOT, ("ext one", "ext two"))
    assert note.parse_checkpoint(note.format_checkpoint(ext)) == ext


def test_key_strings_round_trip_and_key_id_rule() -> None:
    v = SIGNER.verifier()
    assert note.Verifier.from_string(v.to_string()).pub == v.pub
    assert note.Signer.from_string(SIGNER.to_string()).pub == SIGNER.pub
    want = hashlib.sha256(b"example.com/ledger\n\x01" + SIGNER.pub).digest()[:4]
    assert v.key_id == want
    assert v.to_string().split("+", 2)[1] == want.hex()
    bad = v.to_string().replace(want.hex(), "00000000")
    with pytest.raises(FormatError):
        note.Verifier.from_string(bad)
    # a name with a lone surrogate (a proof's JSON may carry one) is bad input, not a
    # UnicodeEncodeError out of the key id
    with pytest.raises(FormatError, match="not valid Unicode text"):
        note.Verifier.from_string("\ud800" + v.to_string())
    with pytest.raises(FormatError, match="not valid Unicode text"):
        note.Signer("a\udc00", bytes(32))


@pytest.mark.parametrize("body", [
    "o\n+2\n{r}\n", "o\n02\n{r}\n", "o\n-1\n{r}\n", "o\n 2\n{r}\n", "o\n2 \n{r}\n",
    "o\n\n{r}\n", "\n2\n{r}\n", "o\n2\n", "o\n2\n{r}", "o\n2\n{r}\n\n", "o\n2\n{r}=\n",
    "o\n2\nAAAA\n", "o\n2\n{r}\r\n", "o\n2\n{r}\n\next\n", "o\n\u0661\u0662\n{r}\n",
])
def test_checkpoint_rejections(body: str) -> None:
    with pytest.raises(FormatError):
        note.parse_checkpoint(body.replace("{r}", base64.b64encode(ROOT).decode()))


def test_note_rejections() -> None:
    data = _signed()
    text_end = data.index(b"\n\n")
    cases = [
        data[:text_end + 1] + data[text_end + 2:],               # missing blank line
        data[:-1],                                               # no final newline
        data + b"\n",                                            # trailing blank line
        data.replace("—".encode(), b"-"),                        # ascii dash
        data.replace(b"\n\n", b"\n\n\n"),                        # two blank lines
        data + "— x abc\n".encode(),                             # bad base64
        data.replace(b"ledger ", b"ledger  "),                   # double space
        b"\xff" + data,
    ]
    cases += [data[:i] for i in range(len(data))]                # every truncation
    for bad in cases:
        with pytest.raises(FormatError):
            note.open_checkpoint(bad, [SIGNER.verifier()])


def test_signature_checks_fail_closed() -> None:
    data = _signed()
    other = note.Signer("someone", bytes(32))
    with pytest.raises(VerificationError):                       # no trusted signature
        note.open_checkpoint(data, [other.verifier()])
    tampered = data.replace(b"\n12\n", b"\n13\n")
    with pytest.raises(VerificationError):
        note.open_checkpoint(tampered, [SIGNER.verifier()])
    sig_at = data.index("— ".encode()) + len("— example.com/ledger ".encode()) + 10
    flipped = bytearray(data)
    flipped[sig_at] = ord("A") if flipped[sig_at] != ord("A") else ord("B")
    with pytest.raises(HashtrailError):
        note.open_checkpoint(bytes(flipped), [SIGNER.verifier()])


def test_cosign_keeps_existing_signatures() -> None:
    witness = note.Signer("witness.example", bytes([7]) * 32)
    both = note.add_signature(_signed(), witness)
    assert note.add_signature(both, witness) == both
    _, names = note.open_checkpoint(both, [SIGNER.verifier(), witness.verifier()])
    assert names == ["example.com/ledger", "witness.example"]
    assert both.startswith(_signed())


def test_go_sumdb_note_known_answer() -> None:
    # The example key and signed note of golang.org/x/mod/sumdb/note's documentation.
    skey = "PRIVATE+KEY+PeterNeumann+c74f20a3+AYEKFALVFGyNhPJEMzD1QIDr+Y7hfZx09iUvxdXHKDFz"
    vkey = "PeterNeumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW"
    text = ("If you think cryptography is the answer to your problem,\n"
            "then you don't know what your problem is.\n")
    want = (text + "\n— PeterNeumann x08go/ZJkuBS9UG/SffcvIAQxVBtiFupLLr8pAcElZInNIuGUgYN1FFYC2p"
            "ZSNXgKvqfqdngotpRZb6KE6RyyBwJnAM=\n").encode()
    signer = note.Signer.from_string(skey)
    assert signer.verifier().to_string() == vkey
    assert signer.to_string() == skey
    assert note.sign_note(text, [signer]) == want
    assert note.open_note(want, [note.Verifier.from_string(vkey)])[1] == ["PeterNeumann"]


# -- c2sp.org/tlog-cosignature, cosignature/v1 -----------------------------------------

WITNESS = note.Signer("witness.example.com/w1", bytes([9]) * 32)


def test_cosignature_v1_known_key_ids() -> None:
    # Verifier keys from transparency-dev/formats note/note_cosigv1_test.go
    # (TestCoSigV1NewVerifier): a native cosignature/v1 key (type 0x04, key id over
    # name || "\n" || 0x04 || pub) and an ordinary Ed25519 note key (type 0x01).
    native = "remora.n621.de+da77ade7+BOvN63jn/bLvkieywe8R6UYAtVtNbZpXh34x7onlmtw2"
    v = note.Verifier.from_string(native)
    assert v.cosigner_string() == native and v.cosigner_id.hex() == "da77ade7"
    plain = "TEST+7997405c+AQcC+FTVKf0jlTdHDY3rbevmnKxxPjigCXlVtGe6RIr6"
    assert note.Verifier.from_string(plain).to_string() == plain
    with pytest.raises(FormatError):
        note.Verifier.from_string(native.replace("da77ade7", "00000000"))


def test_cosignature_v1_layout_and_message() -> None:
    # The payload layout of the same file's TestCosignatureTimestamp vector:
    # key id (4) || u64 big-endian timestamp || signature (64), time 1727964367.
    known = base64.b64decode("ZGhGuQAAAABm/qTPeyKXD+R2rzyQsxPiP8mXum7qq/iF0u4vanlqJyocWODBt97w"
                             "9uL+8qT7S5gxEHWWOworDcFiEBYJXORmnFBOBA==")
    assert len(known) == 76 and int.from_bytes(known[4:12], "big") == 1727964367
    ts = 1679315147                                  # the spec's example time line
    data = note.cosign(_signed(), WITNESS, ts)
    assert data.startswith(_signed())
    line = data.decode().splitlines()[-1]
    name, b64 = line.removeprefix("— ").split(" ")
    raw = base64.b64decode(b64)
    assert name == WITNESS.name and len(raw) == 4 + 8 + 64
    assert raw[:4] == hashlib.sha256(b"witness.example.com/w1\n\x04" + WITNESS.pub).digest()[:4]
    assert raw[4:12] == ts.to_bytes(8, "big")
    # the signed message, spelled out as in the spec's example
    msg = (b"cosignature/v1\ntime 1679315147\nexample.com/ledger\n12\n"
           + base64.b64encode(ROOT) + b"\n")
    Ed25519PublicKey.from_public_bytes(WITNESS.pub).verify(raw[12:], msg)


def test_cosignature_v1_verifies_and_fails_closed() -> None:
    wv = WITNESS.verifier()
    data = note.cosign(_signed(), WITNESS, 1_700_000_000)
    assert note.cosign(data, WITNESS, 1_800_000_000) == data          # one per cosigner key
    assert note.open_cosignatures(data, [wv]) == {WITNESS.name: 1_700_000_000}
    assert note.open_cosignatures(data, [note.Verifier("other", bytes(32))]) == {}
    # the log signature still opens the checkpoint; the cosignature is not a note signature
    assert note.open_checkpoint(data, [SIGNER.verifier(), wv])[1] == [SIGNER.name]
    with pytest.raises(VerificationError):                 # fail closed: no log signature
        note.open_checkpoint(data, [wv])
    raw = bytearray(base64.b64decode(data.decode().splitlines()[-1].split(" ")[2]))
    for i in (4, 11, 12, 75):                      # timestamp bytes and signature bytes
        bad = bytearray(raw)
        bad[i] ^= 1
        forged = data.rsplit(b" ", 1)[0] + b" " + base64.b64encode(bytes(bad)) + b"\n"
        with pytest.raises(VerificationError):
            note.open_cosignatures(forged, [wv])
    with pytest.raises(FormatError):
        note.cosign(_signed(), WITNESS, 1 << 63)
