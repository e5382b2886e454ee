"""The three attacks of issue 10, end to end: who can make hashtrail accept a reading
its device never signed?

1. Someone with the flash and no key: a powered-off device's littlefs image is edited
   (a reading changed, two readings swapped, the tail dropped) with the hash chain and
   every record CRC made whole again, so nothing but a device signature can tell.
2. Someone who can write the ledger file: a row whose device id is another spelling
   (upper-case hex) of an enrolled device.
3. The ledger operator, with the ledger file and its signing key: a reading the device
   never produced, appended as a leaf, signed into a checkpoint and cosigned by a
   witness.

Every step a user would take runs through the real CLI in its own process (collect,
export, ledger init/trust/checkpoint/cosign/prove/verify-proof, reconcile, verify), on
virtual devices running the real firmware and real SQLite files. The tests assert the
outcome (no path accepts what the device never said), not how the fix is built. Where
a test needs to know a layout (the ledger's SQL schema for attack 2, the ledger key for
attack 3), that knowledge sits in one helper here.

The flash attacks run on a device of their own with the firmware's default signing
policy (its board says nothing about sign_entries; the golden device of the older flash
suite, conftest.py, is a checkpoints-only board): each attack is first checked to have
done what it claims on the flash or in the ledger, then judged.

Three limitations are proven the same way, so docs/THREATS.md can state them: the
device key read off a flash that is not encrypted re-signs a rewrite every check
accepts; the USB REPL prints the key and signs anything; and on a board with
per-entry signing off (policy 0), entries after the last checkpoint can be rewritten
without the key.
"""

from __future__ import annotations

import hashlib
import json
import re
import shutil
import sqlite3
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import cbor2
import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import (
    Prehashed,
    decode_dss_signature,
    encode_dss_signature,
)
from hashtrail.collector.store import Store
from hashtrail.device import imagefs
from hashtrail.device.link import open_serial
from hashtrail.formats import merkle
from hashtrail.formats.entry import (
    KIND_LOG_ALTERED,
    KIND_READING,
    POLICY_CHECKPOINTS,
    POLICY_EVERY_ENTRY,
    parse_entry,
    signing_policy,
)
from hashtrail.formats.keys import KEY_PATH, parse_key_file
from hashtrail.formats.leaf import leaf_bytes
from hashtrail.formats.note import Signer
from hashtrail.formats.records import LOG_DIR, MAGIC_CHECKPOINT
from hashtrail.ledger.ledger_db import Ledger
from hashtrail.sim import VirtualDevice
from hashtrail.sim.tamper import Edit, change_first_value, first_value, rewrite_chain
from littlefs import LittleFS
from threatkit import (
    BOARD,
    DEVICE_CFG,
    SLOW,
    Golden,
    collect_from,
    configure,
    copy_device,
    hashtrail,
    image_records,
    read_seg,
    record_spans,
    segments,
    start,
    wait_for_seq,
    write_seg,
)


def _ok(r: Any) -> str:
    return f"exit {r.returncode}\n  stdout: {r.stdout.strip()[:600]}\n  " \
           f"stderr: {r.stderr.strip()[:600]}"


def _sha(b: bytes) -> bytes:
    return hashlib.sha256(b).digest()


def _size(checkpoint_note: str) -> int:
    """The tree size a signed checkpoint note states (its second line)."""
    return int(checkpoint_note.split("\n")[1])


# -- a device state no checkpoint covers -------------------------------------------------

@dataclass(frozen=True)
class Unacked:
    """A golden copy that a collector collected AND acknowledged up to `acked`, then
    kept logging with automatic checkpoints off: entries acked+1..last are on flash,
    collected by no host and covered by no device checkpoint (only, when the device
    signs entries, by their own signatures)."""

    image: Path
    store: Path  # the collector that accepted (and acked) 0..acked: copy it
    device_id: str
    pub: bytes
    acked: int
    readings: list[int]  # reading entries after `acked` on the image
    last: int
    # those of `readings` whose first value change_first_value can move in place (a
    # float64: a simulated value exact in float32 is not); attacks pick from these
    movable: list[int] = field(default_factory=list)


# automatic checkpoints off: after the acknowledged collection, nothing signs the log
# but per-entry signatures (when the device's policy has them)
_NO_AUTO_CP = dict(DEVICE_CFG["log"], checkpoint_every=0, checkpoint_s=0)  # type: ignore[arg-type]


