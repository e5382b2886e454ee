"""Every named mutation vector gets exactly its expected verdict from the verifier."""

from __future__ import annotations

import hashlib
import json
import random
from pathlib import Path
from typing import Any

import pytest
from hashtrail import cli
from hashtrail.chain.chainverify import Anchor, ChainWalk, verify_chain
from hashtrail.formats.entry import parse_entry, signing_policy
from hashtrail.formats.records import parse_records
from mutation_vectors import by_name, vectors

NAMES = [v["name"] for v in vectors()["vectors"]]


def _run(v: dict[str, Any]):  # type: ignore[no-untyped-def]
    recs, probs = _records(v)
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
            "per-entry-sig-bad", "time-backwards", "mid-chain-anchored", "unsigned-entry",
            "sig-stripped-after-edit", "unsigned-tail", "log-altered", "log-altered-signed"}
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
    # bad keys (off-curve, not hex, a file of garbage) end as a one-line project error,
    # exit 2: bad input, not a broken log (the log was not even read; issue 15)
    for bad_key in ("04" + "ff" * 64, "zz", str(tmp_path / "0000000000.seg")):
        assert cli.main(["verify-log", "--pubkey", bad_key, str(tmp_path)]) == 2
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


def _records(v: dict[str, Any]):  # type: ignore[no-untyped-def]
    recs, probs = [], []
    for s in v["segments"]:
        r, p = parse_records(bytes.fromhex(s["data"]), s["name"])
        recs += r
        probs += p
    return recs, probs


def test_device_is_held_to_its_entry_0_policy() -> None:
    """Policy from entry 0 (1 for the signed device chain, 0 for the plain one); a walk
    that starts after entry 0 takes the policy the caller stored, and holds to it."""
    pub = bytes.fromhex(vectors()["pub"])
    assert _run(by_name("happy-path-signed")).policy == 1
    assert _run(by_name("happy-path")).policy == 0
    recs, probs = _records(by_name("unsigned-entry"))       # entry 12 without its sig
    mid = [r for r in recs if r.seq >= 10]
    head9 = next(r for r in recs if r.is_entry and r.seq == 9).body
    anchor = Anchor(9, hashlib.sha256(head9).digest())
    rep = verify_chain(pub, mid, probs, anchor=anchor, policy=1)
    assert [(f.code, f.seq) for f in rep.findings] == [("entry_unsigned", 12)]
    assert rep.verified_through == 11 and rep.policy == 1
    assert verify_chain(pub, mid, probs, anchor=anchor, policy=0).ok
    # the same records from genesis: entry 0's word, whatever the caller says
    rep = verify_chain(pub, recs, probs, policy=0)
    assert ("entry_unsigned", 12) in [(f.code, f.seq) for f in rep.findings]


def test_log_altered_range_is_never_verified() -> None:
    """The device's own report: nothing from its first disowned seq on counts, even with
    checkpoints after it (policy 0) or valid per-entry signatures (policy 1)."""
    for name in ("log-altered", "log-altered-signed"):
        rep = _run(by_name(name))
        (f,) = [f for f in rep.findings if f.code == "log_altered"]
        assert f.seq == 24 and "entries 24..26 altered" in f.text, f
        assert "entry 24 does not match its signature" in f.text
        assert rep.verified_through == 23 and rep.altered_from == 24
        assert rep.last_seq == 39 and len(rep.checkpoints) >= 2


def test_log_altered_range_behind_the_anchor_does_not_stop_the_walk() -> None:
    """A collector that verified entries 24..26 before the flash was altered holds its own
    copies: the report at 27 then disowns nothing this walk could accept, and the chain
    goes on from it (reconcile's rule too). An anchor inside the range still stops it."""
    for name in ("log-altered", "log-altered-signed"):
        v = by_name(name)
        recs, probs = _records(v)
        assert not probs
        pub = bytes.fromhex(v["pub"])
        ent = {r.seq: r for r in recs if r.is_entry}
        policy = signing_policy(parse_entry(ent[0].body))
        tail = [r for r in recs if r.seq >= 27]
        behind = verify_chain(pub, tail, [], anchor=Anchor(26, hashlib.sha256(
            ent[26].body).digest()), policy=policy)
        assert behind.ok and behind.altered_from == 24 and behind.verified_through == 39, \
            behind.findings
        inside = verify_chain(pub, [r for r in recs if r.seq >= 26], [], anchor=Anchor(
            25, hashlib.sha256(ent[25].body).digest()), policy=policy)
        (f,) = [f for f in inside.findings if f.code == "log_altered"]
        assert f.seq == 26 and inside.verified_through is None, inside.findings


