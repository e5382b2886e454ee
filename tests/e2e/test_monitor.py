"""`hashtrail monitor`: per device, what the new leaves of a served log say.

A real ledger (tests/e2e/tileskit.py, real reconciles) published at two sizes for the
ordinary case; for what no reconcile would write (a gap, a second entry for one seq, a
chain that does not link, a device's own log-altered report) a log of hand-picked
leaves from host-made device chains, laid out as tiles and signed with a key of the
test's own. Both served by a plain static server on loopback."""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import pytest
from hashtrail.cli import main
from hashtrail.formats import note
from hashtrail.formats.leaf import leaf_bytes
from hashtrail.ledger import revocation, tiles
from hashtrail.ledger.ledger_db import Ledger
from hashtrail.ledger.monitor import follow
from hashtrail.ledger.serve import serving
from ledgerkit import Device
from tileskit import ORIGIN, TileLedger, make_ledger, static, write_tiles


@pytest.fixture(scope="module")
def logs(tmp_path_factory: pytest.TempPathFactory) -> tuple[TileLedger, Path, Path]:
    d = tmp_path_factory.mktemp("monitor")
    tl = make_ledger(d / "ledger.db", 300, 250)
    with Ledger.open(tl.path) as led:
        tiles.publish(led, d / "first")
    tl.grow(300, 0)
    with Ledger.open(tl.path) as led:
        tiles.publish(led, d / "grown")
    return tl, d / "first", d / "grown"


def _json(capsys: pytest.CaptureFixture[str]) -> dict:  # type: ignore[type-arg]
    out = capsys.readouterr().out.strip().splitlines()
    assert len(out) == 1, out
    return json.loads(out[0])  # type: ignore[no-any-return]


def test_new_entries_per_device_pass_after_pass(
        logs: tuple[TileLedger, Path, Path], tmp_path: Path,
        capsys: pytest.CaptureFixture[str]) -> None:
    tl, first, grown = logs
    state = tmp_path / "monitor.json"
    base = ["monitor", "--verifier-key", tl.verifier_key, "--state", str(state), "--json"]
    with static(first) as url:
        assert main([*base, url]) == 0
    p = _json(capsys)
    devs = {d["device"]: d for d in p["devices"]}
    assert (p["old_size"], p["size"], p["alarm"]) == (0, 501, False)
    assert (devs[tl.signed.id_hex]["new"], devs[tl.signed.id_hex]["last_seq"]) == (301, 300)
    assert (devs[tl.unsigned.id_hex]["new"], devs[tl.unsigned.id_hex]["last_seq"]) == (200, 199)
    assert all(d["gaps"] == d["forks"] == d["breaks"] == [] for d in p["devices"])
    assert p["revocations"] == "checked" and p["signatures"].startswith("not served")
    with static(grown) as url:
        assert main([*base, url]) == 0
        p = _json(capsys)
        assert (p["old_size"], p["size"]) == (501, 801)
        (d,) = p["devices"]                       # only the device that grew
        assert (d["device"], d["new"], d["first_seq"], d["last_seq"], d["entries"]) == \
            (tl.signed.id_hex, 300, 301, 600, 601)
        assert main([*base, url]) == 0            # nothing new
        p = _json(capsys)
        assert p["status"] == "unchanged" and p["devices"] == []
        # --device: that device only, even when it has nothing new; text mode
        assert main(["monitor", "--verifier-key", tl.verifier_key, "--device",
                     tl.unsigned.id_hex, url]) == 0
        out = capsys.readouterr().out
        assert f"{tl.unsigned.id_hex}  +200 " in out and tl.signed.id_hex not in out
    assert json.loads(state.read_text())["size"] == 801
    assert (tmp_path / "monitor.json.tiles" / "checkpoint").read_bytes() == \
        (grown / "checkpoint").read_bytes()


