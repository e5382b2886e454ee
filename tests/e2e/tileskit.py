"""Ledgers for the tlog-tiles tests: real reconciles of host-made device chains
(tools/devchain.py through tests/host/ledgerkit.py), one device signing every entry and
one signing checkpoints only (every 100 entries, as the firmware's default does)."""

from __future__ import annotations

import http.client
import os
import signal
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "host"))
import ledgerkit
from hashtrail.ledger.ledger_db import Ledger
from hashtrail.ledger.reconcile import reconcile

ORIGIN = "example.com/tiles"
ROOT = Path(__file__).resolve().parents[2]


@dataclass
class TileLedger:
    path: Path
    verifier_key: str
    signed: ledgerkit.Device        # per-entry signatures
    unsigned: ledgerkit.Device      # device checkpoints only

    def grow(self, signed: int, unsigned: int) -> int:
        """Append readings of both devices through a real reconcile; the new size."""
        lo = {d.id_hex: len(d.entries) for d in (self.signed, self.unsigned)}
        self.signed.readings(signed)
        self.unsigned.readings(unsigned)
        u = self.unsigned
        cps = [(u, u.checkpoint(seq=s)) for s in range(99, len(u.entries), 100)
               if s >= lo[u.id_hex]]
        b = ledgerkit.bundle([self.signed, u], enroll=False, cps=cps,
                             ranges={d.id_hex: (lo[d.id_hex], len(d.entries))
                                     for d in (self.signed, u)})
        with Ledger.open_signing(self.path) as led:
            reconcile(led, b)
            return led.size


def make_ledger(path: Path, signed: int, unsigned: int) -> TileLedger:
    """A ledger of `signed` + 1 entries of one device and, of the other, the entries up
    to its last checkpoint (every 100 entries; `unsigned` readings made)."""
    d1, d2 = ledgerkit.Device(11, per_entry_sig=True), ledgerkit.Device(22)
    d1.readings(signed)
    d2.readings(unsigned)
    cps = [(d2, d2.checkpoint(seq=s)) for s in range(99, len(d2.entries), 100)]
    with Ledger.create(path, ORIGIN) as led:
        ledgerkit.trust(led)
        reconcile(led, ledgerkit.bundle([d1, d2], cps=cps))
        return TileLedger(path, led.verifier.to_string(), d1, d2)


class Server:
    """A real `hashtrail serve` process on a free loopback port."""

    def __init__(self, ledger: Path) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "hashtrail", "serve", "--ledger", str(ledger), "--listen",
             "127.0.0.1:0"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
            env={**os.environ, "PYTHONPATH": str(ROOT / "host")})
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        assert " at http://127.0.0.1:" in line, line + self.proc.stderr.read()  # type: ignore[union-attr]
        self.url = line.split(" at ")[1].split()[0]
        self.port = int(self.url.rsplit(":", 1)[1].strip("/"))

    def get(self, path: str, method: str = "GET") -> tuple[int, dict[str, str], bytes]:
        c = http.client.HTTPConnection("127.0.0.1", self.port, timeout=10)
        try:
            c.request(method, path)
            r = c.getresponse()
            return r.status, {k.lower(): v for k, v in r.getheaders()}, r.read()
        finally:
            c.close()

    def stop(self) -> None:
        self.proc.send_signal(signal.SIGINT)
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
