"""docs/THREATS.md stays honest: every row names tests, and every named test exists.

Two parts are checked: the attack table (one row per attack or fault) and "Who can do
what" (one table per party: each line is a "can" or a "cannot", and each names the
test that fails if the line stops being true).

Why AST and not imports: the named tests include MicroPython device tests
(tests/firmware/, run by the unix port through a harness), which CPython cannot import
but can parse. A row's claim is only as good as the test it cites, so a renamed or
deleted test must break this check, not silently orphan the row.
"""

from __future__ import annotations

import ast
import re
from functools import cache
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
DOC = ROOT / "docs" / "THREATS.md"
REF = re.compile(r"`(tests/[\w/]+\.py)::([\w:]+)(\[[^\]`]*\])?`")
# The brief's table (what the verifier must catch): each must have its own row.
BRIEF_ROWS = ["payload edited on flash", "edited in transit", "edited in a bundle",
              "deleted from the middle", "reordered", "duplicated",
              "truncated before collection", "checkpoint replayed", "unknown device",
              "revoked", "cloned device", "rolled-back device", "overlapping ranges",
              "noise or repl output", "power lost", "flash full", "collector killed",
              "reconcile killed", "rewritten with links and crcs recomputed, no key",
              "spelling an enrolled device's id differently",
              "appends a reading the device never made"]
# "Who can do what": the parties issue 10 names, each with a table of its own.
PARTIES = ["someone with the flash", "a collector", "the ledger operator", "the network",
           "a witness"]
WHO = "## Who can do what"


def _table_lines(lines: list[str]) -> list[list[str]]:
    return [[c.strip() for c in line.strip().strip("|").split(" | ")]
            for line in lines if line.startswith("| ") and not line.startswith("| ---")]


def _sections() -> tuple[list[str], list[str]]:
    """The document's lines before "Who can do what", and from it on."""
    lines = DOC.read_text().splitlines()
    assert WHO in lines, f"THREATS.md lost its section {WHO!r}"
    i = lines.index(WHO)
    return lines[:i], lines[i:]


def rows() -> list[list[str]]:
    """The attack table's rows (cells stripped), without the header and separator."""
    out = _table_lines(_sections()[0])
    assert out and out[0][0] == "attack or fault", "THREATS.md lost its table header"
    return out[1:]


def party_tables() -> dict[str, list[list[str]]]:
    """"Who can do what": each party's heading (lower case) -> its table rows."""
    out: dict[str, list[list[str]]] = {}
    heading = None
    for line in _sections()[1][1:]:
        if line.startswith("### "):
            heading = line[4:].strip().lower()
            out[heading] = []
        elif line.startswith("| ") and heading is not None:
            out[heading].append(line)
    tables = {}
    for h, lines in out.items():
        t = _table_lines(lines)
        assert t and t[0] == ["can / cannot", "what", "tests"], f"party {h!r}: bad table"
        tables[h] = t[1:]
    return tables


@cache
def defined_tests(path: str) -> set[str]:
    """`name` and `Class::name` of every test function defined in a test file."""
    tree = ast.parse((ROOT / path).read_text(), path)
    names: set[str] = set()
    for node in tree.body:
        if isinstance(node, ast.FunctionDef) and node.name.startswith("test_"):
            names.add(node.name)
        elif isinstance(node, ast.ClassDef):
            names |= {f"{node.name}::{f.name}" for f in node.body
                      if isinstance(f, ast.FunctionDef) and f.name.startswith("test_")}
    return names


def test_table_shape_and_every_row_names_a_test() -> None:
    table = rows()
    assert len(table) >= len(BRIEF_ROWS)
    for cells in table:
        assert len(cells) == 4, f"row needs 4 columns: {cells[0]!r}"
        assert all(cells[:2]), f"empty cell in row {cells[0]!r}"
        assert REF.findall(cells[3]), f"row {cells[0]!r} names no test"
        assert not REF.findall(" ".join(cells[:3])), f"tests outside the tests column: {cells[0]!r}"


def test_every_brief_threat_has_a_row() -> None:
    firsts = [cells[0].lower() for cells in rows()]
    missing = [k for k in BRIEF_ROWS if not any(k in f for f in firsts)]
    assert not missing, f"THREATS.md has no row for: {missing}"


def test_who_can_do_what_has_every_party_and_every_line_names_a_test() -> None:
    tables = party_tables()
    missing = [p for p in PARTIES if not any(h.startswith(p) for h in tables)]
    assert not missing, f"'Who can do what' has no table for: {missing}"
    for h, table in tables.items():
        assert table, f"party {h!r} has an empty table"
        for cells in table:
            assert len(cells) == 3, f"party {h!r}: a line needs 3 columns: {cells}"
            assert cells[0] in ("can", "cannot"), f"party {h!r}: {cells[0]!r}"
            assert cells[1], f"party {h!r}: a line says nothing"
            # a "cannot" is only as good as the test that fails when it becomes false;
            # a "can" (a limitation) only as good as the test that shows it
            assert REF.findall(cells[2]), f"party {h!r}: {cells[1]!r} names no test"
            assert not REF.findall(cells[1]), f"party {h!r}: test outside the tests column"
    for p in PARTIES:
        kinds = {c[0] for h, t in tables.items() if h.startswith(p) for c in t}
        assert kinds == {"can", "cannot"}, f"party {p!r} needs both can and cannot: {kinds}"


def _refs() -> list[tuple[str, str, str]]:
    cells = [r[3] for r in rows()] + [r[2] for t in party_tables().values() for r in t]
    return sorted({(p, n, params) for c in cells for p, n, params in REF.findall(c)})


@pytest.mark.parametrize(("path", "name", "params"), _refs())
def test_named_test_exists(path: str, name: str, params: str) -> None:
    assert (ROOT / path).is_file(), f"{path} does not exist"
    assert name in defined_tests(path), f"{path} defines no test {name}"
    if params:
        assert "parametrize" in (ROOT / path).read_text(), f"{path}::{name} is not parametrized"


def test_rows_that_admit_a_broken_promise_cite_a_strict_xfail() -> None:
    for cells in rows():
        if "xfail" not in cells[1] + cells[3]:
            continue
        texts = {p: (ROOT / p).read_text() for p, _, _ in REF.findall(cells[3])}
        assert any(re.search(r"xfail\(\s*strict=True", t) for t in texts.values()), \
            f"row {cells[0]!r} says xfail but cites no strict xfail"


def test_the_checker_catches_a_missing_test(tmp_path: Path) -> None:
    """The existence check is real: a name that is not defined is not found."""
    assert "test_edited_entry_with_fixed_crc_breaks_the_chain" in \
        defined_tests("tests/threats/test_threats_flash.py")
    assert "test_no_such_thing" not in defined_tests("tests/threats/test_threats_flash.py")
    assert "test_torn_tail_is_cut_and_appending_resumes" in \
        defined_tests("tests/firmware/test_logstore.py")
