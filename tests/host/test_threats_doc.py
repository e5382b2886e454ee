"""docs/THREATS.md stays honest: every row names tests, and every named test exists.

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
              "reconcile killed"]


def rows() -> list[list[str]]:
    """The table rows (cells stripped), without the header and separator lines."""
    out = []
    for line in DOC.read_text().splitlines():
        if line.startswith("| ") and not line.startswith("| ---"):
            out.append([c.strip() for c in line.strip().strip("|").split(" | ")])
    assert out and out[0][0] == "attack or fault", "THREATS.md lost its table header"
    return out[1:]


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


def _refs() -> list[tuple[str, str, str]]:
    return sorted({(p, n, params) for cells in rows() for p, n, params in REF.findall(cells[3])})


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