def test_follow_polls_and_sees_the_log_grow(
        logs: tuple[TileLedger, Path, Path], tmp_path: Path) -> None:
    tl, first, grown = logs
    served = tmp_path / "served"
    shutil.copytree(first, served)
    seen = []

    def grow(_: float) -> None:               # between passes the log grows
        shutil.rmtree(served)
        shutil.copytree(grown, served)

    with static(served) as url:
        alarms = follow(url, note.Verifier.from_string(tl.verifier_key), None, None, 0.0,
                        seen.append, passes=2, sleep=grow)
    assert alarms == 0 and [(p.old_size, p.size) for p in seen] == [(0, 501), (501, 801)]
    assert [d.new for d in seen[1].devices] == [300]


def test_gaps_forks_breaks_and_device_reports(tmp_path: Path,
                                              capsys: pytest.CaptureFixture[str]) -> None:
    a, b = Device(71, per_entry_sig=True), Device(72, per_entry_sig=True)
    a.readings(12)
    twin = a.fork(8)
    twin.readings(4)                       # seqs 8..11 again, another history
    b.readings(5)
    b.log_altered(3)                       # b's seq 6: its boot check found 3.. rewritten
    b.readings(2)

    def leaf(d: Device, s: int) -> bytes:
        return leaf_bytes(d.id_hex, s, d.entries[s][1])
    leaves = [leaf(a, s) for s in range(0, 5)]            # a: 0..4
    leaves += [leaf(a, s) for s in range(7, 9)]           # a: gap 5..6, then 7, 8
    leaves += [leaf(b, s) for s in range(0, 9)]           # b: clean, reports altered at 6
    leaves += [leaf(twin, 8)]                             # a: seq 8 a second time (fork)
    leaves += [leaf(twin, 9)]                             # a: seq 9 links to twin's 8: break
    signer = note.Signer.generate("example.com/hand-made")
    write_tiles(tmp_path / "log", leaves, signer)
    with static(tmp_path / "log") as url:
        assert main(["monitor", "--verifier-key", signer.verifier().to_string(), "--json",
                     url]) == 1
    p = _json(capsys)
    devs = {d["device"]: d for d in p["devices"]}
    da, db = devs[a.id_hex], devs[b.id_hex]
    assert p["alarm"] and da["alarm"] and not db["alarm"]
    assert (da["gaps"], da["forks"], da["breaks"]) == ([[5, 6]], [8], [9])
    assert (db["new"], db["altered"], db["gaps"], db["breaks"]) == (9, [6], [], [])
    with static(tmp_path / "log") as url:
        assert main(["monitor", "--verifier-key", signer.verifier().to_string(), url]) == 1
    out = capsys.readouterr().out
    assert "GAP seqs 5..6" in out and "FORK at seq 8" in out and "CHAIN BREAK at seq 9" in out
    assert "device reports its log altered (entry seq 6)" in out and "ALARM" in out


def test_a_lying_server_is_refused_and_the_state_kept(
        logs: tuple[TileLedger, Path, Path], tmp_path: Path,
        capsys: pytest.CaptureFixture[str]) -> None:
    tl, _first, grown = logs
    state = tmp_path / "m.json"
    base = ["monitor", "--verifier-key", tl.verifier_key, "--state", str(state)]
    with static(grown) as url:
        assert main([*base, url]) == 0
    before = state.read_bytes()
    lying = tmp_path / "lying"
    shutil.copytree(grown, lying)
    ref = tiles.tile_for(None, 2, 801)
    data = bytearray((lying / ref.path()).read_bytes())
    data[100] ^= 1
    (lying / ref.path()).write_bytes(bytes(data))
    capsys.readouterr()
    with static(lying) as url:
        # same size, same checkpoint: nothing to fetch, nothing changes
        assert main([*base, url]) == 0
    assert state.read_bytes() == before
    with static(lying) as url:
        assert main(["monitor", "--verifier-key", tl.verifier_key, url]) == 1
    assert "does not hash to its level-0 tile hash" in capsys.readouterr().err


