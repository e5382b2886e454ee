"""The README's PostgreSQL block runs as printed, against the test server.

The block of "A ledger in PostgreSQL" is taken from README.md as it is and run by bash
in the project's environment. Only placeholders are filled in: the database name
`hashtrail` becomes a fresh `hashtrail_test_<random>` (dropped after), the two bundles
(site-a.jsonl, site-b.jsonl) are overlapping bundles of host-made device chains signed
by one collector whose key is $SITE_A_KEY, and $LEDGER_KEY is what `ledger init`
prints. The commands up to `ledger init` run first (its output gives $LEDGER_KEY); the
rest runs as one script, so the two backgrounded reconciles really run at once.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "tests" / "host"))
import pgtest  # noqa: E402
from ledgerkit import COLLECTOR, Device, bundle, save  # noqa: E402

pytestmark = [pytest.mark.e2e, pytest.mark.postgresql]
ACTIVATE = Path(sys.executable).parent / "activate"
HEADING = "## A ledger in PostgreSQL (many collectors at once)"


def _block() -> str:
    text = (ROOT / "README.md").read_text()
    section = text.split(HEADING + "\n", 1)[1].split("\n## ", 1)[0]
    blocks = re.findall(r"```sh\n(.*?)```", section, re.S)
    assert len(blocks) == 1, "the PostgreSQL section has one shell block"
    return str(blocks[0])


def _bash(script: str, cwd: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["bash", "-c", f'set -e\n. "{ACTIVATE}"\n{script}\n'], cwd=cwd,
                          env=env, capture_output=True, text=True, timeout=300)


def _ok(p: subprocess.CompletedProcess[str], what: str) -> str:
    assert p.returncode == 0, f"{what}\nexit {p.returncode}\n{p.stdout[-3000:]}{p.stderr[-3000:]}"
    assert "Traceback" not in p.stderr, p.stderr
    return p.stdout


def test_readme_postgresql_block_runs(tmp_path: Path) -> None:
    pgtest.require_server()
    with pgtest.databases() as made:
        name = "hashtrail_test_readme_" + os.urandom(4).hex()
        made.append(name)                        # dropped after, however the test ends
        _run(tmp_path, name)


def _run(tmp_path: Path, name: str) -> None:
    block = _block()
    assert "createdb -h 127.0.0.1 -U postgres hashtrail " in block
    block = block.replace("createdb -h 127.0.0.1 -U postgres hashtrail ",
                          f"createdb -h 127.0.0.1 -U postgres {name} ")
    block = block.replace("postgresql://postgres@127.0.0.1/hashtrail ",
                          f"{pgtest.url_of(name)} ")
    devs = [Device(9300 + k, per_entry_sig=k == 1) for k in range(3)]
    for d in devs:
        d.readings(80)
    save(bundle(devs, {d.id_hex: (0, 60) for d in devs},
                [(d, d.checkpoint(seq=59)) for d in devs], name="site A"),
         tmp_path / "site-a.jsonl")
    save(bundle(devs, {d.id_hex: (30, 81) for d in devs}, [(d, d.checkpoint()) for d in devs],
                name="site B"), tmp_path / "site-b.jsonl")
    env = {**{k: v for k, v in os.environ.items() if k != "VIRTUAL_ENV"},
           "PYTHONPATH": str(ROOT / "host"), "SITE_A_KEY": COLLECTOR.verifier().to_string()}
    env.pop("HASHTRAIL_LEDGER_KEY", None)
    head, rest = block.split("\nhashtrail ledger trust", 1)
    out = _ok(_bash(head, tmp_path, env), head)
    env["LEDGER_KEY"] = re.search(r"verifier key: (\S+)", out).group(1)  # type: ignore[union-attr]
    out = _ok(_bash("hashtrail ledger trust" + rest, tmp_path, env), rest)
    assert "verify: OK" in out
    assert (tmp_path / "ledger.key").stat().st_mode & 0o777 == 0o600
    from hashtrail.ledger.ledger_db import Ledger
    with Ledger.open(pgtest.url_of(name)) as led:
        assert led.size == 3 * 81
