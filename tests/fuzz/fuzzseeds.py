"""Valid seeds for the decoder fuzzers, made from real device output.

Why device output: a fuzzer only goes deep when it starts from inputs the decoders
accept, and the inputs that matter are the bytes the firmware really writes. The
chains come from tools/gen_mutations.py's `device_chain`, which runs the firmware
modules (cbor, entry, chain, cose, identity, p256) under the MicroPython unix port
with a fixed test key; everything else (segments, frames, bundles, a ledger, its
signed checkpoints, proofs, fork evidence) is built from those bytes by the
project's own host code, the way a collector and a ledger would.

`seeds()` is computed once per process (about 2 s) and shared by the suite's fuzz
tests and tools/fuzz.py.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import struct
import sys
import tempfile
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "tools"))
import gen_mutations  # noqa: E402
from hashtrail.chain.evidence import Branch, make_evidence  # noqa: E402
from hashtrail.cli import main as cli  # noqa: E402
from hashtrail.collector.bundle import Bundle, BundleCheckpoint, parse_bundle, write_bundle  # noqa: E402
from hashtrail.collector.store import Enrollment, RawEntry, device_id_of  # noqa: E402
from hashtrail.device import link  # noqa: E402
from hashtrail.formats.note import Signer  # noqa: E402
from hashtrail.ledger.ledger_db import Ledger  # noqa: E402
from hashtrail.ledger.reconcile import reconcile  # noqa: E402

ENTRIES = 30
FORK_SEQ = 22       # gen_mutations' back_seq: the second history differs from here on
NONCE = b"host-nonce-19"  # gen_mutations puts this nonce in the checkpoint for seq 19


@dataclass
class Seeds:
    pub: bytes
    device_id: str
    entries: list[bytes]                  # entry bytes, seq 0..ENTRIES-1
    checkpoints: list[bytes]              # COSE_Sign1 bytes, in log order
    nonce_checkpoint: bytes               # the checkpoint that carries NONCE
    segment: bytes                        # all records of the plain chain, one segment
    signed_segment: bytes                 # the same chain with per-entry signatures
    entry_sigs: list[bytes]               # per-entry signatures of the signed chain
    frames: bytes                         # a device reply stream: INFO, CHUNKs, END
    info_payload: bytes                   # CBOR INFO map, as the firmware encodes it
    requests: list[bytes]                 # request lines of each command
    bundle: bytes                         # a collector bundle (JSON lines)
    note: bytes                           # a signed ledger checkpoint (C2SP note)
    verifier_key: str
    inclusion_proof: dict[str, Any]
    consistency_proof: dict[str, Any]
    evidence: str                         # fork evidence (two signed histories)
    extra: dict[str, bytes] = field(default_factory=dict)


def _records(recs: list[dict[str, Any]]) -> bytes:
    return b"".join(gen_mutations.frame(r) for r in recs)


def _info_payload(pub: bytes, last: int, head: bytes) -> bytes:
    """INFO exactly as firmware/lib/hashtrail/link.py `_hello` writes it (ints, bytes, text)."""
    import cbor2

    m = {0: 1, 1: hashlib.sha256(pub).digest()[:16], 2: pub, 3: "0.1.0", 4: "unix",
         5: 0, 6: last, 7: 1_900_000, 8: 3, 9: None, 10: head, 11: 512}
    return bytes(cbor2.dumps(m))


def _frames(pub: bytes, seg: bytes, last: int, head: bytes) -> bytes:
    out = [link.encode_frame(link.REP_INFO, 7, _info_payload(pub, last, head))]
    chunks: list[bytes] = []
    cur = b""
    for raw in link.split_records(seg):
        if len(cur) + len(raw) > 512:
            chunks.append(cur)
            cur = b""
        cur += raw
    chunks.append(cur)
    for i, c in enumerate(chunks):
        out.append(link.encode_frame(link.REP_CHUNK, 8, struct.pack("<H", i) + c))
    out.append(link.encode_frame(link.REP_END, 8, struct.pack("<II", last + 1, last + 1)))
    return b"".join(out)


def _requests() -> list[bytes]:
    e = link.encode_request
    return [e(1, link.REQ_HELLO), e(2, link.REQ_RECORDS, struct.pack("<IH", 0, 4)),
            e(2, link.REQ_CREDIT, struct.pack("<H", 1)), e(3, link.REQ_CHECKPOINT, b"n" * 16),
            e(4, link.REQ_SET_TIME, struct.pack("<Q", 1_757_600_000)),
            e(5, link.REQ_ACK, struct.pack("<I", 3)), e(6, link.REQ_CANCEL)]


def _cli_json(argv: list[str]) -> dict[str, Any]:
    buf = io.StringIO()
    with contextlib.redirect_stdout(buf):
        rc = cli(argv)
    if rc != 0:
        raise RuntimeError(f"hashtrail {' '.join(argv)} failed ({rc})")
    return json.loads(buf.getvalue())  # type: ignore[no-any-return]


COLLECTOR = Signer("collector-fuzz", bytes(range(32, 64)))  # fixed: reproducible seeds


def signed_bundle(b: Bundle) -> Bundle:
    """`b` signed by the fuzz collector and parsed back (the real signature path)."""
    out = io.StringIO()
    write_bundle(b, out, COLLECTOR)
    return parse_bundle(io.BytesIO(out.getvalue().encode("ascii")))


def trusting_ledger(path: Path) -> Ledger:
    """A new ledger file that trusts the fuzz collector (so its bundles may enroll)."""
    led = Ledger.create(path, "fuzz.example/log")
    led.trust_collector(COLLECTOR.verifier(), "fuzz collector")
    return led


def _ledger_artifacts(b: Bundle) -> tuple[bytes, str, dict[str, Any], dict[str, Any]]:
    """A real ledger file: reconcile, then the CLI's own signed checkpoint and proofs."""
    with tempfile.TemporaryDirectory(prefix="hashtrail-fuzzseed-") as tmp:
        path = Path(tmp) / "ledger.db"
        trusting_ledger(path).close()
        with Ledger.open_signing(path) as led:
            res = reconcile(led, signed_bundle(b))
            if res.findings or res.accepted < ENTRIES:
                raise RuntimeError(f"seed bundle did not reconcile cleanly: {res}")
        cp = _cli_json(["ledger", "checkpoint", "--ledger", str(path), "--json"])
        did = b.enrollments[0].device_id
        inc = _cli_json(["ledger", "prove", "--ledger", str(path), "--device", did,
                         "--seq", "13", "--json"])
        cons = _cli_json(["ledger", "consistency", "--ledger", str(path), "--old", "11",
                          "--json"])
    return cp["checkpoint"].encode(), cp["verifier_key"], inc, cons


