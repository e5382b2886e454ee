"""Host-made vectors for the device format tests (CPython side; see conftest.py NEEDS).

Why: the device encoder must agree byte for byte with independent implementations:
scalars with cbor2 (canonical=True), map ordering with a bytewise sort written here
straight from RFC 8949 section 4.2.1 (cbor2 sorts length-first, RFC 7049 style), and
checkpoint signatures with python-ecdsa's deterministic signer. Values are written
one JSON object per line in a tagged form the device can rebuild exactly (floats as
IEEE-754 double bits, bytes as hex) so no float parsing is involved on the device.
"""

from __future__ import annotations

import hashlib
import json
import random
import struct
from pathlib import Path
from typing import Any

import cbor2
from ecdsa import NIST256p, SigningKey
from ecdsa.util import sigencode_string
from hashtrail.formats.cbor_strict import head  # shortest CBOR head, RFC 8949 4.2.1
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

SEED = 20250911


def canonical(v: Any) -> bytes:
    """RFC 8949 deterministic encoding: cbor2 for items, bytewise-sorted map keys."""
    if isinstance(v, dict):
        items = sorted((canonical(k), canonical(x)) for k, x in v.items())
        return head(5, len(items)) + b"".join(k + x for k, x in items)
    if isinstance(v, list):
        return head(4, len(v)) + b"".join(canonical(x) for x in v)
    return bytes(cbor2.dumps(v, canonical=True))


def tagged(v: Any) -> Any:
    """A JSON form the device rebuilds exactly (see dtest-side `untag`)."""
    if v is None or isinstance(v, bool):
        return v
    if isinstance(v, int):
        return {"i": str(v)}
    if isinstance(v, float):
        return {"f": struct.pack(">d", v).hex()}
    if isinstance(v, bytes):
        return {"b": v.hex()}
    if isinstance(v, str):
        return {"s": v}
    if isinstance(v, list):
        return {"a": [tagged(x) for x in v]}
    if isinstance(v, dict):
        return {"m": [[tagged(k), tagged(x)] for k, x in v.items()]}
    raise TypeError(type(v))


_scalars = st.one_of(
    st.none(), st.booleans(),
    st.integers(min_value=-(2**64), max_value=2**64 - 1),
    st.sampled_from([0, 23, 24, 255, 256, 65535, 65536, 2**32 - 1, 2**32, 2**64 - 1,
                     -1, -24, -25, -256, -257, -(2**64)]),
    st.floats(allow_nan=True, allow_infinity=True),
    st.floats(width=16), st.floats(width=32),
    st.sampled_from([0.0, -0.0, 1.0, 1.5, 65504.0, 65520.0, 5.960464477539063e-08,
                     6.103515625e-05, 1e-7, 3.4028234663852886e38, 1e300, 4.5, 3.7, 55.0]),
    st.binary(max_size=40), st.text(max_size=20),
)
_keys = st.one_of(st.integers(min_value=-(2**40), max_value=2**40), st.text(max_size=6),
                  st.binary(max_size=4))
_values = st.recursive(
    _scalars,
    lambda inner: st.one_of(st.lists(inner, max_size=5),
                            st.dictionaries(_keys, inner, max_size=5)),
    max_leaves=12,
)


def _collect(n: int) -> list[Any]:
    out: list[Any] = []

    @settings(max_examples=n, database=None, derandomize=True,
              suppress_health_check=list(HealthCheck), deadline=None)
    @given(_values)
    def grab(v: Any) -> None:
        out.append(v)

    grab()
    return out


def make_cbor_vectors(d: Path) -> None:
    """cbor_vectors.jsonl: {"v": tagged value, "e": expected canonical hex}."""
    with (d / "cbor_vectors.jsonl").open("w") as f:
        for v in _collect(400) + _random_floats(600):
            # cbor2 writes every NaN as f97e00, as the device must.
            line = {"v": tagged(v), "e": canonical(v).hex()}
            f.write(json.dumps(line, ensure_ascii=False) + "\n")


def _random_floats(n: int) -> list[Any]:
    """Random bit patterns of every width (subnormals, boundaries, NaN payloads)."""
    rnd = random.Random(SEED)
    out: list[Any] = []
    for i in range(n):
        width = (16, 32, 64)[i % 3]
        bits = rnd.getrandbits(width)
        if width == 16:
            out.append(struct.unpack(">e", bits.to_bytes(2, "big"))[0])
        elif width == 32:
            out.append(struct.unpack(">f", bits.to_bytes(4, "big"))[0])
        else:
            out.append(struct.unpack(">d", bits.to_bytes(8, "big"))[0])
    return out


# --- entries and checkpoints -------------------------------------------------------

TEST_D = 0x6C3F7E1A2B4D5F60718293A4B5C6D7E8F90A1B2C3D4E5F60718293A4B5C6D7E8
FW = "0.1.0"


def test_key() -> tuple[int, bytes]:
    sk = SigningKey.from_secret_exponent(TEST_D, curve=NIST256p, hashfunc=hashlib.sha256)
    vk = sk.get_verifying_key()
    return TEST_D, b"\x04" + vk.to_string()


def genesis_prev(pub: bytes) -> bytes:
    return hashlib.sha256(b"hashtrail/genesis/v1" + pub).digest()


def host_entry(seq: int, t: int | None, up: int, boot: int, prev: bytes, kind: int,
               body: Any) -> bytes:
    return canonical({0: 1, 1: seq, 2: t, 3: up, 4: boot, 5: prev, 6: FW, 7: kind, 8: body})


