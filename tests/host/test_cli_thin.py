"""The CLI stays thin (issue 11): every module in hashtrail/cli parses arguments, calls
library functions and prints; nothing else in the package reaches up into it.

Why a test: the rule erodes one convenient line at a time (a quick SQL query, a hash
computed next to a print). Read from the source with `ast`, nothing is imported or run:
- no cli module imports SQLite, hashlib, the Merkle tree, the proof builder/checker or
  the evidence checkers, and none calls `.execute*` (SQL belongs to the data layer,
  proofs and evidence to hashtrail.ledger, whose functions the commands call);
- no module outside hashtrail/cli imports hashtrail.cli or argparse, or captures stdout
  (the demo calls the library, never the CLI), except the `python -m hashtrail` shim;
- the library function behind a command returns what the command prints with --json.
"""

from __future__ import annotations

import ast
import json
from pathlib import Path
from typing import Any

import hashtrail
import pytest
from hashtrail.formats import note
from hashtrail.ledger import proof_file, trust
from hashtrail.ledger.audit import audit
from proofkit import cli, firmware_ledger

PACKAGE = Path(hashtrail.__file__).parent
CLI = PACKAGE / "cli"

# Modules a command must reach only through the library functions built on them.
CLI_FORBIDDEN = ("sqlite3", "hashlib", "hashtrail.formats.merkle", "hashtrail.ledger.proof",
                 "hashtrail.chain.evidence", "hashtrail.ledger.ledger_verify",
                 "hashtrail.chain.chainverify.verify_chain")
SQL_CALLS = {"execute", "executemany", "executescript"}
# What only the CLI may use: itself, argument parsing, stdout capture.
LIBRARY_FORBIDDEN = ("hashtrail.cli", "argparse", "contextlib.redirect_stdout")
SHIMS = {PACKAGE / "__main__.py"}      # `python -m hashtrail` runs the CLI


def _imports(tree: ast.AST) -> list[str]:
    """Every module (and module.name for `from m import name`) the source imports."""
    out = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out += [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module:
            out.append(node.module)
            out += [f"{node.module}.{a.name}" for a in node.names]
    return out


def _hits(names: list[str], forbidden: tuple[str, ...]) -> list[str]:
    return sorted({n for n in names for f in forbidden if n == f or n.startswith(f + ".")})


def cli_violations(source: str) -> list[str]:
    """What makes a cli module more than parse, call, print."""
    tree = ast.parse(source)
    bad = [f"imports {n}" for n in _hits(_imports(tree), CLI_FORBIDDEN)]
    bad += [f"calls .{node.func.attr}() (SQL) on line {node.lineno}"
            for node in ast.walk(tree)
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
            and node.func.attr in SQL_CALLS]
    return bad


def library_violations(source: str) -> list[str]:
    """What makes a library module depend on the command line."""
    return [f"imports {n}" for n in _hits(_imports(ast.parse(source)), LIBRARY_FORBIDDEN)]


def test_the_checks_catch_what_they_are_for() -> None:
    assert cli_violations("import sqlite3\n") == ["imports sqlite3"]
    assert cli_violations("from hashtrail.formats import merkle\n") == [
        "imports hashtrail.formats.merkle"]
    assert cli_violations("from hashtrail.ledger.proof import check_proof_doc\n")
    assert cli_violations("def f(led):\n    led.db.execute('SELECT 1')\n") == [
        "calls .execute() (SQL) on line 2"]
    assert cli_violations("from hashtrail.ledger import proof_file\n") == []
    assert library_violations("from hashtrail.cli.ledger import run_prove\n")
    assert library_violations("import argparse\n") == ["imports argparse"]
    assert library_violations("from contextlib import redirect_stdout\n")
    assert library_violations("from hashtrail.client import x\n") == []


def test_cli_modules_only_parse_call_and_print() -> None:
    mods = sorted(CLI.glob("*.py"))
    assert len(mods) > 10, CLI
    bad = {m.name: v for m in mods if (v := cli_violations(m.read_text()))}
    assert not bad, f"logic in the CLI; move it into a library module: {bad}"


def test_nothing_outside_the_cli_uses_it() -> None:
    mods = [m for m in sorted(PACKAGE.rglob("*.py"))
            if CLI not in m.parents and m not in SHIMS and "rom" not in m.parts]
    assert any(m.name == "demo.py" for m in mods)
    bad = {str(m.relative_to(PACKAGE)): v for m in mods
           if (v := library_violations(m.read_text()))}
    assert not bad, f"library modules that depend on the command line: {bad}"


def _same(lib: Any) -> Any:
    """A library result as the CLI prints it with --json (through JSON and back)."""
    return json.loads(json.dumps(lib))


def test_the_library_returns_what_the_cli_prints(tmp_path: Path,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    fw = firmware_ledger(tmp_path / "fw", sign=True)
    led, seq, vkey = str(fw.path), fw.tip // 2, fw.verifier_key

    def run(*argv: str) -> Any:
        code, out, err = cli(capsys, *argv, "--json")
        assert code == 0, err
        return json.loads(out)

    doc = run("ledger", "prove", "--ledger", led, "--device", fw.device_id, "--seq", str(seq))
    assert _same(proof_file.prove(led, fw.device_id, seq)) == doc
    assert _same(proof_file.consistency(led, 1)) == run("ledger", "consistency", "--ledger",
                                                        led, "--old", "1")
    pf = tmp_path / "proof.json"
    pf.write_text(json.dumps(doc))
    checked = proof_file.verify_proof_file(pf, note.Verifier.from_string(vkey))
    assert checked.check is not None and checked.check.seq == seq
    assert _same(checked.to_json()) == run("ledger", "verify-proof", "--verifier-key", vkey,
                                           str(pf))
    assert _same(audit(led, trusted=note.Verifier.from_string(vkey)).as_json()) == run(
        "verify", "--ledger", led, "--verifier-key", vkey)
    listed = run("ledger", "trusted", "--ledger", led)
    assert listed and [{"key": t.key, "name": t.name, "added_at": t.added_at}
                       for t in trust.trusted_collectors(led)] == listed
