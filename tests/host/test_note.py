"""C2SP signed-note / tlog-checkpoint: round trips, strict rejections, signatures."""

from __future__ import annotations

import base64
import hashlib

import pytest
from hashtrail import note
from hashtrail.errors import FormatError, HashtrailError, VerificationError

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
