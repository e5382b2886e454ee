"""Attacks that reach the ledger: clones, rollbacks, tampered or foreign bundles,
revoked devices, overlapping collectors and a ledger showing two views of its log.

Bundles here are exported by the real CLI from collector stores filled by collecting
copies of the golden virtual device; the ledger is a real SQLite file driven through
`hashtrail reconcile / devices / ledger / verify`.
"""

from __future__ import annotations

import base64
import hashlib
import io
import json
import shutil
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from hashtrail.cli import main as cli
from hashtrail.collector.bundle import parse_bundle, read_bundle, write_bundle
from hashtrail.collector.store import Store
from hashtrail.errors import VerificationError
from hashtrail.formats.note import Signer
from threatkit import SLOW, Golden, collect_from


def run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, Any, str]:
    """Run the CLI in-process; (exit code, parsed --json output or None, stderr)."""
    capsys.readouterr()
    code = cli(list(args))
    out, err = capsys.readouterr()
    try:
        data = json.loads(out) if out.strip() else None
    except ValueError:
        data = None
    return code, data, err


def export(store: Path, out: Path) -> Path:
    assert cli(["export", "--store", str(store), "--out", str(out), "--json"]) == 0
    return out


def collector_key(store: Path) -> str:
    with Store.open(store, create=False) as st:
        return st.signer.verifier().to_string()


def new_ledger(path: Path, golden: Golden) -> Path:
    """A new ledger whose operator trusts the golden collector (every copy of its store
    has the same identity key), so that collector's bundles may enroll the device."""
    assert cli(["ledger", "init", "--ledger", str(path), "--origin", "threats.test/ledger",
                "--json"]) == 0
    assert cli(["ledger", "trust", "--ledger", str(path), collector_key(golden.store),
                "--name", "golden", "--json"]) == 0
    return path


def reconcile(capsys: pytest.CaptureFixture[str], ledger: Path,
              *bundles: Path) -> tuple[int, dict[str, Any]]:
    code, data, err = run(capsys, "reconcile", *map(str, bundles), "--ledger", str(ledger),
                          "--json")
    assert data is not None, err
    return code, data


def findings(data: dict[str, Any]) -> list[tuple[str, int | None, str]]:
    return [(f["device_id"], f["seq"], f["reason"]) for b in data["bundles"]
            for f in b["findings"]]


@dataclass(frozen=True)
class Clones:
    a: Path  # bundle of clone A's collector
    b: Path  # bundle of clone B's collector
    a_upto: int
    b_upto: int


@pytest.fixture(scope="module")
def clones(golden: Golden, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Clones]:
    """Two devices booted from one flash image (same key), both running, each collected
    by its own collector: each history is valid on its own."""
    d = tmp_path_factory.mktemp("clones")
    devs = [golden.boot(d, "clone_a"), golden.boot(d, "clone_b")]
    try:
        time.sleep(1.0)
        res = [collect_from(dev, golden.store_copy(d, f"{dev.name}.db")) for dev in devs]
    finally:
        for dev in devs:
            dev.stop()
    assert res[0].upto_seq is not None and res[1].upto_seq is not None
    yield Clones(export(d / "clone_a.db", d / "a.jsonl"), export(d / "clone_b.db", d / "b.jsonl"),
                 res[0].upto_seq, res[1].upto_seq)


@pytest.fixture(scope="module")
def gold_bundle(golden: Golden, tmp_path_factory: pytest.TempPathFactory) -> Path:
    d = tmp_path_factory.mktemp("goldbundle")
    return export(golden.store_copy(d), d / "gold.jsonl")


def _size(capsys: pytest.CaptureFixture[str], ledger: Path) -> int:
    _, data, _ = run(capsys, "verify", "--ledger", str(ledger), "--json")
    assert data is not None
    return int(data["size"])