def _log_past_the_ack(dev: VirtualDevice, store: Path, device_id: str, pub: bytes,
                      image: Path) -> Unacked:
    """Collect and acknowledge a running device, let it log 14 more entries, power it
    off; its image (copied to `image`) then holds entries no host has collected.

    "No host": a collection of a device sampling every 50 ms can receive an entry the
    device appended after the checkpoint it judges; it stays in the store's quarantine,
    export carries it and the ledger accepts it on the device's own signature (seen in
    3 of 6 collections of a device sampling every 10 ms). The attacks then meet a genuine
    entry the host had, and a proof of it is no break: collected again until the store
    holds nothing past what it accepted."""
    try:
        for _ in range(10):
            res = collect_from(dev, store, ack=True)
            assert res.upto_seq is not None and res.acked
            with Store.open(store, create=False) as st:
                if not st.quarantined(device_id, res.upto_seq + 1):
                    break
        else:
            raise AssertionError("every collection left an entry past its checkpoint")
        wait_for_seq(dev, res.upto_seq + 14)
        dev.power_cut()
        # A cut while it samples every 50 ms may tear the last record: one boot that
        # samples rarely cuts it (as every boot does), then a cut while it is idle.
        configure(dev.image_path, SLOW)
        start(dev)
        dev.power_cut()
    finally:
        dev.stop()
    shutil.copyfile(dev.image_path, image)
    recs, probs = image_records(image)
    assert not probs, probs
    cps = [r.seq for r in recs if r.magic == MAGIC_CHECKPOINT]
    assert max(cps) <= res.upto_seq, (cps, res.upto_seq)  # nothing signs past the ack
    readings = [r.seq for r in recs if r.is_entry and r.seq > res.upto_seq
                and parse_entry(r.body).kind == KIND_READING]
    last = max(r.seq for r in recs if r.is_entry)
    assert len(readings) >= 6, readings
    movable = [r.seq for r in recs if r.seq in readings and first_value(r.body) is not None]
    assert len(movable) >= 3, movable
    return Unacked(image, store, device_id, pub, res.upto_seq, readings, last, movable)


def _own_device_past_the_ack(d: Path, name: str, log: dict[str, object]) -> Unacked:
    """A device of its own (new key, new flash) with board log settings `log` before its
    first boot, enrolled, collected, acknowledged and past its ack."""
    dev = VirtualDevice(d, name, board=BOARD)
    dev.write_image()
    configure(dev.image_path, {"sample_interval_s": 0.05, "log": log})
    try:
        start(dev)
        wait_for_seq(dev, 8)
        store = d / f"{name}.db"
        with open_serial(dev.port) as link, Store.open(store) as st:
            info = link.hello()
            st.enroll(info.device_id, info.pub, label=name, board=info.board, fw=info.fw)
    except BaseException:
        dev.stop()
        raise
    return _log_past_the_ack(dev, store, info.device_id, info.pub, d / f"{name}-past-ack.lfs")


@pytest.fixture(scope="module")
def unacked(tmp_path_factory: pytest.TempPathFactory) -> Unacked:
    """A device with the firmware's default signing policy (the board says nothing about
    sign_entries), past its ack. (The golden device of the older flash suite is a
    checkpoints-only board: threatkit.DEVICE_CFG.)"""
    d = tmp_path_factory.mktemp("unacked")
    log = {k: v for k, v in _NO_AUTO_CP.items() if k != "sign_entries"}
    u = _own_device_past_the_ack(d, "signed", log)
    recs, _ = image_records(u.image)
    e0 = parse_entry(next(r.body for r in recs if r.is_entry and r.seq == 0))
    assert signing_policy(e0) == POLICY_EVERY_ENTRY
    assert all(r.sig is not None for r in recs if r.is_entry)
    return u


@pytest.fixture(scope="module")
def unacked_policy0(tmp_path_factory: pytest.TempPathFactory) -> Unacked:
    """A device of its own whose board switched per-entry signing off before its first
    boot (policy 0 in its entry 0: checkpoints only), past its ack."""
    u = _own_device_past_the_ack(tmp_path_factory.mktemp("policy0"), "p0",
                                 dict(_NO_AUTO_CP, sign_entries=False))
    recs, _ = image_records(u.image)
    e0 = parse_entry(next(r.body for r in recs if r.is_entry and r.seq == 0))
    assert signing_policy(e0) == POLICY_CHECKPOINTS
    assert all(r.sig is None for r in recs if r.is_entry)
    return u


# -- flash surgery: edit entries, make the chain and the records whole again -------------
# The surgery itself (rewrite_chain, change_first_value) is hashtrail.sim.tamper: the
# demo performs the same keyless attack with it.


def _pack_bytes(body: bytes) -> bytes:
    """The reading's SenML pack: the entry map's last value (key 8), at its end."""
    pack = cbor2.dumps(parse_entry(body).body, canonical=True)
    assert body.endswith(b"\x08" + pack), "reading pack not at the end of the entry"
    return pack


def swap_readings(a: bytes, b: bytes) -> tuple[Edit, Edit]:
    """Edits giving each of two readings the other's SenML pack (same lengths): the
    readings appear in the other order, seqs and times untouched."""
    pa, pb = _pack_bytes(a), _pack_bytes(b)
    assert len(pa) == len(pb) and pa != pb
    return (lambda body: body[:-len(pa)] + pb), (lambda body: body[:-len(pb)] + pa)


def entry_bodies(image: Path) -> dict[int, bytes]:
    recs, probs = image_records(image)
    assert not probs, probs
    return {r.seq: r.body for r in recs if r.is_entry}


