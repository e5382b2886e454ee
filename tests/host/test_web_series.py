"""The fleet view's plot columns (hashtrail.web.data.Series) from device entries made by
tools/devchain.py: in device time order even when the device's clock went back, a
column per sensor with gaps where an entry lacks it, entries without device time
counted and left out, and extending by the new entries equals decoding all again; the
devices' columns kept within a budget of readings, the largest prefetched first."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from hashtrail.formats.entry import KIND_BOOT, KIND_READING, SENML_N, SENML_U, SENML_V
from hashtrail.ledger.ledger_db import Ledger
from hashtrail.ledger.reconcile import reconcile
from hashtrail.web.data import Readings, Series
from ledgerkit import Device, bundle, trust


def _dev() -> tuple[Device, list[bytes]]:
    d = Device(7)
    d.key_created()
    d.entry(KIND_READING, [{SENML_N: "temp", SENML_U: "Cel", SENML_V: 1.5}], t=100)
    d.entry(KIND_READING, [{SENML_N: "temp", SENML_U: "Cel", SENML_V: 2},
                           {SENML_N: "rh", SENML_V: 40}], t=90)       # clock went back
    d.entry(KIND_BOOT, {1: "power on"}, t=95)
    d.entry(KIND_READING, [{SENML_N: "rh", SENML_V: 41}], t=None)    # time unknown
    d.entry(KIND_READING, [{SENML_N: "rh", SENML_V: 42}], t=120)
    return d, [raw for _, raw, _ in d.entries]


def test_columns_in_device_time_order() -> None:
    _, bodies = _dev()
    s = Series()
    s.extend(bodies, 0)
    got = s.to_json()
    assert got["t"] == [90, 100, 120] and got["seq"] == [2, 1, 5]
    assert got["untimed"] == 1 and s.tip == 5
    cols = {(c["name"], c["unit"]): c["v"] for c in got["series"]}
    assert cols == {("temp", "Cel"): [2, 1.5, None], ("rh", ""): [40, None, 42]}


def test_extending_equals_decoding_everything() -> None:
    _, bodies = _dev()
    whole = Series()
    whole.extend(bodies, 0)
    parts = Series()
    for lo in range(0, len(bodies), 2):
        parts.extend(bodies[lo:lo + 2], lo)
        parts.to_json()                 # a view between two appends
    assert parts.to_json() == whole.to_json() and parts.tip == whole.tip


def test_readings_kept_within_budget_largest_prefetched(tmp_path: Path) -> None:
    devs = [Device(40 + i, per_entry_sig=True) for i in range(3)]
    for d, n in zip(devs, (9, 19, 29), strict=True):
        d.readings(n)                   # 10, 20 and 30 entries with the key-created one
    with Ledger.create(tmp_path / "l.db", "example.com/series") as led:
        trust(led)
        reconcile(led, bundle(devs))
        r = Readings(budget=45)
        sizes = [(d.id_hex, len(d.entries)) for d in devs]
        assert r.prefetch(led, sizes) == 2 and r.kept() == 40     # 30 fits, 20 not, 10
        assert len(r.get(led, devs[1].id_hex)["t"]) == 19         # viewed: evicts
        assert r.kept() <= 45
        assert len(r.get(led, devs[2].id_hex)["t"]) == 29
        assert r.kept() <= 45 and r.get(led, devs[1].id_hex)["t"]


def test_server_process_decodes_no_readings(tmp_path: Path,
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    """The readings for plots are decoded, kept and serialised in a side process: a
    thread of the server doing it held the interpreter lock 5 ms at a time and made the
    tiles' latency tail (issue 13). Decoding here fails the test; the side process is
    spawned, so it runs the real Series."""
    import asyncio
    import json

    from hashtrail.web import app

    def not_here(*_: object) -> None:
        raise AssertionError("readings decoded in the server process")
    monkeypatch.setattr(Series, "extend", not_here)
    devs = [Device(50 + i, per_entry_sig=True) for i in range(2)]
    for d, n in zip(devs, (9, 19), strict=True):
        d.readings(n)
    with Ledger.create(tmp_path / "l.db", "example.com/series") as led:
        trust(led)
        reconcile(led, bundle(devs))
        view = app.WebView(led, readings_budget=25)

        async def go() -> tuple[int, dict[str, Any], dict[str, Any]]:
            n = await view.prefetch([(d.id_hex, len(d.entries)) for d in devs])
            a = json.loads(await view.readings(devs[0].id_hex))
            b = json.loads(await view.readings(devs[1].id_hex))
            return n, a, b
        try:
            n, a, b = asyncio.run(go())
        finally:
            view.close()
    assert n == 1                                   # 20 fits the budget of 25, 10 not
    assert len(a["t"]) == 9 and len(b["t"]) == 19
