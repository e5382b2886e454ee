"""Test helper: a real ledger (a SQLite file, or a PostgreSQL database) filled by the
real reconcile from chains the REAL firmware wrote (devlog on the MicroPython unix
port, via fwimage), for proof tests.

`firmware_ledger(tmp, sign)` runs the device's log on a littlefs image (per-entry
signed when `sign`, i.e. signing policy 1 in entry 0; else checkpoints only), reads the
records back from the image, puts them in a bundle signed by the test collector
(ledgerkit.COLLECTOR, trusted by the ledger) and reconciles it. Nothing is made up on
the host side: every entry, per-entry signature and checkpoint is the device's.
"""

from __future__ import annotations

import hashlib
import io
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cbor2
import pytest
from fwimage import BLOCK, device_image, log_records
from hashtrail.chain.devicecheck import DeviceKey
from hashtrail.cli import main
from hashtrail.collector.bundle import Bundle, BundleCheckpoint, parse_bundle, write_bundle
from hashtrail.collector.store import Enrollment, RawEntry
from hashtrail.device.imagefs import read_image
from hashtrail.formats.keys import KEY_PATH, parse_key_file
from hashtrail.formats.leaf import leaf_bytes
from hashtrail.formats.records import MAGIC_CHECKPOINT, Record
from hashtrail.ledger.ledger_db import Ledger
from hashtrail.ledger.reconcile import reconcile
from ledgerkit import COLLECTOR, trust

ORIGIN = "proof.example/ledger"
LABEL = "cold room 1"


@dataclass
class FirmwareLedger:
    path: Path | str        # a SQLite file, or a PostgreSQL URL
    device_id: str
    pub: bytes
    records: list[Record]
    verifier_key: str       # the ledger's, as `ledger init` prints it
    tip: int                # last accepted seq
    key: Path | None = None                 # its key file
    databases: list[str] | None = None      # PostgreSQL: copies are dropped with these


def signed_bundle(entries: list[tuple[str, RawEntry]], enroll: list[Enrollment],
                  cps: list[BundleCheckpoint]) -> Bundle:
    b = Bundle("00" * 8, "c1", 1_700_000_000, enroll, entries, cps)
    buf = io.StringIO()
    write_bundle(b, buf, COLLECTOR)
    return parse_bundle(io.BytesIO(buf.getvalue().encode("ascii")))


def device_records(tmp: Path, sign: bool, readings: int = 40) -> tuple[bytes, list[Record]]:
    image, _last, _head = device_image(tmp, sign, readings)
    files = read_image(image, BLOCK)
    recs, problems = log_records(files)
    assert problems == []
    return parse_key_file(files[KEY_PATH]).pub, recs


def firmware_ledger(tmp: Path, sign: bool, target: str | None = None,
                    databases: list[str] | None = None) -> FirmwareLedger:
    """The ledger in `tmp` (ledger.db), or at `target` (a PostgreSQL URL; its key file
    then tmp/ledger.key, and `databases` the list its copies are dropped with)."""
    tmp.mkdir(parents=True, exist_ok=True)
    pub, recs = device_records(tmp, sign)
    key = DeviceKey(pub)
    did = key.id
    entries = [(did, RawEntry(r.seq, r.body, r.sig)) for r in recs if r.is_entry]
    cps = [BundleCheckpoint(did, r.body, key.checkpoint(r.body).nonce)
           for r in recs if r.magic == MAGIC_CHECKPOINT]
    b = signed_bundle(entries, [Enrollment(did, pub, LABEL, "unix", "0.1.0", 1_700_000_000)],
                      cps)
    path: Path | str = tmp / "ledger.db" if target is None else target
    key = Path(f"{path}.key") if target is None else tmp / "ledger.key"
    with trust(Ledger.create(path, ORIGIN, key_file=key)) as led:
        res = reconcile(led, b)
        assert res.findings == [] and res.accepted > 20, res
        dev = led.device(did)
        assert dev is not None
        return FirmwareLedger(path, did, pub, recs, led.verifier.to_string(), dev.tip_seq,
                              key, databases)


# -- the CLI, and what the ledger operator can do with the ledger file and key --------------

