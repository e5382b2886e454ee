"""reconcile's one-pass path for the usual chunk (`_extend`) decides exactly what the
general walk (`_merge`) decides.

Each case is reconciled twice: as reconcile runs it, and with `_extend` turned off, so
that every chunk takes the general walk. Both must leave the same ledger (rows, tree,
root, held entries, evidence, device tips) and say the same findings, in the same
order. Chunks are made small (monkeypatch) so a few hundred entries cross many of them;
in the cases with something wrong, the chunks before it take the one-pass path, the
chunk with it the general walk, and the chunks after it either.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import cbor2
import pytest
from hashtrail.chain.fwrules import FirmwareRules
from hashtrail.collector.bundle import Bundle
from hashtrail.formats import entry as en
from hashtrail.ledger import reconcile as rec
from hashtrail.ledger.ledger_db import Ledger
from ledgerkit import Device, bundle, trust

N = 160


@pytest.fixture(autouse=True)
def small(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(rec, "CHUNK", 37)


def _dev(secret: int, *, sig: bool = False, policy: int | None = 0, n: int = N) -> Device:
    d = Device(secret, per_entry_sig=sig, policy=policy)
    d.readings(n - 1)
    return d


def _copy(d: Device) -> Device:
    c = Device(d.secret, d.per_entry_sig, policy=d.policy)
    c.entries = list(d.entries)
    return c


def _with(d: Device, seq: int, *, body: bytes | None = None, sig: Any = ...) -> Device:
    c = _copy(d)
    s, b, g = c.entries[seq]
    c.entries[seq] = (s, b if body is None else body, g if sig is ... else sig)
    return c


def _state(led: Ledger) -> tuple[Any, ...]:
    db = led.storage
    return (led.size, led.root() if led.size else None, list(db.scan_entries()),
            sorted(db.scan_pending()), sorted(db.scan_evidence()),
            sorted(db.scan_device_checkpoints()), [tuple(d) for d in db.scan_devices()])


def _run(tmp: Path, name: str, bundles: list[Bundle]) -> tuple[Any, ...]:
    led = trust(Ledger.create(tmp / f"{name}.db", "test/extend",
                              key_file=tmp / f"{name}.key"))
    with led:
        results = []
        for b in bundles:
            r = rec.reconcile(led, b, workers=1)
            results.append((r.accepted, r.duplicates, r.pending, r.forks, r.checkpoints,
                            r.findings))
        return tuple(results), _state(led)


def _renumbered(d: Device, seq: int, to: int) -> Device:
    """d cut after `seq`, whose entry says seq `to` (re-encoded, linked as before) and
    is the last: a checkpoint over it is the device's word for the bytes."""
    c = _copy(d)
    m = cbor2.loads(d.entries[seq][1])
    m[en.KEY_SEQ] = to
    c.entries = [*c.entries[:seq], (seq, cbor2.dumps(m, canonical=True), None)]
    return c


def _firmware() -> Device:
    """Updates, a firmware that changes inside a boot, device time going back."""
    d = _dev(601, n=40)
    d.update("0.1.0", "0.2.0", 3, bytes(32))
    d.readings(30)
    d.update("0.2.0", "0.1.5", 2, bytes(range(32)))      # a downgrade
    d.readings(20)
    d.fw = "0.9.9"                                        # no reboot
    d.readings(20)
    d.entry(en.KIND_READING, [{en.SENML_N: "temp", en.SENML_V: 1}], t=d.t)  # time back
    d.readings(20)
    return d