def test_cloned_device_fork_evidence_kept_and_device_flagged(
        golden: Golden, clones: Clones, tmp_path: Path,
        capsys: pytest.CaptureFixture[str]) -> None:
    led = new_ledger(tmp_path / "l.db", golden)
    code, data = reconcile(capsys, led, clones.a)
    assert code == 0 and data["size"] == clones.a_upto + 1
    code, data = reconcile(capsys, led, clones.b)
    assert code == 1 and data["bundles"][0]["forks"] == 1
    forks = [(d, s) for d, s, r in findings(data) if r.startswith("fork:")]
    assert len(forks) == 1 and forks[0][0] == golden.device_id
    fork_seq = forks[0][1]
    assert fork_seq is not None and golden.last < fork_seq <= min(clones.a_upto, clones.b_upto)
    assert data["size"] == clones.a_upto + 1  # nothing of A lost, nothing of B's fork in
    code, devs, _ = run(capsys, "devices", "list", "--ledger", str(led), "--json")
    assert [(x["device"], x["forked"]) for x in devs] == [(golden.device_id, True)]
    ev = tmp_path / "fork.json"
    code, out, _ = run(capsys, "ledger", "evidence", "--ledger", str(led), "--device",
                       golden.device_id, "--out", str(ev), "--json")
    assert code == 0 and out["seq"] == fork_seq
    shutil.move(led, tmp_path / "gone.db")  # the evidence file stands on its own
    code, out, _ = run(capsys, "ledger", "check-evidence", str(ev), "--json")
    assert code == 0 and (out["fork"], out["device"], out["seq"]) == \
        (True, golden.device_id, fork_seq)
    doc = json.loads(ev.read_text())  # both signed statements are in it
    assert {b["statement"]["kind"] for b in doc["branches"]} == {"checkpoint"}


