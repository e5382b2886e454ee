"""The device's copies of the format constants against the host's, read from the source.

Why: the firmware runs on MicroPython and cannot import the host package, so every
magic number, tag and map key exists twice: once in host/hashtrail/formats (and the
protocol's in device/link), once in firmware/lib as `const()`s folded into the device's
bytecode. Round-trip tests catch a drift only where a vector happens to exercise it;
this test compares the two definitions themselves. The firmware is read with `ast`,
never imported (it imports `micropython`), from firmware/lib/hashtrail/ or
firmware/lib/, wherever the module lives.
"""

from __future__ import annotations

import ast
from pathlib import Path
from typing import Any

import pytest
from hashtrail import paths
from hashtrail.device import link
from hashtrail.formats import checkpoint, entry, keys, manifest, records

_LIB = paths.FIRMWARE / "lib"


def _module_path(name: str, lib: Path) -> Path:
    for p in (lib / "hashtrail" / f"{name}.py", lib / f"{name}.py"):
        if p.is_file():
            return p
    raise AssertionError(f"firmware module {name!r} not found under {lib}")


def device_constants(name: str, lib: Path = _LIB) -> dict[str, Any]:
    """Module-level `NAME = const(value)` and `NAME = value` of a firmware module, for
    values that are literals or arithmetic on them."""
    out: dict[str, Any] = {}
    for node in ast.parse(_module_path(name, lib).read_text()).body:
        if not (isinstance(node, ast.Assign) and len(node.targets) == 1
                and isinstance(node.targets[0], ast.Name)):
            continue
        value = node.value
        if isinstance(value, ast.Call) and getattr(value.func, "id", "") == "const":
            value = value.args[0]
        if _is_constant(value):
            out[node.targets[0].id] = eval(compile(ast.Expression(value), name, "eval"),
                                           {"__builtins__": {}})
    return out


_ARITH = (ast.Add, ast.Sub, ast.Mult, ast.LShift, ast.USub)


def _is_constant(node: ast.AST) -> bool:
    """A literal, or arithmetic on literals (`4 + 32 + 65 + 4`): nothing else is run."""
    if isinstance(node, ast.Constant):
        return True
    if isinstance(node, ast.UnaryOp):
        return isinstance(node.op, _ARITH) and _is_constant(node.operand)
    if isinstance(node, ast.BinOp):
        return (isinstance(node.op, _ARITH) and _is_constant(node.left)
                and _is_constant(node.right))
    return False


def _same(module: str, pairs: dict[str, Any], lib: Path = _LIB) -> None:
    dev = device_constants(module, lib)
    missing = sorted(set(pairs) - set(dev))
    assert not missing, f"firmware {module}.py no longer defines {missing}"
    wrong = {k: (dev[k], v) for k, v in pairs.items() if dev[k] != v}
    assert not wrong, f"firmware {module}.py (device, host): {wrong}"


def test_records_on_flash() -> None:
    _same("logrec", {"ENTRY": records.MAGIC_ENTRY, "CHECKPOINT": records.MAGIC_CHECKPOINT,
                     "FLAG_SIG": records.FLAG_SIG})
    for module in ("logstore", "bootcheck", "bootfind"):
        _same(module, {"_HDR": records.HEADER, "_SIG": records.SIG_LEN})
    _same("link", {"_REC_ENTRY": records.MAGIC_ENTRY})


def test_device_key_file() -> None:
    _same("keyfile", {"_MAGIC": keys.KEY_FILE_MAGIC, "_KEY_LEN": keys.KEY_FILE_LEN})


def test_entry() -> None:
    names = ["VERSION", "KIND_READING", "KIND_BOOT", "KIND_TIME_SET", "KIND_KEY_CREATED",
             "KIND_OVERFLOW", "KIND_ACK", "KIND_LOG_ALTERED", "KIND_UPDATE",
             "KIND_UPDATE_REVERTED", "POLICY_CHECKPOINTS",
             "POLICY_EVERY_ENTRY"]
    _same("entry", {n: getattr(entry, n) for n in names}
          | {"_KIND_MAX": max(entry.KIND_NAMES), "_SENML_N": entry.SENML_N,
             "_SENML_U": entry.SENML_U, "_SENML_V": entry.SENML_V,
             "_GENESIS_TAG": keys.GENESIS_TAG})


