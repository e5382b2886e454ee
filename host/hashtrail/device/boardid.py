"""Which board is on the port: what the device says it is, against a board definition.

Why: copying firmware built for one board onto another leaves a device that cannot
start (`deploy --board esp32` onto a virtual device once "succeeded" and the app
then died on `machine.Pin`). So `deploy` asks the device first, over the raw REPL the
way mpremote does, and compares the answer with the `identify` section of the board
definition asked for. What identifies a board is data in boards/*.json, never a branch
here: each key of `identify` names one fact below and lists the values it may have
(`null` = the device does not report that fact).

Facts, as MicroPython reports them (no hashtrail code on the device is needed):
- `platform`: `sys.platform` ("esp32" on every ESP32 variant, "linux"/"darwin" on the
  unix port that runs the virtual board);
- `machine`: `sys.implementation._machine`, e.g. "Generic ESP32S3 module with ESP32S3";
- `sysname`, `uname_machine`: `os.uname()` where the port has it (the unix port has not);
- `mcu`: the chip the firmware was built for, the part of `machine` after its last
  " with " (MicroPython's MICROPY_HW_BOARD_NAME " with " MICROPY_HW_MCU_NAME), e.g.
  "ESP32S3"; None when `machine` does not follow that form (the unix port).

Pure: the probe runs elsewhere (deploy.py); this module only builds the probe's source,
parses its one line of JSON and judges it.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass

from hashtrail.device.boards import Board, board_names, load_board
from hashtrail.errors import ConfigError, FormatError

FACTS = ("platform", "machine", "sysname", "uname_machine", "mcu")

# Device side: one JSON line; nothing is written, nothing imported beyond sys/os/json.
PROBE_CODE = """\
import sys, json
try:
    import os
    _u = os.uname()
    _s, _m = _u.sysname, _u.machine
except (ImportError, AttributeError):
    _s = _m = None
print(json.dumps({'platform': sys.platform,
                  'machine': getattr(sys.implementation, '_machine', None),
                  'sysname': _s, 'uname_machine': _m}))
"""


@dataclass(frozen=True)
class DeviceFacts:
    platform: str | None
    machine: str | None
    sysname: str | None
    uname_machine: str | None
    mcu: str | None

    def get(self, fact: str) -> str | None:
        v: str | None = getattr(self, fact)
        return v

    def describe(self) -> str:
        """One phrase, e.g. "sys.platform 'esp32', machine 'Generic ESP32 module with
        ESP32' (MCU ESP32)"."""
        text = f"sys.platform {self.platform!r}, machine {self.machine!r}"
        return text + (f" (MCU {self.mcu})" if self.mcu else " (no MCU named)")

    def to_json(self) -> dict[str, str | None]:
        return asdict(self)


def parse_facts(output: bytes | str) -> DeviceFacts:
    """The probe's output: the last non-empty line must be its JSON object."""
    text = output.decode("utf-8", "replace") if isinstance(output, bytes) else output
    lines = [ln for ln in text.splitlines() if ln.strip()]
    try:
        raw = json.loads(lines[-1]) if lines else None
    except ValueError:
        raw = None
    if not isinstance(raw, dict):
        raise FormatError(f"the device's answer to the board probe is not JSON: {text[-200:]!r}")

    def field(name: str) -> str | None:
        v = raw.get(name)
        if v is not None and not isinstance(v, str):
            raise FormatError(f"board probe: {name} is {type(v).__name__}, not a string")
        return v

    machine = field("machine")
    mcu = machine.rsplit(" with ", 1)[1].strip() if machine and " with " in machine else None
    return DeviceFacts(platform=field("platform"), machine=machine, sysname=field("sysname"),
                       uname_machine=field("uname_machine"), mcu=mcu or None)


def identify_rules(board: Board) -> dict[str, list[str | None]]:
    """The board's `identify` section, checked: known facts, each a non-empty list of
    strings or null. A board without one cannot be identified, which is an error."""
    rules = board.raw.get("identify")
    if not isinstance(rules, dict) or not rules:
        raise ConfigError(f"boards/{board.name}.json has no identify section",
                          hint="add one: which sys.platform / MCU the board reports")
    out: dict[str, list[str | None]] = {}
    for fact, allowed in rules.items():
        if fact not in FACTS:
            raise ConfigError(f"boards/{board.name}.json identify: unknown fact {fact!r}",
                              hint=f"known facts: {', '.join(FACTS)}")
        if (not isinstance(allowed, list) or not allowed
                or any(v is not None and not isinstance(v, str) for v in allowed)):
            raise ConfigError(f"boards/{board.name}.json identify.{fact}: a non-empty list "
                              "of strings or null")
        out[fact] = list(allowed)
    return out


def mismatches(board: Board, facts: DeviceFacts) -> list[str]:
    """The facts that rule `board` out, as "fact 'got' (board wants 'a' or 'b')"."""
    out = []
    for fact, allowed in identify_rules(board).items():
        got = facts.get(fact)
        if got not in allowed:
            want = " or ".join("none" if v is None else repr(v) for v in allowed)
            out.append(f"{fact} {'none' if got is None else repr(got)} "
                       f"(board {board.name} wants {want})")
    return out


def matching_boards(facts: DeviceFacts) -> list[str]:
    """Every board definition the device's facts fit."""
    return [name for name in board_names() if not mismatches(load_board(name), facts)]


def describe_rules(board: Board) -> str:
    """What a board expects, in one phrase (for messages)."""
    parts = []
    for fact, allowed in identify_rules(board).items():
        parts.append(f"{fact} " + "/".join("none" if v is None else str(v) for v in allowed))
    return ", ".join(parts)
