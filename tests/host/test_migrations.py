"""Upgrading files written by older hashtrail code (tests/fixtures/README.md): a ledger and
a collector store from main at 785d63f (schema "1", no application_id), and from 5950887
(before collector trust: the ledger still holds its signing key in meta and has no
collectors table; the store has no identity key and no policies table).

Opened with this code, each file runs its migrations once, in one transaction, and
comes out with the same tables as a file made now, stamped with its kind's
application_id; a second open writes nothing; the upgraded ledger verifies through the
CLI, and the upgraded store collects, exports and reconciles into the upgraded ledger.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import shutil
import sqlite3
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hashtrail import sqlite_file
from hashtrail.cli import main
from hashtrail.collector import storage_sqlite as store_sql
from hashtrail.collector.bundle import from_store, parse_bundle, write_bundle
from hashtrail.collector.store import RawEntry, Store
from hashtrail.errors import InputError
from hashtrail.ledger import storage_sqlite as ledger_sql
from hashtrail.ledger.ledger_db import Ledger
from hashtrail.ledger.ledger_verify import verify_ledger
from hashtrail.ledger.reconcile import reconcile

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "tools"))
import devchain

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"
MAIN, OLD = "main-785d63f", "old-5950887"
ORIGIN = "fixture.example/ledger"
# the fixture's devices, made again from the same secrets (tests/fixtures/make_fixtures.py)
SECRET_A, SECRET_F = 0xA11CE, 0xF0F0


@contextlib.contextmanager
def _raw(path: Path) -> Iterator[sqlite3.Connection]:
    db = sqlite3.connect(path)
    try:
        yield db
    finally:
        db.close()


def _copy(name: str, tmp: Path) -> Path:
    """The fixture's files in a fresh folder (the checked-in files are never written)."""
    out = tmp / name
    shutil.copytree(FIXTURES / name, out)
    key = out / "ledger.db.key"
    if key.exists():
        key.chmod(0o600)
    return out


def _stamp(path: Path) -> tuple[str | None, int]:
    """(meta schema, application_id), read without any hashtrail code."""
    with _raw(path) as db:
        row = db.execute("SELECT value FROM meta WHERE key='schema'").fetchone()
        return (None if row is None else str(row[0]),
                int(db.execute("PRAGMA application_id").fetchone()[0]))


def _shape(path: Path) -> dict[str, Any]:
    """Every table's columns (name, type, not null, default, pk) and indexes."""
    with _raw(path) as db:
        out: dict[str, Any] = {}
        for (t,) in db.execute("SELECT name FROM sqlite_master WHERE type='table' "
                               "ORDER BY name").fetchall():
            cols = db.execute(f"PRAGMA table_info({t})").fetchall()
            idx = sorted((str(i[1]), bool(i[2]), [c[2] for c in db.execute(
                f"PRAGMA index_info({i[1]})")]) for i in db.execute(f"PRAGMA index_list({t})"))
            out[t] = (cols, idx)
        return out


def _meta(path: Path) -> dict[str, str]:
    with _raw(path) as db:
        return {str(k): str(v) for k, v in db.execute("SELECT key, value FROM meta")}


