"""`hashtrail verify --ledger` finds every row added, changed or removed by hand.

The ledger is a real one: the REAL firmware (devlog on the MicroPython unix port, via
tests/host/fwimage.py) makes two devices' chains, one per signing policy (every entry
signed; checkpoints only), a signed collector bundle carries them, and `hashtrail
reconcile` builds the ledger through the CLI. Each test copies it, edits one row of one
table by SQL (insert, update or delete), and runs `hashtrail verify --ledger
--verifier-key` through the CLI: it must exit 1 and name the table, the row and what is
wrong. The tests on a copy of that ledger (the `ledger` fixture) run on both backends:
a SQLite file, and a PostgreSQL database (the same CLI build on a fresh database,
copied per test with CREATE DATABASE ... TEMPLATE; tests/host/pgtest.py). Edits an
operator could make with its own key (append a leaf, re-sign) are made with the
ledger's key file, as that operator would. The fork-evidence table is checked on
a second ledger, made from a host-made chain and its clone (tools/devchain.py).
"""

from __future__ import annotations

import hashlib
import io
import itertools
import json
import os
import shutil
import sqlite3
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cbor2
import pgtest
import pytest
from fwimage import BLOCK, device_image, log_records
from hashtrail.chain.devicecheck import DeviceKey
from hashtrail.cli import main
from hashtrail.collector.bundle import Bundle, BundleCheckpoint, parse_bundle, write_bundle
from hashtrail.collector.store import Enrollment, RawEntry, device_id_of
from hashtrail.device.imagefs import read_image
from hashtrail.formats import note
from hashtrail.formats.keys import KEY_PATH, parse_key_file
from hashtrail.formats.leaf import leaf_bytes
from hashtrail.formats.records import MAGIC_CHECKPOINT
from hashtrail.ledger import revocation
from hashtrail.ledger.ledger_db import Ledger
from ledgerkit import COLLECTOR, Device, bundle, save, trust

ORIGIN = "test.example/verify"


@dataclass
class Base:
    ledger: Path | str   # a file, or a PostgreSQL URL
    key: Path            # the operator's key file
    vkey: str            # the ledger's verifier key, as `ledger init` printed it
    signed: str          # device id, policy 1 (every entry signed)
    cps: str             # device id, policy 0 (checkpoints only)
    size: int


def _firmware_bundle(tmp: Path) -> tuple[Bundle, str, str]:
    """Both devices' chains as the firmware left them on flash, in one signed bundle.
    The checkpoint-only device's unsigned tail (the entry after its last checkpoint) is
    left out, so the base ledger holds nothing pending and verifies clean."""
    b = Bundle("00" * 8, "fw", 1_700_000_000)
    ids = []
    for sign in (True, False):
        d = tmp / f"fw{int(sign)}"
        d.mkdir()
        image, _last, _head = device_image(d, sign, 24)
        files = read_image(image, BLOCK)
        recs, problems = log_records(files)
        assert problems == []
        pub = parse_key_file(files[KEY_PATH]).pub
        did = device_id_of(pub)
        key = DeviceKey(pub)
        cps = [key.checkpoint(r.body) for r in recs if r.magic == MAGIC_CHECKPOINT]
        top = max(c.seq for c in cps) if not sign else max(r.seq for r in recs)
        b.enrollments.append(Enrollment(did, pub, f"fw-{sign}", "unix", "0.1.0", 1))
        b.entries += [(did, RawEntry(r.seq, r.body, r.sig)) for r in recs
                      if r.is_entry and r.seq <= top]
        b.checkpoints += [BundleCheckpoint(did, c.raw, c.nonce) for c in cps]
        ids.append(did)
    buf = io.StringIO()
    write_bundle(b, buf, COLLECTOR)
    return parse_bundle(io.BytesIO(buf.getvalue().encode("ascii"))), ids[0], ids[1]


def _cli(*argv: str) -> tuple[int, Any]:
    out = io.StringIO()
    import contextlib
    with contextlib.redirect_stdout(out):
        code = main(list(argv))
    return code, json.loads(out.getvalue()) if out.getvalue().startswith("{") else None


def _build(led: Path | str, key: Path, tmp: Path, b: Bundle, signed: str, cps: str) -> Base:
    """The base ledger at `led` (a file or a URL) and its key file, made by the CLI."""
    code, init = _cli("ledger", "init", "--ledger", str(led), "--origin", ORIGIN,
                      "--key-file", str(key), "--json")
    assert code == 0
    assert main(["ledger", "trust", "--ledger", str(led),
                 COLLECTOR.verifier().to_string()]) == 0
    code, out = _cli("reconcile", "--ledger", str(led), "--key-file", str(key),
                     str(save(b, tmp / "b.jsonl")), "--json")
    assert code == 0 and out["bundles"][0]["findings"] == [], out
    return Base(led, Path(init["key_file"]), init["verifier_key"], signed, cps, out["size"])


