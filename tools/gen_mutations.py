#!/usr/bin/env python3
"""Named mutation vectors for chain verification, made from a real device-made chain.

Why: every layer (device store, host verifier, end-to-end) must agree on what each
kind of tampering looks like. The base chains are produced by the firmware itself
(cbor, entry, cose, identity modules) running under the MicroPython unix port
with a fixed key, so the vectors carry device bytes, not a host imitation. Each
mutation is then applied on the host the way an attacker or a fault would (fixing
CRCs where an attacker could) and stored with its expected verdict: clean, or the
reason code and seq of a finding the verifier must report.

    python tools/gen_mutations.py [--out build/vectors/mutations.json]

Output JSON: {"pub", "device_id", "vectors": [{"name", "description", "pub",
"anchor": null | {"seq", "head"}, "segments": [{"name", "data" (hex)}],
"expect": {"ok": bool, "code": str | null, "seq": int | null}}]}
"""

from __future__ import annotations

import argparse
import atexit
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import cbor2

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "host"))

from hashtrail.formats.entry import KEY_BODY, KEY_PREV, KEY_SEQ, KEY_T, SENML_V  # noqa: E402
from hashtrail.formats.keys import device_id, genesis_prev  # noqa: E402
from hashtrail.formats.records import MAGIC_CHECKPOINT, MAGIC_ENTRY, format_record  # noqa: E402

DEFAULT_OUT = ROOT / "build" / "vectors" / "mutations.json"

# Fixed device key for reproducible vectors (a test key, never a real device's).
TEST_D = 0x1F2E3D4C5B6A79880A1B2C3D4E5F60718293A4B5C6D7E8F9A0B1C2D3E4F50617
OTHER_D = 0x2A2A2A2A2A2A2A2A2A2A2A2A2A2A2A2A2A2A2A2A2A2A2A2A2A2A2A2A2A2A2A2A
ENTRIES = 40
CHECKPOINT_EVERY = 10
SEG_RECORDS = 16

# Runs on the device VM: prints one JSON line per record (kind, seq, body hex, sig hex)
# plus the public key. t goes back at BACK_SEQ when BACK_SEQ >= 0. Entry 0 declares
# POLICY (1: every entry signed, 0: checkpoints only). When ALTERED_AT >= 0, the entry
# at that seq is the device's log-altered report disowning ALTERED_FROM..ALTERED_AT-1.
_DEVICE_SCRIPT = r"""
import sys, json, binascii
from hashtrail import cbor, cose, entry, identity, p256
D = int(sys.argv[1], 16)
N = int(sys.argv[2])
EVERY = int(sys.argv[3])
SIGNED = sys.argv[4] == "1"
BACK_SEQ = int(sys.argv[5])
BAD_HEAD_SEQ = int(sys.argv[6])
POLICY = int(sys.argv[7])
ALTERED_AT = int(sys.argv[8])
ALTERED_FROM = int(sys.argv[9])
ident = identity.Identity(D, p256.public_key(D))
hx = lambda b: binascii.hexlify(b).decode()
print(json.dumps({"pub": hx(ident.pub)}))
head = entry.genesis_prev(ident.pub)
w = cbor.Writer(bytearray(1024))
t = None
up = 0
for seq in range(N):
    up += 1000 + seq
    if seq == 0:
        kind, body = entry.KIND_KEY_CREATED, entry.key_body(ident.pub, POLICY)
    elif seq == 1:
        kind, body = entry.KIND_BOOT, entry.boot_body("power_on")
    elif seq == 4:
        kind, body = entry.KIND_TIME_SET, entry.time_set_body(None, 1757600000)
        t = 1757600000
    elif seq == ALTERED_AT:
        kind = entry.KIND_LOG_ALTERED
        body = entry.altered_body(ALTERED_FROM, "entry %d does not match its signature"
                                  % ALTERED_FROM)
    else:
        kind = entry.KIND_READING
        body = [("temp", "Cel", 4.0 + (seq % 7) * 0.25), ("humidity", "%RH", 55 + seq % 5),
                ("vbat", "V", 3.7)]
    if t is not None and seq > 4:
        t += 60
        if seq == BACK_SEQ:
            t -= 600
    n = entry.encode(w, seq, None if seq <= 4 else t, up, 1, head, "0.1.0", kind, body)
    raw = bytes(w.buf[:n])
    h = head = entry.entry_hash(raw)
    sig = ident.sign(h) if SIGNED else None
    print(json.dumps({"k": "e", "seq": seq, "body": hx(raw), "sig": sig and hx(sig)}))
    if (seq + 1) % EVERY == 0 or seq == N - 1 or seq == BAD_HEAD_SEQ:
        head = h if seq != BAD_HEAD_SEQ else b"\x00" * 32
        nonce = b"host-nonce-%d" % seq if seq % 20 == 19 else None
        cp = cose.checkpoint(ident, ident.device_id, seq, head, t, up, nonce)
        print(json.dumps({"k": "c", "seq": seq, "body": hx(cp), "sig": None}))
"""


