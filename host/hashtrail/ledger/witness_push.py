"""The log's side of C2SP tlog-witness: gather cosignatures on the ledger's newest
checkpoint from the witnesses it is configured with, and hand back the checkpoint only
if at least k of them cosigned (`ledger publish --witness URL ... --min-cosignatures k`).

Why publish only with k cosignatures: a client that requires witnesses
(`verify-proof --witness-key`) accepts a checkpoint only if they cosigned it, and each
witness cosigns only a tree that extends the one it saw last, so an operator cannot
show one client one log and another client another without a witness noticing. A log
that published without enough cosignatures would just be refused by such clients.

Each witness is asked with the old size it last cosigned: not known in advance, so the
first request says 0 and a 409 answer gives the witness's size; the consistency proof
from that size is built from the ledger's own tree. A witness whose size is above the
checkpoint's has seen a bigger tree of this log than the ledger now signs (a rollback,
or another view): it is never asked again in this run and counts as not cosigned.
Every cosignature is checked with the witness keys given before it counts.

`hashtrail serve --witness URL ... --min-cosignatures k` does the same as the ledger
grows (`CosignedFeed`): a thread of its own, with its own ledger connection, asks
the witnesses to cosign each new checkpoint, remembering each witness's size (so a
request normally carries the right old size and proof; a 409 corrects it), and the
server serves the newest checkpoint that reached k cosignatures, the tiles stopping at
its size. A witness that is down or refuses is asked again at the next round; until k
cosign the newest checkpoint, the last one that had them stays served.
"""

from __future__ import annotations

import logging
import sqlite3
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import NamedTuple

from hashtrail.errors import HashtrailError, VerificationError
from hashtrail.formats import merkle, note
from hashtrail.ledger import tiles
from hashtrail.ledger.ledger_db import Ledger
from hashtrail.ledger.witness_http import WitnessConflict, WitnessRefused, request_cosignature

log = logging.getLogger(__name__)


class TooFewCosignatures(VerificationError):
    """Fewer witnesses than required cosigned the checkpoint: nothing is published."""

    hint = "check the witnesses named above (`hashtrail witness serve` prints its URL)"


class Gathered(NamedTuple):
    checkpoint: bytes           # the ledger's checkpoint with every valid cosignature
    cosigned: tuple[str, ...]   # witness names whose cosignature verified
    failed: tuple[str, ...]     # "<url>: why" for each witness that did not


def gather_cosignatures(ledger: Ledger, urls: Sequence[str],
                        witness_keys: Sequence[note.Verifier], need: int,
                        timeout: float = 10.0) -> Gathered:
    """The ledger's newest checkpoint cosigned by the witnesses at `urls`; raises
    TooFewCosignatures when fewer than `need` distinct trusted witnesses cosigned."""
    cp_bytes = ledger.latest_checkpoint()
    cp, _ = note.open_checkpoint(cp_bytes, [ledger.verifier])
    signed, failed = cp_bytes, []
    for url in urls:
        try:
            lines, _ = ask_witness(url, cp_bytes, cp.size, 0, ledger.node, timeout)
        except WitnessRefused as e:
            failed.append(f"{url}: {e}")
            continue
        before = note.open_cosignatures(signed, list(witness_keys))
        try:
            candidate = signed + lines
            got = note.open_cosignatures(candidate, list(witness_keys))
        except HashtrailError as e:
            failed.append(f"{url}: its answer is not a valid cosignature: {e}")
            continue
        if len(got) <= len(before):
            failed.append(f"{url}: no cosignature by a witness key given")
            continue
        signed = candidate
    names = tuple(sorted(note.open_cosignatures(signed, list(witness_keys))))
    if len(names) < need:
        raise TooFewCosignatures(
            f"{len(names)} of the {need} witness cosignatures required on tree size "
            f"{cp.size}: nothing published" + "".join(f"\n  {f}" for f in failed))
    return Gathered(signed, names, tuple(failed))


