"""A PostgreSQL ledger (storage_pg): many collectors reconciling into it at once (and a
verify meanwhile, on both backends), and
bad input (an unreachable server, wrong credentials, a missing database, another
program's tables, a connection dropped mid-reconcile) refused on one line, exit 2, with
nothing half-written and a rerun that completes. Every test here needs the server
(tests/host/pgtest.py: a failure in CI, a skip elsewhere)."""

from __future__ import annotations

import os
import random
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pgtest
import pytest

if os.environ.get("CI", "").lower() != "true":      # in CI a missing psycopg fails
    pytest.importorskip("psycopg", reason="PostgreSQL ledger tests skipped: no psycopg "
                                          "(pip install -e '.[postgresql]')")
import psycopg
from hashtrail.cli import main
from hashtrail.collector.bundle import read_bundle
from hashtrail.errors import InputError
from hashtrail.ledger import storage_pg
from hashtrail.ledger.ledger_db import Ledger
from hashtrail.ledger.ledger_verify import verify_ledger
from hashtrail.ledger.reconcile import reconcile
from ledgerkit import COLLECTOR, Device, bundle, save, trust

pytestmark = pytest.mark.postgresql

ROOT = Path(__file__).resolve().parents[2]
CLI = [sys.executable, "-m", "hashtrail.cli"]
ENV = {**os.environ, "PYTHONPATH": str(ROOT / "host")}
N = 400                 # entries per device after entry 0
DEVICES = 6             # half checkpoint-only (policy 0), half per-entry signed


@pytest.fixture
def new_db(pg_databases: list[str]) -> str:
    return pgtest.new_database(pg_databases)


