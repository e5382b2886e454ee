"""Reconcile into real ledgers, on both backends (a SQLite file and a PostgreSQL
database: the `ledger_at` fixture, tests/host/conftest.py): dedup, gaps, order, reruns,
refusals, forks."""

from __future__ import annotations

import io
import json
from collections.abc import Callable
from pathlib import Path

import pytest
from hashtrail.chain.evidence import check_evidence
from hashtrail.collector.bundle import FORMAT, Bundle, parse_bundle, read_bundle
from hashtrail.collector.store import RawEntry
from hashtrail.errors import FormatError, HashtrailError
from hashtrail.formats import merkle
from hashtrail.formats.keys import DeviceKey
from hashtrail.formats.leaf import parse_leaf
from hashtrail.ledger.ledger_db import Ledger
from hashtrail.ledger.reconcile import reconcile
from ledgerkit import COLLECTOR, Device, bundle, save, trust

At = Callable[[str], str]       # the ledger_at fixture: a ledger's place by name


def _ledger(at: str, key_file: Path | None = None) -> Ledger:
    """A new ledger that trusts the test collector (whose bundles may enroll devices)."""
    return trust(Ledger.create(at, "test.example/ledger", key_file=key_file))


def _dev(n: int, secret: int = 1001, sig: bool = False) -> Device:
    d = Device(secret, per_entry_sig=sig)
    d.readings(n)
    return d


def test_overlap_dedup_and_rerun_is_noop(ledger_at: At, tmp_path: Path) -> None:
    d = _dev(20)
    with _ledger(ledger_at("l")) as led:
        a = bundle([d], {d.id_hex: (0, 15)}, [(d, d.checkpoint(seq=14))])
        b = bundle([d], {d.id_hex: (5, 21)}, [(d, d.checkpoint())], name="c2")
        r1 = reconcile(led, a)
        assert r1.accepted == 15 and r1.findings == []
        r2 = reconcile(led, b)
        assert (r2.accepted, r2.duplicates) == (6, 10)
        size, cps = led.size, len(led.checkpoints())
        r3 = reconcile(led, b)
        assert (r3.accepted, r3.duplicates, led.size, len(led.checkpoints())) == \
            (0, 16, size, cps)
        assert size == 21
        # every leaf is in acceptance order and proves into the signed root
        for i in range(size):
            leaf = led.leaf(i)
            assert parse_leaf(leaf)[:2] == (d.id_hex, i)
            merkle.check_inclusion(merkle.leaf_hash(leaf), i, size, led.root(),
                                   merkle.prove_inclusion(led.node, i, size))


def test_gap_filled_by_another_collector_out_of_order(ledger_at: At, tmp_path: Path) -> None:
    d = _dev(30)
    with _ledger(ledger_at("l")) as led:
        late = bundle([d], {d.id_hex: (20, 31)}, [(d, d.checkpoint())])
        r = reconcile(led, late)
        assert r.accepted == 0 and r.pending == 11          # held: does not connect yet
        early = bundle([d], {d.id_hex: (0, 10)}, [(d, d.checkpoint(seq=9))])
        assert reconcile(led, early).accepted == 10
        middle = bundle([d], {d.id_hex: (10, 20)})
        r = reconcile(led, middle)
        assert r.accepted == 21 and led.device(d.id_hex).tip_seq == 30  # type: ignore[union-attr]


def test_unsigned_tail_waits_for_a_checkpoint(ledger_at: At, tmp_path: Path) -> None:
    d = _dev(10)
    with _ledger(ledger_at("l")) as led:
        assert reconcile(led, bundle([d], cps=[(d, d.checkpoint(seq=4))])).accepted == 5
        assert reconcile(led, bundle([d], cps=[(d, d.checkpoint())])).accepted == 6
        e = _dev(5, secret=77, sig=True)                    # per-entry signed: no cp needed
        assert reconcile(led, bundle([e])).accepted == 6


