"""The ledger's firmware history (issue 16): reconcile and `verify --ledger` hold a
device to the same firmware rules as the collector (chain.fwrules), and the ledger
lists each device's updates (`ledger firmware`, the FW column of `devices list`).

Chains are host-made (tools/devchain.py) with the device's own key, as a device whose
firmware lies would sign them: a genuine history passes and is listed; a version that
changes inside a boot (a version never installed), an update written by another
version, and a downgrade below a counter the ledger accepted in an EARLIER reconcile
are accepted but flagged by reconcile, and make `verify --ledger` exit 1 with the
device in "firmware alarm". The real firmware's update entry goes through the same
ledger in tests/e2e/test_update.py and the demo."""

from __future__ import annotations

import hashlib
import io
import json
from collections.abc import Iterator
from contextlib import redirect_stdout
from pathlib import Path
from typing import Any

import pgtest
import pytest
from hashtrail.cli import main
from hashtrail.ledger.ledger_db import Ledger
from hashtrail.ledger.reconcile import reconcile
from ledgerkit import Device, bundle, trust

ORIGIN = "test.example/firmware"
M1, M2 = hashlib.sha256(b"manifest 1").digest(), hashlib.sha256(b"manifest 2").digest()


def _cli(*argv: str) -> tuple[int, Any]:
    out = io.StringIO()
    with redirect_stdout(out):
        code = main(list(argv))
    text = out.getvalue()
    return code, json.loads(text) if text[:1] in "[{" else text


_OPEN: dict[str, Ledger] = {}      # the ledger as made, with its key: reconcile signs