def entry_sigs(image: Path) -> dict[int, bytes | None]:
    recs, _ = image_records(image)
    return {r.seq: r.sig for r in recs if r.is_entry}


# -- the real CLI, end to end --------------------------------------------------------

def new_ledger(path: Path, *collector_stores: Path) -> str:
    """`ledger init` and `ledger trust` each collector; the ledger's verifier key, as
    its operator hands it to verifiers."""
    r = hashtrail("ledger", "init", "--ledger", path, "--origin", "trust.test/ledger", "--json")
    assert r.returncode == 0, _ok(r)
    vkey = str(json.loads(r.stdout)["verifier_key"])
    for st in collector_stores:
        k = hashtrail("export", "--store", st, "--show-key")
        assert k.returncode == 0, _ok(k)
        t = hashtrail("ledger", "trust", "--ledger", path, k.stdout.strip())
        assert t.returncode == 0, _ok(t)
    return vkey


def export(store: Path, out: Path) -> Path:
    r = hashtrail("export", "--store", store, "--out", out)
    assert r.returncode == 0, _ok(r)
    return out


def sign_checkpoint(ledger: Path) -> str:
    """`hashtrail ledger checkpoint`: the operator signs the current tree."""
    r = hashtrail("ledger", "checkpoint", "--ledger", ledger, "--json")
    assert r.returncode == 0, _ok(r)
    return str(json.loads(r.stdout)["checkpoint"])


def prove(ledger: Path, did: str, seq: int, out: Path) -> Any:
    """`ledger prove`: the completed process; the proof is written to `out` on success."""
    r = hashtrail("ledger", "prove", "--ledger", ledger, "--device", did, "--seq", seq,
                  "--json")
    if r.returncode == 0:
        out.write_text(r.stdout)
    return r


def verify_proof(proof: Path, vkey: str, *extra: str) -> Any:
    return hashtrail("ledger", "verify-proof", "--verifier-key", vkey, *extra, proof)


# -- attack 1: flash rewrite with no key ---------------------------------------------

def _collect_cli(dev: VirtualDevice, store: Path) -> Any:
    return hashtrail("collect", "--port", dev.port, "--store", store, "--no-ack", "--json")


def _names_device_and_seq(r: Any, device_id: str) -> bool:
    """An integrity refusal (exit 1) that names the device and a seq."""
    return (r.returncode == 1 and device_id in r.stderr
            and re.search(r"\b(seqs?|entry|entries) \d+", r.stderr) is not None)


def judge_flash_attack(u: Unacked, tmp: Path, dev: VirtualDevice,
                       edited: dict[int, bytes], targets: list[int]) -> None:
    """Boot the rewritten device and take its log through every host tool; `edited`:
    seq -> the rewritten entry bytes (the edited ones and every later one); `targets`:
    the readings the attacker changed, and the ones proofs are asked for.

    What must hold: the collector refuses, naming the device and a seq, or the device
    reports the alteration in its own log; and whatever the collector then exports,
    once reconciled, `verify --ledger` and `ledger prove` + `ledger verify-proof`
    never accept a rewritten entry (no host ever saw the genuine ones, so any proof
    for those seqs would prove a rewritten entry). Nothing the host had is lost.
    Every broken promise is listed, not just the first."""
    start(dev)
    store = shutil.copyfile(u.store, tmp / "c.db")
    broken: list[str] = []
    col = _collect_cli(dev, store)
    with Store.open(store, create=False) as st:
        accepted = {r.seq: r.body for r in st.accepted_records(u.device_id)}
        received = [r.body for r in st.all_records(u.device_id)]
    took = sorted(s for s, b in edited.items() if accepted.get(s) == b)
    if took:
        broken.append(f"collect accepted rewritten entries {took[0]}..{took[-1]} "
                      f"({_ok(col)})")
    refused = _names_device_and_seq(col, u.device_id)
    # the device's own report: a log-altered entry, received by the collector or at
    # least written to the device's log
    dev.power_cut()
    on_flash = [r.body for r in image_records(dev.image_path)[0] if r.is_entry]
    reported = any(parse_entry(b).kind == KIND_LOG_ALTERED for b in received + on_flash)
    if not (refused or reported):
        broken.append("neither did collect refuse naming the device and a seq, nor did "
                      f"the device report the alteration ({_ok(col)})")
    if [s for s in range(u.acked + 1) if s not in accepted]:
        broken.append(f"the collector lost entries it had accepted up to {u.acked}")
    led = tmp / "l.db"
    vkey = new_ledger(led, store)
    rec = hashtrail("reconcile", export(store, tmp / "b.jsonl"), "--ledger", led, "--json")
    sign_checkpoint(led)
    ver = hashtrail("verify", "--ledger", led, "--verifier-key", vkey, "--json")
    for s in targets:
        p = prove(led, u.device_id, s, tmp / f"proof{s}.json")
        if p.returncode != 0:
            continue
        if ver.returncode == 0:
            broken.append(f"verify --ledger --verifier-key exits 0 on a ledger holding "
                          f"rewritten entry {s} (reconcile exit {rec.returncode})")
        vp = verify_proof(tmp / f"proof{s}.json", vkey)
        if vp.returncode == 0:
            broken.append(f"verify-proof accepts a proof of rewritten entry {s}: "
                          f"{vp.stdout.strip()}")
    assert not broken, "the keyless flash rewrite was accepted:\n- " + "\n- ".join(broken)