@pytest.fixture(scope="module")
def made(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Bundle, str, str]:
    tmp = tmp_path_factory.mktemp("ledger")
    b, signed, cps = _firmware_bundle(tmp)
    return tmp, b, signed, cps


@pytest.fixture(scope="module")
def base(made: tuple[Path, Bundle, str, str]) -> Base:
    tmp, b, signed, cps = made
    return _build(tmp / "l.db", tmp / "l.db.key", tmp, b, signed, cps)


@pytest.fixture(scope="module")
def pg_base(made: tuple[Path, Bundle, str, str]) -> Iterator[tuple[Base, list[str]]]:
    """The same ledger in a PostgreSQL database; yields it and the module's databases
    (every one dropped after the module)."""
    pgtest.require_server()
    tmp, b, signed, cps = made
    with pgtest.databases() as dbs:
        yield _build(pgtest.new_database(dbs), tmp / "pg.key", tmp, b, signed, cps), dbs


@dataclass
class Copy:
    base: Base
    path: Path | str     # a SQLite file, or a PostgreSQL URL

    def sql(self, stmt: str, *args: Any) -> None:
        if isinstance(self.path, str):
            import psycopg
            with psycopg.connect(self.path, autocommit=True) as c:
                assert c.execute(stmt.replace("?", "%s"), args).rowcount == 1, stmt
            return
        with sqlite3.connect(self.path) as db:
            assert db.execute(stmt, args).rowcount == 1, stmt
        db.close()

    def one(self, stmt: str, *args: Any) -> Any:
        if isinstance(self.path, str):
            import psycopg
            with psycopg.connect(self.path, autocommit=True) as c:
                return c.execute(stmt.replace("?", "%s"), args).fetchone()
        with sqlite3.connect(self.path) as db:
            row = db.execute(stmt, args).fetchone()
        db.close()
        return row

    def verify(self) -> tuple[int, dict[str, Any]]:
        code, rep = _cli("verify", "--ledger", str(self.path), "--json",
                         "--verifier-key", self.base.vkey)
        return code, rep

    def operator_appends(self, did: str, seq: int, body: bytes, sig: bytes | None) -> int:
        """What the key holder can do by hand: add an entries row and its leaf's nodes,
        grow the size and sign a checkpoint over it (with its key file)."""
        with Ledger.open_signing(self.path, self.base.key) as led:
            with led.transaction():
                index = led.append_leaves([leaf_bytes(did, seq, body)])
                led.storage.add_entries([(did, seq, index, hashlib.sha256(body).digest(),
                                          body, sig)])
            led.sign_checkpoint()
        return index


@pytest.fixture(params=pgtest.BACKENDS)
def ledger(request: pytest.FixtureRequest, tmp_path: Path) -> Copy:
    if request.param == "sqlite":
        b = request.getfixturevalue("base")
        path = tmp_path / "copy.db"
        shutil.copyfile(b.ledger, path)
        return Copy(b, path)
    pb, dbs = request.getfixturevalue("pg_base")
    import psycopg
    name = f"hashtrail_test_{os.urandom(6).hex()}"
    with psycopg.connect(pgtest.ADMIN, autocommit=True) as c:
        c.execute(f'CREATE DATABASE "{name}" TEMPLATE "{str(pb.ledger).rsplit("/", 1)[1]}"')
    dbs.append(name)
    return Copy(pb, pgtest.url_of(name))


def test_the_base_ledger_verifies_and_names_its_policies(ledger: Copy) -> None:
    code, rep = ledger.verify()
    assert code == 0 and rep["ok"] and rep["problems"] == [], rep
    devs = {d["device_id"]: d for d in rep["devices"]}
    one, zero = devs[ledger.base.signed], devs[ledger.base.cps]
    assert (one["policy"], one["status"], one["unprotected"]) == (1, "ok", [])
    # checkpoints only: never plain "ok"; each range until the checkpoint that covered it
    assert zero["policy"] == 0 and zero["status"].startswith("unprotected until checkpoint")
    ranges = zero["unprotected"]
    assert ranges[0]["first"] == 0 and ranges[-1]["last"] == zero["entries"] - 1
    assert all(r["by"] == "checkpoint" and r["until"] == r["last"] for r in ranges)
    assert all(a["last"] + 1 == b["first"] for a, b in itertools.pairwise(ranges))
    assert rep["size"] == ledger.base.size == one["entries"] + zero["entries"]