def ask_witness(url: str, cp_bytes: bytes, size: int, old: int, node: merkle.GetNode,
                timeout: float) -> tuple[bytes, int]:
    """Ask one witness to cosign the checkpoint `cp_bytes` of tree `size`, sending the
    consistency proof from `old` (the size it is believed to hold); a 409 gives its
    real size and the request is sent once more with the proof from there (C2SP
    tlog-witness). (signature lines, old size used); WitnessRefused when it did not
    cosign (WitnessConflict carries the size it holds)."""
    def send(frm: int) -> bytes:
        proof = merkle.prove_consistency(node, frm, size) if 0 < frm < size else []
        return request_cosignature(url, cp_bytes, frm, proof, timeout)

    if old > size:
        old = 0
    try:
        return send(old), old
    except WitnessConflict as c:
        if c.size > size:
            raise WitnessConflict(c.size, f"it has cosigned tree size {c.size}, above this "
                                          f"checkpoint's {size}") from None
        if c.size == old:
            raise                   # its own size, another root: nothing to resend
        return send(c.size), c.size


class CosignedFeed:
    """The newest ledger checkpoint with at least `need` witness cosignatures, kept up
    as the ledger grows (module docstring); `served()` is what `hashtrail serve`
    serves, None until one checkpoint reached `need`."""

    def __init__(self, place: str | Path, urls: Sequence[str],
                 witness_keys: Sequence[note.Verifier], need: int,
                 interval: float = 1.0, timeout: float = 5.0) -> None:
        self.place, self.urls, self.keys = place, list(urls), list(witness_keys)
        self.need, self.interval, self.timeout = need, interval, timeout
        self.sizes = dict.fromkeys(self.urls, 0)     # each witness's size, as last seen
        self.failed: dict[str, str] = {}            # url -> why it did not cosign, lately
        self._lock = threading.Lock()
        self._served: bytes | None = None
        self._pending = b""                         # the checkpoint being cosigned
        self._lines: dict[str, bytes] = {}          # url -> its cosignature on it
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def served(self) -> bytes | None:
        with self._lock:
            return self._served

    def step(self, ledger: Ledger) -> bool:
        """One round: ask every witness that has not cosigned the ledger's newest
        checkpoint; True when that checkpoint is now served."""
        cp_bytes = ledger.latest_checkpoint()
        cp, _ = note.open_checkpoint(cp_bytes, [ledger.verifier])
        served = self.served()
        if served is not None and note.parse_note(served).text == note.parse_note(cp_bytes).text:
            return True
        if cp_bytes != self._pending:
            self._pending, self._lines = cp_bytes, {}
        for url in self.urls:
            if url in self._lines:
                continue
            try:
                lines, _ = ask_witness(url, cp_bytes, cp.size, self.sizes[url], ledger.node,
                                       self.timeout)
                got = note.open_cosignatures(cp_bytes + lines, self.keys)
            except WitnessConflict as c:
                self.sizes[url] = c.size
                self._fail(url, str(c))
                continue
            except HashtrailError as e:
                self._fail(url, str(e))
                continue
            if not got:
                self._fail(url, "no cosignature by a witness key given")
                continue
            self._lines[url], self.sizes[url] = lines, cp.size
            self.failed.pop(url, None)
        signed = cp_bytes + b"".join(self._lines.values())
        if len(note.open_cosignatures(signed, self.keys)) < self.need:
            return False
        with self._lock:
            self._served = signed
        log.info("serving tree size %d with %d cosignatures", cp.size, len(self._lines))
        return True

    def _fail(self, url: str, why: str) -> None:
        if self.failed.get(url) != why:
            log.warning("witness %s: %s", url, why)
        self.failed[url] = why

    def run(self) -> None:
        """Round after round, `interval` apart, until stop(); its own ledger connection
        (an SQLite connection belongs to the thread that opened it)."""
        while True:
            try:
                with Ledger.open(self.place) as led:
                    self.step(led)
            except (HashtrailError, sqlite3.Error) as e:
                log.warning("cosigning the ledger's checkpoint: %s", e)
            if self._stop.wait(self.interval):
                return

    def start(self) -> None:
        self._thread = threading.Thread(target=self.run, name="hashtrail-cosign",
                                        daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(self.timeout * (len(self.urls) + 1))


def publish_witnessed(ledger: Ledger, out: Path, urls: Sequence[str],
                      witness_keys: Sequence[note.Verifier], need: int,
                      words: bool = False) -> tuple[tiles.Published, Gathered]:
    """`ledger publish` with witnesses: gather at least `need` cosignatures first; the
    folder's checkpoint is the cosigned one. Nothing is written when too few cosign."""
    g = gather_cosignatures(ledger, urls, witness_keys, need)
    return tiles.publish(ledger, out, words=words, checkpoint=g.checkpoint), g
