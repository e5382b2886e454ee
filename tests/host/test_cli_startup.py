"""`hashtrail COMMAND` registers and imports that command alone (cli.named_command):
the other commands' modules, and what they import, stay unloaded. Without a command
(the top-level help, --version, a misspelt name) every command is there."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from hashtrail.cli import COMMANDS, named_command


@pytest.mark.parametrize(("argv", "want"), [
    (["ledger", "prove", "--device", "ledger"], "ledger"),
    (["-v", "verify-log", "x"], "verify_log"),
    (["-q", "-v", "collect", "--help"], "collect"),
    (["--help", "collect"], None),
    (["--version"], None),
    (["-v"], None),
    ([], None),
    (["verify_log"], "verify_log"),     # (argparse refuses that spelling itself)
    (["bogus", "ledger"], None),
])
def test_the_command_is_the_first_word_that_is_not_an_option(argv: list[str],
                                                             want: str | None) -> None:
    assert named_command(argv) == want


def _loaded(*argv: str) -> list[str]:
    script = ("import json, sys\nfrom hashtrail.cli import main\ntry:\n"
              f"    main({list(argv)!r})\nexcept SystemExit:\n    pass\n"
              "print(json.dumps(sorted(m for m in sys.modules if m.startswith('hashtrail.'))))")
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                         check=True)
    loaded: list[str] = json.loads(out.stdout.splitlines()[-1])
    return loaded


def test_a_command_loads_its_own_module_not_the_others() -> None:
    loaded = _loaded("verify-log", "--help")
    assert [c for c in COMMANDS if f"hashtrail.cli.{c}" in loaded] == ["verify_log"]
    for heavy in ("hashtrail.sim", "hashtrail.ledger.reconcile", "hashtrail.web"):
        assert heavy not in loaded


def test_without_a_command_every_command_is_there(capsys: pytest.CaptureFixture[str]
                                                  ) -> None:
    loaded = _loaded("--help")
    assert all(f"hashtrail.cli.{c}" in loaded for c in COMMANDS)
    from hashtrail.cli import main
    with pytest.raises(SystemExit):
        main(["--help"])
    helps = capsys.readouterr().out
    assert all(c.replace("_", "-") in helps for c in COMMANDS)
