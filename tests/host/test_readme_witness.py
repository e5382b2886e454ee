"""The README's witness, evidence and devices sections run as printed (issue 15 item 7):
their shell blocks, placeholders filled in, against a real ledger with a forked device
and a witness that was shown a split view."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

from hashtrail.ledger.ledger_db import Ledger
from hashtrail.ledger.reconcile import reconcile
from ledgerkit import Device, bundle, trust
from mutation_vectors import by_name

ROOT = Path(__file__).resolve().parents[2]
SECTIONS = ("## Witnesses, consistency and evidence", "## Devices and one device's log")


def _blocks(heading: str) -> list[str]:
    text = (ROOT / "README.md").read_text()
    body = text.split(heading + "\n", 1)[1].split("\n## ", 1)[0]
    return re.findall(r"```sh\n(.*?)```", body, re.S)


def _run(script: str, cwd: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    prelude = f'set -e\nhashtrail() {{ "{sys.executable}" -m hashtrail.cli "$@"; }}\n'
    p = subprocess.run(["bash", "-c", prelude + script], cwd=cwd, env=env,
                       capture_output=True, text=True, timeout=300)
    assert p.returncode == 0 and "Traceback" not in p.stderr, (script, p.stdout, p.stderr)
    return p


def _dev(n: int, secret: int) -> Device:
    d = Device(secret, per_entry_sig=True)
    d.readings(n)
    return d


def test_readme_witness_evidence_and_devices_blocks_run_as_printed(tmp_path: Path) -> None:
    witness, evidence = _blocks(SECTIONS[0])
    (devices,) = _blocks(SECTIONS[1])
    db = tmp_path / "ledger.db"
    d = _dev(10, 3001)
    clone = d.fork(6)
    clone.readings(3)
    d.update("0.1.0", "0.2.0", 3, bytes(range(32)))    # a signed update, after the fork
    d.readings(1)
    with trust(Ledger.create(db, "example.com/hashtrail")) as led:
        reconcile(led, bundle([d]))
        reconcile(led, bundle([clone], name="c2"))      # the device's key: two histories
        vkey = led.verifier.to_string()
    env = dict(os.environ, LEDGER_KEY=vkey)
    out = _run(witness, tmp_path, env)
    assert "cosigned: example.com/hashtrail" in out.stderr
    assert (tmp_path / "witness.state").exists() and (tmp_path / "cosigned.txt").exists()
    # the operator then shows the witness a view that does not extend the one it cosigned
    other = tmp_path / "other.db"
    shutil.copyfile(db, other)
    for path, dev in ((db, _dev(4, 3002)), (other, _dev(6, 3003))):
        with Ledger.open_signing(path, tmp_path / "ledger.db.key") as led:
            reconcile(led, bundle([dev]))
            (path.with_suffix(".cp")).write_bytes(led.sign_checkpoint())
    cosign = ["ledger", "cosign", "--key", "witness.key", "--state", "witness.state",
              "--verifier-key", vkey]
    for path, code in ((db, 0), (other, 1)):
        p = subprocess.run([sys.executable, "-m", "hashtrail.cli", *cosign, "--ledger",
                            str(path), str(path.with_suffix(".cp"))], cwd=tmp_path,
                           capture_output=True, text=True, timeout=60)
        assert p.returncode == code, p.stderr
    assert (tmp_path / "witness.inconsistent.json").exists()
    out = _run(evidence.replace("DEVICE_ID", d.id_hex), tmp_path, env)
    assert "fork proven" in out.stdout and "split view proven" in out.stdout
    v = by_name("happy-path")
    (tmp_path / "log").mkdir()
    for s in v["segments"]:
        (tmp_path / "log" / s["name"]).write_bytes(bytes.fromhex(s["data"]))
    out = _run(devices.replace("DEVICE_PUBKEY", v["pub"]).replace("DEVICE_ID", d.id_hex),
               tmp_path, env)
    assert "FORKED" in out.stdout and "OK" in out.stdout and "revoked" in out.stdout
    assert "fw 0.2.0 (1 update)" in out.stdout
    assert f"0.1.0 -> 0.2.0  counter 3  manifest {bytes(range(32)).hex()}" in out.stdout