def _flash_attack(u: Unacked, tmp: Path, devices: list[VirtualDevice],
                  edits: dict[int, Edit], strip: bool,
                  cfg: dict[str, object] | None = None) -> None:
    """Rewrite a powered-off copy, check the rewrite is what it claims (every record
    and link checks, the edited bytes are on flash), then judge it."""
    before = entry_bodies(u.image)
    sigs = entry_sigs(u.image)
    dev = copy_device(u.image, tmp, "dev", lambda fs: rewrite_chain(fs, edits, strip),
                      dict(SLOW, **(cfg or {})))
    devices.append(dev)
    after = entry_bodies(dev.image_path)  # every CRC checks (no record problem)
    first = min(edits)
    for s in range(first + 1, u.last + 1):  # the chain links
        assert parse_entry(after[s]).prev == _sha(after[s - 1]), s
    assert all(after[s] != before[s] for s in range(first, u.last + 1))
    assert all(after[s] == before[s] for s in range(first))
    if strip:
        assert all(sig is None for s, sig in entry_sigs(dev.image_path).items() if s >= first)
    else:
        assert {s: g for s, g in entry_sigs(dev.image_path).items() if s >= first} == \
            {s: g for s, g in sigs.items() if s >= first}
    judge_flash_attack(u, tmp, dev, {s: after[s] for s in range(first, u.last + 1)},
                       sorted(edits))


STRIP = pytest.mark.parametrize("strip", [True, False], ids=["sigs-stripped", "sigs-kept"])


@STRIP
def test_flash_rewrite_of_the_newest_reading_is_refused(
        unacked: Unacked, tmp_path: Path, devices: list[VirtualDevice], strip: bool) -> None:
    s = unacked.movable[-1]
    _flash_attack(unacked, tmp_path, devices, {s: change_first_value(-20.0)}, strip)


@STRIP
def test_flash_rewrite_of_the_oldest_unacknowledged_reading_is_refused(
        unacked: Unacked, tmp_path: Path, devices: list[VirtualDevice], strip: bool) -> None:
    s = unacked.movable[0]
    _flash_attack(unacked, tmp_path, devices, {s: change_first_value(-20.0)}, strip)


