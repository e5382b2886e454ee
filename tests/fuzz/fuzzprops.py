"""Fuzz targets: one hypothesis strategy and one property per host decoder.

Why properties rather than expected outputs: a fuzzer makes inputs nobody wrote down,
so each target states what must hold for EVERY input:

- it raises only the project's own errors (HashtrailError subclasses), never another
  exception: the CLI prints those and exits, anything else is a traceback;
- a mutated signed object (device checkpoint, ledger note, proof, fork evidence) never
  verifies: whatever passes must carry exactly the signed content of the seed;
- whatever a parser accepts is canonical (re-encodes to the same bytes) and whatever a
  chain verifier calls clean is byte for byte a prefix of what the device wrote.

Inputs are the valid seeds of fuzzseeds.py (real device output) mutated by bit flips,
byte sets and increments, truncations, insertions, deletions, duplications and splices
(optionally with the record CRCs recomputed, as an attacker would), plus structured
mutations that swap a decoded field for a value of another type, plus random bytes.

TARGETS maps a name to (strategy factory, property). tests/fuzz/test_fuzz_decoders.py
runs each with a bounded number of examples; tools/fuzz.py runs them for minutes.
"""

from __future__ import annotations

import base64
import contextlib
import copy
import io
import json
import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import cbor2
from fuzzseeds import Seeds, seeds, signed_bundle, trusting_ledger
from hashtrail.chain import chainverify, devicecheck
from hashtrail.chain.evidence import check_evidence
from hashtrail.cli import main as cli
from hashtrail.collector import collect_verify
from hashtrail.collector.bundle import Bundle, parse_bundle
from hashtrail.collector.store import Anchor
from hashtrail.device import link
from hashtrail.errors import HashtrailError
from hashtrail.formats import cbor_strict, keys, note
from hashtrail.formats import checkpoint as cpmod
from hashtrail.formats import entry as entrymod
from hashtrail.formats.records import (
    MAGIC_CHECKPOINT,
    MAGIC_ENTRY,
    parse_records,
    seal,
    spans,
    split_records,
)
from hashtrail.ledger.proof_file import check_proof
from hashtrail.ledger.reconcile import reconcile
from hypothesis import strategies as st

N = cpmod.N
INTERESTING = [0x00, 0x01, 0x17, 0x18, 0x19, 0x1A, 0x1B, 0x1F, 0x3F, 0x40, 0x5F, 0x7F,
               0x80, 0x9F, 0xA0, 0xBF, 0xC0, 0xC2, 0xD2, 0xF4, 0xF5, 0xF6, 0xF7, 0xF9, 0xFA,
               0xFB, 0xFF, *link.SYNC, MAGIC_ENTRY, MAGIC_CHECKPOINT, 0x0A, 0x0D, 0x22, 0x2C,
               0x3A, 0x5C, 0x7B, 0x7D]


# -- mutations ------------------------------------------------------------------------

@st.composite
def _op(draw: st.DrawFn, data: bytes, donors: list[bytes]) -> bytes:
    n = len(data)
    kind = draw(st.sampled_from(["flip", "set", "inc", "truncate", "insert", "delete",
                                 "dup", "splice"]))
    i = draw(st.integers(0, max(n - 1, 0)))
    if kind == "flip" and n:
        b = bytearray(data)
        b[i] ^= 1 << draw(st.integers(0, 7))
        return bytes(b)
    if kind == "set" and n:
        b = bytearray(data)
        b[i] = draw(st.sampled_from(INTERESTING) | st.integers(0, 255))
        return bytes(b)
    if kind == "inc" and n:
        b = bytearray(data)
        b[i] = (b[i] + draw(st.sampled_from([1, -1, 2, 0x80]))) & 0xFF
        return bytes(b)
    if kind == "truncate":
        return data[:i]
    if kind == "insert":
        junk = draw(st.binary(min_size=1, max_size=16)
                    | st.lists(st.sampled_from(INTERESTING), min_size=1, max_size=4).map(bytes))
        return data[:i] + junk + data[i:]
    j = draw(st.integers(i, min(n, i + 64)))
    if kind == "delete":
        return data[:i] + data[j:]
    if kind == "dup":
        return data[:j] + data[i:j] + data[j:]
    donor = draw(st.sampled_from(donors)) if donors else data
    a = draw(st.integers(0, max(len(donor) - 1, 0)))
    b_ = draw(st.integers(a, min(len(donor), a + 64)))
    return data[:i] + donor[a:b_] + data[j:]


