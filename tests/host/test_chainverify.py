"""Every named mutation vector gets exactly its expected verdict from the verifier."""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Any

import pytest
from hashtrail import cli
from hashtrail.chainverify import Anchor, verify_chain
from hashtrail.records import parse_records
from mutation_vectors import by_name, vectors

NAMES = [v["name"] for v in vectors()["vectors"]]


def _run(v: dict[str, Any]):  # type: ignore[no-untyped-def]
    recs, probs = [], []
    for s in v["segments"]:
        r, p = parse_records(bytes.fromhex(s["data"]), s["name"])
        recs += r
        probs += p
    a = v["anchor"]
    anchor = Anchor(a["seq"], bytes.fromhex(a["head"])) if a else None
    return verify_chain(bytes.fromhex(v["pub"]), recs, probs, anchor=anchor)


@pytest.mark.parametrize("name", NAMES)
def test_vector_verdict(name: str) -> None:
    v = by_name(name)
    rep = _run(v)
    exp = v["expect"]
    got = [(f.code, f.seq) for f in rep.findings]
    if exp["ok"]:
        assert rep.ok, got
        assert rep.verified_through == rep.last_seq
    else:
        assert not rep.ok
        assert (exp["code"], exp["seq"]) in got, got
        for f in rep.findings:
            assert f.device_id == vectors()["device_id"] or name == "wrong-key"
        # nothing at or after a chain break counts as verified
        # (duplicate/reordered/conflict name an older seq that was itself verified)
        chain_breaks = [s for c, s in got if s is not None and not c.startswith("checkpoint")
                        and not c.startswith("record_")
                        and c not in ("duplicate", "reordered", "conflict")]
        if chain_breaks and rep.verified_through is not None:
            assert rep.verified_through < min(chain_breaks)


def test_vector_set_is_complete() -> None:
    want = {"happy-path", "payload-edited", "seq-plus-1", "entry-deleted", "entries-reordered",
            "entry-duplicated", "wrong-genesis", "checkpoint-bad-sig",
            "checkpoint-head-mismatch", "trailing-garbage", "truncated-tail",
            "per-entry-sig-bad", "time-backwards", "mid-chain-anchored"}
    assert want <= set(NAMES)


def _write(v: dict[str, Any], d: Path) -> Path:
    for s in v["segments"]:
        (d / s["name"]).write_bytes(bytes.fromhex(s["data"]))
    return d


def test_cli_clean_and_broken(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    pub = vectors()["pub"]
    good = tmp_path / "good"
    good.mkdir()
    _write(by_name("happy-path"), good)
    assert cli.main(["verify-log", "--pubkey", pub, str(good)]) == 0
    assert "OK" in capsys.readouterr().out
    bad = tmp_path / "bad"
    bad.mkdir()
    _write(by_name("entry-deleted"), bad)
    assert cli.main(["verify-log", "--pubkey", pub, "--json", str(bad)]) == 1
    out = json.loads(capsys.readouterr().out)
    assert out["ok"] is False
    assert out["findings"][0]["code"] == "gap" and out["findings"][0]["seq"] == 13


def test_cli_garbage_never_tracebacks(tmp_path: Path,
                                     capsys: pytest.CaptureFixture[str]) -> None:
    rnd = random.Random(7)
    pub = vectors()["pub"]
    base = bytes.fromhex(by_name("happy-path")["segments"][0]["data"])
    for i in range(40):
        data = bytearray(base[: rnd.randrange(len(base))])
        for _ in range(rnd.randrange(4)):
            if data:
                data[rnd.randrange(len(data))] = rnd.randrange(256)
        (tmp_path / f"{i:010d}.seg").write_bytes(bytes(data) + rnd.randbytes(rnd.randrange(9)))
    (tmp_path / "9999999999.seg").write_bytes(b"")
    assert cli.main(["verify-log", "--pubkey", pub, str(tmp_path)]) == 1
    capsys.readouterr()
    # bad keys (off-curve, not hex, a file of garbage) end as a one-line project error
    for bad_key in ("04" + "ff" * 64, "zz", str(tmp_path / "0000000000.seg")):
        assert cli.main(["verify-log", "--pubkey", bad_key, str(tmp_path)]) == 1
        err = capsys.readouterr().err
        assert err.startswith("hashtrail: error:") and "Traceback" not in err


def test_every_record_corruption_is_reported() -> None:
    """Flip every byte of a segment in turn: the verifier reports it, never crashes."""
    v = by_name("happy-path")
    pub = bytes.fromhex(v["pub"])
    data = bytes.fromhex(v["segments"][-1]["data"])
    for i in range(0, len(data), 7):
        mutated = bytearray(data)
        mutated[i] ^= 0x01
        recs, probs = parse_records(bytes(mutated), "last")
        rep = verify_chain(pub, recs, probs, anchor=None)
        assert not rep.ok, i