def _named(rep: dict[str, Any], table: str, key: str, what: str) -> bool:
    return any(p.startswith(f"{table} (") and key in p.split("): ")[0] and what in p
               for p in rep["problems"])


def _assert_named(ledger: Copy, table: str, key: str, what: str) -> None:
    code, rep = ledger.verify()
    assert code == 1 and not rep["ok"], rep
    assert _named(rep, table, key, what), rep["problems"]


# -- entries (the leaves) --------------------------------------------------------------

def test_attack_2_an_upper_case_id_row_is_named(ledger: Copy) -> None:
    """A copy of an enrolled device's entry under the upper-case spelling of its id,
    appended as a leaf and signed into a checkpoint by the operator's own key."""
    did = ledger.base.signed
    seq, body, sig = ledger.one("SELECT seq, body, sig FROM entries WHERE device_id=? AND "
                                "seq=3", did)
    index = ledger.operator_appends(did.upper(), seq, body, sig)
    code, rep = ledger.verify()
    assert code == 1
    assert _named(rep, "entries", f"device {did.upper()}, seq 3",
                  f"32 lower-case hex characters (did you mean {did}?)"), rep["problems"]
    assert _named(rep, "entries", f"device {did.upper()}, seq 3",
                  f"leaf {index} duplicates leaf"), rep["problems"]


def test_a_made_up_reading_appended_by_the_operator_is_named(ledger: Copy) -> None:
    """Attack 3 on the file: a well-formed entry chained to a real device's tip, its leaf
    and a fresh checkpoint signed by the ledger key, but no device signature."""
    did = ledger.base.signed
    seq, body = ledger.one("SELECT seq, body FROM entries WHERE device_id=? ORDER BY seq "
                           "DESC LIMIT 1", did)
    last = cbor2.loads(body)
    made = cbor2.dumps({**last, 1: seq + 1, 5: hashlib.sha256(body).digest(),
                        8: [{0: "temp", 1: "Cel", 2: 99.5}], 7: 0}, canonical=True)
    ledger.operator_appends(did, seq + 1, made, None)
    ledger.sql("UPDATE devices SET tip_seq=?, tip_head=? WHERE device_id=?", seq + 1,
               hashlib.sha256(made).digest(), did)
    _assert_named(ledger, "entries", f"device {did}, seq {seq + 1}",
                  "without their own device signature")


def test_a_dropped_signature_is_named(ledger: Copy) -> None:
    did = ledger.base.signed
    ledger.sql("UPDATE entries SET sig=NULL WHERE device_id=? AND seq=5", did)
    _assert_named(ledger, "entries", f"device {did}, seq 5",
                  "1 entries without their own device signature")


def test_an_edited_entry_is_named(ledger: Copy) -> None:
    did = ledger.base.cps
    body = bytes(ledger.one("SELECT body FROM entries WHERE device_id=? AND seq=9", did)[0])
    ledger.sql("UPDATE entries SET body=? WHERE device_id=? AND seq=9",
               body[:-1] + bytes([body[-1] ^ 1]), did)
    _assert_named(ledger, "entries", f"device {did}, seq 9",
                  "entry_hash is not the hash of its bytes")


def test_a_deleted_entry_is_named(ledger: Copy) -> None:
    did = ledger.base.cps
    index = ledger.one("SELECT leaf_index FROM entries WHERE device_id=? AND seq=4", did)[0]
    ledger.sql("DELETE FROM entries WHERE device_id=? AND seq=4", did)
    _assert_named(ledger, "entries", f"leaf {index}", "no entries row holds it")


def test_an_entry_moved_far_past_the_tree_is_named_at_once(ledger: Copy) -> None:
    """A leaf_index set to 10^12 by hand: verify used to stand in a missing leaf for
    each index up to it (and ran out of memory); now it names the row and goes on."""
    did = ledger.base.cps
    ledger.sql("UPDATE entries SET leaf_index=? WHERE device_id=? AND seq=4", 10**12, did)
    _assert_named(ledger, "entries", f"device {did}, seq 4",
                  f"leaf_index {10**12} is ")