def test_device_signatures_and_signed_revocations(tmp_path: Path,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    """The monitor checks each new entry's device signature (its word, served beside
    the tiles) and reports, per device, those that do not check or are missing; it
    reports the ledger-signed revocations the server lists, and an alarm when one it
    saw is withheld later or one does not check."""
    tl = make_ledger(tmp_path / "l.db", 40, 100)
    dev = tl.signed.id_hex
    state = tmp_path / "m.json"
    vkey = tl.verifier_key
    base = ["monitor", "--verifier-key", vkey, "--json"]
    with serving(tl.path) as url:
        assert main([*base, "--state", str(state), url]) == 0
        p = _json(capsys)
        assert (p["signatures"], p["revocations"], p["alarm"]) == ("checked", "checked", False)
        assert {d["device"]: d["signed"] for d in p["devices"]} == \
            {dev: 41, tl.unsigned.id_hex: 100}
        assert main(["devices", "revoke", dev, "--reason", "stolen", "--ledger",
                     str(tl.path)]) == 0
        capsys.readouterr()
        assert main([*base, "--state", str(state), url]) == 0     # tree unchanged
        p = _json(capsys)
        (d,) = p["devices"]
        assert (d["device"], d["revoked"][1], d["new"], p["alarm"]) == (dev, "stolen", 0, False)
        # the operator (ledger file and key) appends two entries the device did make,
        # one without its signature, one with the signature altered: each is reported
        tl.signed.readings(2)
        (s1, b1, _), (s2, b2, sig2) = tl.signed.entries[-2:]
        with Ledger.open_signing(tl.path) as led:
            with led.transaction():
                i1 = led.append_leaves([leaf_bytes(dev, s1, b1), leaf_bytes(dev, s2, b2)])
                led.storage.add_entries([
                    (dev, s1, i1, hashlib.sha256(b1).digest(), b1, None),
                    (dev, s2, i1 + 1, hashlib.sha256(b2).digest(), b2,
                     bytes([sig2[0] ^ 1]) + sig2[1:])])
            led.sign_checkpoint()
        assert main([*base, "--state", str(state), url]) == 1
        p = _json(capsys)
        (d,) = p["devices"]
        assert [s for s, _ in d["bad_signatures"]] == [s1, s2] and d["signed"] == 0, d
        assert "no device signature served" in d["bad_signatures"][0][1] and d["alarm"]
    pub = tmp_path / "pub"
    with Ledger.open(tl.path) as led:
        tiles.publish(led, pub, words=True)
    assert b"stolen" in (pub / tiles.REVOCATIONS).read_bytes()
    # a word whose device signature was altered, and one the server does not have
    w = pub / tiles.word_path(dev, 7)
    word = json.loads(w.read_text())
    sig = word["device_signature"]["sig"]
    word["device_signature"]["sig"] = ("1" if sig[0] == "0" else "0") + sig[1:]
    w.write_text(json.dumps(word))
    (pub / tiles.word_path(dev, 9)).unlink()
    with static(pub) as url:
        assert main([*base, url]) == 1
        p = _json(capsys)
    devs = {d["device"]: d for d in p["devices"]}
    assert [s for s, _ in devs[dev]["bad_signatures"]] == [7, 9, s1, s2] and devs[dev]["alarm"]
    assert "no device signature served" in devs[dev]["bad_signatures"][1][1]
    assert devs[tl.unsigned.id_hex]["bad_signatures"] == [] and devs[dev]["signed"] == 39
    # the revocation seen before is withheld: an alarm for that device
    (pub / tiles.REVOCATIONS).write_bytes(revocation.format_list([]))
    with static(pub) as url:
        assert main([*base, "--state", str(state), "--no-signatures", url]) == 1
        p = _json(capsys)
    (d,) = p["devices"]
    assert d["device"] == dev and "not listed now" in d["revocation_lost"] and p["alarm"]
    # a revocation signed by another key does not check: refused, an alarm
    other = note.Signer.generate(ORIGIN)
    forged = revocation.sign_revocation(revocation.Revocation(ORIGIN, tl.unsigned.id_hex,
                                                              1, "x"), other)
    (pub / tiles.REVOCATIONS).write_bytes(revocation.format_list([forged]))
    with static(pub) as url:
        assert main([*base, "--no-signatures", url]) == 1
        p = _json(capsys)
    assert p["revocations"].startswith("refused") and "revocation list" in p["problems"][0]