def test_tampered_unknown_and_revoked_are_refused(ledger_at: At, tmp_path: Path) -> None:
    d, stranger = _dev(5), _dev(5, secret=999)
    with _ledger(ledger_at("l")) as led:
        b = bundle([d], cps=[(d, d.checkpoint(seq=2)), (d, d.checkpoint())])
        body = b.entries[3][1].body
        b.entries[3] = (d.id_hex, b.entries[3][1]._replace(body=body.replace(b"temp", b"tmpx")))
        r = reconcile(led, b)
        assert r.accepted == 3                               # stops before the edited entry
        assert (r.findings[0].seq, "does not link" in r.findings[0].reason) == (4, True)
        u = bundle([stranger], cps=[(stranger, stranger.checkpoint())], enroll=False)
        r = reconcile(led, u)
        assert r.accepted == 0 and "unknown device" in r.findings[0].reason
        led.revoke(d.id_hex, "stolen")
        d.readings(3)
        r = reconcile(led, bundle([d], cps=[(d, d.checkpoint())]))
        assert r.accepted == 0 and "revoked" in r.findings[0].reason
        forged = bundle([d], cps=[(d, d.checkpoint()[:-1] + b"\x00")])
        assert reconcile(led, forged).accepted == 0


def test_fork_evidence_verifies_standalone(ledger_at: At, tmp_path: Path) -> None:
    d = _dev(10)
    clone = d.fork(6)
    clone.readings(4)                                        # same key, different history
    with _ledger(ledger_at("l")) as led:
        assert reconcile(led, bundle([d], cps=[(d, d.checkpoint())])).accepted == 11
        r = reconcile(led, bundle([clone], cps=[(clone, clone.checkpoint())], name="c2"))
        assert r.forks == 1 and r.accepted == 0
        dev = led.device(d.id_hex)
        assert dev is not None and dev.forked
        doc = next(iter(led.storage.scan_evidence()))[3]
        verdict = check_evidence(doc)
        assert (verdict.device_id, verdict.seq) == (d.id_hex, 6)
        assert reconcile(led, bundle([clone], cps=[(clone, clone.checkpoint())])).forks == 0
    tampered = json.loads(doc)
    tampered["branches"][1] = tampered["branches"][0]
    with pytest.raises(HashtrailError):
        check_evidence(json.dumps(tampered))


def test_time_going_backwards_is_flagged(ledger_at: At, tmp_path: Path) -> None:
    d = _dev(3)
    d.entry(0, [{0: "temp", 2: 1}], t=5)
    with _ledger(ledger_at("l")) as led:
        r = reconcile(led, bundle([d], cps=[(d, d.checkpoint())]))
        assert r.accepted == 5 and [f.seq for f in r.findings] == [4]


def test_bundle_round_trip_and_strictness(tmp_path: Path) -> None:
    d = _dev(3, sig=True)
    p = save(bundle([d], cps=[(d, d.checkpoint(b"n"))]), tmp_path / "b.jsonl")
    b = read_bundle(p)
    assert len(b.entries) == 4 and b.checkpoints[0].cose.startswith(b"\xd2\x84")
    data = p.read_bytes()
    for bad in [data.replace(b'"seq":1', b'"seq": 1'), data.replace(b'"seq":1', b'"seq":-1'),
                data.replace(FORMAT.encode(), b"hashtrail-bundle/999"), b"",
                data + b'{"type":"mystery"}\n', data[:-1], data.replace(b'"sig":"', b'"sig":"!')]:
        with pytest.raises(FormatError):
            parse_bundle(io.BytesIO(bad))