def test_an_entry_moved_to_another_leaf_is_named(ledger: Copy) -> None:
    did = ledger.base.cps
    a, b = (ledger.one("SELECT leaf_index FROM entries WHERE device_id=? AND seq=?", did, s)[0]
            for s in (2, 3))
    ledger.sql("UPDATE entries SET leaf_index=-1 WHERE device_id=? AND seq=2", did)
    ledger.sql("UPDATE entries SET leaf_index=? WHERE device_id=? AND seq=3", a, did)
    ledger.sql("UPDATE entries SET leaf_index=? WHERE device_id=? AND seq=2", b, did)
    _assert_named(ledger, "nodes", "level 2, index", "hash differs from the tree rebuilt")


# -- devices ---------------------------------------------------------------------------

def test_an_upper_case_devices_row_is_named(ledger: Copy) -> None:
    did = ledger.base.signed
    ledger.sql("INSERT INTO devices SELECT upper(device_id), pub, label, board, fw, "
               "enrolled_at, tip_seq, tip_head, tip_t, forked, revoked_at, revoked_reason, "
               "enroll_key, enroll_sig, pending_rev, held_shape FROM devices WHERE device_id=?",
               did)
    _assert_named(ledger, "devices", f"device {did.upper()}", f"did you mean {did}?")


def test_a_devices_row_with_another_key_is_named(ledger: Copy) -> None:
    a, b = ledger.base.signed, ledger.base.cps
    pub = ledger.one("SELECT pub FROM devices WHERE device_id=?", b)[0]
    ledger.sql("UPDATE devices SET pub=? WHERE device_id=?", pub, a)
    _assert_named(ledger, "devices", f"device {a}", f"pub hashes to device id {b}")


@pytest.mark.parametrize("column,value,what", [
    ("tip_seq", 3, "tip_seq says 3"), ("tip_head", bytes(32), "tip_head is not the hash"),
    ("tip_t", 5, "tip_t says 5"), ("forked", 1, "forked flag is 1 with 0 fork evidence")])
def test_a_changed_device_tip_or_flag_is_named(ledger: Copy, column: str, value: Any,
                                               what: str) -> None:
    did = ledger.base.signed
    ledger.sql(f"UPDATE devices SET {column}=? WHERE device_id=?", value, did)
    _assert_named(ledger, "devices", f"device {did}", what)


def test_a_deleted_devices_row_is_named(ledger: Copy) -> None:
    did = ledger.base.cps
    ledger.sql("DELETE FROM devices WHERE device_id=?", did)
    _assert_named(ledger, "entries", f"device {did}, seq 0",
                  "not an entry of an enrolled device")


# -- pending, device checkpoints -------------------------------------------------------

def test_a_pending_row_in_another_spelling_is_named(ledger: Copy) -> None:
    did = ledger.base.signed
    ledger.sql("INSERT INTO pending (device_id, seq, entry_hash, body, sig) "
               "SELECT upper(device_id), seq, entry_hash, body, sig FROM entries "
               "WHERE device_id=? AND seq=2", did)
    _assert_named(ledger, "pending", f"device {did.upper()}, seq 2", f"did you mean {did}?")


def test_a_pending_copy_of_an_accepted_entry_is_named(ledger: Copy) -> None:
    did = ledger.base.cps
    ledger.sql("INSERT INTO pending (device_id, seq, entry_hash, body, sig) "
               "SELECT device_id, seq, entry_hash, body, sig FROM entries "
               "WHERE device_id=? AND seq=2", did)
    _assert_named(ledger, "pending", f"device {did}, seq 2", "the same entry is accepted")


def test_a_device_checkpoint_in_another_spelling_is_named(ledger: Copy) -> None:
    did = ledger.base.cps
    ledger.sql("INSERT INTO dev_checkpoints SELECT upper(device_id), cose_hash, cose, "
               "nonce, seq, head FROM dev_checkpoints WHERE device_id=? LIMIT 1", did)
    _assert_named(ledger, "dev_checkpoints", f"device {did.upper()}", f"did you mean {did}?")


def test_a_changed_device_checkpoint_row_is_named(ledger: Copy) -> None:
    did = ledger.base.cps
    seq = ledger.one("SELECT MIN(seq) FROM dev_checkpoints WHERE device_id=?", did)[0]
    ledger.sql("UPDATE dev_checkpoints SET seq=? WHERE device_id=? AND seq=?", seq + 1, did,
               seq)
    _assert_named(ledger, "dev_checkpoints", f"device {did}, seq {seq + 1}",
                  "seq/head columns differ from the signed checkpoint")