def test_update_package() -> None:
    _same("update", {"_MAGIC": manifest.MAGIC, "_MAX_MANIFEST": manifest.MAX_MANIFEST,
                     "_REP_UPDATE": link.REP_UPDATE,
                     "_E_UPDATE": link.E_UPDATE, "_OP_BEGIN": link.UPDATE_BEGIN,
                     "_OP_DATA": link.UPDATE_DATA, "_OP_COMMIT": link.UPDATE_COMMIT,
                     "_OP_ABORT": link.UPDATE_ABORT, "_OP_PIN": link.UPDATE_PIN,
                     "_PROTECTED": bytes([0xA2, checkpoint.HDR_ALG, 0x26,
                                          checkpoint.HDR_KID, 0x50])})
    _same("updcheck", {"_MAX_FILES": manifest.MAX_FILES})
    _same("fwboot", {"_KIND_UPDATE": entry.KIND_UPDATE,
                     "_KIND_UPDATE_REVERTED": entry.KIND_UPDATE_REVERTED})
    _same("link", {"_E_UPDATE": link.E_UPDATE})


def test_checkpoint() -> None:
    cp = checkpoint
    _same("cose", {"_TAG_COSE_SIGN1": cp.TAG_COSE_SIGN1, "_ALG_ES256": cp.ALG_ES256,
                   "_HDR_ALG": cp.HDR_ALG, "_HDR_KID": cp.HDR_KID, "_P_V": cp.CP_V,
                   "_P_DEVICE": cp.CP_DEVICE, "_P_SEQ": cp.CP_SEQ, "_P_HEAD": cp.CP_HEAD,
                   "_P_T": cp.CP_T, "_P_UP": cp.CP_UP, "_P_NONCE": cp.CP_NONCE,
                   "_CONTEXT": cp.sig_structure(b"", b"")[:12]})


@pytest.mark.parametrize("prefix", ["REQ_", "REP_"])
def test_protocol_commands(prefix: str) -> None:
    host = {n: v for n, v in vars(link).items() if n.startswith(prefix)}
    assert len(host) >= 7
    dev = {n[1:]: v for n, v in device_constants("link").items() if n.startswith("_" + prefix)}
    assert dev == host


def test_protocol_framing() -> None:
    _same("link", {"_VERSION": link.VERSION, "_SYNC0": link.SYNC[0], "_SYNC1": link.SYNC[1],
                   "_HDR": link.HDR, "_TRAILER": link.TRAILER, "_PREFIX": link.PREFIX})
    errors = {v for n, v in device_constants("link").items() if n.startswith("_E_")}
    assert errors == set(link.ERROR_NAMES)


def test_a_drifted_or_missing_constant_fails(tmp_path: Path) -> None:
    (tmp_path / "hashtrail").mkdir()
    (tmp_path / "hashtrail" / "logstore.py").write_text(
        "from micropython import const\nENTRY = const(0xA8)\nCHECKPOINT = const(0xC7)\n")
    assert device_constants("logstore", tmp_path) == {"ENTRY": 0xA8, "CHECKPOINT": 0xC7}
    (tmp_path / "keyfile.py").write_text("_LEN = 4 + 32\n_X = open('/etc/passwd')\n")
    assert device_constants("keyfile", tmp_path) == {"_LEN": 36}       # the call never runs
    with pytest.raises(AssertionError, match="ENTRY"):
        _same("logstore", {"ENTRY": records.MAGIC_ENTRY}, tmp_path)
    with pytest.raises(AssertionError, match="FLAG_SIG"):
        _same("logstore", {"FLAG_SIG": records.FLAG_SIG}, tmp_path)