def test_cli_verify_log_policy_for_an_anchored_log(tmp_path: Path,
                                                   capsys: pytest.CaptureFixture[str]
                                                   ) -> None:
    """A pruned log (no entry 0): --policy says what entry 0 declared."""

    v = by_name("unsigned-tail")                            # policy 1, 37..39 unsigned
    for s in v["segments"][1:]:                              # entries 16.. only
        (tmp_path / s["name"]).write_bytes(bytes.fromhex(s["data"]))
    recs, _ = _records(v)
    h15 = hashlib.sha256(next(r for r in recs if r.is_entry and r.seq == 15).body).digest()
    base = ["verify-log", "--pubkey", v["pub"], "--anchor", f"15:{h15.hex()}", "--json"]
    assert cli.main([*base, str(tmp_path)]) == 0            # policy unknown: links only
    assert json.loads(capsys.readouterr().out)["policy"] is None
    assert cli.main([*base, "--policy", "1", str(tmp_path)]) == 1
    out = json.loads(capsys.readouterr().out)
    assert out["policy"] == 1 and out["verified_through"] == 36
    assert [(f["code"], f["seq"]) for f in out["findings"]] == [
        ("entry_unsigned", 37), ("entry_unsigned", 38), ("entry_unsigned", 39)]


def test_policy_0_entries_are_reported_unprotected_until_their_checkpoint(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Never a plain "ok" for checkpoint-only entries: each range names the checkpoint
    that first covered it, and a tail no signature covers says so."""
    rep = _run(by_name("happy-path"))
    assert rep.ok and rep.policy == 0
    assert rep.unprotected == [(0, 9, 9, "checkpoint"), (10, 19, 19, "checkpoint"),
                               (20, 29, 29, "checkpoint"), (30, 39, 39, "checkpoint")]
    assert _run(by_name("happy-path-signed")).unprotected == []
    v = by_name("tail-entries-removed")        # the last checkpoint names a cut tail
    recs, probs = _records(v)
    rep = verify_chain(bytes.fromhex(v["pub"]), [r for r in recs if r.seq <= 33], probs)
    assert rep.ok and rep.unprotected[-1] == (30, 33, None, "")
    d = tmp_path / "log"
    d.mkdir()
    _write(by_name("happy-path"), d)
    assert cli.main(["verify-log", "--pubkey", v["pub"], str(d)]) == 0
    out = capsys.readouterr().out
    assert "entries 10..19: unprotected until checkpoint 19" in out
    assert "policy 0: checkpoints only" in out
    assert cli.main(["verify-log", "--pubkey", v["pub"], "--json", str(d)]) == 0
    assert json.loads(capsys.readouterr().out)["unprotected"][0] == {
        "first": 0, "last": 9, "until": 9, "by": "checkpoint"}


@pytest.mark.parametrize("size", [1, 3])
@pytest.mark.parametrize("name", NAMES)
def test_a_walk_fed_in_batches_gives_the_same_verdict(name: str, size: int) -> None:
    """collect feeds ChainWalk batch by batch as records arrive (memory bounded by the
    batch): its report must be verify_chain's over the whole log, checkpoint records
    judged whether their entry came in an earlier batch or comes later."""
    v = by_name(name)
    recs, probs = _records(v)
    a = v["anchor"]
    anchor = Anchor(a["seq"], bytes.fromhex(a["head"])) if a else None
    whole = verify_chain(bytes.fromhex(v["pub"]), recs, probs, anchor=anchor)
    walk = ChainWalk(bytes.fromhex(v["pub"]), anchor=anchor)
    for i in range(0, len(recs), size):
        walk.feed(recs[i:i + size])
    walk.problems(probs)
    rep = walk.finish()
    assert sorted((f.code, f.seq, f.text) for f in rep.findings) == sorted(
        (f.code, f.seq, f.text) for f in whole.findings)
    assert (rep.last_seq, rep.head, rep.verified_through, rep.entries, rep.policy) == (
        whole.last_seq, whole.head, whole.verified_through, whole.entries, whole.policy)
    assert sorted(c.seq for c in rep.checkpoints) == sorted(c.seq for c in whole.checkpoints)
    assert rep.unprotected == whole.unprotected
    for r in recs:   # every entry walked is known by (seq, hash), nothing else
        if r.is_entry and rep.ok:
            assert walk.walked(r.seq, hashlib.sha256(r.body).digest())
    assert not walk.walked(0, b"\0" * 32)


def test_a_walk_keeps_a_bounded_number_of_findings() -> None:
    v = by_name("entries-reordered")
    recs, _ = _records(v)
    dup = [r for r in recs if r.is_entry] * 30     # every entry again and again
    walk = ChainWalk(bytes.fromhex(v["pub"]), keep=10)
    walk.feed(dup)
    rep = walk.finish()
    whole = verify_chain(bytes.fromhex(v["pub"]), dup)
    assert len(whole.findings) > 10
    assert len(rep.findings) == 10 and rep.more == len(whole.findings) - 10
