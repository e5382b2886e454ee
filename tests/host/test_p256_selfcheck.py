"""`hashtrail selfcheck`: the device crypto check through the real CLI and VM."""

from __future__ import annotations

import hashlib
import json
import sys
from pathlib import Path

import pytest
from hashtrail.cli import main
from hashtrail.device.selfcheck import host_verifies

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "tests" / "firmware"))

from vectors_p256 import reference_sign


def test_selfcheck_passes_at_esp32_heap(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["selfcheck", "--json", "--reps", "2"]) == 0
    rep = json.loads(capsys.readouterr().out)
    assert rep["ok"] is True and rep["heap"] == 102400
    assert set(rep["checks"]) == {"verify", "tampered_sig_rejected",
                                  "tampered_digest_rejected", "deterministic",
                                  "host_cryptography_verifies"}
    assert all(rep["checks"].values())
    assert rep["sign_us"] > 0 and rep["verify_us"] > 0
    assert len(bytes.fromhex(rep["pub"])) == 65 and len(bytes.fromhex(rep["sig"])) == 64


def test_selfcheck_text_output(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["selfcheck", "--board", "unix", "--reps", "1"]) == 0
    out = capsys.readouterr().out
    assert "board unix" in out and "FAIL" not in out and "sign " in out


def test_selfcheck_unknown_board_is_a_config_error(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["selfcheck", "--board", "no-such-board"]) == 2
    assert "unknown board" in capsys.readouterr().err


def test_host_check_rejects_tampering_and_garbage() -> None:
    digest = hashlib.sha256(b"host").digest()
    pub, sig = reference_sign(12345, digest)
    assert host_verifies(pub, digest, sig)
    assert not host_verifies(pub, digest, sig[:-1] + bytes([sig[-1] ^ 1]))
    assert not host_verifies(pub, hashlib.sha256(b"other").digest(), sig)
    assert not host_verifies(b"\x04" + bytes(64), digest, sig)
    assert not host_verifies(pub, digest, sig[:63])