@st.composite
def mutated(draw: st.DrawFn, pool: list[bytes], max_ops: int = 3) -> bytes:
    """One seed from `pool` with 1..max_ops byte-level mutations."""
    data = draw(st.sampled_from(pool))
    for _ in range(draw(st.integers(1, max_ops))):
        data = draw(_op(data, pool))
    return data


def fix_crcs(seg: bytes) -> bytes:
    """Recompute every record CRC that the headers still frame: an attacker's edit."""
    out = bytearray(seg)
    for r in spans(seg):
        if r.offset + r.size > len(out):
            break
        seal(out, r.offset, r.size)
    return bytes(out)


ODD_VALUES: list[Any] = [True, False, None, 0, 1, -1, 2, 23, 24, 255, 256, 2**32, 2**64 - 1,
                         1.0, -7.0, 0.5, float("inf"), float("nan"), "", "x", "0.1.0", b"",
                         b"\x00" * 16, b"\x00" * 32, b"\x04" + b"\x00" * 64, [], [1], {},
                         {1: "soft"}, cbor2.CBORTag(1, 0), cbor2.CBORTag(2, b"\x01"),
                         cbor2.CBORSimpleValue(99), cbor2.undefined]


@st.composite
def field_swapped(draw: st.DrawFn, pool: list[bytes], keys_: list[int]) -> bytes:
    """A seed CBOR map with one field replaced by a value of another type, re-encoded
    canonically (so only the field-level checks, not the canonical check, can refuse)."""
    m = cbor2.loads(draw(st.sampled_from(pool)))
    k = draw(st.sampled_from(keys_))
    m[k] = draw(st.sampled_from(ODD_VALUES))
    if draw(st.booleans()) and k in m:
        del m[k]
    return bytes(cbor2.dumps(m, canonical=True))


# -- helpers --------------------------------------------------------------------------

def only_project_errors(fn: Callable[[], Any]) -> Any:
    """Run fn; return its result, or None when it raised a HashtrailError.

    Any other exception propagates, and hypothesis reports it as the failure."""
    try:
        return fn()
    except HashtrailError:
        return None


def _twin(sig: bytes) -> bytes:
    """The other valid ECDSA signature (r, n - s): ECDSA is malleable, see docs/FORMATS.md."""
    s = int.from_bytes(sig[32:], "big")
    return sig[:32] + (N - s).to_bytes(32, "big")


def _checkpoint_sigs(raw: bytes) -> set[bytes]:
    sig = cpmod.parse_checkpoint(raw).signature
    return {sig, _twin(sig)}


# -- properties -----------------------------------------------------------------------

def prop_cbor(data: bytes) -> None:
    v = only_project_errors(lambda: cbor_strict.loads(data, tags=frozenset({18})))
    if v is not None or data == b"\xf6":
        assert cbor_strict._encode_rfc8949(v) == data, "accepted CBOR does not re-encode"


def _ledger_parse(data: bytes) -> Any:
    """devicecheck.parse_entry's result, or its HashtrailError."""
    try:
        return devicecheck.parse_entry(data)
    except HashtrailError as e:
        return e


def prop_entry(data: bytes) -> None:
    host = only_project_errors(lambda: entrymod.parse_entry(data))
    ledger = _ledger_parse(data)
    if host is not None and ledger is not None:
        assert host.raw == data
        assert not isinstance(ledger, Exception), f"ledger refuses a host-valid entry: {ledger}"
        assert (ledger.seq, ledger.t, ledger.up, ledger.boot, ledger.prev, ledger.fw,
                ledger.kind) == (host.seq, host.t, host.up, host.boot, host.prev, host.fw,
                                 host.kind)


def prop_entry_version_type(data: bytes) -> None:
    """Both entry parsers agree on the top-level fields (the host one also checks
    kind-specific bodies, so it may refuse more, but only over the body)."""
    host: Any
    try:
        host = entrymod.parse_entry(data)
    except HashtrailError as e:
        host = e
    ledger = _ledger_parse(data)
    if ledger is not None and not isinstance(ledger, Exception) and isinstance(host, Exception):
        msg = str(host)
        assert "body" in msg or "SenML" in msg, \
            f"ledger accepts an entry the host refuses for: {msg}"


def prop_checkpoint(data: bytes) -> None:
    s = seeds()
    cp = only_project_errors(lambda: cpmod.parse_checkpoint(data))
    if cp is not None:
        assert cp.raw == data
    for nonce in (None, b"host-nonce-19"):
        ok = only_project_errors(lambda n=nonce: cpmod.verify_checkpoint(data, s.pub, nonce=n))
        if ok is not None:
            _assert_same_signed_checkpoint(s, data, ok.protected, ok.payload, ok.signature)
    key = devicecheck.DeviceKey(s.pub)
    fields = only_project_errors(lambda: key.checkpoint(data))
    if fields is not None:
        c = cpmod.parse_checkpoint(data)
        _assert_same_signed_checkpoint(s, data, c.protected, c.payload, c.signature)