def _cli(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    r = subprocess.run([*CLI, *args], capture_output=True, text=True, env=ENV, timeout=300)
    if check:
        assert r.returncode == 0, r.stderr
    return r


def _rows(url: str, query: str) -> list[tuple[object, ...]]:
    """The rows of a query, or [] for a statement that returns none."""
    with psycopg.connect(url, autocommit=True) as c:
        cur = c.execute(query)  # type: ignore[arg-type]
        return [tuple(r) for r in cur] if cur.description is not None else []


def _per_device(led: Ledger) -> dict[str, list[tuple[int, bytes]]]:
    """device -> [(seq, entry hash)] of its accepted entries, in leaf order."""
    out: dict[str, list[tuple[int, bytes]]] = {}
    for _i, did, seq, h, _body, _sig in led.storage.scan_entries():
        out.setdefault(did, []).append((seq, bytes(h)))
    return out


def _collector_bundles(tmp: Path) -> list[Path]:
    """Four collectors' bundles over the same devices, each a window of every device's
    chain overlapping its neighbours', ending in a device checkpoint over its last
    entry: together they hold every entry, several times."""
    devs = []
    for k in range(DEVICES):
        d = Device(7000 + k, per_entry_sig=k % 2 == 1)
        d.readings(N)
        devs.append(d)
    out = []
    step = (N + 1) // 4
    for c in range(4):
        lo, hi = max(0, c * step - step // 2), (N + 1 if c == 3 else (c + 1) * step + step // 2)
        ranges = {d.id_hex: (lo, hi) for d in devs}
        cps = [(d, d.checkpoint(seq=hi - 1)) for d in devs]
        out.append(save(bundle(devs, ranges, cps, name=f"site-{c}"), tmp / f"site-{c}.jsonl"))
    return out


def test_four_collectors_at_once_some_killed(tmp_path: Path, new_db: str) -> None:
    """Four `reconcile` processes with overlapping bundles into one ledger at once, two
    of them killed (-9) at random points and rerun: the same leaves per device as a
    serial build, nothing lost or twice, every checkpoint consistent (verify)."""
    url, key = new_db, tmp_path / "ledger.key"
    _cli("ledger", "init", "--ledger", url, "--origin", "t.example/many",
         "--key-file", str(key))
    _cli("ledger", "trust", "--ledger", url, COLLECTOR.verifier().to_string())
    bundles = _collector_bundles(tmp_path)
    total = DEVICES * (N + 1)
    rng = random.Random(12)
    victims = set(rng.sample(range(4), 2))
    # the order each process reconciles in: its own bundle first, then the others
    orders = [[bundles[(i + j) % 4] for j in range(4)] for i in range(4)]
    procs = [subprocess.Popen([*CLI, "reconcile", "--ledger", url, "--key-file", str(key),
                               *map(str, order)], stdout=subprocess.DEVNULL,
                              stderr=subprocess.PIPE, env=ENV) for order in orders]
    killed_running = 0
    thresholds = {v: rng.uniform(0.1, 0.7) * total for v in victims}
    deadline = time.monotonic() + 120
    while thresholds and time.monotonic() < deadline:
        have = _rows(url, "SELECT COUNT(*) FROM entries")[0][0]
        for v, at in list(thresholds.items()):
            if have >= at or procs[v].poll() is not None:
                killed_running += procs[v].poll() is None
                procs[v].kill()
                del thresholds[v]
        time.sleep(0.01)
    for i, p in enumerate(procs):
        p.wait(timeout=300)
        assert i in victims or p.returncode == 0, p.stderr.read() if p.stderr else ""
        if p.stderr:
            p.stderr.close()
    # consistent right after the kills (a killed transaction is rolled back by the server)
    with Ledger.open(url) as led:
        assert verify_ledger(led).ok
    reruns = [subprocess.Popen([*CLI, "reconcile", "--ledger", url, "--key-file", str(key),
                                *map(str, orders[v])], stdout=subprocess.DEVNULL, env=ENV)
              for v in sorted(victims)]
    assert [p.wait(timeout=300) for p in reruns] == [0] * len(reruns)
    assert killed_running >= 1, "no kill landed while a reconcile was running"

    serial_path = tmp_path / "serial.db"
    with trust(Ledger.create(serial_path, "t.example/many")) as serial:
        for b in bundles:
            reconcile(serial, read_bundle(b))
        want = _per_device(serial)
    with Ledger.open(url) as led:
        assert led.size == total
        got = _per_device(led)
        assert got == want                      # per device: same entries, in seq order
        assert all(len(v) == N + 1 for v in got.values()) and len(got) == DEVICES
        assert list(led.storage.scan_pending()) == []
        sizes = [int(r[0]) for r in led.storage.scan_checkpoints()]
        assert sizes == sorted(set(sizes)) and sizes[-1] == total
    r = _cli("verify", "--ledger", url, "--verifier-key-file", str(_vkey(tmp_path, url)))
    assert "verify: OK" in r.stdout


def _vkey(tmp: Path, url: str) -> Path:
    with Ledger.open(url) as led:
        p = tmp / "ledger.vkey"
        p.write_text(led.verifier.to_string() + "\n")
    return p


def _small_ledger(tmp: Path, url: str) -> tuple[Path, Path]:
    """A ledger at `url` trusting the test collector, and a bundle of two devices."""
    key = tmp / "ledger.key"
    with trust(Ledger.create(url, "t.example/l", key_file=key)):
        pass
    devs = [Device(8100), Device(8101, per_entry_sig=True)]
    for d in devs:
        d.readings(60)
    b = save(bundle(devs, cps=[(d, d.checkpoint()) for d in devs]), tmp / "b.jsonl")
    return key, b


def _one_line(err: str) -> str:
    lines = [x for x in err.strip().splitlines() if x.startswith("hashtrail: error:")]
    assert len(lines) == 1 and len(err.strip().splitlines()) <= 2, err
    assert "Traceback" not in err
    return lines[0]


def test_connection_dropped_mid_reconcile(tmp_path: Path, new_db: str,
                                          monkeypatch: pytest.MonkeyPatch,
                                          capsys: pytest.CaptureFixture[str]) -> None:
    """The server ends the session while reconcile is writing a device's leaves: one
    line, exit 2, nothing of that transaction stored; the rerun completes it."""
    key, b = _small_ledger(tmp_path, new_db)
    real = storage_pg.PgLedgerStorage.add_entries
    calls = []

    def drop_then_write(self: storage_pg.PgLedgerStorage, rows: object) -> None:
        calls.append(1)
        if len(calls) == 2:              # the second device: the first is committed
            with psycopg.connect(pgtest.ADMIN, autocommit=True) as admin:
                admin.execute("SELECT pg_terminate_backend(%s)", (self._db.info.backend_pid,))
        real(self, rows)  # type: ignore[arg-type]

    monkeypatch.setattr(storage_pg.PgLedgerStorage, "add_entries", drop_then_write)
    argv = ["reconcile", "--ledger", new_db, "--key-file", str(key), str(b)]
    assert main(argv) == 2
    line = _one_line(capsys.readouterr().err)
    assert new_db in line and "nothing of the interrupted work was written" in line
    with Ledger.open(new_db) as led:
        assert led.size == 61                   # the first device's whole chain, no more
        assert len(led.checkpoints()) == 1      # and no checkpoint signed over a half
        assert verify_ledger(led).ok
    monkeypatch.setattr(storage_pg.PgLedgerStorage, "add_entries", real)
    assert main(argv) == 0
    with Ledger.open(new_db) as led:
        assert led.size == 122 and verify_ledger(led).ok


@pytest.mark.parametrize("case", ["unreachable", "no-database", "no-role", "empty",
                                  "other-program", "collector-store", "newer-schema",
                                  "damaged"])
def test_bad_database_is_refused_on_one_line(case: str, tmp_path: Path,
                                             pg_databases: list[str],
                                             capsys: pytest.CaptureFixture[str]) -> None:
    """Every ledger command refuses a URL that is not a usable ledger: one line naming
    it, exit 2, nothing written to the database or the folder."""
    url = pgtest.new_database(pg_databases)
    if case == "unreachable":
        url = "postgresql://postgres:secret@127.0.0.1:1/nowhere"
    elif case == "no-database":
        url = pgtest.url_of("hashtrail_test_missing_db")
    elif case == "no-role":
        url = url.replace("postgres@", "no_such_role@")
    elif case == "other-program":
        _rows(url, "CREATE TABLE accounts (id INT PRIMARY KEY, owner TEXT)")
    elif case == "collector-store":
        _rows(url, "CREATE TABLE enrollments (device_id TEXT)")
        _rows(url, "CREATE TABLE state (device_id TEXT)")
    elif case in ("newer-schema", "damaged"):
        Ledger.create(url, "t.example/l", key_file=tmp_path / "made.key").close()
        _rows(url, "UPDATE meta SET value='99' WHERE key='schema'" if case == "newer-schema"
              else "DROP TABLE pending")
    (tmp_path / "k").write_text(COLLECTOR.verifier().to_string())
    before = sorted(p.name for p in tmp_path.iterdir())
    tables = None if case in ("unreachable", "no-database", "no-role") else \
        _rows(url, "SELECT table_name FROM information_schema.tables WHERE "
                   "table_schema='public' ORDER BY 1")
    shown = url.replace(":secret@", ":***@")
    for argv in (["verify", "--ledger", url],
                 ["devices", "list", "--ledger", url],
                 ["ledger", "trust", "--ledger", url, str(tmp_path / "k")],
                 ["ledger", "checkpoint", "--ledger", url, "--key-file",
                  str(tmp_path / "none.key")],
                 ["ledger", "init", "--ledger", url, "--origin", "t.example/x",
                  "--key-file", str(tmp_path / "new.key")]):
        if case == "empty" and argv[1] == "init":
            continue                              # an empty database is what init wants
        assert main(argv) == 2, argv
        line = _one_line(capsys.readouterr().err)
        assert shown in line, line
        assert "secret" not in line
    assert sorted(p.name for p in tmp_path.iterdir()) == before     # no key file made
    if tables is not None:
        assert _rows(url, "SELECT table_name FROM information_schema.tables WHERE "
                          "table_schema='public' ORDER BY 1") == tables


def test_refusals_say_what_the_database_is(new_db: str, pg_databases: list[str]) -> None:
    _rows(new_db, "CREATE TABLE accounts (id INT)")
    with pytest.raises(InputError, match="another program's tables \\(accounts\\)"):
        Ledger.open(new_db)
    other = pgtest.new_database(pg_databases)
    with pytest.raises(InputError, match="empty"):
        Ledger.open(other)


def test_signing_a_url_ledger_needs_its_key_named(tmp_path: Path, new_db: str,
                                                 monkeypatch: pytest.MonkeyPatch,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    """There is no `<ledger>.key` beside a database: init and the signing commands want
    --key-file or HASHTRAIL_LEDGER_KEY, on one line, before anything is made."""
    monkeypatch.delenv("HASHTRAIL_LEDGER_KEY", raising=False)
    monkeypatch.chdir(tmp_path)
    assert main(["ledger", "init", "--ledger", new_db, "--origin", "t.example/k"]) == 2
    line = _one_line(capsys.readouterr().err)
    assert "--key-file" in line and "HASHTRAIL_LEDGER_KEY" in line
    assert _rows(new_db, "SELECT table_name FROM information_schema.tables WHERE "
                         "table_schema='public'") == []
    assert list(tmp_path.iterdir()) == []
    monkeypatch.setenv("HASHTRAIL_LEDGER_KEY", str(tmp_path / "env.key"))
    postgres = new_db.replace("postgresql://", "postgres://")     # the short scheme too
    assert main(["ledger", "init", "--ledger", postgres, "--origin", "t.example/k"]) == 0
    assert (tmp_path / "env.key").exists()
    assert main(["ledger", "checkpoint", "--ledger", new_db]) == 0
    monkeypatch.delenv("HASHTRAIL_LEDGER_KEY")
    capsys.readouterr()
    assert main(["ledger", "checkpoint", "--ledger", new_db]) == 2
    assert "--key-file" in _one_line(capsys.readouterr().err)
    assert main(["ledger", "checkpoint", "--ledger", new_db, "--key-file",
                 str(tmp_path / "env.key")]) == 0
    assert main(["devices", "list", "--ledger", new_db]) == 0     # reading needs no key


def test_every_ledger_command_works_on_a_url(tmp_path: Path, new_db: str,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    """Each command that takes --ledger, through the CLI on a PostgreSQL ledger holding
    a fork, from init to revoke: the same exits and outputs a file ledger gives."""
    import json

    url, key = new_db, str(tmp_path / "ledger.key")

    def run(*argv: str, code: int = 0) -> str:
        capsys.readouterr()
        assert main(list(argv)) == code, (argv, capsys.readouterr())
        return capsys.readouterr().out

    vkey = json.loads(run("ledger", "init", "--ledger", url, "--origin", "t.example/all",
                          "--key-file", key, "--json"))["verifier_key"]
    (tmp_path / "c.vkey").write_text(COLLECTOR.verifier().to_string())
    run("ledger", "trust", "--ledger", url, str(tmp_path / "c.vkey"), "--name", "site A")
    assert "site A" in run("ledger", "trusted", "--ledger", url)
    d = Device(8300, per_entry_sig=True)
    d.readings(9)
    clone = d.fork(6)
    clone.readings(3)
    a = save(bundle([d], cps=[(d, d.checkpoint())]), tmp_path / "a.jsonl")
    b = save(bundle([clone], cps=[(clone, clone.checkpoint())], name="c2"),
             tmp_path / "b.jsonl")
    run("reconcile", "--ledger", url, "--key-file", key, str(a))
    run("reconcile", "--ledger", url, "--key-file", key, str(b), code=1)   # the fork
    cp = tmp_path / "cp.txt"
    cp.write_text(json.loads(run("ledger", "checkpoint", "--ledger", url, "--key-file", key,
                                 "--json"))["checkpoint"])
    proof = tmp_path / "proof.json"
    proof.write_text(run("ledger", "prove", "--ledger", url, "--device", d.id_hex, "--seq",
                         "4", "--checkpoint", str(cp)))
    assert "OK" in run("ledger", "verify-proof", "--verifier-key", vkey, "--device",
                       d.id_hex, str(proof)).upper()
    cons = json.loads(run("ledger", "consistency", "--ledger", url, "--old", "3"))
    assert cons["old_size"] == 3 and cons["new_size"] == 10
    ev = tmp_path / "fork.json"
    run("ledger", "evidence", "--ledger", url, "--device", d.id_hex, "--out", str(ev))
    run("ledger", "check-evidence", "--verifier-key", vkey, str(ev))
    w = tmp_path / "w.key"
    run("ledger", "witness-key", "--name", "witness.test/w", "--out", str(w))
    run("ledger", "cosign", "--ledger", url, "--key", str(w), "--state",
        str(tmp_path / "w.state"), "--verifier-key", vkey, str(cp))
    assert d.id_hex in run("devices", "list", "--ledger", url)
    out = run("verify", "--ledger", url, "--verifier-key", vkey, code=1)   # forked: alarm
    assert "fork at seq 6" in out
    run("devices", "revoke", d.id_hex, "--reason", "cloned", "--ledger", url)
    assert "revoked" in run("devices", "list", "--ledger", url)


def test_a_vanished_writer_cannot_hold_the_lock_for_good(new_db: str, tmp_path: Path) -> None:
    """The ledger's sessions ask the server to probe the client and to end a session
    left idle inside a transaction (so a lock holder whose machine vanished lets go)."""
    key, _b = _small_ledger(tmp_path, new_db)
    with Ledger.open_signing(new_db, key) as led:
        st = led.storage
        assert isinstance(st, storage_pg.PgLedgerStorage)
        for name, value in storage_pg.SESSION.items():
            shown = st._q("SELECT current_setting(%s)", (name,)).fetchone()[0]
            assert shown in (value, "10min") if name.startswith("idle") else shown == value
    # and the server does end such a session: here after 1 s instead of 10 min
    with psycopg.connect(new_db, autocommit=True) as c:
        c.execute("SET idle_in_transaction_session_timeout = '1s'")
        with pytest.raises(psycopg.Error, match="idle-in-transaction timeout"):
            with c.transaction():
                c.execute("SELECT pg_advisory_xact_lock(%s)", (storage_pg._LOCK,))
                time.sleep(2.5)
                c.execute("SELECT 1")
    with Ledger.open_signing(new_db, key) as led, led.transaction():
        pass                                        # the lock is free again


def test_verify_while_collectors_write_sees_one_state(
        tmp_path: Path, ledger_at: Callable[[str], str]) -> None:
    """An auditor's `verify` while reconciles commit, on both backends: it reads one
    committed state (storage.snapshot), so it never reports the rows of a commit that
    landed half-way through its read as integrity problems (it did, before)."""
    url, key = ledger_at("l"), tmp_path / "ledger.key"
    with trust(Ledger.create(url, "t.example/live", key_file=key)):
        pass
    devs = []
    for k in range(40):
        d = Device(8800 + k)
        d.readings(150)
        devs.append(d)
    files = [save(bundle(devs[i::2], cps=[(d, d.checkpoint()) for d in devs[i::2]],
                         name=f"site-{i}"), tmp_path / f"s{i}.jsonl") for i in range(2)]
    procs = [subprocess.Popen([*CLI, "reconcile", "--ledger", url, "--key-file", str(key),
                               str(f)], stdout=subprocess.DEVNULL, env=ENV) for f in files]
    runs, sizes = 0, set()
    try:
        while any(p.poll() is None for p in procs) or runs == 0:
            with Ledger.open(url) as led:
                rep = verify_ledger(led)
                assert rep.problems == [], rep.problems
                sizes.add(rep.size)
            runs += 1
    finally:
        assert [p.wait(timeout=300) for p in procs] == [0, 0]
    assert len(sizes) >= 2, f"verify never ran between two commits ({runs} runs)"


@pytest.mark.parametrize("as_json", [False, True], ids=["text", "json"])
def test_init_never_prints_the_password(tmp_path: Path, new_db: str, as_json: bool,
                                        capsys: pytest.CaptureFixture[str]) -> None:
    """`ledger init` names the ledger as backend.display does: a URL's password (in
    the userinfo or as ?password=) is shown as ***, on the terminal and in --json."""
    user = new_db.split("://", 1)[1].split("@", 1)[0]
    with_pw = new_db.replace(f"://{user}@", f"://{user}:s3cr3t-pw@", 1)
    assert with_pw != new_db
    url = with_pw + "?password=other-s3cr3t"
    argv = ["ledger", "init", "--ledger", url, "--origin", "t.example/pw",
            "--key-file", str(tmp_path / "k.key"), *(["--json"] if as_json else [])]
    assert main(argv) == 0
    out = capsys.readouterr()
    assert "s3cr3t" not in out.out + out.err
    assert "***" in out.out
    if as_json:
        import json
        assert json.loads(out.out)["ledger"].count("***") == 2


def test_a_schema_2_database_migrates_its_held_entries(tmp_path: Path, new_db: str) -> None:
    """A ledger database from before schemas 3 and 4 (no revocations table, its
    `pending` without prev, kind, t) is upgraded on open: the columns are added and every
    held row gets the fields its body says; a reconcile afterwards accepts the held tail
    once a checkpoint covers it."""
    from hashtrail.formats.entry import parse_entry

    d = Device(7300)
    d.readings(12)
    with trust(Ledger.create(new_db, "t.example/mig", key_file=tmp_path / "k.key")) as led:
        r = reconcile(led, bundle([d], cps=[(d, d.checkpoint(seq=5))]))
        assert r.accepted == 6 and r.pending == 7
    # as schema 2 left it: no revocations table (schema 3), no walk columns (schema 4)
    _rows(new_db, "DROP TABLE revocations")
    _rows(new_db, "ALTER TABLE pending DROP COLUMN prev, DROP COLUMN kind, DROP COLUMN t")
    _rows(new_db, "UPDATE meta SET value='2' WHERE key='schema'")
    with Ledger.open(new_db) as led:
        assert led.size == 6
    assert _rows(new_db, "SELECT value FROM meta WHERE key='schema'") == [
        (str(storage_pg.SCHEMA_VERSION),)]
    held = _rows(new_db, "SELECT body, prev, kind, t FROM pending ORDER BY seq")
    assert len(held) == 7
    for body, prev, kind, t in held:
        e = parse_entry(bytes(body))                 # type: ignore[arg-type]
        assert (bytes(prev), kind, t) == (e.prev, e.kind, e.t)   # type: ignore[arg-type]
    with Ledger.open_signing(new_db, tmp_path / "k.key") as led:
        r = reconcile(led, bundle([d], ranges={d.id_hex: (12, 13)},
                                  cps=[(d, d.checkpoint(seq=12))]))
        assert r.accepted == 7 and led.size == 13 and verify_ledger(led).ok


def _old_rows_are_dropped(tmp: Path, new_db: str, secret: int, level: int, count: int,
                          schema: int) -> None:
    """A ledger database at `schema` keeps a row per node of `level` in `nodes` (leaf
    hashes before schema 5, level-1 nodes before schema 7): the upgrade drops them, they
    then come from the entries rows and are the same, and the ledger verifies and takes
    more entries without writing such rows again."""
    d = Device(secret)
    d.readings(20)
    with trust(Ledger.create(new_db, f"t.example/level{level}", key_file=tmp / "k.key")) as led:
        reconcile(led, bundle([d], ranges={d.id_hex: (0, 11)},
                              cps=[(d, d.checkpoint(seq=10))]))
        assert led.size == 11
        want = [led.node(level, i) for i in range(count)]
        root = led.root()
        # as the old schema left it: a row per node of that level
        with led.transaction():
            led.storage.add_nodes([(level, i, h) for i, h in enumerate(want)])
    _rows(new_db, f"UPDATE meta SET value='{schema}' WHERE key='schema'")
    assert _rows(new_db, f"SELECT COUNT(*) FROM nodes WHERE level={level}") == [(count,)]
    with Ledger.open(new_db) as led:
        assert [led.node(level, i) for i in range(count)] == want and led.root() == root
        assert led.nodes(level, 0, count - 1) == want
    assert _rows(new_db, "SELECT COUNT(*) FROM nodes WHERE level<2") == [(0,)]
    assert _rows(new_db, "SELECT value FROM meta WHERE key='schema'") == [
        (str(storage_pg.SCHEMA_VERSION),)]
    with Ledger.open_signing(new_db, tmp / "k.key") as led:
        r = reconcile(led, bundle([d], ranges={d.id_hex: (11, 21)},
                                  cps=[(d, d.checkpoint(seq=20))]))
        assert r.accepted == 10 and led.size == 21 and verify_ledger(led).ok
        assert _rows(new_db, "SELECT COUNT(*) FROM nodes WHERE level<2") == [(0,)]


def test_a_schema_6_database_drops_its_level_1_nodes(tmp_path: Path, new_db: str) -> None:
    _old_rows_are_dropped(tmp_path, new_db, 7401, level=1, count=5, schema=6)


def test_a_schema_4_database_drops_its_stored_leaf_hashes(tmp_path: Path, new_db: str) -> None:
    _old_rows_are_dropped(tmp_path, new_db, 7400, level=0, count=11, schema=4)