def _micropython() -> str:
    exe = Path(sys.executable).parent / "micropython"
    return str(exe) if exe.exists() else "micropython"


_BUILT: list[Path] = []
_WORK: list[Path] = []


def _workdir() -> Path:
    """This process's own folder for the compiled firmware and the generator script:
    parallel test workers build the vectors at the same time, and one writing the
    shared script while another ran it gave an empty chain."""
    if not _WORK:
        d = Path(tempfile.mkdtemp(prefix="gen-mutations-"))
        atexit.register(shutil.rmtree, d, ignore_errors=True)
        _WORK.append(d)
    return _WORK[0]


def _compiled_firmware() -> Path:
    """The firmware as a board loads it (.mpy): big constant tables do not fit the
    100 KB heap when compiled from source on the device."""
    if not _BUILT:
        sys.path.insert(0, str(ROOT / "tools"))
        import build_mpy

        out = _workdir() / "mpy"
        build_mpy.build(out)
        _BUILT.append(out)
    return _BUILT[0]


def device_chain(d: int, *, signed: bool = False, back_seq: int = -1,
                 bad_head_seq: int = -1, n: int = ENTRIES, policy: int | None = None,
                 altered: tuple[int, int] | None = None
                 ) -> tuple[bytes, list[dict[str, Any]]]:
    """Run the firmware under the unix port; returns (pub, [record dicts]).

    `policy` is what entry 0 declares (default: 1 when `signed`, else 0); `altered` =
    (seq A, first seq X) makes entry A the device's log-altered report over X..A-1."""
    if policy is None:
        policy = 1 if signed else 0
    alt_at, alt_from = altered if altered is not None else (-1, 0)
    script = _workdir() / "_gen_chain.py"
    if not script.exists():
        script.write_text(_DEVICE_SCRIPT)
    env = dict(os.environ, MICROPYPATH=str(_compiled_firmware() / "lib"))
    proc = subprocess.run(
        [_micropython(), "-X", "heapsize=102400", str(script), f"{d:064x}", str(n),
         str(CHECKPOINT_EVERY), "1" if signed else "0", str(back_seq), str(bad_head_seq),
         str(policy), str(alt_at), str(alt_from)],
        env=env, capture_output=True, text=True, timeout=300)
    if proc.returncode != 0:
        raise SystemExit(f"device chain generation failed:\n{proc.stdout}{proc.stderr}")
    lines = [json.loads(x) for x in proc.stdout.splitlines() if x.startswith("{")]
    pub = bytes.fromhex(lines[0]["pub"])
    recs = []
    for x in lines[1:]:
        recs.append({"magic": MAGIC_ENTRY if x["k"] == "e" else MAGIC_CHECKPOINT,
                     "seq": x["seq"],
                     "body": bytes.fromhex(x["body"]),
                     "sig": bytes.fromhex(x["sig"]) if x["sig"] else None})
    return pub, recs


def frame(rec: dict[str, Any]) -> bytes:
    return format_record(rec["magic"], rec["seq"], rec["body"], rec.get("sig"))