def _cli(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main([str(a) for a in argv])
    out = capsys.readouterr()
    return code, out.out, out.err


def _verify_cli(capsys: pytest.CaptureFixture[str], ledger: Path) -> dict[str, Any]:
    """`hashtrail verify --ledger`: no problem in the file; the fixture's fork is the
    one alarm (exit 1 for it, by design), on the forked device only."""
    with Ledger.open(ledger) as led:
        vkey = led.verifier.to_string()
    code, out, err = _cli(capsys, "verify", "--ledger", ledger, "--json",
                          "--verifier-key", vkey)
    rep = json.loads(out)
    assert rep["problems"] == [], rep["problems"]
    devs = {d["device_id"]: d for d in rep["devices"]}
    a, f = (devchain.Device(s).id_hex for s in (SECRET_A, SECRET_F))
    assert devs[a]["ok"] and devs[a]["problems"] == [], devs[a]
    assert devs[f]["status"] == "forked" and devs[f]["problems"] == [], devs[f]
    assert code == 1, err
    return rep


@pytest.fixture(params=[MAIN, OLD])
def old(request: pytest.FixtureRequest, tmp_path: Path) -> Path:
    return _copy(str(request.param), tmp_path)


def test_fixtures_are_as_old_code_left_them(old: Path) -> None:
    """The upgrade starts from the real thing: schema 1 and no application_id."""
    for name in ("ledger.db", "store.db"):
        assert _stamp(old / name) == ("1", 0)
    tables = set(_shape(old / "ledger.db"))
    assert ("collectors" in tables) == (old.name == MAIN)
    assert ("signer" in _meta(old / "ledger.db")) == (old.name == OLD)
    assert ("policies" in _shape(old / "store.db")) == (old.name == MAIN)
    assert ("signer" in _meta(old / "store.db")) == (old.name == MAIN)


def test_ledger_upgrades_once_to_the_shape_of_a_new_one(old: Path, tmp_path: Path) -> None:
    path = old / "ledger.db"
    before = _meta(path)
    with Ledger.open(path) as led:
        assert led.size == 26 and led.origin == ORIGIN
        root = led.root()
    assert _stamp(path) == (str(ledger_sql.SCHEMA_VERSION), sqlite_file.LEDGER.app_id)
    assert _meta(path) == before | {"schema": str(ledger_sql.SCHEMA_VERSION)}  # rows kept
    with Ledger.create(tmp_path / "new.db", "new.example/l") as new:
        assert new.size == 0
    assert _shape(path) == _shape(tmp_path / "new.db")
    # idempotent: the second open finds it current and writes nothing at all
    upgraded = path.read_bytes()
    for _ in range(2):
        with Ledger.open(path) as led:
            assert led.root() == root
        assert path.read_bytes() == upgraded
    assert not Path(f"{path}-wal").exists()


def test_store_upgrades_once_to_the_shape_of_a_new_one(old: Path, tmp_path: Path) -> None:
    path = old / "store.db"
    before = _meta(path)
    a = devchain.Device(SECRET_A)
    with Store.open(path, create=False) as st:
        cid, signer = st.collector_id, st.signer.to_string()
        assert cid == before["collector_id"] and signer.startswith("PRIVATE+KEY+collector-")
        assert st.policy(a.id_hex) == 0           # derived from its accepted entry 0
        assert st.anchor(a.id_hex) is not None and st.anchor(a.id_hex).seq == 15  # type: ignore[union-attr]
        assert len(st.quarantined(a.id_hex)) == 5
    assert _stamp(path) == (str(store_sql.SCHEMA_VERSION), sqlite_file.STORE.app_id)
    if "signer" in before:
        assert _meta(path)["signer"] == before["signer"]     # an identity is never remade
    with Store.open(tmp_path / "new.db") as st:
        assert st.enrollments() == []
    assert _shape(path) == _shape(tmp_path / "new.db")
    upgraded = path.read_bytes()
    for _ in range(2):
        with Store.open(path, create=False) as st:
            assert st.collector_id == cid and st.signer.to_string() == signer
        assert path.read_bytes() == upgraded


def test_upgraded_ledger_verifies(old: Path, capsys: pytest.CaptureFixture[str]) -> None:
    rep = _verify_cli(capsys, old / "ledger.db")
    assert rep["size"] == 26 and rep["checkpoints"] >= 1
    with Ledger.open(old / "ledger.db") as led:
        assert verify_ledger(led).problems == []


def test_legacy_ledger_key_moves_out_on_the_first_signing_open(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """5950887 kept the ledger key in meta.signer: reading (and upgrading) leaves it,
    the first signing open writes the key file and forgets the key in the ledger."""
    d = _copy(OLD, tmp_path)
    path, kp = d / "ledger.db", d / "ledger.db.key"
    legacy = _meta(path)["signer"]
    with Ledger.open(path) as led:
        assert not led.can_sign
        vkey = led.verifier.to_string()
    assert _meta(path)["signer"] == legacy and not kp.exists()   # reading never migrates
    with Ledger.open_signing(path) as led:
        assert led.migrated == kp and led.can_sign
    assert kp.read_text().strip() == legacy
    meta = _meta(path)
    assert "signer" not in meta and meta["verifier"] == vkey
    assert legacy.encode() not in path.read_bytes()
    _verify_cli(capsys, path)


def test_upgraded_store_collects_exports_and_reconciles(
        old: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """What collect writes (new records quarantined, a fresh checkpoint, the verified
    range accepted), then `export` and `reconcile` through the CLI, on the upgraded
    pair; a second reconcile of the same bundle adds nothing."""
    store, ledger = old / "store.db", old / "ledger.db"
    a = devchain.Device(SECRET_A, deterministic=True)
    a.readings(20)                                 # the fixture's chain, byte for byte
    a.readings(4)                                  # and what the device logged since
    with Store.open(store, create=False) as st:
        assert [r.body for r in st.all_records(a.id_hex)] == [e[1] for e in a.entries[:21]]
        assert st.quarantine(a.id_hex, [RawEntry(*e) for e in a.entries]) == 4
        last = len(a.entries) - 1
        head = hashlib.sha256(a.entries[last][1]).digest()
        cp = a.checkpoint(nonce=b"m" * 16)
        assert st.add_checkpoint(a.id_hex, cp, b"m" * 16, seq=last, head=head)
        assert st.accept(a.id_hex, last, head) == last - 15
        st.accept_checkpoint(a.id_hex, cp)
        vkey = st.signer.verifier().to_string()
    bundle = old / "b.jsonl"
    code, out, err = _cli(capsys, "export", "--store", store, "--out", bundle, "--json")
    assert code == 0, err
    if old.name == OLD:          # trusted by nobody yet: its key was made by the upgrade
        assert _cli(capsys, "ledger", "trust", "--ledger", ledger, vkey,
                    "--name", "upgraded")[0] == 0
    f = devchain.Device(SECRET_F).id_hex
    # A's 16..24 are new; the clone's entries (the store's quarantine) stay held:
    # findings, exit 1
    code, out, err = _cli(capsys, "reconcile", "--ledger", ledger, bundle, "--json")
    got = json.loads(out)["bundles"][0]
    assert got["accepted"] == 9 and got["forks"] == 0 and not got["already"], got
    assert {x["device_id"] for x in got["findings"]} == {f} and code == 1, out + err
    # the second time the bundle is known (its digest was recorded): nothing is read
    code, out, err = _cli(capsys, "reconcile", "--ledger", ledger, bundle, "--json")
    got = json.loads(out)["bundles"][0]
    assert got["already"] and got["accepted"] == 0 and got["findings"] == [], got
    assert code == 0, out + err
    with Ledger.open(ledger) as led:
        assert led.size == 35 and led.device(a.id_hex).tip_seq == 24  # type: ignore[union-attr]
    _verify_cli(capsys, ledger)


def test_held_entries_keep_what_the_walk_reads_after_the_upgrade(
        old: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Schema 4 gives every held row of the old file its prev, kind and t (as the body
    says), and a reconcile touching those devices then decodes none of them again."""
    from hashtrail.formats.entry import parse_entry
    from hashtrail.ledger import reconcile as rc
    path = old / "ledger.db"
    with _raw(path) as db:
        assert [r[1] for r in db.execute("PRAGMA table_info(pending)")][-1] == "sig"
        held = db.execute("SELECT device_id, seq, body FROM pending").fetchall()
    assert len(held) == 10
    with Ledger.open(path):
        pass
    with _raw(path) as db:
        for did, seq, body in held:
            e = parse_entry(body)
            assert db.execute("SELECT prev, kind, t FROM pending WHERE device_id=? AND "
                              "seq=?", (did, seq)).fetchall() == [(e.prev, e.kind, e.t)]
    loaded: list[int] = []
    decoded: list[bytes] = []
    load = rc._load_pending

    def counted_load(*args: Any) -> Any:
        out = load(*args)
        loaded.append(sum(len(cs) for cs in out.values()))
        return out

    def counted_parse(raw: bytes) -> Any:
        if len(loaded) % 2:                     # inside _load_pending (see below)
            decoded.append(raw)
        return parse_entry(raw)

    def load_marked(*args: Any) -> Any:
        loaded.append(0)
        return counted_load(*args)

    monkeypatch.setattr(rc, "_load_pending", load_marked)
    monkeypatch.setattr(rc, "parse_entry", counted_parse)
    with Store.open(old / "store.db", create=False) as st:
        b = from_store(st, name="again")

    def run() -> None:
        loaded.clear()
        decoded.clear()
        with Ledger.open_signing(path) as led:
            r = reconcile(led, b)
            assert r.accepted == 0 and r.duplicates == 26, r
    with _raw(path) as db:
        # (the held rows above their device's tip: walks read those; the rest are other
        # copies of accepted entries, rows only: reconcile._without_low)
        above = db.execute("SELECT p.device_id, p.seq FROM pending p JOIN devices d "
                           "USING (device_id) WHERE p.seq > d.tip_seq").fetchall()
    assert len(above) == 6
    run()
    assert sum(loaded) == 6 and decoded == []     # all six held rows read, none decoded
    with _raw(path) as db, db:                    # a row without them is decoded, as before
        db.execute("UPDATE pending SET kind=NULL WHERE device_id=? AND seq=?", above[0])
    run()
    assert sum(loaded) == 6 and len(decoded) == 1


def test_stored_leaf_hashes_go_and_the_tree_reads_the_same(old: Path) -> None:
    """Schema 6 drops the stored leaf hashes (level 0 of `nodes`), schema 8 the level-1
    nodes: a leaf's hash now comes from its entries row, a level-1 node's from two, and
    each is the hash the dropped row held, so every root and proof reads as before; the
    other levels are kept as they were."""
    path = old / "ledger.db"
    with _raw(path) as db:
        leaves = dict(db.execute("SELECT idx, hash FROM nodes WHERE level=0").fetchall())
        ones = dict(db.execute("SELECT idx, hash FROM nodes WHERE level=1").fetchall())
        upper = db.execute("SELECT level, idx, hash FROM nodes WHERE level>1 ORDER BY "
                           "level, idx").fetchall()
    assert sorted(leaves) == list(range(26)) and sorted(ones) == list(range(13)) and upper
    with Ledger.open(path) as led:
        assert [led.node(0, i) for i in range(26)] == [leaves[i] for i in range(26)]
        assert led.nodes(0, 0, 25) == [leaves[i] for i in range(26)]
        assert [led.node(1, i) for i in range(13)] == [ones[i] for i in range(13)]
        assert led.nodes(1, 0, 12) == [ones[i] for i in range(13)]
        assert led.nodes(1, 3, 5) == [ones[i] for i in range(3, 6)]
    with _raw(path) as db:
        assert db.execute("SELECT COUNT(*) FROM nodes WHERE level<2").fetchone() == (0,)
        assert db.execute("SELECT level, idx, hash FROM nodes WHERE level>1 ORDER BY "
                          "level, idx").fetchall() == upper


def test_library_reconcile_of_a_fresh_bundle_into_the_upgraded_ledger(old: Path) -> None:
    """The same through the library, from a bundle the upgraded store signs."""
    with Store.open(old / "store.db", create=False) as st:
        b = from_store(st, name="again")
        buf = io.StringIO()
        write_bundle(b, buf, st.signer)
    bundle = parse_bundle(io.BytesIO(buf.getvalue().encode("ascii")))
    with Ledger.open_signing(old / "ledger.db") as led:
        r = reconcile(led, bundle)
        assert r.accepted == 0 and r.forks == 0 and r.duplicates == 26, r
        assert verify_ledger(led).problems == []


def test_a_store_where_a_ledger_belongs_is_one_line(
        old: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Known by tables before the upgrade (no application_id yet), by id after."""
    for _ in range(2):
        with pytest.raises(InputError, match="is a hashtrail collector store; expected a "
                                             "hashtrail ledger"):
            Ledger.open(old / "store.db")
        with pytest.raises(InputError, match="is a hashtrail ledger; expected a hashtrail "
                                             "collector store"):
            Store.open(old / "ledger.db", create=False)
        Ledger.open(old / "ledger.db").close()
        Store.open(old / "store.db", create=False).close()
    code, _out, err = _cli(capsys, "verify", "--ledger", old / "store.db")
    assert code == 2 and len(err.strip().splitlines()) <= 2, err


def test_kind_is_told_by_application_id_alone(tmp_path: Path) -> None:
    """Once stamped, the id decides, whatever tables the file holds: an SQLite file of
    another program (its own id) is refused with that id named, nothing written."""
    other = tmp_path / "other.db"
    with _raw(other) as db:
        db.execute("CREATE TABLE devices (x)")
        db.execute("CREATE TABLE nodes (x)")
        db.execute("PRAGMA application_id=1234")
        db.commit()
    data = other.read_bytes()
    with pytest.raises(InputError, match="another program"):
        Ledger.open(other)
    assert other.read_bytes() == data


def test_newer_schema_is_refused_without_a_write(old: Path) -> None:
    path = old / "ledger.db"
    with _raw(path) as db:
        db.execute("UPDATE meta SET value='99' WHERE key='schema'")
        db.commit()
    data = path.read_bytes()
    with pytest.raises(InputError, match="newer than this hashtrail reads"):
        Ledger.open(path)
    assert path.read_bytes() == data


def test_a_failed_migration_leaves_the_file_as_it_was(
        old: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """All steps in one transaction: a step that fails (here, after the first step of
    the upgrade ran) rolls every step back, and a later open upgrades normally."""
    path = old / "store.db"
    data = path.read_bytes()

    def broken(db: sqlite3.Connection) -> None:
        store_sql._v2(db)
        raise sqlite3.OperationalError("disk I/O error (simulated)")

    monkeypatch.setattr(store_sql.SqliteStoreStorage, "MIGRATIONS", [
        store_sql.MIGRATIONS[0], sqlite_file.Migration(2, "broken", broken)])
    with pytest.raises(Exception, match="simulated"):
        Store.open(path, create=False)
    assert _stamp(path) == ("1", 0) and _meta(path) == _meta_of(data, old)
    monkeypatch.undo()
    Store.open(path, create=False).close()
    assert _stamp(path) == (str(store_sql.SCHEMA_VERSION), sqlite_file.STORE.app_id)


def _meta_of(data: bytes, tmp: Path) -> dict[str, str]:
    p = tmp / "was.db"
    p.write_bytes(data)
    try:
        return _meta(p)
    finally:
        p.unlink()


def test_damaged_current_file_is_one_line(old: Path) -> None:
    """A table dropped by hand from an up-to-date ledger: refused at open, by name."""
    path = old / "ledger.db"
    Ledger.open(path).close()
    with _raw(path) as db:
        db.execute("DROP TABLE collectors")
        db.commit()
    with pytest.raises(InputError, match="is damaged: no table collectors"):
        Ledger.open(path)
