"""Board identification (hashtrail.boardid) against what MicroPython ports really report.

The facts below are MicroPython's own strings: `sys.implementation._machine` is
MICROPY_HW_BOARD_NAME " with " MICROPY_HW_MCU_NAME (ports/esp32/boards/*/mpconfigboard.h),
`os.uname().sysname` and `sys.platform` are "esp32" on every ESP32 variant; the unix
port's are read from the micropython binary the virtual board runs.
"""

from __future__ import annotations

import json
import subprocess

import pytest
from hashtrail.device import boardid
from hashtrail.device.boards import Board, board_names, load_board
from hashtrail.errors import ConfigError, FormatError
from hashtrail.paths import venv_tool


def _esp(machine: str) -> str:
    return json.dumps({"platform": "esp32", "machine": machine, "sysname": "esp32",
                       "uname_machine": machine})


REPORTS = {
    "esp32": _esp("Generic ESP32 module with ESP32"),
    "esp32 with SPIRAM": _esp("Generic ESP32 module with SPIRAM with ESP32"),
    "esp32s3": _esp("Generic ESP32S3 module with ESP32S3"),
    "esp32c3": _esp("ESP32C3 module with ESP32C3"),
}
FITS = {"esp32": ["esp32"], "esp32 with SPIRAM": ["esp32"], "esp32s3": ["esp32s3"],
        "esp32c3": ["esp32c3"]}


def _unix_report() -> str:
    """The probe run by the real unix-port binary (what a virtual device answers)."""
    proc = subprocess.run([venv_tool("micropython"), "-c", boardid.PROBE_CODE],
                          capture_output=True, text=True, timeout=30, check=True)
    return proc.stdout


def test_every_board_definition_has_a_valid_identify_section() -> None:
    for name in board_names():
        assert boardid.identify_rules(load_board(name))


@pytest.mark.parametrize("device", sorted(REPORTS))
def test_each_esp32_variant_fits_exactly_its_own_board(device: str) -> None:
    facts = boardid.parse_facts(REPORTS[device])
    assert boardid.matching_boards(facts) == FITS[device]
    for other in board_names():
        if other not in FITS[device]:
            assert boardid.mismatches(load_board(other), facts)


def test_the_unix_port_fits_only_the_virtual_board() -> None:
    facts = boardid.parse_facts(_unix_report())
    assert facts.platform in ("linux", "darwin") and facts.mcu is None
    assert boardid.matching_boards(facts) == ["unix"]
    assert boardid.mismatches(load_board("esp32"), facts) == [
        f"platform {facts.platform!r} (board esp32 wants 'esp32')",
        "mcu none (board esp32 wants 'ESP32')"]


def test_a_board_without_identify_cannot_be_checked() -> None:
    b = load_board("esp32")
    raw = {k: v for k, v in b.raw.items() if k != "identify"}
    with pytest.raises(ConfigError, match="no identify section"):
        boardid.identify_rules(Board(**{**b.__dict__, "raw": raw}))
    with pytest.raises(ConfigError, match="unknown fact"):
        boardid.identify_rules(Board(**{**b.__dict__, "raw": {**raw, "identify": {"cpu": ["x"]}}}))


@pytest.mark.parametrize("out", ["", "Traceback...\nNameError: x\n", "[1, 2]",
                                 '{"platform": 3}'])
def test_a_probe_answer_that_is_not_the_probe_is_refused(out: str) -> None:
    with pytest.raises(FormatError):
        boardid.parse_facts(out)