def _branch(recs: list[dict[str, Any]], lo: int, cp_seq: int) -> Branch:
    ents = [r["body"] for r in recs if r["magic"] == 0xA7 and lo <= r["seq"] <= cp_seq]
    cose = next(r["body"] for r in recs if r["magic"] == 0xC7 and r["seq"] == cp_seq)
    return Branch(ents, "checkpoint", cose)


@cache
def seeds() -> Seeds:
    pub, base = gen_mutations.device_chain(gen_mutations.TEST_D, n=ENTRIES)
    _, signed = gen_mutations.device_chain(gen_mutations.TEST_D, n=ENTRIES, signed=True,
                                           policy=0)     # the same chain, signed
    _, back = gen_mutations.device_chain(gen_mutations.TEST_D, n=ENTRIES,
                                         back_seq=FORK_SEQ)
    did = device_id_of(pub)
    entries = [r["body"] for r in base if r["magic"] == 0xA7]
    cps = [r["body"] for r in base if r["magic"] == 0xC7]
    nonce_cp = next(r["body"] for r in base if r["magic"] == 0xC7 and r["seq"] == 19)
    seg = _records(base)
    head = hashlib.sha256(entries[-1]).digest()
    b = Bundle("ab" * 8, "fuzz", 1_757_600_000,
               [Enrollment(did, pub, "fridge 1", "unix", "0.1.0", 1_757_600_000)],
               [(did, RawEntry(r["seq"], r["body"], r["sig"])) for r in signed
                if r["magic"] == 0xA7],
               [BundleCheckpoint(did, c, NONCE if c == nonce_cp else None) for c in cps])
    out = io.StringIO()
    write_bundle(b, out)
    note_bytes, vkey, inc, cons = _ledger_artifacts(b)
    evidence = make_evidence(pub, FORK_SEQ, _branch(base, FORK_SEQ, 29),
                             _branch(back, FORK_SEQ, 29))
    return Seeds(pub=pub, device_id=did, entries=entries, checkpoints=cps,
                 nonce_checkpoint=nonce_cp, segment=seg, signed_segment=_records(signed),
                 entry_sigs=[r["sig"] for r in signed if r["magic"] == 0xA7],
                 frames=_frames(pub, seg, ENTRIES - 1, head),
                 info_payload=_info_payload(pub, ENTRIES - 1, head), requests=_requests(),
                 bundle=out.getvalue().encode("ascii"), note=note_bytes, verifier_key=vkey,
                 inclusion_proof=inc, consistency_proof=cons, evidence=evidence)