def segments(recs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Cut records into segment files of SEG_RECORDS entries, named by first seq."""
    segs: list[tuple[int, bytearray]] = []
    count = SEG_RECORDS
    for r in recs:
        if r["magic"] == MAGIC_ENTRY and count >= SEG_RECORDS:
            segs.append((r["seq"], bytearray()))
            count = 0
        if not segs:
            segs.append((r["seq"], bytearray()))
        segs[-1][1].extend(r["raw"] if "raw" in r else frame(r))
        if r["magic"] == MAGIC_ENTRY:
            count += 1
    return [{"name": f"{s:010d}.seg", "data": bytes(b)} for s, b in segs]


def _entry_index(recs: list[dict[str, Any]], seq: int) -> int:
    for i, r in enumerate(recs):
        if r["magic"] == MAGIC_ENTRY and r["seq"] == seq:
            return i
    raise KeyError(seq)


def _reencode(body: bytes, **changes: Any) -> bytes:
    m = cbor2.loads(body)
    for k, v in changes.items():
        m[{"seq": KEY_SEQ, "t": KEY_T, "prev": KEY_PREV, "body": KEY_BODY}[k]] = v
    return bytes(cbor2.dumps(m, canonical=True))  # entry keys are 0..8: same order


def _copy(recs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [dict(r) for r in recs]


def _relink(recs: list[dict[str, Any]], i: int) -> None:
    """After an edit of the entry at index i, recompute every later entry's prev link
    (as a keyless attacker with the flash would; `frame` recomputes the CRCs)."""
    prev = hashlib.sha256(recs[i]["body"]).digest()
    for r in recs[i + 1:]:
        if r["magic"] == MAGIC_ENTRY:
            r["body"] = _reencode(r["body"], prev=prev)
            prev = hashlib.sha256(r["body"]).digest()


ALTERED_AT, ALTERED_FROM = 27, 24   # the log-altered vectors: entry 27 disowns 24..26


def build_vectors() -> dict[str, Any]:
    pub, base = device_chain(TEST_D)                     # entry 0: policy 0
    _, signed = device_chain(TEST_D, signed=True)        # entry 0: policy 1
    _, altered = device_chain(TEST_D, altered=(ALTERED_AT, ALTERED_FROM))
    _, altered_signed = device_chain(TEST_D, signed=True,
                                     altered=(ALTERED_AT, ALTERED_FROM))
    _, back = device_chain(TEST_D, back_seq=22)
    _, badhead = device_chain(TEST_D, bad_head_seq=25)
    other_pub, _ = device_chain(OTHER_D, n=1)
    last = ENTRIES - 1
    hashes = {r["seq"]: hashlib.sha256(r["body"]).digest() for r in base
              if r["magic"] == MAGIC_ENTRY}
    vectors: list[dict[str, Any]] = []

    def add(name: str, desc: str, recs: list[dict[str, Any]], code: str | None = None,
            seq: int | None = None, *, segs: list[dict[str, Any]] | None = None,
            anchor: dict[str, Any] | None = None, key: bytes = pub) -> None:
        vectors.append({
            "name": name, "description": desc, "pub": key.hex(), "anchor": anchor,
            "segments": [{"name": s["name"], "data": s["data"].hex()}
                         for s in (segs if segs is not None else segments(recs))],
            "expect": {"ok": code is None, "code": code, "seq": seq}})

    add("happy-path", "the device chain as written, checkpoints only", base)
    add("happy-path-signed", "every entry signed (policy 1 in entry 0)", signed)

    k = 12
    r = _copy(base)
    i = _entry_index(r, k)
    m = cbor2.loads(r[i]["body"])
    m[KEY_BODY][0][SENML_V] = 30.5  # the temperature reading, CRC fixed by the attacker
    r[i]["body"] = bytes(cbor2.dumps(m, canonical=True))
    add("payload-edited", f"entry {k}'s reading edited, CRC recomputed", r,
        "link_mismatch", k + 1)

    r = _copy(base)
    i = _entry_index(r, k)
    raw = bytearray(frame(r[i]))
    raw[20] ^= 0x01
    r[i]["raw"] = bytes(raw)
    add("payload-edited-crc", f"a bit of entry {k} flipped on flash (CRC not fixed)", r,
        "record_bad_crc", k)

    r = _copy(base)
    i = _entry_index(r, k)
    r[i]["body"] = _reencode(r[i]["body"], seq=k + 1)
    r[i]["seq"] = k + 1
    add("seq-plus-1", f"entry {k} renumbered {k + 1}", r, "gap", k + 1)

    r = _copy(base)
    del r[_entry_index(r, k)]
    add("entry-deleted", f"entry {k} removed", r, "gap", k + 1)

    r = _copy(base)
    i = _entry_index(r, k)
    r[i], r[i + 1] = r[i + 1], r[i]
    add("entries-reordered", f"entries {k} and {k + 1} swapped", r, "reordered", k)

    r = _copy(base)
    i = _entry_index(r, k)
    r.insert(i + 1, dict(r[i]))
    add("entry-duplicated", f"entry {k} written twice", r, "duplicate", k)

    r = _copy(base)
    r[0]["body"] = _reencode(r[0]["body"],
                             prev=genesis_prev(other_pub))
    add("wrong-genesis", "entry 0 links to another device's genesis", r, "wrong_genesis", 0)
    add("wrong-key", "the chain checked against another device's key", base,
        "wrong_genesis", 0, key=other_pub)

    r = _copy(base)
    ci = next(i for i, x in enumerate(r) if x["magic"] == MAGIC_CHECKPOINT and x["seq"] == 19)
    body = bytearray(r[ci]["body"])
    body[-1] ^= 0x01
    r[ci]["body"] = bytes(body)
    add("checkpoint-bad-sig", "checkpoint 19's signature altered (CRC fixed)", r,
        "checkpoint_bad_sig", 19)

    add("checkpoint-head-mismatch", "a validly signed checkpoint over a wrong head for 25",
        badhead, "checkpoint_head_mismatch", 25)

    segs = segments(base)
    segs[-1]["data"] += b"\x00garbage\xff" * 3
    add("trailing-garbage", "noise appended to the last segment", base,
        "record_bad_magic", None, segs=segs)

    segs = segments(base)
    segs[-1]["data"] = segs[-1]["data"][:-40]
    add("truncated-tail", "last segment cut inside its last record", base,
        "record_torn_tail", last, segs=segs)

    r = _copy(base)
    for seq in (last, last - 1, last - 2):
        del r[_entry_index(r, seq)]
    add("tail-entries-removed", "last 3 entries removed, final checkpoint kept", r,
        "checkpoint_beyond_chain", last)

    r = _copy(signed)
    i = _entry_index(r, k)
    sig = bytearray(r[i]["sig"])
    sig[5] ^= 0x40
    r[i]["sig"] = bytes(sig)
    add("per-entry-sig-bad", f"entry {k}'s signature altered (CRC fixed)", r,
        "entry_bad_sig", k)

    r = _copy(signed)
    r[_entry_index(r, k)]["sig"] = None
    add("unsigned-entry", f"entry {k}'s signature stripped (CRC fixed), policy 1 in entry 0",
        r, "entry_unsigned", k)

    r = _copy(signed)
    i = _entry_index(r, k)
    m = cbor2.loads(r[i]["body"])
    m[KEY_BODY][0][SENML_V] = 30.5
    r[i]["body"] = bytes(cbor2.dumps(m, canonical=True))
    _relink(r, i)
    r = [x for x in r if x["magic"] == MAGIC_ENTRY or x["seq"] < k]   # the now-wrong checkpoints
    for x in r[i:]:
        x["sig"] = None                  # no key: the signatures from the edit on go
    add("sig-stripped-after-edit", f"policy 1: entry {k} edited, later links and CRCs "
        "recomputed, the signatures that no longer verify and the checkpoints after it "
        "removed", r, "entry_unsigned", k)

    r = _copy(signed)
    for seq in (last, last - 1, last - 2):
        r[_entry_index(r, seq)]["sig"] = None
    add("unsigned-tail", "policy 1: the last 3 entries without their signatures", r,
        "entry_unsigned", last - 2)

    add("log-altered", f"policy 0: entry {ALTERED_AT} is the device's report that entries "
        f"{ALTERED_FROM}..{ALTERED_AT - 1} were altered; later checkpoints cover them",
        altered, "log_altered", ALTERED_FROM)
    add("log-altered-signed", f"policy 1: entry {ALTERED_AT} disowns {ALTERED_FROM}.."
        f"{ALTERED_AT - 1}, whose own signatures verify", altered_signed, "log_altered",
        ALTERED_FROM)

    r = _copy(base)
    i = _entry_index(r, k)
    r[i]["seq"] = k + 7
    add("record-seq-mismatch", f"record header of entry {k} says {k + 7}", r,
        "seq_mismatch", k)

    add("time-backwards", "device time goes back 10 minutes at entry 22 (same boot)", back,
        "time_backwards", 22)

    segs = segments(base)
    del segs[1]
    add("segment-deleted", "the second segment file removed", base, "gap", SEG_RECORDS * 2,
        segs=segs)

    mid = [x for x in base if x["seq"] >= 20]
    add("mid-chain-anchored", "records from seq 20 with the trusted (19, head) anchor", mid,
        anchor={"seq": 19, "head": hashes[19].hex()})
    add("mid-chain-unanchored", "records from seq 20 and no anchor", mid, "unanchored", 20)
    add("mid-chain-wrong-anchor", "records from seq 20 against a different head for 19", mid,
        "link_mismatch", 20, anchor={"seq": 19, "head": hashes[18].hex()})

    return {"pub": pub.hex(), "device_id": device_id(pub),
            "vectors": vectors}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", type=Path, default=DEFAULT_OUT)
    args = ap.parse_args(argv)
    data = build_vectors()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(data, indent=1) + "\n")
    print(f"{len(data['vectors'])} vectors -> {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