def test_a_deleted_device_checkpoint_leaves_entries_unsigned(ledger: Copy) -> None:
    did = ledger.base.cps
    seq = ledger.one("SELECT MAX(seq) FROM dev_checkpoints WHERE device_id=?", did)[0]
    ledger.sql("DELETE FROM dev_checkpoints WHERE device_id=? AND seq=?", did, seq)
    _assert_named(ledger, "entries", f"device {did}, seqs", f"..{seq} are not signed by the "
                                                            "device")


# -- nodes, checkpoints, meta, collectors, bundles -------------------------------------

def test_a_changed_node_off_the_root_path_is_named(ledger: Copy) -> None:
    ledger.sql("UPDATE nodes SET hash=? WHERE level=2 AND idx=0", bytes(32))
    _assert_named(ledger, "nodes", "level 2, index 0", "hash differs from the tree rebuilt")


def test_an_added_node_is_named(ledger: Copy) -> None:
    size = ledger.base.size
    ledger.sql("INSERT INTO nodes VALUES (2, ?, ?)", size, bytes(32))
    _assert_named(ledger, "nodes", f"level 2, index {size}", "not a node of the tree")


def test_a_stored_leaf_hash_is_named(ledger: Copy) -> None:
    """Leaf hashes come from the entries rows (schema 6): a level-0 row, even a right
    one, is none that hashtrail writes."""
    ledger.sql("INSERT INTO nodes VALUES (0, 0, ?)", bytes(32))
    _assert_named(ledger, "nodes", "level 0, index 0", "a leaf hash row")


def test_a_stored_level_1_node_is_named(ledger: Copy) -> None:
    """Level-1 nodes come from the entries rows too (schema 8): a stored one, even a
    right one, is none that hashtrail writes."""
    ledger.sql("INSERT INTO nodes VALUES (1, 0, ?)", bytes(32))
    _assert_named(ledger, "nodes", "level 1, index 0", "a level-1 row")


def test_a_deleted_node_is_named(ledger: Copy) -> None:
    ledger.sql("DELETE FROM nodes WHERE level=2 AND idx=0")
    _assert_named(ledger, "nodes", "level 2, index 0", "missing")


def test_a_checkpoint_filed_under_another_size_is_named(ledger: Copy) -> None:
    size = ledger.base.size
    ledger.sql("UPDATE checkpoints SET size=? WHERE size=?", size + 7, size)
    _assert_named(ledger, "checkpoints", f"size {size + 7}",
                  f"the signed note is for size {size}")


def test_a_checkpoint_over_another_root_is_named(ledger: Copy) -> None:
    """Even signed with the ledger's own key (the operator's), a root that is not the
    rebuilt tree's is named."""
    signer = note.Signer.from_string(ledger.base.key.read_text())
    data = note.sign_checkpoint(note.Checkpoint(ORIGIN, 3, bytes(32)), [signer])
    ledger.sql("INSERT INTO checkpoints VALUES (3, ?, 0)", data)
    _assert_named(ledger, "checkpoints", "size 3", "not the root of the tree rebuilt")


def test_a_deleted_newest_checkpoint_is_a_note(ledger: Copy) -> None:
    """Not a problem: indistinguishable from a tree the operator has not signed yet.
    The note names the unsigned leaves (witnesses keep what they cosigned)."""
    size = ledger.base.size
    ledger.sql("DELETE FROM checkpoints WHERE size=?", size)
    _code, rep = ledger.verify()
    assert rep["problems"] == [] and any(f"..{size - 1} are not yet under a signed ledger "
                                         "checkpoint" in n for n in rep["notes"])


@pytest.mark.parametrize("edit,key,what", [
    ("INSERT INTO meta VALUES ('signer2', 'x')", "key 'signer2'", "not a key hashtrail"),
    ("UPDATE meta SET value='999' WHERE key='size'", "key size", "says 999 leaves"),
    ("UPDATE meta SET value=' ' || value WHERE key='verifier'", "key verifier",
     "canonical form"),
    ("DELETE FROM meta WHERE key='verifier'", "key verifier", "missing")])
def test_meta_rows_are_checked(ledger: Copy, edit: str, key: str, what: str) -> None:
    ledger.sql(edit)
    _assert_named(ledger, "meta", key, what)


def test_collectors_rows_must_be_canonical(ledger: Copy) -> None:
    key = COLLECTOR.verifier().to_string()
    name, kid, rest = key.split("+", 2)
    ledger.sql("UPDATE collectors SET key=? WHERE key=?", f"{name}+{kid.upper()}+{rest}",
               key)
    _assert_named(ledger, "collectors", f"{name}+{kid.upper()}",
                  f"(did you mean {kid}?)")