def test_verify_shows_a_forked_device_once(ledger_at: At, tmp_path: Path,
                                           capsys: pytest.CaptureFixture[str]) -> None:
    """A clone's checkpoint off the accepted chain and the stored evidence are one fact:
    `hashtrail verify` prints one fork line for the device, at the divergence seq."""
    from hashtrail.cli import main
    from hashtrail.ledger.ledger_verify import verify_ledger

    d = _dev(10)
    clone = d.fork(6)
    clone.readings(4)
    with _ledger(ledger_at("l")) as led:
        reconcile(led, bundle([d], cps=[(d, d.checkpoint())]))
        reconcile(led, bundle([clone], cps=[(clone, clone.checkpoint(seq=8)),
                                            (clone, clone.checkpoint())], name="c2"))
        dev = verify_ledger(led).devices[0]
    assert dev.status == "forked" and not dev.problems
    assert len(dev.anomalies) == 1 and dev.anomalies[0].startswith("fork at seq 6:")
    assert "2 of its checkpoints off the accepted chain" in dev.anomalies[0]
    assert main(["verify", "--ledger", ledger_at("l")]) == 1
    out = capsys.readouterr().out
    flagged = [ln for ln in out.splitlines() if ln.startswith("    !")]
    assert len(flagged) == 1 and flagged[0].startswith("    ! fork at seq 6:")