def test_rolled_back_device_leaves_fork_evidence(golden: Golden, gold_bundle: Path,
                                                 tmp_path: Path, devices: list[Any],
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    dev = golden.boot(tmp_path, image=golden.early, cfg=SLOW)
    devices.append(dev)
    store = golden.store_copy(tmp_path)
    with pytest.raises(VerificationError, match="rolled back"):
        collect_from(dev, store)  # refused, but its fresh checkpoint is kept as received
    led = new_ledger(tmp_path / "l.db", golden)
    code, data = reconcile(capsys, led, export(store, tmp_path / "rb.jsonl"))
    assert code == 1 and data["size"] == golden.anchor + 1  # all the host had seen is in
    assert data["bundles"][0]["forks"] == 1
    (did, seq, _), = [f for f in findings(data) if f[2].startswith("fork:")]
    assert did == golden.device_id and golden.early_last < seq <= golden.anchor
    ev = tmp_path / "fork.json"
    assert run(capsys, "ledger", "evidence", "--ledger", str(led), "--device", did,
               "--out", str(ev))[0] == 0
    assert run(capsys, "ledger", "check-evidence", str(ev))[0] == 0


def test_two_collectors_overlapping_merge_once(golden: Golden, tmp_path: Path,
                                               devices: list[Any],
                                               capsys: pytest.CaptureFixture[str]) -> None:
    dev = golden.boot(tmp_path, cfg=SLOW)
    devices.append(dev)
    first = golden.store_copy(tmp_path, "first.db")  # holds 0..N already
    second = tmp_path / "second.db"  # a fresh collector: everything from 0
    with Store.open(second) as st:
        st.enroll(golden.device_id, golden.pub, label="again")
    r1 = collect_from(dev, first)
    r2 = collect_from(dev, second)
    assert r1.upto_seq == r2.upto_seq and r2.from_seq == 0
    n = r2.upto_seq + 1  # type: ignore[operator]
    led = new_ledger(tmp_path / "l.db", golden)
    code, data = reconcile(capsys, led, export(first, tmp_path / "1.jsonl"),
                           export(second, tmp_path / "2.jsonl"))
    b1, b2 = data["bundles"]
    assert code == 0 and (b1["accepted"], b2["accepted"], b2["duplicates"]) == (n, 0, n)
    code, rep, _ = run(capsys, "verify", "--ledger", str(led), "--json")
    assert code == 0 and rep["size"] == n and rep["devices"][0]["entries"] == n


def _tamper_line(bundle: Path, out: Path, seqs: Iterable[int], genuine_first: bool,
                 resign: Path | None = None) -> int:
    """Edit entry `seq`'s body in a bundle, keeping every line canonical; with `resign`
    (a collector store), sign the result again with that collector's key: a trusted
    collector gone bad, or its key stolen. Without it the old signature line stays.

    The edit is the last single-bit flip (from the end of the body) that leaves a valid
    entry for the ledger's own parser, with the same seq and the same `prev` link, and
    whose hash sorts after (or before) the genuine entry's. So the edited copy is always
    a well-formed entry that links into the chain: the verdict is exactly "the next
    entry does not link", never a parse refusal that depends on which byte was hit.

    Which entries allow such an edit depends on their bytes (a reading, a boot entry),
    and those vary with how fast the golden device ran: the first seq of `seqs` that
    does is edited, and returned."""
    from hashtrail.chain.devicecheck import parse_entry
    from hashtrail.errors import HashtrailError

    def one_bit_edit(body: bytes) -> bytes | None:
        good, want = hashlib.sha256(body).digest(), parse_entry(body)
        for k in range(len(body) - 1, 0, -1):
            bad = bytearray(body)
            bad[k] ^= 0x01
            try:
                f = parse_entry(bytes(bad))
            except HashtrailError:
                continue
            if (f.seq, f.prev) == (want.seq, want.prev) and \
                    (hashlib.sha256(bad).digest() > good) == genuine_first:
                return bytes(bad)
        return None

    lines = bundle.read_bytes().splitlines(keepends=True)
    entries = {}
    for i, line in enumerate(lines):
        obj = json.loads(line)
        if obj.get("type") == "entry":
            entries[obj["seq"]] = (i, obj)
    tried = []
    for seq in seqs:
        i, obj = entries[seq]
        bad = one_bit_edit(base64.b64decode(obj["body"]))
        tried.append(seq)
        if bad is None:
            continue
        obj["body"] = base64.b64encode(bad).decode()
        lines[i] = (json.dumps(obj, sort_keys=True, separators=(",", ":")) + "\n").encode()
        out.write_bytes(b"".join(lines))
        if resign is not None:
            b = parse_bundle(io.BytesIO(b"".join(lines[:-1])))   # data lines only
            with Store.open(resign, create=False) as st, out.open("w") as f:
                write_bundle(b, f, st.signer)
        return seq
    raise AssertionError(f"no valid one-bit edit of entries {tried} in {bundle}")


def _between_signed(signed: list[int]) -> range:
    """Entries after the first device-signed point and well before the next."""
    return range(signed[0] + 3, signed[1] - 1)


def _signed_seqs(bundle: Path) -> list[int]:
    """Seqs that a device checkpoint in the bundle signs."""
    from hashtrail.formats.checkpoint import parse_checkpoint

    out = []
    for line in bundle.read_bytes().splitlines():
        obj = json.loads(line)
        if obj.get("type") == "checkpoint":
            out.append(parse_checkpoint(base64.b64decode(obj["cose"])).seq)
    return sorted(out)


# Both hash orders: reconcile once followed whichever linked copy of a seq sorted first
# by hash, so an edited copy held from a bad bundle blocked the genuine chain for good
# (found by this test; fixed in reconcile by 80c4544).
@pytest.mark.parametrize("genuine_first", [True, False])
def test_tampered_bundle_is_refused_and_does_not_block_the_genuine_one(
        golden: Golden, gold_bundle: Path, tmp_path: Path, genuine_first: bool,
        capsys: pytest.CaptureFixture[str]) -> None:
    signed = _signed_seqs(gold_bundle)
    assert len(signed) >= 2, signed
    bad = tmp_path / "bad.jsonl"
    s = _tamper_line(gold_bundle, bad, _between_signed(signed), genuine_first,
                     resign=golden.store)
    led = new_ledger(tmp_path / "l.db", golden)
    code, data = reconcile(capsys, led, bad)
    assert code == 1 and data["size"] == signed[0] + 1  # the signed prefix before it
    assert [(d, q, "does not link to the previous entry" in r)
            for d, q, r in findings(data)] == [(golden.device_id, s + 1, True)]
    code, data = reconcile(capsys, led, gold_bundle)  # then the honest collector's copy
    assert data["size"] == golden.anchor + 1, findings(data)


def test_bundle_edited_after_signing_is_refused_whole(
        golden: Golden, gold_bundle: Path, tmp_path: Path,
        capsys: pytest.CaptureFixture[str]) -> None:
    """The same edit without the collector's key: the signature no longer covers the
    bytes, so nothing of the bundle is taken, not even the untouched prefix."""
    bad = tmp_path / "bad.jsonl"
    _tamper_line(gold_bundle, bad, _between_signed(_signed_seqs(gold_bundle)), True)
    led = new_ledger(tmp_path / "l.db", golden)
    code, _, err = run(capsys, "reconcile", str(bad), "--ledger", str(led))
    assert code == 1 and "the collector signature by collector-" in err, err
    assert "does not verify" in err and "Traceback" not in err
    assert _size(capsys, led) == 0


def test_foreign_collector_cannot_enroll_a_device(
        golden: Golden, gold_bundle: Path, tmp_path: Path,
        capsys: pytest.CaptureFixture[str]) -> None:
    """A collector the operator never trusted (its own store, its own key) exports a
    validly signed bundle enrolling a device: refused with a finding, nothing enters.
    Once the operator trusts that collector, the same bundle enrolls it. Unsigned or
    untrusted bundles still fill entries for devices already enrolled."""
    gold = read_bundle(gold_bundle)
    foreign = tmp_path / "foreign.db"
    with Store.open(foreign) as st:
        st.enroll(golden.device_id, golden.pub, label="not yours")
        st.quarantine(golden.device_id, [r for _, r in gold.entries])
    fb = export(foreign, tmp_path / "foreign.jsonl")
    led = new_ledger(tmp_path / "l.db", golden)
    code, data = reconcile(capsys, led, fb)
    assert code == 1 and data["size"] == 0 and data["bundles"][0]["signed_by"] is None
    (did, seq, reason), = findings(data)
    assert (did, seq) == (golden.device_id, None)
    assert reason.startswith("enrollment refused: the bundle is signed by collector key "
                             + collector_key(foreign)), reason
    code, devs, _ = run(capsys, "devices", "list", "--ledger", str(led), "--json")
    assert devs == []
    assert run(capsys, "ledger", "trust", "--ledger", str(led), collector_key(foreign),
               "--name", "site B")[0] == 0
    code, data = reconcile(capsys, led, fb)          # no checkpoints: entries wait
    assert data["bundles"][0]["signed_by"] == "site B"
    assert data["bundles"][0]["enrolled"] == 1 and data["size"] == 0
    unsigned = tmp_path / "unsigned.jsonl"           # the golden data, signature removed
    unsigned.write_bytes(b"".join(gold_bundle.read_bytes().splitlines(True)[:-1]))
    code, data = reconcile(capsys, led, unsigned)
    assert code == 0 and data["size"] == golden.anchor + 1, findings(data)


def test_malformed_bundle_is_a_clear_error(golden: Golden, gold_bundle: Path, tmp_path: Path,
                                          capsys: pytest.CaptureFixture[str]) -> None:
    led = new_ledger(tmp_path / "l.db", golden)
    data = gold_bundle.read_bytes()
    for i, bad in enumerate([data.replace(b'"seq":', b'"seq": ', 1), data[:-1],
                             data.replace(b'"type":"entry"', b'"type":"entri"', 1),
                             data[: len(data) // 2] + b"\x00garbage\n"]):
        p = tmp_path / f"bad{i}.jsonl"
        p.write_bytes(bad)
        code, _, err = run(capsys, "reconcile", str(p), "--ledger", str(led))
        # bad input (issue 15): exit 2, one line naming the file and the line in it
        assert code == 2 and err.startswith(f"hashtrail: error: {p}: bundle line"), err
        assert "Traceback" not in err
    assert _size(capsys, led) == 0


def test_a_bad_bundle_after_a_good_one_merges_nothing(
        golden: Golden, gold_bundle: Path, tmp_path: Path,
        capsys: pytest.CaptureFixture[str]) -> None:
    """Every bundle is read before the ledger is opened: the good bundle first on the
    line is not merged when a later one is junk (exit 2), and is when alone."""
    led = new_ledger(tmp_path / "l.db", golden)
    junk = tmp_path / "junk.jsonl"
    junk.write_bytes(b"\x00\xff junk\n")
    code, _, err = run(capsys, "reconcile", str(gold_bundle), str(junk), "--ledger", str(led))
    assert _size(capsys, led) == 0
    assert code == 2 and err.startswith(f"hashtrail: error: {junk}: "), err
    code, _, err = run(capsys, "reconcile", str(gold_bundle), "--ledger", str(led))
    assert code == 0, err
    assert _size(capsys, led) > 0


def test_unknown_device_never_enters_the_ledger(golden: Golden, gold_bundle: Path,
                                               tmp_path: Path,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    lines = gold_bundle.read_bytes().splitlines(keepends=True)
    stranger = tmp_path / "stranger.jsonl"
    stranger.write_bytes(b"".join(x for x in lines if b'"type":"enrollment"' not in x
                                  and b'"type":"signature"' not in x))
    led = new_ledger(tmp_path / "l.db", golden)
    code, data = reconcile(capsys, led, stranger)
    assert code == 1 and data["size"] == 0
    (did, seq, reason), = findings(data)
    assert did == golden.device_id and seq is None and reason.startswith("unknown device")


def test_revoked_device_gets_nothing_new(golden: Golden, gold_bundle: Path, tmp_path: Path,
                                        devices: list[Any],
                                        capsys: pytest.CaptureFixture[str]) -> None:
    led = new_ledger(tmp_path / "l.db", golden)
    assert reconcile(capsys, led, gold_bundle)[0] == 0
    code, out, _ = run(capsys, "devices", "revoke", golden.device_id, "--reason",
                       "key extracted", "--ledger", str(led), "--json")
    assert code == 0 and out["reason"] == "key extracted"
    dev = golden.boot(tmp_path, cfg=SLOW)
    devices.append(dev)
    store = golden.store_copy(tmp_path)
    assert collect_from(dev, store).upto_seq > golden.anchor  # type: ignore[operator]
    code, data = reconcile(capsys, led, export(store, tmp_path / "later.jsonl"))
    assert code == 1 and data["size"] == golden.anchor + 1
    (did, seq, reason), = findings(data)
    assert (did, seq) == (golden.device_id, None) and "revoked (key extracted)" in reason
    code, rep, _ = run(capsys, "verify", "--ledger", str(led), "--json")
    assert code == 0 and rep["devices"][0]["status"] == "revoked"


def test_witness_refuses_a_checkpoint_that_does_not_extend_what_it_saw(
        golden: Golden, gold_bundle: Path, clones: Clones, tmp_path: Path,
        capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    """Split view: the ledger operator shows one witness two different histories."""
    base = new_ledger(tmp_path / "base.db", golden)
    reconcile(capsys, base, gold_bundle)
    # the operator signs both views with its one key (the copies carry none)
    monkeypatch.setenv("HASHTRAIL_LEDGER_KEY", f"{base}.key")
    views = {}
    for name, b in (("a", clones.a), ("b", clones.b)):
        shutil.copyfile(base, tmp_path / f"{name}.db")
        reconcile(capsys, tmp_path / f"{name}.db", b)
        code, out, _ = run(capsys, "ledger", "checkpoint", "--ledger",
                           str(tmp_path / f"{name}.db"), "--json")
        (tmp_path / f"{name}.cp").write_text(out["checkpoint"])
        views[name] = (tmp_path / f"{name}.db", tmp_path / f"{name}.cp")
    # the witness first sees the smaller view, then is offered the other (not older) one
    small, big = sorted(views, key=lambda k: int(views[k][1].read_text().split("\n")[1]))
    key = tmp_path / "witness.key"
    key.write_text(Signer.generate("witness.test").to_string())
    state = tmp_path / "witness.state"
    code, init, _ = run(capsys, "ledger", "checkpoint", "--ledger", str(base), "--json")
    # the witness is configured with the ledger's key (both views are signed by it)
    args = ["ledger", "cosign", "--key", str(key), "--state", str(state),
            "--verifier-key", init["verifier_key"]]
    code, _, err = run(capsys, *args, "--ledger", str(views[small][0]), str(views[small][1]))
    assert code == 0, err
    code, _, err = run(capsys, *args, "--ledger", str(views[big][0]), str(views[big][1]))
    assert code != 0 and "refused to cosign" in err, err
    split = json.loads(state.with_suffix(".inconsistent.json").read_text())
    assert split["format"] == "hashtrail-split-view/1"
    assert (split["seen"], split["offered"]) == (views[small][1].read_text(),
                                                 views[big][1].read_text())