def test_a_bundles_row_is_named(ledger: Copy) -> None:
    ledger.sql("INSERT INTO bundles VALUES (?, 'x', 0)", bytes(32))
    _assert_named(ledger, "bundles", f"digest {bytes(32).hex()}",
                  "collector is not a collector verifier key")


def test_a_cursor_row_for_no_device_is_named(ledger: Copy) -> None:
    key = COLLECTOR.verifier().to_string()
    ledger.sql("INSERT INTO cursors VALUES (?, ?, 5)", key, "ab" * 16)
    _assert_named(ledger, "cursors", f"collector {key!r} device {'ab' * 16!r}"[:100],
                  "not an enrolled device")


# -- evidence --------------------------------------------------------------------------

@pytest.fixture
def forked(tmp_path: Path) -> Copy:
    """A ledger holding one fork: a host-made chain and its clone (same key)."""
    d = Device(5151)
    d.readings(10)
    clone = d.fork(6)
    clone.readings(4)
    path = tmp_path / "forked.db"
    from hashtrail.ledger.reconcile import reconcile
    with trust(Ledger.create(path, ORIGIN)) as led:
        reconcile(led, bundle([d], cps=[(d, d.checkpoint())]))
        assert reconcile(led, bundle([clone], cps=[(clone, clone.checkpoint())],
                                     name="c2")).forks == 1
        vkey = led.verifier.to_string()
    base = Base(path, Path(f"{path}.key"), vkey, d.id_hex, d.id_hex, 11)
    c = Copy(base, path)
    _code, rep = c.verify()
    assert rep["problems"] == [] and rep["devices"][0]["status"] == "forked", rep
    return c


def test_a_deleted_evidence_row_is_named(forked: Copy) -> None:
    did = forked.base.signed
    forked.sql("DELETE FROM evidence WHERE device_id=?", did)
    _assert_named(forked, "devices", f"device {did}", "forked flag is 1 with 0 fork evidence")


def test_a_changed_evidence_row_is_named(forked: Copy) -> None:
    did = forked.base.signed
    forked.sql("UPDATE evidence SET digest=? WHERE device_id=?", bytes(32), did)
    _assert_named(forked, "evidence", f"device {did}, seq 6", "digest is not the hash")


def test_evidence_under_another_spelling_is_named(forked: Copy) -> None:
    did = forked.base.signed
    forked.sql("INSERT INTO evidence SELECT upper(device_id), seq, digest, doc, created "
               "FROM evidence WHERE device_id=?", did)
    _assert_named(forked, "evidence", f"device {did.upper()}, seq 6", f"did you mean {did}?")


def test_made_up_evidence_is_named(forked: Copy) -> None:
    did = forked.base.signed
    doc = json.loads(forked.one("SELECT doc FROM evidence WHERE device_id=?", did)[0])
    doc["branches"][1] = doc["branches"][0]           # "both sides" the same history
    forked.sql("INSERT INTO evidence VALUES (?, 6, ?, ?, 0)", did, bytes(32),
               json.dumps(doc, sort_keys=True))
    _assert_named(forked, "evidence", f"device {did}, seq 6", "does not prove a fork")


# -- the CLI side of canonical ids ------------------------------------------------------

@pytest.mark.parametrize("spell", [str.upper, lambda s: "0x" + s, lambda s: f" {s} "])
def test_cli_refuses_another_spelling_of_a_device_id(
        base: Base, spell: Callable[[str], str], capsys: pytest.CaptureFixture[str]) -> None:
    did = base.signed
    for argv in (["verify", "--ledger", str(base.ledger), "--device", spell(did)],
                 ["ledger", "prove", "--ledger", str(base.ledger), "--device", spell(did),
                  "--seq", "1"],
                 ["devices", "revoke", spell(did), "--reason", "x", "--ledger",
                  str(base.ledger)]):
        with pytest.raises(SystemExit) as ex:
            main(argv)
        assert ex.value.code == 2
        assert f"32 lower-case hex characters (did you mean {did}?)" in \
            capsys.readouterr().err


# -- policies and the device's own report ------------------------------------------------