def make_entry_vectors(d: Path) -> None:
    """entry_vectors.jsonl: a chain of mixed-kind entries the device must rebuild."""
    rnd = random.Random(SEED)
    _, pub = test_key()
    prev = genesis_prev(pub)
    lines = [{"pub": pub.hex(), "genesis": prev.hex()}]
    units = ["Cel", "%RH", "V", None]
    for seq in range(60):
        t = None if rnd.random() < 0.3 else rnd.choice([0, 1700000000 + seq, 2**32 + seq])
        up = rnd.choice([seq, 1000 * seq, 2**33 + seq])
        boot = rnd.choice([1, 2, 300, 70000])
        if seq == 0:
            kind, body, dev = 3, {1: pub}, tagged({1: pub})
        else:
            kind = rnd.choice([0, 0, 0, 1, 2, 4, 5, 7, 8])
            if kind == 0:
                rs = []
                for i in range(rnd.randint(0, 4)):
                    val: int | float = rnd.choice([
                        rnd.randint(-(2**40), 2**40), round(rnd.uniform(-50, 50), 3),
                        rnd.choice([1.5, 4.0, 0.0, -0.0, 3.7]), struct.unpack(
                            ">f", struct.pack(">f", rnd.uniform(0, 5)))[0]])
                    rs.append((f"s{i}", rnd.choice(units), val))
                body = [{0: n, 2: v} if u is None else {0: n, 1: u, 2: v} for n, u, v in rs]
                dev = {"a": [{"a": [{"s": n}, None if u is None else {"s": u}, tagged(v)]}
                             for n, u, v in rs]}
            elif kind == 1:
                body = {1: rnd.choice(["power_on", "soft", "watchdog"])}
                dev = tagged(body)
            elif kind == 2:
                body = {1: rnd.choice([None, 1700000000]), 2: 1700000100, 3: "host"}
                dev = tagged(body)
            elif kind == 4:
                body = {1: rnd.randint(0, 10**6), 2: "flash_full"}
                dev = tagged(body)
            elif kind == 7:     # update: old, new, counter, manifest hash
                body = {1: "0.1.0", 2: "0.2.0", 3: rnd.randint(1, 2**32 - 1),
                        4: hashlib.sha256(b"m%d" % seq).digest()}
                dev = tagged(body)
            elif kind == 8:     # update reverted: failed, running, counter, hash, reason
                body = {1: "0.2.0", 2: "0.1.0", 3: rnd.randint(1, 2**32 - 1),
                        4: hashlib.sha256(b"m%d" % seq).digest(), 5: "not started in 3 boots"}
                dev = tagged(body)
            else:
                body = {1: seq - 1, 2: rnd.randint(0, seq)}
                dev = tagged(body)
        raw = host_entry(seq, t, up, boot, prev, kind, body)
        lines.append({"seq": seq, "t": None if t is None else str(t), "up": str(up),
                      "boot": boot, "kind": kind, "body": dev, "e": raw.hex()})
        prev = hashlib.sha256(raw).digest()
    with (d / "entry_vectors.jsonl").open("w") as f:
        for line in lines:
            f.write(json.dumps(line) + "\n")


def host_checkpoint(d_key: int, pub: bytes, seq: int, head: bytes, t: int | None, up: int,
                    nonce: bytes | None) -> bytes:
    """Checkpoint bytes built from RFC 9052 with cbor2 and python-ecdsa (independent)."""
    kid = hashlib.sha256(pub).digest()[:16]
    protected = canonical({1: -7, 4: kid})
    payload_map: dict[int, Any] = {0: 1, 1: kid, 2: seq, 3: head, 4: t, 5: up}
    if nonce is not None:
        payload_map[6] = nonce
    payload = canonical(payload_map)
    tbs = canonical(["Signature1", protected, b"", payload])
    sk = SigningKey.from_secret_exponent(d_key, curve=NIST256p, hashfunc=hashlib.sha256)
    sig = sk.sign_deterministic(tbs, hashfunc=hashlib.sha256, sigencode=sigencode_string)
    return bytes(cbor2.dumps(cbor2.CBORTag(18, [protected, {}, payload, sig])))


def make_cose_vectors(d: Path) -> None:
    """cose_vectors.jsonl: checkpoints the device must reproduce byte for byte."""
    rnd = random.Random(SEED + 1)
    d_key, pub = test_key()
    lines: list[dict[str, Any]] = [{"d": f"{d_key:064x}", "pub": pub.hex()}]
    for _ in range(12):
        seq = rnd.choice([0, 1, 23, 24, 70000, 2**32 + 5])
        head = bytes(rnd.getrandbits(8) for _ in range(32))
        t = rnd.choice([None, 1700000000, 2**32])
        up = rnd.choice([0, 12345, 2**40])
        nonce = rnd.choice([None, b"\x01", bytes(range(32)), b"abcdefgh"])
        raw = host_checkpoint(d_key, pub, seq, head, t, up, nonce)
        lines.append({"seq": str(seq), "head": head.hex(), "t": None if t is None else str(t),
                      "up": str(up), "nonce": None if nonce is None else nonce.hex(),
                      "e": raw.hex()})
    with (d / "cose_vectors.jsonl").open("w") as f:
        for line in lines:
            f.write(json.dumps(line) + "\n")