def _assert_same_signed_checkpoint(s: Seeds, data: bytes, prot: bytes, payload: bytes,
                                   sig: bytes) -> None:
    for orig in s.checkpoints:
        o = cpmod.parse_checkpoint(orig)
        if (o.protected, o.payload) == (prot, payload) and sig in _checkpoint_sigs(orig):
            return
    raise AssertionError(f"a mutated checkpoint verifies: {data.hex()}")


def _assert_prefix(report: chainverify.ChainReport, originals: list[bytes],
                   recs: list[Any]) -> None:
    if not report.ok:
        return
    got = [r.body for r in recs if r.is_entry]
    assert got == originals[:len(got)], "a clean report over entries the device never wrote"
    for cp in report.checkpoints:
        assert cp.raw in seeds().checkpoints, "a clean report over a forged checkpoint"


def prop_segment(data: bytes) -> None:
    s = seeds()
    for seg in (data, fix_crcs(data)):
        recs, probs = parse_records(seg, "fuzz.seg")
        report = chainverify.verify_chain(s.pub, recs, probs)
        _assert_prefix(report, s.entries, recs)


def prop_collect_verify(data: bytes) -> None:
    """A collection run: records up to seq 19 and the fresh checkpoint for our nonce."""
    s = seeds()
    for seg in (data, fix_crcs(data)):
        raw = list(_split_lenient(seg))
        for anchor in (None, Anchor(9, _hash(s.entries[9]))):
            rep = collect_verify.verify(s.pub, anchor, raw, s.nonce_checkpoint,
                                        b"host-nonce-19")
            if rep.ok:
                lo = 0 if anchor is None else 10
                got = [r.body for r in parse_records(b"".join(raw))[0] if r.is_entry]
                assert got == s.entries[lo:20], "collect accepts entries the device never wrote"


def _hash(b: bytes) -> bytes:
    return entrymod.entry_hash(b)


def _split_lenient(seg: bytes) -> list[bytes]:
    try:
        return list(split_records(seg))
    except HashtrailError:
        return [seg]


def prop_records_chunk(data: bytes) -> None:
    only_project_errors(lambda: list(split_records(data)))