def test_cli_cosign_writes_a_cosignature_v1(ledger_at: At, tmp_path: Path,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    """`ledger cosign` appends a c2sp.org/tlog-cosignature line that the printed cosigner
    key verifies, and keeps the log's own signature."""
    from hashtrail.cli import main
    from hashtrail.formats import note

    d = _dev(3)
    with _ledger(ledger_at("l")) as led:
        reconcile(led, bundle([d], cps=[(d, d.checkpoint())]))
        log_key = led.verifier
    assert main(["ledger", "checkpoint", "--ledger", ledger_at("l"), "--json"]) == 0
    (tmp_path / "cp").write_text(json.loads(capsys.readouterr().out)["checkpoint"])
    (tmp_path / "w.key").write_text(note.Signer.generate("witness.test/w1").to_string())
    args = ["ledger", "cosign", "--key", str(tmp_path / "w.key"), "--state",
            str(tmp_path / "w.state"), "--json"]
    # fail closed: a witness must be configured with the ledger key it vouches for
    assert main([*args, "--ledger", ledger_at("l"), str(tmp_path / "cp")]) == 2
    assert "hashtrail ledger init prints it" in capsys.readouterr().err
    # another "ledger" file (its own key inside) does not make its checkpoint trusted
    with _ledger(ledger_at("evil"), tmp_path / "evil.key") as evil:
        reconcile(evil, bundle([d], cps=[(d, d.checkpoint())]))
        (tmp_path / "evil.cp").write_bytes(evil.sign_checkpoint())
    trusted = ["--verifier-key", log_key.to_string()]
    assert main([*args, *trusted, "--ledger", ledger_at("evil"),
                 str(tmp_path / "evil.cp")]) == 1
    assert "no signature by a trusted key" in capsys.readouterr().err
    assert not (tmp_path / "w.state").exists()
    assert main([*args, *trusted, "--ledger", ledger_at("l"), str(tmp_path / "cp")]) == 0
    out = json.loads(capsys.readouterr().out)
    data = out["cosigned"].encode()
    witness = note.Verifier.from_string(out["cosigner_key"])
    assert out["cosigner_key"] == witness.cosigner_string()
    assert list(note.open_cosignatures(data, [witness])) == ["witness.test/w1"]
    assert note.open_checkpoint(data, [log_key])[0].size == 4


def test_honest_copy_wins_over_an_earlier_edited_copy(ledger_at: At, tmp_path: Path) -> None:
    """Collector A delivers an edited entry (held), collector B the real one: the chain
    that reaches the device's checkpoint is accepted, whatever the hashes' order."""
    for secret in range(2001, 2009):           # both hash orders of edited vs real
        d = _dev(12, secret=secret)
        evil = bundle([d], cps=[(d, d.checkpoint(seq=4))])
        body = evil.entries[6][1].body
        evil.entries[6] = (d.id_hex, evil.entries[6][1]._replace(
            body=body.replace(b"temp", b"tmpx")))
        with trust(Ledger.create(ledger_at(str(secret)), "t/l",
                                 key_file=tmp_path / f"{secret}.key")) as led:
            assert reconcile(led, evil).accepted == 5
            r = reconcile(led, bundle([d], cps=[(d, d.checkpoint())], name="c2"))
            assert (r.accepted, led.size) == (8, 13), secret
            assert [(f.seq, "no device signature covers it" in f.reason)
                    for f in r.findings] == [(6, True)]


def test_proof_check_fails_closed(ledger_at: At, tmp_path: Path,
                                  capsys: pytest.CaptureFixture[str]) -> None:
    """An inclusion proof counts only with its signed checkpoint; malformed fields are
    FormatErrors, not tracebacks."""
    from hashtrail.cli import main
    from hashtrail.formats import note
    from hashtrail.ledger.proof_file import check_proof

    d = _dev(3)
    with _ledger(ledger_at("l")) as led:
        reconcile(led, bundle([d], cps=[(d, d.checkpoint())]))
    assert main(["ledger", "prove", "--ledger", ledger_at("l"), "--device",
                 d.id_hex, "--seq", "2", "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    key = note.Verifier.from_string(doc["verifier_key"])
    assert check_proof(doc, key).startswith("inclusion OK")
    for field, value in (("checkpoint", None), ("verifier_key", None), ("checkpoint", 5),
                         ("leaf", None), ("path", [None])):
        with pytest.raises(HashtrailError):
            check_proof({**doc, field: value}, key)
    with pytest.raises(HashtrailError):
        check_proof({k: v for k, v in doc.items() if k != "checkpoint"}, key)


def _forged_proof(doc: dict[str, object]) -> dict[str, object]:
    """An attacker's proof: a one-leaf "ledger" of their own making (holding a real,
    device-signed leaf), its checkpoint signed by their own key, named in the proof.
    Internally consistent: only the trust in the verifier key can tell it apart."""
    from hashtrail.formats import note

    attacker = note.Signer.generate("test.example/ledger")  # same origin, another key
    leaf = bytes.fromhex(str(doc["leaf"]))
    root = merkle.leaf_hash(leaf)
    cp = note.sign_checkpoint(note.Checkpoint("test.example/ledger", 1, root), [attacker])
    return {**doc, "leaf": leaf.hex(), "leaf_index": 0, "tree_size": 1, "root": root.hex(),
            "path": [], "checkpoint": cp.decode(),
            "verifier_key": attacker.verifier().to_string()}


def test_verify_proof_needs_a_trusted_ledger_key(ledger_at: At, tmp_path: Path,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    """verify-proof trusts only the ledger key the verifier brings, never the one the
    proof carries: without one it fails closed; a self-signed proof is refused."""
    from hashtrail.cli import main

    d = _dev(3)
    with _ledger(ledger_at("l")) as led:
        reconcile(led, bundle([d], cps=[(d, d.checkpoint())]))
        vkey = led.verifier.to_string()
    assert main(["ledger", "prove", "--ledger", ledger_at("l"), "--device",
                 d.id_hex, "--seq", "1", "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    good, forged = tmp_path / "good.json", tmp_path / "forged.json"
    good.write_text(json.dumps(doc))
    forged.write_text(json.dumps(_forged_proof(doc)))
    unnamed = tmp_path / "unnamed.json"          # the key name is optional in a proof
    unnamed.write_text(json.dumps({k: v for k, v in _forged_proof(doc).items()
                                   if k != "verifier_key"}))
    (tmp_path / "ledger.vkey").write_text(vkey + "\n")
    for proof in (good, forged):                       # no key given: fail closed
        assert main(["ledger", "verify-proof", str(proof)]) == 2
        err = capsys.readouterr().err
        assert "hashtrail ledger init prints it" in err and "Traceback" not in err
    for how in (["--verifier-key", vkey], ["--verifier-key-file", str(tmp_path / "ledger.vkey")]):
        assert main(["ledger", "verify-proof", *how, str(good)]) == 0
        assert main(["ledger", "verify-proof", *how, str(forged)]) == 1
        assert "not the one you trust" in capsys.readouterr().err
        assert main(["ledger", "verify-proof", *how, str(unnamed)]) == 1
        assert "no signature by a trusted key" in capsys.readouterr().err
    other = _forged_proof(doc)["verifier_key"]
    assert main(["ledger", "verify-proof", "--verifier-key", str(other), str(good)]) == 1
    assert main(["ledger", "verify-proof", "--verifier-key", "not a key", str(good)]) == 2


def test_enrollment_counts_only_from_a_trusted_collector(ledger_at: At) -> None:
    """An enrollment line is a claim: it counts only in a bundle signed by a collector
    the ledger trusts. Entries of an enrolled device count from any bundle."""
    from hashtrail.formats.note import Signer

    d = _dev(12)
    stranger = Signer.generate("collector-stranger")
    with Ledger.create(ledger_at("l"), "test.example/ledger") as led:
        for b, why in ((bundle([d], cps=[(d, d.checkpoint())], signer=None),
                        "the bundle is not signed by a collector"),
                       (bundle([d], cps=[(d, d.checkpoint())], signer=stranger),
                        f"signed by collector key {stranger.verifier().to_string()}, which "
                        "this ledger does not trust")):
            r = reconcile(led, b)
            assert (r.enrolled, r.accepted, r.pending, r.signed_by) == (0, 0, 0, None)
            (f,) = r.findings                               # one finding, naming the device
            assert (f.device_id, f.seq) == (d.id_hex, None)
            assert f.reason.startswith("enrollment refused:") and why in f.reason
            assert "13 entries and 1 checkpoints never enter" in f.reason
            assert led.device(d.id_hex) is None and led.size == 0
            assert not list(led.storage.scan_pending())
        trust(led)
        r = reconcile(led, bundle([d], {d.id_hex: (0, 6)}, [(d, d.checkpoint(seq=5))]))
        assert (r.signed_by, r.enrolled, r.accepted, r.findings) == \
            ("test collector", 1, 6, [])
        # a second party's unsigned bundle fills the rest: device signatures suffice
        r = reconcile(led, bundle([d], {d.id_hex: (6, 13)}, [(d, d.checkpoint())],
                                  signer=None))
        assert (r.enrolled, r.accepted, r.findings) == (0, 7, [])
        # ... and its enrollment line of an enrolled device is harmless
        r = reconcile(led, bundle([d], signer=stranger))
        assert (r.enrolled, r.accepted, r.duplicates, r.findings) == (0, 0, 13, [])


def test_bundle_signature_covers_every_byte(tmp_path: Path) -> None:
    """A signed bundle altered after export is refused whole, whatever line changed;
    an unsigned bundle still parses (signer None)."""
    from hashtrail.errors import VerificationError
    from hashtrail.formats.note import Signer

    d = _dev(3)
    p = save(bundle([d], cps=[(d, d.checkpoint())]), tmp_path / "b.jsonl")
    data = p.read_bytes()
    signer = read_bundle(p).signer
    assert signer is not None and signer.to_string() == COLLECTOR.verifier().to_string()
    assert parse_bundle(io.BytesIO(b"".join(data.splitlines(True)[:-1]))).signer is None
    lines = data.splitlines(keepends=True)
    for i in range(len(lines) - 1):                      # each data line edited in place
        obj = json.loads(lines[i])
        key = "created" if i == 0 else "enrolled_at" if "pub" in obj else \
            "seq" if obj["type"] == "entry" else None
        if key is None:
            obj["device"] = "ff" * 16
        else:
            obj[key] += 1
        edited = (json.dumps(obj, sort_keys=True, separators=(",", ":")) + "\n").encode()
        bad = [*lines[:i], edited, *lines[i + 1:]]
        with pytest.raises(VerificationError, match="signature by collector-test does not"):
            parse_bundle(io.BytesIO(b"".join(bad)))
    sig = json.loads(lines[-1])
    sig["key"] = Signer.generate("collector-x").verifier().to_string()  # another key
    with pytest.raises(VerificationError):
        parse_bundle(io.BytesIO(b"".join(lines[:-1]) + (json.dumps(
            sig, sort_keys=True, separators=(",", ":")) + "\n").encode()))
    with pytest.raises(FormatError, match="after the signature"):
        parse_bundle(io.BytesIO(data + lines[1]))


def test_cli_export_signs_and_ledger_trust(ledger_at: At, tmp_path: Path,
                                         capsys: pytest.CaptureFixture[str]) -> None:
    """`export` signs with the store's own key; `ledger trust` takes the key `export
    --show-key` prints (or a file of it); `ledger trusted` lists it; reconcile enrolls."""
    from hashtrail.cli import main
    from hashtrail.collector.store import Store

    d = _dev(4)
    store, led = tmp_path / "c.db", ledger_at("l")
    with Store.open(store) as st:
        st.enroll(d.id_hex, d.pub, label="x")
        st.quarantine(d.id_hex, [RawEntry(s, b, g) for s, b, g in d.entries])
        key = st.signer.verifier().to_string()
    assert main(["export", "--store", str(store), "--show-key"]) == 0
    assert capsys.readouterr().out.strip() == key
    assert main(["export", "--store", str(store), "--out", str(tmp_path / "b.jsonl")]) == 0
    assert key in capsys.readouterr().out
    assert main(["ledger", "init", "--ledger", str(led), "--origin", "t/l"]) == 0
    assert main(["reconcile", "--ledger", str(led), str(tmp_path / "b.jsonl")]) == 1
    assert "enrollment refused" in capsys.readouterr().out
    (tmp_path / "c.vkey").write_text(key + "\n")
    assert main(["ledger", "trust", "--ledger", str(led), str(tmp_path / "c.vkey"),
                 "--name", "site A"]) == 0
    assert "trusted: collector site A" in capsys.readouterr().out
    assert main(["ledger", "trust", "--ledger", str(led), key, "--json"]) == 0
    assert json.loads(capsys.readouterr().out) == \
        {"key": key, "name": "site A", "added": False}
    assert main(["ledger", "trusted", "--ledger", str(led), "--json"]) == 0
    assert [(r["key"], r["name"]) for r in json.loads(capsys.readouterr().out)] == \
        [(key, "site A")]
    assert main(["ledger", "trust", "--ledger", str(led), "nonsense"]) == 2
    assert main(["reconcile", "--ledger", str(led), str(tmp_path / "b.jsonl")]) == 0
    assert "trusted collector site A" in capsys.readouterr().out


def _flip_sig(b: Bundle, i: int) -> None:
    did, r = b.entries[i]
    assert r.sig is not None
    b.entries[i] = (did, r._replace(sig=r.sig[:40] + bytes([r.sig[40] ^ 1]) + r.sig[41:]))


def test_per_entry_signatures_checked_on_threads_give_the_same_verdicts(
        ledger_at: At, tmp_path: Path) -> None:
    """keys.signed_batch splits a large batch over CPUs: the verdicts, and so what the
    ledger accepts and refuses, are the same as checking one by one."""
    d = _dev(299, sig=True)
    bad = {7, 150, 299}          # in the first, a middle and the last slice
    b = bundle([d], cps=[(d, d.checkpoint())])
    for i in bad:
        _flip_sig(b, i)
    key = DeviceKey(d.pub)
    pairs = [(r.entry_hash, r.sig) for _, r in b.entries if r.sig is not None]
    assert len(pairs) == 300
    one = key.signed_batch(pairs, workers=1)
    assert key.signed_batch(pairs, workers=3) == one == [key.signed(h, s) for h, s in pairs]
    assert {i for i, ok in enumerate(one) if not ok} == bad
    results = []
    for workers in (1, 2):
        with _ledger(ledger_at(str(workers)), tmp_path / f"{workers}.key") as led:
            r = reconcile(led, b, workers)
            results.append((r.accepted, r.pending, [(f.seq, f.reason) for f in r.findings]))
    assert results[0] == results[1]
    accepted, _, findings = results[0]
    assert accepted == 7
    assert [s for s, why in findings if why.endswith("per-entry signature does not verify")
            ] == sorted(bad)
