"""Ledgers for the tlog-tiles tests: real reconciles of host-made device chains
(tools/devchain.py through tests/host/ledgerkit.py), one device signing every entry and
one signing checkpoints only (every 100 entries, as the firmware's default does)."""

from __future__ import annotations

import functools
import http.client
import http.server
import os
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "host"))
import ledgerkit
from hashtrail.formats import merkle, note
from hashtrail.ledger import tiles
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


def interrupt(proc: subprocess.Popen[Any]) -> None:
    """Stop a server the way a user does, Ctrl-C (SIGINT); kill it after 10 s."""
    proc.send_signal(signal.SIGINT)
    try:
        proc.wait(10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


class Server:
    """A real `hashtrail serve` process on a free loopback port."""

    def __init__(self, ledger: Path, extra: list[str] | None = None) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "hashtrail", "serve", "--ledger", str(ledger), "--listen",
             "127.0.0.1:0", *(extra or [])],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
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
        interrupt(self.proc)


@contextmanager
def static(folder: Path) -> Iterator[str]:
    """Any static web server: Python's, over `folder`, on a free loopback port."""
    class Quiet(http.server.SimpleHTTPRequestHandler):
        def log_message(self, format: str, *args: object) -> None:
            pass

    srv = http.server.ThreadingHTTPServer(
        ("127.0.0.1", 0), functools.partial(Quiet, directory=str(folder)))
    t = threading.Thread(target=srv.serve_forever, daemon=True)
    t.start()
    try:
        yield f"http://127.0.0.1:{srv.server_address[1]}/"
    finally:
        srv.shutdown()
        srv.server_close()
        t.join(10)


def write_tiles(folder: Path, leaves: list[bytes], signer: note.Signer) -> None:
    """Any list of leaves laid out as tlog-tiles, the checkpoint signed by `signer`
    (for logs no reconcile would make: gaps, forks, foreign leaves)."""
    folder.mkdir(parents=True, exist_ok=True)
    tree = merkle.MemoryTree()
    for leaf in leaves:
        tree.append(merkle.leaf_hash(leaf))
    size = len(leaves)
    for ref in tiles.tiles_of(size):
        lo = ref.n * tiles.WIDTH
        if ref.level is None:
            data = b"".join(len(x).to_bytes(2, "big") + x for x in leaves[lo:lo + ref.width])
        else:
            data = b"".join(tree.get(8 * ref.level, i) for i in range(lo, lo + ref.width))
        (folder / ref.path()).parent.mkdir(parents=True, exist_ok=True)
        (folder / ref.path()).write_bytes(data)
    cp = note.Checkpoint(signer.name, size, tree.root(size) if size else merkle.EMPTY_ROOT)
    (folder / tiles.CHECKPOINT).write_bytes(note.sign_checkpoint(cp, [signer]))