def test_flash_rewrite_with_signing_switched_off_in_board_json_is_refused(
        unacked: Unacked, tmp_path: Path, devices: list[VirtualDevice]) -> None:
    """The attacker also rewrites the board config to stop per-entry signing: the host
    holds the device to the policy of its entry 0, not to its board.json."""
    s = unacked.movable[len(unacked.movable) // 2]
    log = dict(DEVICE_CFG["log"], checkpoint_every=0, checkpoint_s=0,  # type: ignore[arg-type]
               sign_entries=False)
    _flash_attack(unacked, tmp_path, devices, {s: change_first_value(-20.0)}, True,
                  cfg={"log": log})


@STRIP
def test_flash_reorder_of_two_readings_is_refused(
        unacked: Unacked, tmp_path: Path, devices: list[VirtualDevice], strip: bool) -> None:
    bodies = entry_bodies(unacked.image)
    pairs = [s for s in unacked.readings if s + 1 in unacked.readings
             and len(_pack_bytes(bodies[s])) == len(_pack_bytes(bodies[s + 1]))]
    assert pairs, "no two adjacent readings of the same size after the ack"
    s = pairs[0]
    ea, eb = swap_readings(bodies[s], bodies[s + 1])
    _flash_attack(unacked, tmp_path, devices, {s: ea, s + 1: eb}, strip)


def test_flash_tail_dropped_below_the_last_seen_checkpoint_is_refused(
        unacked: Unacked, tmp_path: Path, devices: list[VirtualDevice]) -> None:
    """Truncation mid-segment, whole records, to below the last entry a collector saw a
    fresh checkpoint for: every record left is genuine (signatures included), so only
    the host's memory can tell. The collector refuses; nothing it had is lost; the
    ledger gets nothing beyond what the collector had."""
    cut = unacked.acked - 3

    def drop_tail(fs: LittleFS) -> None:
        for name in segments(fs):
            data = read_seg(fs, name)
            keep = [(off, size) for magic, seq, off, size in record_spans(data)
                    if seq <= cut and not (magic == MAGIC_CHECKPOINT and seq > cut)]
            if not keep:
                fs.remove(f"{LOG_DIR}/{name}")
            elif len(keep) < len(record_spans(data)):
                write_seg(fs, name, data[:keep[-1][0] + keep[-1][1]])

    dev = copy_device(unacked.image, tmp_path, "dev", drop_tail, SLOW)
    devices.append(dev)
    assert max(entry_bodies(dev.image_path)) == cut
    start(dev)
    store = shutil.copyfile(unacked.store, tmp_path / "c.db")
    col = _collect_cli(dev, store)
    assert _names_device_and_seq(col, unacked.device_id), _ok(col)
    with Store.open(store, create=False) as st:
        assert [r.seq for r in st.accepted_records(unacked.device_id)] == \
            list(range(unacked.acked + 1))
    led = tmp_path / "l.db"
    vkey = new_ledger(led, store)
    hashtrail("reconcile", export(store, tmp_path / "b.jsonl"), "--ledger", led)
    sign_checkpoint(led)
    p = prove(led, unacked.device_id, unacked.acked + 1, tmp_path / "p.json")
    assert p.returncode != 0 or verify_proof(tmp_path / "p.json", vkey).returncode != 0
    p = prove(led, unacked.device_id, unacked.acked, tmp_path / "p.json")
    assert p.returncode == 0 and verify_proof(tmp_path / "p.json", vkey).returncode == 0


# -- attacks 2 and 3: the ledger --------------------------------------------------------

@dataclass(frozen=True)
class Honest:
    """A ledger holding what the golden collector accepted (0..N), made by the CLI."""

    ledger: Path
    vkey: str
    device_id: str
    tip: int  # N, the device's newest entry in the ledger


def honest_ledger(golden: Golden, tmp: Path) -> Honest:
    store = golden.store_copy(tmp, "gold.db")
    led = tmp / "l.db"
    vkey = new_ledger(led, store)
    r = hashtrail("reconcile", export(store, tmp / "gold.jsonl"), "--ledger", led, "--json")
    assert r.returncode == 0 and json.loads(r.stdout)["size"] == golden.anchor + 1, _ok(r)
    sign_checkpoint(led)
    v = hashtrail("verify", "--ledger", led, "--verifier-key", vkey)
    assert v.returncode == 0, _ok(v)  # the control: the honest ledger verifies
    return Honest(led, vkey, golden.device_id, golden.anchor)


def add_row_in_another_spelling(ledger: Path, table: str, device_id: str,
                                entry: tuple[int, bytes, bytes | None] | None = None) -> str:
    """Attack 2, on the ledger file: a `devices` row copied from the enrolled device's
    (with sqlite3: the SQL schema is known here and only here), or a new `entries` row
    (seq, entry bytes, signature) written through the ledger's storage with its leaf
    appended through the library (tree nodes and size recomputed), each under the
    upper-case spelling of the device id. Returns the spelling."""
    upper = device_id.upper()
    if table == "devices":
        with sqlite3.connect(ledger) as db:
            cur = db.execute("SELECT * FROM devices WHERE device_id=?", (device_id,))
            cols = [c[0] for c in cur.description]
            row = dict(zip(cols, cur.fetchone(), strict=True))
            row["device_id"] = upper
            db.execute(f"INSERT INTO devices ({','.join(cols)}) VALUES "
                       f"({','.join('?' * len(cols))})", list(row.values()))
        db.close()
        return upper
    assert entry is not None
    seq, body, sig = entry
    with Ledger.open(ledger) as led, led.transaction():
        index = led.append_leaves([leaf_bytes(device_id, seq, body)])
        led.storage.add_entries([(upper, seq, index, _sha(body), body, sig)])
    return upper


@pytest.mark.parametrize("table", ["entries", "devices"])
def test_ledger_row_in_another_spelling_is_named_by_verify(
        golden: Golden, tmp_path: Path, table: str) -> None:
    """A row whose device id is the upper-case hex of an enrolled device. The entries
    row carries the device's genuine next entry (never reconciled, read off its flash),
    its leaf is in the tree, and the operator signs a checkpoint over it: every stored
    checkpoint then matches the tree, under the trusted key."""
    h = honest_ledger(golden, tmp_path)
    nxt = h.tip + 1
    rec = next(r for r in image_records(golden.image)[0] if r.is_entry and r.seq == nxt)
    upper = add_row_in_another_spelling(h.ledger, table, h.device_id,
                                        (nxt, rec.body, rec.sig))
    cp = sign_checkpoint(h.ledger)  # the operator's key vouches for the tree as it is
    assert _size(cp) == h.tip + 1 + (table == "entries"), cp  # the leaf is in the tree
    v = hashtrail("verify", "--ledger", h.ledger, "--verifier-key", h.vkey)
    out = v.stdout + v.stderr
    assert v.returncode == 1, f"verify --ledger accepts the {table} row {upper}: {_ok(v)}"
    assert upper in out or (table == "entries" and f"leaf {h.tip + 1}" in out), _ok(v)
    assert "Traceback" not in out


def forge_reading(ledger: Path, device_id: str, value: float,
                  sig: bytes | None) -> tuple[int, bytes, str]:
    """Attack 3, the forgery, in one place: with the ledger file, append a reading
    the device never produced (the next seq, linked to the device's newest entry,
    canonical), as an entries row and a leaf (tree recomputed by the library), then
    sign a checkpoint over it with the ledger key. The signing goes through
    `hashtrail ledger checkpoint`, which finds the ledger key wherever the ledger keeps
    it (the key file next to the ledger, once the key leaves the file). `sig`: what to
    put beside the entry as its device signature (none; or a device signature
    replayed from elsewhere). Returns (seq, entry bytes, the signed checkpoint note)."""
    with Ledger.open(ledger) as led:
        dev = led.device(device_id)
        assert dev is not None
        seq = dev.tip_seq
        tip = led.storage.entry_bodies(device_id, seq, seq)[0]
        t = parse_entry(bytes(tip))
        seq += 1
        body = cbor2.dumps({0: 1, 1: seq, 2: None if t.t is None else t.t + 60,
                            3: t.up + 1000, 4: t.boot, 5: _sha(bytes(tip)), 6: t.fw,
                            7: KIND_READING, 8: [{0: "temp", 1: "Cel", 2: value}]},
                           canonical=True)
        assert parse_entry(body).body[0][2] == value  # a well-formed, canonical entry
        with led.transaction():
            index = led.append_leaves([leaf_bytes(device_id, seq, body)])
            led.storage.add_entries([(device_id, seq, index, _sha(body), body, sig)])
            led.storage.set_tip(device_id, seq, _sha(body), dev.tip_t)
    return seq, body, sign_checkpoint(ledger)


@dataclass
class Witness:
    key: Path
    state: Path
    cosigner: str = ""  # its cosigner verifier key, as `ledger cosign --json` prints it

    def cosign(self, ledger: Path, vkey: str, note_text: str) -> str:
        cp = self.state.with_name("offered.cp")
        cp.write_text(note_text)
        r = hashtrail("ledger", "cosign", "--ledger", ledger, "--key", self.key, "--state",
                      self.state, "--verifier-key", vkey, cp, "--json")
        assert r.returncode == 0, f"the witness refused: {_ok(r)}"
        out = json.loads(r.stdout)
        self.cosigner = str(out["cosigner_key"])
        return str(out["cosigned"])


def with_cosigned_checkpoint(proof: Path, cosigned: str, out: Path) -> Path:
    """The proof, its checkpoint swapped for the witness-cosigned copy of the same
    checkpoint (what a prover hands a verifier who asks for witnesses), wherever in
    the proof document the signed checkpoint note sits."""
    text = cosigned.split("\n\n")[0]  # origin, size, root: the checkpoint itself

    def swap(x: Any) -> Any:
        if isinstance(x, str) and x.split("\n\n")[0] == text:
            return cosigned
        if isinstance(x, dict):
            return {k: swap(v) for k, v in x.items()}
        return [swap(v) for v in x] if isinstance(x, list) else x

    out.write_text(json.dumps(swap(json.loads(proof.read_text()))))
    return out


def handmade_proof(ledger: Path, device_id: str, seq: int, checkpoint: str,
                   vkey: str) -> dict[str, Any]:
    """An inclusion proof in the form `ledger prove` printed before issue 10 (leaf,
    index, size, root, path, checkpoint), built with the Merkle library: what a forger
    hands out when the prove command refuses."""
    with Ledger.open(ledger) as led:
        row = led.storage.entry(device_id, seq)
        assert row is not None
        index = row.leaf_index
        size = led.size
        return {"format": "hashtrail-proof/1", "type": "inclusion",
                "leaf": led.leaf(index).hex(), "leaf_index": index, "tree_size": size,
                "root": led.root(size).hex(),
                "path": [h.hex() for h in merkle.prove_inclusion(led.node, index, size)],
                "checkpoint": checkpoint, "verifier_key": vkey}


@pytest.mark.parametrize("sig", ["no-signature", "replayed-device-signature"])
def test_operator_made_up_reading_has_no_proof_that_verifies(
        golden: Golden, tmp_path: Path, sig: str) -> None:
    """The ledger operator (ledger file and key) appends a reading the device never
    made, signs a checkpoint over it, and a witness that saw the tree before cosigns it
    (the append is consistent: a witness cannot tell). No proof of it may verify, with
    or without the witness; a genuine reading's proof from the same ledger does."""
    h = honest_ledger(golden, tmp_path)
    wkey = tmp_path / "witness.key"
    wkey.write_text(Signer.generate("witness.test").to_string())
    w = Witness(wkey, tmp_path / "witness.state")
    w.cosign(h.ledger, h.vkey, sign_checkpoint(h.ledger))  # the witness saw the honest tree
    replay = None
    if sig != "no-signature":  # a real device signature (over a checkpoint), replayed
        with Store.open(golden.store, create=False) as st:
            replay = st.checkpoints(golden.device_id)[-1].cose[-64:]
    seq, _, cp = forge_reading(h.ledger, h.device_id, -18.5, replay)
    assert seq == h.tip + 1 and _size(cp) == h.tip + 2, cp  # signed over the forgery
    cosigned = w.cosign(h.ledger, h.vkey, cp)
    broken: list[str] = []

    def judge(proof: Path, what: str, want_ok: bool) -> None:
        for extra in ([], ["--witness-key", w.cosigner]):
            p = proof if not extra else with_cosigned_checkpoint(
                proof, cosigned, proof.with_suffix(".w.json"))
            r = verify_proof(p, h.vkey, *extra)
            how = "verify-proof" + (" --witness-key" if extra else "")
            if want_ok and r.returncode != 0:
                broken.append(f"{how} refuses {what}, a genuine reading: {_ok(r)}")
            if not want_ok and r.returncode != 1:
                broken.append(f"{how} does not refuse {what} as an integrity problem "
                              f"(exit 1): {_ok(r)}")

    good = prove(h.ledger, h.device_id, h.tip, tmp_path / "genuine.json")
    if good.returncode != 0:
        broken.append(f"ledger prove fails for the genuine seq {h.tip}: {_ok(good)}")
    else:
        judge(tmp_path / "genuine.json", f"the proof of seq {h.tip}", True)
    forged = prove(h.ledger, h.device_id, seq, tmp_path / "forged.json")
    if forged.returncode == 0:
        judge(tmp_path / "forged.json", f"the proof of the made-up seq {seq}", False)
    else:
        if forged.returncode != 1 or h.device_id not in forged.stderr:
            broken.append(f"ledger prove refuses the made-up seq {seq} without naming the "
                          f"device as an integrity problem: {_ok(forged)}")
        hand = tmp_path / "handmade.json"
        hand.write_text(json.dumps(handmade_proof(h.ledger, h.device_id, seq, cp, h.vkey)))
        for extra in ([], ["--witness-key", w.cosigner]):
            p = hand if not extra else with_cosigned_checkpoint(
                hand, cosigned, hand.with_suffix(".w.json"))
            r = verify_proof(p, h.vkey, *extra)
            if r.returncode == 0:
                broken.append(f"verify-proof accepts a hand-made proof of the made-up seq "
                              f"{seq}: {r.stdout.strip()}")
    assert not broken, "the operator's made-up reading is provable:\n- " + "\n- ".join(broken)


# -- what no check can stop: the device key read off the flash, or used at the REPL ------

def flash_key(image: Path) -> tuple[ec.EllipticCurvePrivateKey, bytes]:
    """The device key as the key file holds it (docs/FORMATS.md `/ht/key`: "HTK1" ||
    d || pub || crc32), read off a powered-off image with littlefs-python."""
    key = parse_key_file(imagefs.read_image(image.read_bytes(), BOARD.block_size)[KEY_PATH])
    return ec.derive_private_key(key.secret, ec.SECP256R1()), key.pub


def entry_signer(key: ec.EllipticCurvePrivateKey) -> Callable[[bytes], bytes]:
    """A per-entry signature (FORMATS.md: r || s over SHA-256 of the entry bytes)."""
    def sign(body: bytes) -> bytes:
        r, s = decode_dss_signature(key.sign(body, ec.ECDSA(hashes.SHA256())))
        return r.to_bytes(32, "big") + s.to_bytes(32, "big")
    return sign


def _rewrite_accepted_end_to_end(u: Unacked, tmp_path: Path, devices: list[VirtualDevice],
                                 s: int, rewrite: Callable[[LittleFS], None]
                                 ) -> tuple[Path, str]:
    """The limitation tests' common path: `rewrite` (which edits entry s) applied to a
    copy of the device's flash, the device booted and collected through the CLI, the
    edited entry accepted by the collector, reconciled into a new ledger whose newest
    checkpoint is signed. Returns the ledger and its verifier key."""
    dev = copy_device(u.image, tmp_path, "dev", rewrite, SLOW)
    devices.append(dev)
    edited = entry_bodies(dev.image_path)[s]
    assert edited != entry_bodies(u.image)[s]
    start(dev)
    store = shutil.copyfile(u.store, tmp_path / "c.db")
    col = _collect_cli(dev, store)
    assert col.returncode == 0, _ok(col)
    with Store.open(store, create=False) as st:
        assert {r.seq: r.body for r in st.accepted_records(u.device_id)}[s] == edited
    led = tmp_path / "l.db"
    vkey = new_ledger(led, store)
    r = hashtrail("reconcile", export(store, tmp_path / "b.jsonl"), "--ledger", led)
    assert r.returncode == 0, _ok(r)
    sign_checkpoint(led)
    return led, vkey


def test_flash_reader_with_the_device_key_rewrites_a_reading_unseen(
        unacked: Unacked, tmp_path: Path, devices: list[VirtualDevice]) -> None:
    """A limitation, proven: without flash encryption the key file is on the flash in
    the clear. Whoever reads it re-signs what they rewrite, and then every check
    passes: the device boots, the collector accepts, the ledger proves the edited
    reading. Every guarantee against someone with the flash assumes they cannot read
    the key (docs/THREATS.md, "Who can do what")."""
    key, pub = flash_key(unacked.image)
    assert pub == unacked.pub
    s = unacked.movable[len(unacked.movable) // 2]
    led, vkey = _rewrite_accepted_end_to_end(unacked, tmp_path, devices, s, lambda fs: (
        rewrite_chain(fs, {s: change_first_value(-20.0)}, False, entry_signer(key))))
    v = hashtrail("verify", "--ledger", led, "--verifier-key", vkey)
    assert v.returncode == 0, _ok(v)
    p = prove(led, unacked.device_id, s, tmp_path / "p.json")
    assert p.returncode == 0, _ok(p)
    vp = verify_proof(tmp_path / "p.json", vkey)
    assert vp.returncode == 0, _ok(vp)


def test_usb_repl_reads_the_device_key_and_signs_anything(
        golden: Golden, tmp_path: Path, devices: list[VirtualDevice]) -> None:
    """A limitation, proven: the device's console is a MicroPython REPL. Anyone who
    reaches it (USB cable, stock mpremote) runs code on the device: prints the key
    file, and has the device key sign a digest of their choosing."""
    dev = golden.boot(tmp_path, cfg=SLOW)
    devices.append(dev)
    digest = hashlib.sha256(b"a reading this device never took").digest()
    code = ("import binascii\nfrom hashtrail import keyfile\n"
            "print(binascii.hexlify(open('/ht/key', 'rb').read()).decode())\n"
            "i = keyfile.load_or_create('/ht')\n"
            f"print(binascii.hexlify(i.sign({digest!r})).decode())\n")
    r = subprocess.run([sys.executable, "-m", "mpremote", "connect", dev.port, "exec", code],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, _ok(r)
    key_hex, sig_hex = r.stdout.split()
    dev.power_cut()
    assert bytes.fromhex(key_hex) == imagefs.read_image(
        dev.image_path.read_bytes(), BOARD.block_size)[KEY_PATH]
    sig = bytes.fromhex(sig_hex)
    der = encode_dss_signature(int.from_bytes(sig[:32], "big"), int.from_bytes(sig[32:], "big"))
    ec.EllipticCurvePublicKey.from_encoded_point(ec.SECP256R1(), golden.pub).verify(
        der, digest, ec.ECDSA(Prehashed(hashes.SHA256())))  # raises if it is not the key's


def test_policy0_board_rewrite_after_the_last_checkpoint_is_not_detectable(
        unacked_policy0: Unacked, tmp_path: Path, devices: list[VirtualDevice]) -> None:
    """A limitation, proven: a board that switches per-entry signing off (policy 0 in
    its entry 0, for battery) has nothing binding the entries after its last checkpoint
    to its key. Someone with the flash, without the key, rewrites one of them with
    links and CRCs recomputed; the device signs its next checkpoint over the rewritten
    chain, and the collector and the ledger's proof accept the rewritten reading."""
    u = unacked_policy0
    s = u.movable[len(u.movable) // 2]
    led, vkey = _rewrite_accepted_end_to_end(u, tmp_path, devices, s, lambda fs: (
        rewrite_chain(fs, {s: change_first_value(-20.0)}, True)))
    p = prove(led, u.device_id, s, tmp_path / "p.json")
    assert p.returncode == 0, _ok(p)
    vp = verify_proof(tmp_path / "p.json", vkey)
    assert vp.returncode == 0, _ok(vp)


def _spellings(device_id: str) -> dict[str, str]:
    return {"upper-case": device_id.upper(), "0x-prefix": "0x" + device_id,
            "whitespace": f" {device_id}\n", "short": device_id[:-2]}


def test_device_id_arguments_in_another_spelling_are_refused(
        golden: Golden, tmp_path: Path) -> None:
    """Every command that takes a device id refuses any spelling but the canonical
    one (32 lower-case hex characters) as bad input, saying what a device id is:
    never "not found" (as if it were another device), never a second identity."""
    h = honest_ledger(golden, tmp_path)
    broken: list[str] = []
    for what, did in _spellings(h.device_id).items():
        for args in (["ledger", "prove", "--ledger", h.ledger, "--device", did, "--seq", 1],
                     ["verify", "--ledger", h.ledger, "--device", did],
                     ["ledger", "evidence", "--ledger", h.ledger, "--device", did, "--out",
                      tmp_path / "ev.json"],
                     ["devices", "revoke", did, "--reason", "test", "--ledger", h.ledger]):
            r = hashtrail(*args)
            if r.returncode == 0 or "lower" not in r.stderr or "Traceback" in r.stderr:
                broken.append(f"{args[0]} {args[1]} with the {what} id: {_ok(r)}")
    v = hashtrail("devices", "list", "--ledger", h.ledger, "--json")
    assert [(d["device"], d["revoked_at"]) for d in json.loads(v.stdout)] == \
        [(h.device_id, None)], _ok(v)  # one device, not revoked, no second identity
    assert not broken, "a device id in another spelling is not refused as such:\n- " + \
        "\n- ".join(broken)
