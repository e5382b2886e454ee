"""Incremental and streaming reconcile (issue 12): a bundle seen before is skipped
unread, a collector's cursor lets `export --since` send only what the ledger has not
received, and a bundle streamed in small chunks gives the same ledger as one batch."""

from __future__ import annotations

import hashlib
import io
import json
import subprocess
import sys
from pathlib import Path

import pytest
from hashtrail.cli import main
from hashtrail.collector import bundle as bundle_mod
from hashtrail.collector.bundle import BundleFile, parse_bundle, parse_cursor
from hashtrail.collector.store import RawEntry, Store
from hashtrail.errors import FormatError
from hashtrail.ledger import reconcile as reconcile_mod
from hashtrail.ledger.ledger_db import Ledger
from hashtrail.ledger.ledger_verify import verify_ledger
from hashtrail.ledger.reconcile import reconcile
from hashtrail.ledger.reconcile_files import reconcile_files
from ledgerkit import COLLECTOR, Device, bundle, save, trust


def _ledger(path: Path, trusted: bool = True) -> Path:
    led = Ledger.create(path, "test.example/ledger")
    if trusted:
        trust(led)
    led.close()
    return path


def _leaves(path: Path) -> list[bytes]:
    with Ledger.open(path) as led:
        return [led.leaf(i) for i in range(led.size)]


def _devices(n: int = 30) -> list[Device]:
    signed = Device(3001, per_entry_sig=True)
    signed.readings(n)
    plain = Device(3002)               # checkpoints only: accepted up to a checkpoint
    plain.readings(n)
    return [signed, plain]


# -- a bundle seen before ----------------------------------------------------------------

def test_a_reconciled_bundle_is_skipped_unread(tmp_path: Path) -> None:
    signed, plain = _devices()
    led = _ledger(tmp_path / "l.db")
    path = save(bundle([signed, plain], cps=[(plain, plain.checkpoint(seq=20))]),
                tmp_path / "b.jsonl")
    first = reconcile_files(led, [str(path)]).bundles[0].result
    assert first.accepted == 31 + 21 and not first.already and first.findings == []
    size = _leaves(led)
    # Damage a line in the middle: the file is still known by its signature line, so
    # it is not read again (and a bundle whose bytes do not match its signature would
    # change nothing anyway).
    lines = path.read_bytes().split(b"\n")
    lines[5] = b"not json"
    path.write_bytes(b"\n".join(lines))
    again = reconcile_files(led, [str(path)]).bundles[0].result
    assert again.already and again.accepted == 0 and again.findings == []
    assert _leaves(led) == size
    rep = verify_ledger(Ledger.open(led))
    assert rep.ok, rep.problems


def test_an_unsigned_bundle_is_known_by_all_its_bytes(tmp_path: Path) -> None:
    signed, _ = _devices()
    led = _ledger(tmp_path / "l.db")
    reconcile_files(led, [str(save(bundle([signed]), tmp_path / "enroll.jsonl"))])
    more = Device(3001, per_entry_sig=True)
    more.readings(40)
    path = save(bundle([more], enroll=False, signer=None), tmp_path / "u.jsonl")
    assert reconcile_files(led, [str(path)]).bundles[0].result.accepted == 10
    assert reconcile_files(led, [str(path)]).bundles[0].result.already
    path.write_bytes(path.read_bytes().replace(b'"seq":40', b'"seq":41'))
    r = reconcile_files(led, [str(path)]).bundles[0].result
    assert not r.already and r.findings, r   # another file: read, and its entry refused


def test_a_bundle_that_may_count_later_is_not_recorded(tmp_path: Path) -> None:
    """An enrollment refused for want of trust, or entries of a device not enrolled
    yet, may count after `ledger trust` or another bundle: the same file must then
    still do something."""
    signed, _ = _devices()
    led = _ledger(tmp_path / "l.db", trusted=False)
    path = save(bundle([signed]), tmp_path / "b.jsonl")
    r = reconcile_files(led, [str(path)]).bundles[0].result
    assert r.accepted == 0 and not r.complete and "enrollment refused" in r.findings[0].reason
    with Ledger.open(led) as ledger:
        trust(ledger)
    r = reconcile_files(led, [str(path)]).bundles[0].result
    assert r.enrolled == 1 and r.accepted == 31 and r.complete
    assert reconcile_files(led, [str(path)]).bundles[0].result.already