def _cases() -> dict[str, Callable[[], list[Bundle]]]:
    p0 = _dev(501)
    p1 = _dev(502, sig=True, policy=1)
    legacy = _dev(503, policy=None)
    other = _dev(504)

    def one(d: Device, *cps: int) -> list[Bundle]:
        return [bundle([d], cps=[(d, d.checkpoint(seq=s)) for s in cps or (N - 1,)])]

    def altered() -> Device:
        d = _dev(505, n=70)
        d.log_altered(50)
        d.readings(60)
        return d

    def foreign0() -> Device:
        d = Device(507, policy=0)           # entry 0 names another key, links to this one
        d.entry(en.KIND_KEY_CREATED, {1: other.pub, 2: 0})
        d.readings(N - 1)
        return d

    def dense(d: Device) -> list[Bundle]:
        """Checkpoints every 5 entries: what is wrong is covered in its own chunk."""
        return one(d, *range(2, len(d.entries), 5))

    fw = _firmware()
    renum = _renumbered(p0, 77, 99)
    fork = p0.fork(90)
    fork.readings(40)
    return {
        "clean, checkpoint-signed": lambda: one(p0),
        "clean, every entry signed": lambda: one(p1),
        "clean, entry 0 without a policy": lambda: one(legacy),
        "clean, several devices in one bundle": lambda: [bundle(
            [p0, p1, legacy], cps=[(p0, p0.checkpoint()), (legacy, legacy.checkpoint(
                seq=100))])],
        "clean, a checkpoint mid-way, the tail held, then covered": lambda: [
            bundle([p0], ranges={p0.id_hex: (0, 100)}, cps=[(p0, p0.checkpoint(seq=75))]),
            bundle([p0], ranges={p0.id_hex: (100, N)}, cps=[(p0, p0.checkpoint())])],
        "the tail held, then the whole bundle again": lambda: [
            *one(p0, 75), *one(p0, 75, N - 1)],
        "clean, checkpoints only at the first entries": lambda: one(p0, 3, 40),
        "bad signature": lambda: one(_with(p1, 60, sig=p1.entries[61][2])),
        "stripped signature, device signs every entry": lambda: one(
            _with(p1, 90, sig=None)),
        "signature on one entry of a checkpoint-signed device": lambda: one(
            _with(p0, 20, sig=p1.entries[20][2])),
        "edited entry": lambda: one(_with(p0, 70, body=p0.entries[70][1][:-1] + b"\x00")),
        "edited entry, dense checkpoints": lambda: dense(
            _with(p0, 70, body=p0.entries[70][1][:-1] + b"\x00")),
        "an entry of another chain spliced in, dense checkpoints": lambda: dense(
            _with(p0, 70, body=other.entries[70][1])),
        "stripped signature under a checkpoint": lambda: one(_with(p1, 90, sig=None),
                                                              90, N - 1),
        "record seq differs from its entry's, covered": lambda: [bundle(
            [renum], cps=[(renum, renum.checkpoint(seq=77))])],
        "entry 0 naming another key, covered": lambda: [bundle(
            [d := foreign0()], cps=[(d, d.checkpoint())])],
        "log altered, dense checkpoints": lambda: dense(altered()),
        "garbage entry": lambda: one(_with(p0, 45, body=b"\xa0")),
        "wrong seq": lambda: one(_with(p0, 77, body=p0.entries[78][1])),
        "entry 0 of another key": lambda: one(_with(p0, 0, body=other.entries[0][1])),
        "a hole, then filled": lambda: [
            bundle([p0], ranges={p0.id_hex: (0, 50)}),
            bundle([p0], ranges={p0.id_hex: (90, N)}, cps=[(p0, p0.checkpoint())]),
            bundle([p0], ranges={p0.id_hex: (40, 100)}, cps=[(p0, p0.checkpoint())])],
        "twice, overlapping": lambda: [
            bundle([p1], ranges={p1.id_hex: (0, 100)}),
            bundle([p1], ranges={p1.id_hex: (30, N)})],
        "unsigned copy, then the signed one": lambda: [
            bundle([_with(p1, 80, sig=None)]), bundle([p1])],
        "fork": lambda: [*one(p0), bundle([fork], cps=[(fork, fork.checkpoint())])],
        "fork first": lambda: [bundle([fork], cps=[(fork, fork.checkpoint())]), *one(p0)],
        "log altered": lambda: [bundle([d := altered()], cps=[(d, d.checkpoint())])],
        "firmware rules": lambda: [bundle([fw], cps=[(fw, fw.checkpoint())])],
        "firmware rules, two bundles": lambda: [
            bundle([fw], ranges={fw.id_hex: (0, 75)}, cps=[(fw, fw.checkpoint(seq=74))]),
            bundle([fw], ranges={fw.id_hex: (75, len(fw.entries))},
                   cps=[(fw, fw.checkpoint())])],
    }


@pytest.mark.parametrize("case", list(_cases()))
def test_one_pass_decides_what_the_walk_decides(case: str, tmp_path: Path,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    bundles = _cases()[case]()
    taken = []
    extend = rec._extend

    def counted(*a: Any, **k: Any) -> Any:
        out = extend(*a, **k)
        taken.append(out is not None)
        return out

    monkeypatch.setattr(rec, "_extend", counted)
    fast = _run(tmp_path, "fast", bundles)
    monkeypatch.setattr(rec, "_extend", lambda *a, **k: None)
    walked = _run(tmp_path, "walked", bundles)
    assert fast == walked
    if case.startswith("clean"):       # the one-pass path took every chunk
        assert all(taken) and not any(r[5] for r in fast[0])


def test_check_all_is_check_entry_by_entry() -> None:
    """FirmwareRules.check_all (what reconcile calls) skips only entries that `check`
    finds nothing in: the same findings as `check` of each entry, from any start."""
    es = [en.parse_entry(b) for _, b, _ in _firmware().entries]
    assert len(es) > 100
    for lo in range(0, len(es), 7):
        for last in (None, es[lo - 1] if lo else None):
            one_by_one, rules, prev = [], FirmwareRules(), last
            for e in es[lo:]:
                one_by_one += rules.check(prev, e)
                prev = e
            assert FirmwareRules().check_all(last, es[lo:]) == one_by_one
    assert {f.code for f in FirmwareRules().check_all(None, es)} == {
        "fw_changed", "fw_downgrade"}