@pytest.fixture(params=pgtest.BACKENDS)
def ledger(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A ledger's path or URL; the CLI opens it, reconcile uses the one made here."""
    with pgtest.databases() as made:
        where = (str(tmp_path / "l.db") if request.param == "sqlite"
                 else pgtest.new_database(made))
        with trust(Ledger.create(where, ORIGIN, key_file=tmp_path / "l.key")) as led:
            _OPEN[where] = led
            yield where
            del _OPEN[where]


def device() -> Device:
    d = Device(0xF1A5, per_entry_sig=True)
    d.readings(3)
    return d


def _reconcile(ledger: str, d: Device, lo: int = 0) -> list[str]:
    """Reconcile d's entries from `lo` (a later bundle carries only the new ones);
    returns the findings' texts."""
    res = reconcile(_OPEN[ledger], bundle([d], {d.id_hex: (lo, len(d.entries))}))
    assert res.accepted == len(d.entries) - lo
    return [f"seq {f.seq}: {f.reason}" for f in res.findings]


def _verify(ledger: str) -> tuple[int, dict[str, Any]]:
    code, rep = _cli("verify", "--ledger", ledger, "--json")
    return code, rep["devices"][0]


def test_a_genuine_history_passes_and_is_listed(ledger: str) -> None:
    d = device()
    d.update("0.1.0", "0.2.0", 5, M1)
    d.readings(2)
    assert _reconcile(ledger, d) == []
    n = len(d.entries)
    d.update("0.2.0", "0.3.0", 6, M2)       # a second update, in a later bundle
    d.boot += 1                              # a reboot repeats it (power cut): the same
    d.entry(1, {1: "hard"})                  # counter and manifest pass
    d.entry(7, {1: "0.2.0", 2: "0.3.0", 3: 6, 4: M2})
    d.boot += 1
    d.fw = "0.3.1-usb"                       # a USB deploy between boots: the owner's act
    d.readings(1)
    d.boot += 1                              # 0.4.0 never started; boot.py took it back
    d.entry(1, {1: "power_on"})
    d.entry(8, {1: "0.4.0", 2: "0.3.1-usb", 3: 7, 4: M1, 5: "not started in 3 boots"})
    assert _reconcile(ledger, d, n) == []
    code, rep = _verify(ledger)
    assert (code, rep["status"], rep["alarm"], rep["fw"]) == (0, "ok", False, "0.3.1-usb")
    code, hist = _cli("ledger", "firmware", "--ledger", ledger, "--json")
    assert code == 0
    (h,) = hist
    assert (h["device"], h["fw"]) == (d.id_hex, "0.3.1-usb")
    assert [(u["seq"], u["old"], u["new"], u["counter"], u["manifest"], u["findings"],
             u["reverted"]) for u in h["updates"]] == [
        (5, "0.1.0", "0.2.0", 5, M1.hex(), [], None),
        (9, "0.2.0", "0.3.0", 6, M2.hex(), [], None),
        (11, "0.2.0", "0.3.0", 6, M2.hex(), [], None),
        (14, "0.3.1-usb", "0.4.0", 7, M1.hex(), [], "not started in 3 boots")]
    assert h["updates"][0]["t"] == d.t + 5
    code, text = _cli("ledger", "firmware", "--ledger", ledger, "--device", d.id_hex)
    assert code == 0
    assert f"seq      5  2023-11-14 22:13  0.1.0 -> 0.2.0  counter 5  manifest {M1.hex()}" \
        in text
    assert (f"seq     14  2023-11-14 22:13  0.3.1-usb -> 0.4.0  counter 7  manifest "
            f"{M1.hex()}  REVERTED (not started in 3 boots)") in text
    assert "3 signed updates, 1 taken back" in text
    code, devs = _cli("devices", "list", "--ledger", ledger, "--json")
    assert [(r["fw"], r["updates"]) for r in devs] == [("0.3.1-usb", 3)]
    code, text = _cli("devices", "list", "--ledger", ledger)
    assert "fw 0.3.1-usb (3 updates)" in text


def _alarm(ledger: str, code_name: str, seq: int) -> dict[str, Any]:
    code, rep = _verify(ledger)
    assert code == 1
    assert rep["status"] == "firmware alarm" and rep["alarm"]
    assert any(a.startswith(f"seq {seq}: firmware {code_name}: ") for a in rep["anomalies"])
    code, text = _cli("verify", "--ledger", ledger)
    assert code == 1 and f"! seq {seq}: firmware {code_name}" in text
    return rep


def test_an_entry_claiming_a_version_never_installed(ledger: str) -> None:
    """Inside one boot the firmware cannot change: an entry that says so claims a
    version the device never installed."""
    d = device()
    d.fw = "6.6.6"
    d.readings(1)
    found = _reconcile(ledger, d)
    assert len(found) == 1 and found[0].startswith("seq 4: firmware: fw_changed: ")
    assert found[0].endswith("accepted, flagged")
    _alarm(ledger, "fw_changed", 4)


def test_an_update_entry_written_by_another_version(ledger: str) -> None:
    d = device()
    d.update("0.1.0", "0.2.0", 5, M1)
    d.readings(1)
    d.boot += 1
    d.fw = "0.2.0"
    d.entry(1, {1: "hard"})
    d.fw = "0.2.0"
    d.entry(7, {1: "0.2.0", 2: "0.9.0", 3: 9, 4: M2})   # written by 0.2.0, "installs" 0.9.0
    found = _reconcile(ledger, d)
    assert [f.split(": ")[2] for f in found] == ["fw_update_mismatch"]
    _alarm(ledger, "fw_update_mismatch", 8)
    code, hist = _cli("ledger", "firmware", "--ledger", ledger, "--json")
    assert code == 1
    assert [u["findings"] for u in hist[0]["updates"]] == [[], ["fw_update_mismatch"]]


@pytest.mark.parametrize(("counter", "manifest"), [(4, M2), (5, M2)],
                         ids=["lower-counter", "same-counter-other-manifest"])
def test_a_downgrade_below_a_counter_accepted_earlier(ledger: str, counter: int,
                                                      manifest: bytes) -> None:
    """The counter installed before comes from the ledger's accepted history: the
    downgrade arrives in a later bundle, with none of the earlier entries."""
    d = device()
    d.update("0.1.0", "0.2.0", 5, M1)
    d.readings(2)
    assert _reconcile(ledger, d) == []
    n = len(d.entries)
    d.update("0.2.0", "0.1.5", counter, manifest)
    d.readings(1)
    found = _reconcile(ledger, d, n)
    assert len(found) == 1 and found[0].startswith(f"seq {n + 1}: firmware: fw_downgrade: ")
    assert "counter 5 was installed" in found[0]
    _alarm(ledger, "fw_downgrade", n + 1)
    code, text = _cli("ledger", "firmware", "--ledger", ledger)
    assert code == 1
    assert f"0.2.0 -> 0.1.5  counter {counter}  manifest {manifest.hex()}  ! fw_downgrade" \
        in text


def test_a_held_entry_is_held_to_the_rules_when_a_checkpoint_accepts_it(ledger: str
                                                                        ) -> None:
    """Entries held until a device checkpoint covers them keep only what the chain walk
    reads (prev, kind, t); the firmware rules still judge them, when accepted."""
    d = Device(0xF1A6)                      # checkpoints only: held until covered
    d.readings(3)
    d.fw = "6.6.6"
    d.readings(2)
    n = len(d.entries)
    led = _OPEN[ledger]
    first = reconcile(led, bundle([d], cps=[(d, d.checkpoint(seq=2))]))
    assert (first.accepted, first.pending, first.findings) == (3, n - 3, [])
    later = reconcile(led, bundle([d], {d.id_hex: (n, n)},
                                  cps=[(d, d.checkpoint(seq=n - 1))], name="c2"))
    assert later.accepted == n - 3
    found = [f"seq {f.seq}: {f.reason}" for f in later.findings]
    assert len(found) == 1 and found[0].startswith("seq 4: firmware: fw_changed: "), found
    _alarm(ledger, "fw_changed", 4)