def _host_ledger(tmp: Path, d: Device, upto: int) -> Copy:
    """A ledger holding `d`'s entries 0..upto (checkpoint at upto), made by reconcile."""
    from hashtrail.ledger.reconcile import reconcile
    path = tmp / "host.db"
    with trust(Ledger.create(path, ORIGIN)) as led:
        b = bundle([d], {d.id_hex: (0, upto + 1)}, cps=[(d, d.checkpoint(seq=upto))])
        assert reconcile(led, b).accepted == upto + 1
        vkey = led.verifier.to_string()
    return Copy(Base(path, Path(f"{path}.key"), vkey, d.id_hex, d.id_hex, upto + 1), path)


def _operator_accepts(c: Copy, d: Device, seqs: range, cp: bytes) -> None:
    """The operator files `d`'s own entries `seqs` and its checkpoint by hand: leaves,
    rows, tip, a ledger checkpoint (with the key file). Every byte is device-signed."""
    from hashtrail.chain.devicecheck import DeviceKey
    key = DeviceKey(d.pub)
    for s in seqs:
        _, body, sig = d.entries[s]
        c.operator_appends(d.id_hex, s, body, sig)
    chk = key.checkpoint(cp)
    c.sql("INSERT INTO dev_checkpoints VALUES (?,?,?,?,?,?)", d.id_hex,
          hashlib.sha256(cp).digest(), cp, None, chk.seq, chk.head)
    last = d.entries[seqs[-1]][1]
    c.sql("UPDATE devices SET tip_seq=?, tip_head=?, tip_t=? WHERE device_id=?", seqs[-1],
          hashlib.sha256(last).digest(), cbor2.loads(last)[2], d.id_hex)


def test_entries_a_log_altered_report_disowns_are_named(tmp_path: Path) -> None:
    """Decision 3: a kind-6 entry at seq S with body {1: F} says no device signature
    covers F..S-1. Filed anyway (each byte device-signed, a checkpoint over S), they are
    a problem, whatever covers them later."""
    d = Device(6161)
    d.readings(9)
    c = _host_ledger(tmp_path, d, 6)
    assert c.verify()[0] == 0
    d.entry(6, {1: 7, 2: "entry 8 does not match its signature"})
    _operator_accepts(c, d, range(7, 11), d.checkpoint())
    _assert_named(c, "entries", f"device {d.id_hex}, seqs 7..9",
                  "disowned by the device's own log-altered report at seq 10")


def test_policy_0_ranges_name_the_signature_that_covered_them(tmp_path: Path) -> None:
    """Entry 0 without a policy (0): entries wait for a checkpoint or a later signed
    entry; each range is reported with what first covered it, never plain "ok"."""
    d = Device(7171)
    d.readings(4)                     # seqs 0..4, unsigned, a checkpoint at 4
    d.entry(0, [{0: "temp", 1: "Cel", 2: 1.5}])      # 5 unsigned
    d.per_entry_sig = True
    d.entry(0, [{0: "temp", 1: "Cel", 2: 1.5}])      # 6 signed: covers 5 and itself
    d.entry(0, [{0: "temp", 1: "Cel", 2: 1.5}])      # 7 signed on its own
    c = _host_ledger(tmp_path, d, 4)
    from hashtrail.ledger.reconcile import reconcile
    with Ledger.open_signing(c.path, c.base.key) as led:
        assert reconcile(led, bundle([d], {d.id_hex: (5, 8)})).accepted == 3
    code, rep = c.verify()
    (dev,) = rep["devices"]
    assert code == 0 and dev["policy"] == 0, rep
    assert dev["unprotected"] == [{"first": 0, "last": 4, "until": 4, "by": "checkpoint"},
                                  {"first": 5, "last": 5, "until": 6, "by": "signed entry"}]
    assert dev["status"] == "unprotected until checkpoint 4, signed entry 6"


def test_bundles_and_evidence_refuse_another_spelling(tmp_path: Path) -> None:
    from hashtrail.chain.evidence import check_evidence
    from hashtrail.errors import FormatError
    d = Device(8181)
    d.readings(3)
    buf = io.StringIO()
    write_bundle(bundle([d], cps=[(d, d.checkpoint())], signer=None), buf)
    text = buf.getvalue().replace(f'"device":"{d.id_hex}"', f'"device":"{d.id_hex.upper()}"')
    with pytest.raises(FormatError, match=f"did you mean {d.id_hex}"):
        parse_bundle(io.BytesIO(text.encode("ascii")))
    clone = d.fork(2)
    clone.readings(2)
    from hashtrail.ledger.reconcile import reconcile
    with trust(Ledger.create(tmp_path / "f.db", ORIGIN)) as led:
        reconcile(led, bundle([d], cps=[(d, d.checkpoint())]))
        assert reconcile(led, bundle([clone], cps=[(clone, clone.checkpoint())])).forks == 1
        doc = json.loads(next(iter(led.storage.scan_evidence()))[3])
    assert check_evidence(json.dumps(doc)).device_id == d.id_hex
    for spelled in (d.id_hex.upper(), "0x" + d.id_hex, d.id_hex + " "):
        with pytest.raises(FormatError, match=f"did you mean {d.id_hex}"):
            check_evidence(json.dumps({**doc, "device": spelled}))
    # the collector id in a bundle header likewise
    text = buf.getvalue().replace('"id":"0000000000000000"', '"id":"0X0000000000000000"')
    with pytest.raises(FormatError, match="collector id must be written as hashtrail prints"):
        parse_bundle(io.BytesIO(text.encode("ascii")))