def test_rerun_in_one_call_is_skipped_too(tmp_path: Path) -> None:
    signed, plain = _devices()
    led = _ledger(tmp_path / "l.db")
    path = save(bundle([signed, plain]), tmp_path / "b.jsonl")
    a, b = reconcile_files(led, [str(path), str(path)]).bundles
    assert a.result.accepted == 31 and b.result.already


# -- cursors and export --since ----------------------------------------------------------

def _collect(st: Store, d: Device, upto: int) -> None:
    """What `collect` stores: new records quarantined, a checkpoint, the range accepted."""
    st.quarantine(d.id_hex, [RawEntry(*e) for e in d.entries[:upto + 1]])
    head = hashlib.sha256(d.entries[upto][1]).digest()
    cp = d.checkpoint(nonce=b"n" * 16, seq=upto)
    st.add_checkpoint(d.id_hex, cp, b"n" * 16, seq=upto, head=head)
    st.accept(d.id_hex, upto, head)
    st.accept_checkpoint(d.id_hex, cp)


def _cli(capsys: pytest.CaptureFixture[str], *argv: object) -> tuple[int, str, str]:
    code = main([str(a) for a in argv])
    out = capsys.readouterr()
    return code, out.out, out.err


def test_export_since_the_ledgers_cursor_sends_only_what_is_new(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    d = Device(3003)
    d.readings(60)
    store, led = tmp_path / "store.db", _ledger(tmp_path / "l.db", trusted=False)
    with Store.open(store) as st:
        st.enroll(d.id_hex, d.pub, label="d")
        vkey = st.signer.verifier().to_string()
        _collect(st, d, 30)
    assert _cli(capsys, "ledger", "trust", "--ledger", led, vkey)[0] == 0
    # before any bundle: an empty cursor, and --since it sends everything
    code, out, _ = _cli(capsys, "ledger", "cursor", "--ledger", led, "--collector", vkey)
    assert code == 0 and json.loads(out) == {"collector": vkey, "devices": {},
                                             "format": "hashtrail-cursor/1"}
    cur = tmp_path / "cursor.json"
    cur.write_text(out)
    b1 = tmp_path / "b1.jsonl"
    assert _cli(capsys, "export", "--store", store, "--out", b1, "--since", cur)[0] == 0
    assert _cli(capsys, "reconcile", "--ledger", led, b1)[0] == 0
    code, out, _ = _cli(capsys, "ledger", "cursor", "--ledger", led, "--collector", vkey)
    assert json.loads(out)["devices"] == {d.id_hex: 30}
    cur.write_text(out)
    with Store.open(store) as st:
        _collect(st, d, 60)
    b2 = tmp_path / "b2.jsonl"
    assert _cli(capsys, "export", "--store", store, "--out", b2, "--since", cur)[0] == 0
    entries = [json.loads(x) for x in b2.read_text().splitlines()]
    seqs = [x["seq"] for x in entries if x.get("type") == "entry"]
    assert seqs == list(range(31, 61))
    code, out, err = _cli(capsys, "reconcile", "--ledger", led, b2, "--json")
    got = json.loads(out)["bundles"][0]
    assert code == 0 and got["accepted"] == 30 and got["duplicates"] == 0, out + err
    with Ledger.open(led) as ledger:
        assert ledger.size == 61 and verify_ledger(ledger).ok
    code, out, _ = _cli(capsys, "ledger", "cursor", "--ledger", led, "--collector", vkey)
    assert json.loads(out)["devices"] == {d.id_hex: 60}
    # the same ledger from one full export: the same leaves
    full_led = _ledger(tmp_path / "full.db", trusted=False)
    assert _cli(capsys, "ledger", "trust", "--ledger", full_led, vkey)[0] == 0
    full = tmp_path / "full.jsonl"
    assert _cli(capsys, "export", "--store", store, "--out", full)[0] == 0
    assert _cli(capsys, "reconcile", "--ledger", full_led, full)[0] == 0
    assert _leaves(full_led) == _leaves(led)


def test_a_cursor_for_another_collector_is_refused(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    store = tmp_path / "store.db"
    with Store.open(store):
        pass
    cur = tmp_path / "cursor.json"
    cur.write_text(bundle_mod.cursor_text(COLLECTOR.verifier().to_string(), {}))
    code, _, err = _cli(capsys, "export", "--store", store, "--out", tmp_path / "b.jsonl",
                        "--since", cur)
    assert code == 2 and "not this store's" in err and str(cur) in err, err
    assert not (tmp_path / "b.jsonl").exists()


@pytest.mark.parametrize("text,why", [
    ('{"collector":"K","devices":{"x":1},"format":"hashtrail-cursor/1"}', "device id"),
    ('{"collector":"K","devices":{"' + "ab" * 16 + '":-1},"format":"hashtrail-cursor/1"}',
     "non-negative"),
    ('{"collector":"K","devices":{},"format":"hashtrail-cursor/2"}', "not a hashtrail-cursor/1"),
    ('{"collector":"L","devices":{},"format":"hashtrail-cursor/1"}', "not this store's"),
])
def test_bad_cursors_are_refused(text: str, why: str) -> None:
    with pytest.raises(FormatError, match=why):
        parse_cursor(text, "K")


# -- streaming ----------------------------------------------------------------------------

def test_small_chunks_give_the_same_ledger_as_one_batch(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Chunks cut through signed runs, unsigned tails, a checkpoint's coverage, a gap
    filled later, and interleaved devices: the leaves are the same as one batch."""
    signed, plain = _devices(50)
    cps = [(plain, plain.checkpoint(seq=17)), (plain, plain.checkpoint(seq=44))]
    b = bundle([signed, plain], cps=cps)
    order = b.entries[:]
    b.entries = [e for pair in zip(order[::2], order[1::2], strict=True) for e in pair]
    b.entries = [e for e in b.entries if not (e[0] == plain.id_hex and e[1].seq == 9)]
    path = save(b, tmp_path / "b.jsonl")
    gap = save(bundle([plain], {plain.id_hex: (9, 10)}, enroll=False), tmp_path / "g.jsonl")

    whole = _ledger(tmp_path / "whole.db")
    r1 = reconcile_files(whole, [str(path), str(gap)])
    monkeypatch.setattr(reconcile_mod, "CHUNK", 4)
    small = _ledger(tmp_path / "small.db")
    r2 = reconcile_files(small, [str(path), str(gap)])
    assert _leaves(small) == _leaves(whole) and len(_leaves(whole)) == 51 + 45
    for a, c in zip(r1.bundles, r2.bundles, strict=True):
        assert (a.result.accepted, a.result.pending, a.result.checkpoints) == \
            (c.result.accepted, c.result.pending, c.result.checkpoints)
        assert sorted(a.result.findings) == sorted(c.result.findings)
    with Ledger.open(small) as led:
        assert verify_ledger(led).ok


def test_the_file_reader_gives_what_the_parser_gives(tmp_path: Path) -> None:
    """The fast path for canonical entry lines and the general parser agree, and a line
    of the fast path's shape with a bad value gets the general parser's error."""
    signed, plain = _devices(10)
    b = bundle([signed, plain], cps=[(plain, plain.checkpoint())])
    path = save(b, tmp_path / "b.jsonl")
    f = BundleFile(path)
    head = f.scan()
    assert list(f.entries()) == b.entries
    assert head.counts == {signed.id_hex: 11, plain.id_hex: 11}
    assert head.max_seq == {signed.id_hex: 10, plain.id_hex: 10}
    assert head.signer is not None and head.entries == []
    assert [c.cose for c in head.checkpoints] == [c.cose for c in b.checkpoints]
    for old, bad, why in ((b'"seq":3,', b'"seq":9223372036854775808,', "seq must be"),
                          (b'"sig":null', b'"sig":null', "not valid base64"),
                          (b'"seq":4,', b'"seq":04,', "not ASCII JSON")):
        lines = path.read_bytes().split(b"\n")
        i = next(i for i, x in enumerate(lines) if x.startswith(b'{"body":') and old in x)
        lines[i] = lines[i].replace(old, bad)
        if why == "not valid base64":       # the fast path's shape, a bad length
            lines[i] = b'{"body":"AAAAA' + lines[i][lines[i].index(b'",'):]
        with pytest.raises(FormatError, match=why):
            parse_bundle(io.BytesIO(b"\n".join(lines)))
        (tmp_path / "x.jsonl").write_bytes(b"\n".join(lines))
        with pytest.raises(FormatError, match=why):
            BundleFile(tmp_path / "x.jsonl").scan()


def test_in_memory_bundles_still_reconcile_whole(tmp_path: Path) -> None:
    signed, plain = _devices()
    with trust(Ledger.create(tmp_path / "l.db", "test.example/ledger")) as led:
        r = reconcile(led, bundle([signed, plain], cps=[(plain, plain.checkpoint())]))
        assert r.accepted == 31 + 31 and not r.already and led.storage.count_bundles() == 0


def test_bench_reconcile_scale_runs(tmp_path: Path) -> None:
    """tools/bench_reconcile_scale.py is how the scale targets are reported: it must
    keep running, and its steps must do what they claim (all entries accepted, the
    new ones on top, the seen bundle skipped, the ledger verified)."""
    root = Path(__file__).resolve().parents[2]
    proc = subprocess.run([sys.executable, str(root / "tools" / "bench_reconcile_scale.py"),
                           "--entries", "3000", "--devices", "3", "--new", "30",
                           "--dir", str(tmp_path), "--json"],
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr
    r = json.loads(proc.stdout)["results"][0]
    assert r["floor"]["entries"] == 3000 and r["reconcile"]["accepted"] == 3000
    assert r["incremental"]["accepted"] == 30 and r["incremental"]["size"] == 3030
    assert r["seen"]["already"] and r["seen"]["accepted"] == 0
    assert r["verify"]["ok"] and r["verify"]["size"] == 3030
    assert r["reconcile"]["peak_mb"] > 0 and r["ratio_reconcile_vs_floor"] > 0


def test_bench_per_entry_signed_ratio_is_taken_round_by_round(tmp_path: Path) -> None:
    """With --per-entry-signed the bench measures raw OpenSSL before and after each
    round's reconcile and reports the median of the rounds' ratios, and the CPU share
    of the verifies: one ratio per round, each of the same reconcile. With --compare,
    the other code's reconcile of each round is divided by the same two raw runs."""
    root = Path(__file__).resolve().parents[2]
    proc = subprocess.run([sys.executable, str(root / "tools" / "bench_reconcile_scale.py"),
                           "--entries", "2000", "--devices", "2", "--new", "10",
                           "--per-entry-signed", "--rounds", "2",
                           "--compare", str(root / "host"),
                           "--dir", str(tmp_path), "--json"],
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr
    r = json.loads(proc.stdout)["results"][0]
    assert r["reconcile"]["accepted"] == 2000 and r["verify"]["ok"]
    assert len(r["rounds"]["openssl"]) == 4 and len(r["ratios_by_round"]) == 2
    assert r["ratio_reconcile_vs_openssl_all_cores"] == pytest.approx(
        sum(r["ratios_by_round"]) / 2)          # (the median of two)
    assert all(x > 0 for x in r["ratios_by_round"])
    assert 0 < r["cpu_ratio_verify_vs_reconcile"] < 1
    assert len(r["before_ratios_by_round"]) == 2 and all(
        x > 0 for x in r["before_ratios_by_round"])
    assert r["ratio_before_vs_openssl_all_cores"] == pytest.approx(
        sum(r["before_ratios_by_round"]) / 2)
    raw = [sum(x["verifies"] / x["seconds"] for x in r["rounds"]["openssl"][i:i + 2]) / 2
           for i in (0, 2)]
    assert r["before_ratios_by_round"] == pytest.approx(
        [2000 / b["seconds"] / w for b, w in zip(r["rounds"]["before"], raw, strict=True)])


def test_a_clones_checkpoint_above_the_tip_is_evidence_once_the_tip_passes_it(
        tmp_path: Path) -> None:
    """Reconcile compares only checkpoints new to the ledger or that the tip just
    passed: a clone's checkpoint stored while above the tip still becomes evidence when
    the real entries arrive, and a later bundle does not compare it again."""
    d = Device(3004)
    d.readings(30)
    clone = d.fork(12)
    clone.readings(10)                 # same key, another history from seq 12 on
    with trust(Ledger.create(tmp_path / "l.db", "test.example/ledger")) as led:
        r = reconcile(led, bundle([d], {d.id_hex: (0, 11)}, [(d, d.checkpoint(seq=10))]))
        assert r.accepted == 11 and r.forks == 0
        r = reconcile(led, bundle([clone], {clone.id_hex: (0, 0)},
                                  [(clone, clone.checkpoint(seq=20))], name="c2"))
        assert r.checkpoints == 1 and r.forks == 0          # above the tip: nothing yet
        r = reconcile(led, bundle([d], {d.id_hex: (11, 31)}, [(d, d.checkpoint())]))
        assert r.accepted == 20 and r.forks == 1, r
        assert led.fork_evidence(d.id_hex) is not None
        r = reconcile(led, bundle([d], {d.id_hex: (25, 31)}, name="c3"))
        assert r.forks == 0 and r.duplicates == 6
        assert verify_ledger(led).devices[0].status == "forked"