def prop_frames(data: bytes) -> None:
    s = seeds()
    good = {(f.type, f.req_id, f.payload) for f in link.FrameDecoder().feed(s.frames)}
    dec = link.FrameDecoder()
    out: list[link.Frame] = []
    step = max(1, len(data) // 7)
    for i in range(0, len(data) + 1, step):
        out += dec.feed(data[i:i + step])
    for f in out:
        assert (f.type, f.req_id, f.payload) in good, "a frame the device never sent"


@st.composite
def noisy_stream(draw: st.DrawFn) -> tuple[bytes, int]:
    """The seed frames with junk (noise, REPL text, cut-off frames) only BETWEEN frames."""
    frames = _frame_list()
    parts: list[bytes] = []
    for f in frames:
        if draw(st.booleans()):
            junk = draw(st.sampled_from([b"\r\n>>> ", b"Traceback (most recent call last):",
                                         link.SYNC[:1], link.SYNC,
                                         link.SYNC + bytes((link.VERSION,))])
                        | st.binary(max_size=40)
                        | st.sampled_from(frames).flatmap(
                            lambda g: st.integers(1, len(g) - 1).map(lambda k, g=g: g[:k])))
            parts.append(junk)
        parts.append(f)
    return b"".join(parts) + b"\x00" * (link.MAX_PAYLOAD + 16), len(frames)


def _frame_list() -> list[bytes]:
    """The seed frames one by one (valid frames: decoded and encoded again, the same bytes)."""
    return [link.encode_frame(f.type, f.req_id, f.payload)
            for f in link.FrameDecoder().feed(seeds().frames)]


def prop_frames_resync(arg: tuple[bytes, int]) -> None:
    data, count = arg
    dec = link.FrameDecoder()
    got = dec.feed(data)
    want = link.FrameDecoder().feed(seeds().frames)
    assert got == want, f"resync lost frames: {len(got)} of {count}"


def prop_request(data: bytes) -> None:
    only_project_errors(lambda: link.decode_request(data))


def prop_info(data: bytes) -> None:
    info = only_project_errors(lambda: link.parse_info(data))
    if info is not None:
        assert len(info.pub) == 65 and len(info.device_id) == 32 and len(info.head) == 32


def prop_pubkey(data: bytes) -> None:
    pub = only_project_errors(lambda: keys.check_pub(data))
    if pub is not None:
        keys.ec_public_key(pub)  # a checked key always loads
    only_project_errors(lambda: keys.load_pub(data.hex()))


def prop_bundle(data: bytes) -> None:
    s = seeds()
    b = only_project_errors(lambda: parse_bundle(io.BytesIO(data)))
    if b is None:
        return
    orig = parse_bundle(io.BytesIO(s.bundle))
    with tempfile.TemporaryDirectory(prefix="hashtrail-fuzz-") as tmp:
        # The seed device is enrolled by a trusted collector's signed bundle; the
        # mutated (unsigned) bundle then brings entries and maybe other enrollments.
        with trusting_ledger(Path(tmp) / "l.db") as led:
            reconcile(led, signed_bundle(Bundle("ab" * 8, "fuzz", 0, orig.enrollments)))
            only_project_errors(lambda: reconcile(led, b))
            rows = [r[1:3] + r[4:5] for r in led.storage.scan_entries()]
            devices = [d.device_id for d in led.devices()]
    known = {(d, r.seq, r.body) for d, r in orig.entries}
    for did, seq, body in rows:
        assert (did, seq, bytes(body)) in known, "the ledger took an entry nobody signed"
    assert devices == [s.device_id], "an unsigned bundle enrolled a device"


def prop_note(data: bytes) -> None:
    s = seeds()
    v = note.Verifier.from_string(s.verifier_key)
    only_project_errors(lambda: note.parse_note(data))
    got = only_project_errors(lambda: note.open_checkpoint(data, [v]))
    if got is not None:
        assert data == s.note, "a mutated signed checkpoint verifies"


_PROOF_KEYS = {"format", "type", "leaf", "leaf_index", "tree_size", "root", "path",
               "checkpoint", "verifier_key", "old_size", "new_size", "old_root", "new_root",
               "device", "device_signature"}


def _norm_proof(doc: Any) -> Any:
    """What a proof says: hex case and unknown extra fields (which the consistency check
    ignores, found by the long run) do not change it; nor does leaving out the inclusion
    proof's `verifier_key` (a label: the verifier brings the key it trusts), nor its
    `enrollment` (without --collector-key, one whose collector signature is taken out
    verifies as the operator's unsigned statement: docs/LEDGER.md "Proofs")."""
    if not isinstance(doc, dict):
        return doc
    out = {k: v for k, v in doc.items() if k in _PROOF_KEYS}
    if out.get("type") == "inclusion":
        out.setdefault("verifier_key", seeds().verifier_key)
    for k in ("leaf", "root", "old_root", "new_root"):
        if isinstance(out.get(k), str):
            out[k] = out[k].lower()
    if isinstance(out.get("path"), list):
        out["path"] = [p.lower() if isinstance(p, str) else p for p in out["path"]]
    return out


def _proof_ok(doc: Any) -> bool:
    try:
        check_proof(doc, note.Verifier.from_string(seeds().verifier_key))
    except HashtrailError:
        return False
    return True


def prop_proof_text(data: bytes) -> None:
    """verify-proof on a mutated proof file: a project error, or the same proof."""
    s = seeds()
    fd, name = tempfile.mkstemp(prefix="hashtrail-fuzz-", suffix=".json")
    try:
        os.write(fd, data)
        os.close(fd)
        with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
            rc = cli(["ledger", "verify-proof", "--verifier-key", s.verifier_key, name])
    finally:
        os.unlink(name)
    if rc == 0:
        doc = json.loads(data)
        assert _norm_proof(doc) in (_norm_proof(s.inclusion_proof),
                                    _norm_proof(s.consistency_proof)), \
            f"a mutated proof verifies: {data[:300]!r}"


@st.composite
def proof_doc(draw: st.DrawFn) -> dict[str, Any]:
    """A seed proof with one field swapped for another value, or one path hash changed."""
    s = seeds()
    doc = copy.deepcopy(draw(st.sampled_from([s.inclusion_proof, s.consistency_proof])))
    k = draw(st.sampled_from(sorted(doc)))
    how = draw(st.sampled_from(["value", "delete", "path"]))
    if how == "delete":
        del doc[k]
    elif how == "path" and doc["path"]:
        i = draw(st.integers(0, len(doc["path"]) - 1))
        doc["path"][i] = draw(st.sampled_from(doc["path"] + ["00" * 32, doc["path"][i][:-2]]))
        if draw(st.booleans()):
            doc["path"].insert(i, "00" * 32)
    else:
        doc[k] = draw(st.sampled_from([None, True, 0, 1, -1, 2**70, 1.5, "", "zz", [], {},
                                       doc.get("tree_size", 1), doc.get("leaf_index", 0) + 1,
                                       s.inclusion_proof["root"],
                                       s.consistency_proof["old_root"]]))
    return doc


def prop_proof_doc(doc: dict[str, Any]) -> None:
    s = seeds()
    if _proof_ok(doc):
        n = _norm_proof(doc)
        if n == _norm_proof(s.inclusion_proof) or n == _norm_proof(s.consistency_proof):
            return
        raise AssertionError(f"a mutated proof verifies: {doc}")


def prop_evidence(data: bytes) -> None:
    s = seeds()
    want = check_evidence(s.evidence)
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        return  # `check-evidence` reads text: undecodable bytes never reach the checker
    got = only_project_errors(lambda: check_evidence(text))
    if got is not None:
        assert got == want, "mutated evidence proves a different fork"


@st.composite
def evidence_doc(draw: st.DrawFn) -> str:
    """Seed evidence with one branch entry or statement swapped for another seed's."""
    s = seeds()
    doc = json.loads(s.evidence)
    b = doc["branches"][draw(st.integers(0, 1))]
    pool = [base64.b64encode(x).decode() for x in s.entries + s.checkpoints]
    what = draw(st.sampled_from(["entry", "statement", "drop", "kind"]))
    if what == "entry" and b["entries"]:
        b["entries"][draw(st.integers(0, len(b["entries"]) - 1))] = draw(st.sampled_from(pool))
    elif what == "statement":
        b["statement"] = {"kind": "checkpoint", "cose": draw(st.sampled_from(pool))}
    elif what == "drop" and b["entries"]:
        del b["entries"][draw(st.integers(0, len(b["entries"]) - 1))]
    else:
        b["statement"] = {"kind": draw(st.sampled_from(["entry-sig", "x", ""])),
                          "sig": base64.b64encode(draw(st.sampled_from(s.entry_sigs))).decode()}
    return json.dumps(doc)


# -- registry -------------------------------------------------------------------------

Strategy = Callable[[], st.SearchStrategy[Any]]


def _s() -> Seeds:
    return seeds()


def _cbor_pool() -> list[bytes]:
    s = _s()
    return s.entries[:6] + s.checkpoints + [s.info_payload]


TARGETS: dict[str, tuple[Strategy, Callable[[Any], None]]] = {
    "cbor": (lambda: mutated(_cbor_pool()) | st.binary(max_size=64), prop_cbor),
    "entry": (lambda: mutated(_s().entries) | field_swapped(_s().entries, list(range(9))),
              prop_entry),
    "entry-parsers-agree": (lambda: field_swapped(_s().entries, list(range(9)))
                            | mutated(_s().entries), prop_entry_version_type),
    "checkpoint": (lambda: mutated(_s().checkpoints, 2) | st.binary(max_size=200),
                   prop_checkpoint),
    "segment": (lambda: mutated([_s().segment, _s().signed_segment]), prop_segment),
    "collect-verify": (lambda: mutated([_seg_upto(19)]), prop_collect_verify),
    "records-chunk": (lambda: mutated([_s().segment[:600]]) | st.binary(max_size=100),
                      prop_records_chunk),
    "frames": (lambda: mutated([_s().frames]) | st.binary(max_size=300), prop_frames),
    "frames-resync": (noisy_stream, prop_frames_resync),
    "request": (lambda: mutated(_s().requests) | st.binary(max_size=80), prop_request),
    "info": (lambda: mutated([_s().info_payload])
             | field_swapped([_s().info_payload], list(range(12))), prop_info),
    "pubkey": (lambda: mutated([_s().pub]) | st.binary(min_size=65, max_size=65),
               prop_pubkey),
    "bundle": (lambda: mutated([_s().bundle], 2), prop_bundle),
    "note": (lambda: mutated([_s().note]), prop_note),
    "proof-file": (lambda: mutated([json.dumps(_s().inclusion_proof).encode(),
                                    json.dumps(_s().consistency_proof).encode()]),
                   prop_proof_text),
    "proof-doc": (proof_doc, prop_proof_doc),
    "evidence": (lambda: mutated([_s().evidence.encode()]) | evidence_doc().map(str.encode),
                 prop_evidence),
}


def _seg_upto(seq: int) -> bytes:
    recs, _ = parse_records(_s().segment)
    out = b""
    for r in recs:
        if r.seq > seq:
            break
        n = len(r.body) + 12 + (64 if r.sig else 0)
        out += _s().segment[r.offset:r.offset + n]
    return out