def copy_ledger(fw: FirmwareLedger, tmp: Path) -> Path:
    """A private copy of the module's ledger and its key file (the operator holds
    both), for a test that changes it."""
    tmp.mkdir(parents=True, exist_ok=True)
    p = tmp / "ledger.db"
    p.write_bytes(fw.path.read_bytes())
    key = tmp / "ledger.db.key"
    key.write_bytes(Path(f"{fw.path}.key").read_bytes())
    key.chmod(0o600)
    return p


def copy_of(fw: FirmwareLedger, tmp: Path) -> tuple[Path | str, Path]:
    """A private copy of the module's ledger and its key file, on the ledger's backend
    (a PostgreSQL ledger: CREATE DATABASE ... TEMPLATE, dropped with fw.databases)."""
    if isinstance(fw.path, Path):
        p = copy_ledger(fw, tmp)
        return p, Path(f"{p}.key")
    import os

    import pgtest
    import psycopg
    assert fw.databases is not None and fw.key is not None
    name = f"hashtrail_test_{os.urandom(6).hex()}"
    with psycopg.connect(pgtest.ADMIN, autocommit=True) as c:
        c.execute(f'CREATE DATABASE "{name}" TEMPLATE "{fw.path.rsplit("/", 1)[1]}"')
    fw.databases.append(name)
    tmp.mkdir(parents=True, exist_ok=True)
    key = tmp / "ledger.key"
    key.write_bytes(fw.key.read_bytes())
    key.chmod(0o600)
    return pgtest.url_of(name), key


def cli(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    capsys.readouterr()
    try:
        code = main(list(argv))
    except SystemExit as e:     # argparse refuses an argument itself (exit 2, one line)
        code = int(e.code or 0)
    out = capsys.readouterr()
    return code, out.out, out.err


def prove(capsys: pytest.CaptureFixture[str], led: Path | str, did: str, seq: int,
           *extra: str) -> dict[str, Any]:
    code, out, err = cli(capsys, "ledger", "prove", "--ledger", str(led), "--device", did,
                          "--seq", str(seq), "--json", *extra)
    assert code == 0, err
    doc: dict[str, Any] = json.loads(out)
    return doc


def verify_proof(capsys: pytest.CaptureFixture[str], tmp: Path, doc: dict[str, Any], vkey: str,
            *extra: str) -> tuple[int, str, str]:
    p = tmp / "proof.json"
    p.write_text(json.dumps(doc, indent=1))
    return cli(capsys, "ledger", "verify-proof", "--verifier-key", vkey, *extra, str(p))


def accepted_row(led: Ledger, did: str, seq: int) -> tuple[int, bytes, bytes, bytes | None]:
    """(leaf index, entry hash, entry bytes, per-entry signature) straight from the
    `entries` table, as the operator reads it."""
    row = led.storage.entry(did, seq)
    assert row is not None
    return row.leaf_index, row.entry_hash, row.body, row.sig


def forged_entry(led: Ledger, did: str) -> tuple[int, bytes]:
    """Entry bytes the device never made: a well-formed reading that links to the
    device's accepted head, with the next seq."""
    dev = led.device(did)
    assert dev is not None
    _index, last_hash, last_body, _sig = accepted_row(led, did, dev.tip_seq)
    m = cbor2.loads(last_body)
    seq = dev.tip_seq + 1
    m.update({1: seq, 5: last_hash, 7: 0, 8: [{0: "temp", 1: "Cel", 2: -40.0}]})
    return seq, cbor2.dumps(m, canonical=True)


def operator_appends(path: Path | str, did: str, sig: bytes | None,
                     key: Path | None = None) -> int:
    """The operator, with the ledger and its key: append a leaf for the enrolled
    device (Ledger API), with its entries row, and sign a new checkpoint."""
    with Ledger.open_signing(path, key) as led:
        seq, body = forged_entry(led, did)
        h = hashlib.sha256(body).digest()
        dev = led.device(did)
        assert dev is not None
        with led.transaction():
            index = led.append_leaf(leaf_bytes(did, seq, body))
            led.storage.add_entries([(did, seq, index, h, body, sig)])
            led.storage.set_tip(did, seq, h, dev.tip_t)
        led.sign_checkpoint()
    return seq


def device_checkpoints(led: Ledger, did: str) -> list[tuple[int, bytes]]:
    return [(c.seq, c.cose) for c in led.storage.device_checkpoints(did)]