def test_an_entries_row_without_its_leaf_is_named(ledger: Copy) -> None:
    """A device-signed entry filed as a row only: no node, no size, no checkpoint."""
    did = ledger.base.cps
    size = ledger.base.size
    ledger.sql("UPDATE entries SET leaf_index=? WHERE device_id=? AND seq=0", size, did)
    _assert_named(ledger, "entries", f"device {did}, seq 0",
                  f"leaf_index {size} is beyond the tree size {size} in meta")


def test_a_changed_pending_row_is_named(tmp_path: Path) -> None:
    """Held entries (after the device's last checkpoint) are checked too: an edited one
    no longer hashes to its key."""
    from hashtrail.ledger.reconcile import reconcile
    d = Device(9191)
    d.readings(6)
    c = _host_ledger(tmp_path, d, 4)
    with Ledger.open_signing(c.path, c.base.key) as led:
        assert reconcile(led, bundle([d], {d.id_hex: (5, 7)})).pending == 2
    _code, rep = c.verify()
    assert rep["problems"] == [] and rep["devices"][0]["pending"] == 2, rep
    body = bytes(c.one("SELECT body FROM pending WHERE seq=6")[0])
    c.sql("UPDATE pending SET body=? WHERE seq=6", body.replace(b"temp", b"tmpx"))
    _assert_named(c, "pending", f"device {d.id_hex}, seq 6",
                  "entry_hash is not the hash of its bytes")


# -- revocations ---------------------------------------------------------------------

def test_a_revocation_statement_that_does_not_match_is_named(ledger: Copy) -> None:
    """A revocation made with the key keeps a statement signed by it (docs/TILES.md
    "Revocations"): verify checks it against the key and the devices row."""
    with Ledger.open_signing(ledger.path, ledger.base.key) as led:
        led.revoke(ledger.base.cps, "retired")
        origin = led.origin
    code, rep = ledger.verify()
    assert code == 0 and rep["problems"] == [], rep
    ledger.sql("UPDATE devices SET revoked_reason='other' WHERE device_id=?", ledger.base.cps)
    _assert_named(ledger, "revocations", ledger.base.cps, "the devices row says")
    ledger.sql("UPDATE devices SET revoked_reason='retired' WHERE device_id=?",
               ledger.base.cps)
    forged = revocation.sign_revocation(
        revocation.Revocation(origin, ledger.base.cps, 1, "retired"),
        note.Signer.generate(origin))
    ledger.sql("UPDATE revocations SET statement=? WHERE device_id=?", forged,
               ledger.base.cps)
    _assert_named(ledger, "revocations", ledger.base.cps, "not a revocation signed by")


@pytest.mark.parametrize("change", ["prev=zeroblob(32)", "kind=5", "t=t+1", "t=NULL"])
def test_a_held_row_whose_walk_fields_disagree_is_named(tmp_path: Path, change: str) -> None:
    """The prev, kind and t a held row keeps for reconcile's walk (instead of decoding
    its body) are checked against the body; all three NULL (a row nobody filled) is
    not a problem."""
    from hashtrail.ledger.reconcile import reconcile
    d = Device(9192)
    d.readings(6)
    c = _host_ledger(tmp_path, d, 4)
    with Ledger.open_signing(c.path, c.base.key) as led:
        assert reconcile(led, bundle([d], {d.id_hex: (5, 7)})).pending == 2
    c.sql("UPDATE pending SET prev=NULL, kind=NULL, t=NULL WHERE seq=5")
    _code, rep = c.verify()
    assert rep["problems"] == [] and rep["devices"][0]["pending"] == 2, rep
    c.sql(f"UPDATE pending SET {change} WHERE seq=6")
    _assert_named(c, "pending", f"device {d.id_hex}, seq 6",
                  "prev, kind or t is not what the entry says")
