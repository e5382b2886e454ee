"""The ledger: the device registry, the Merkle log and its signed checkpoints,
revocations and fork evidence (docs/LEDGER.md), as one object over a `LedgerStorage`
(hashtrail.ledger.storage): a SQLite file (storage_sqlite), or a PostgreSQL database
named by a `postgresql://` URL (storage_pg); `backend` picks one from what `--ledger`
says, so every method below works on both.

Why this facade: callers (the CLI, the demo, reconcile, verify, proof) open, create and
read a ledger by its concepts; what is stored where, and in which SQL, is the storage's.
Every change happens in one storage transaction (writers queue instead of failing or
interleaving), and the tree keeps one row per complete subtree above the leaves (a leaf's
hash is computed from its entries row), so a proof reads at most ~2 log2(n) nodes
through `merkle`'s `get(level, index)` callable.

The ledger's Ed25519 note key is NOT in the file: `ledger init` writes it to a key file
of its own (hashtrail.ledger_key) and the ledger keeps only the verifier key
(`meta.verifier`), so a copy of the ledger file cannot sign. `Ledger.open` gives a ledger
that reads (and enrolls, trusts, revokes) but cannot sign; `Ledger.open_signing` also
loads the key file and refuses one that is not this ledger's key. A ledger from before
this rule (`meta.signer`) migrates on its first signing open: the key is written to the
key file (0600), then removed from the ledger, and `migrated` names the file. Reading
never moves the key (it needs a key file to write; a schema upgrade at open does not).

`collectors` lists the collector identity keys the operator trusts (`ledger trust`):
only bundles signed by one of them may enroll devices (docs/BUNDLE.md). Opening a ledger
brings its schema up to date (the backend's MIGRATIONS), in one transaction.
"""

from __future__ import annotations

import hashlib
import os
import sqlite3
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from types import TracebackType

from hashtrail.errors import ConfigError, HashtrailError
from hashtrail.formats import merkle, note
from hashtrail.formats.keys import parse_device_id
from hashtrail.formats.leaf import LEAF_TAG, leaf_bytes, leaf_prefix, parse_leaf
from hashtrail.ledger import backend
from hashtrail.ledger.ledger_key import LedgerKeyError, read_key, write_key
from hashtrail.ledger.revocation import Revocation, sign_revocation
from hashtrail.ledger.storage import Device, LedgerStorage, StoredEntry

__all__ = ["LEAF_TAG", "Device", "Ledger", "LedgerError", "StoredEntry", "leaf_bytes",
           "leaf_prefix", "parse_leaf"]



def _leaf_hash(device_id: str, seq: int, entry: bytes) -> bytes:
    """merkle.leaf_hash(leaf_bytes(...)) of an entries row, in one concatenation: level 0
    of the tree, read for every leaf of a level-0 tile."""
    return hashlib.sha256(b"\x00" + LEAF_TAG + bytes.fromhex(device_id) + seq.to_bytes(8, "big")
                          + hashlib.sha256(entry).digest() + entry).digest()


# The lowest tree level `nodes` keeps. A leaf hash (level 0) is the hash of its entries
# row's leaf bytes, and a level-1 node the hash of two of them: storing either was a
# second copy of what the entries rows hold (SQLite schemas 6 and 8, PostgreSQL 5 and
# 7 dropped them), and writing them cost a reconcile about 1.2 and 0.6 us an entry
# (docs/LEDGER.md "At scale"). A proof or tile reads at most two more rows for them.
STORED_LOWEST = 2


class LedgerError(HashtrailError):
    hint = "check the --ledger path; make a ledger with `hashtrail ledger init`"




class Ledger:
    def __init__(self, storage: LedgerStorage, path: Path | str) -> None:
        self.storage = storage
        self.path = path        # a file's Path, or a database URL (backend.where)
        self._signer: note.Signer | None = None
        self.key_file: Path | None = None       # the key file, once loaded
        self.migrated: Path | None = None       # set when open_signing moved the key out

    @classmethod
    def open(cls, path: str | os.PathLike[str]) -> Ledger:
        """An existing ledger (InputError, nothing changed, for a path that is not one),
        its schema brought up to date. Opens without the key: reads, enrolls, trusts,
        revokes, but cannot sign."""
        p = backend.where(path)
        try:
            return cls(backend.open_storage(p), p)
        except sqlite3.DatabaseError as e:
            raise LedgerError(f"cannot open ledger {p}: {e}") from e

    @classmethod
    def open_signing(cls, path: str | os.PathLike[str],
                     key_file: str | os.PathLike[str] | None = None) -> Ledger:
        """Open to sign: load the ledger key (ledger_key.key_path: --key-file, env,
        <ledger>.key) and check it is this ledger's; migrate a key still kept in the
        file. Without a usable key: LedgerKeyError, and nothing was written."""
        kp = backend.signing_key_path(path, key_file)
        signer = read_key(kp)        # before the ledger: a bad key file changes nothing
        led = cls.open(path)
        try:
            legacy = led._meta("signer")
            if signer is None and legacy is None:
                raise LedgerKeyError(
                    f"no ledger key at {kp}: signing needs the key file `ledger init` "
                    f"wrote (give --key-file or set HASHTRAIL_LEDGER_KEY); a copy of the "
                    f"ledger file cannot sign")
            if signer is None:
                assert legacy is not None
                signer = note.Signer.from_string(legacy)
                try:
                    write_key(kp, signer)
                except LedgerKeyError:
                    # another signing command migrated it a moment ago: use its file
                    signer = read_key(kp)
                    if signer is None:
                        raise
                led.migrated = kp
            if signer.verifier().to_string() != led.verifier.to_string():
                raise LedgerKeyError(
                    f"{kp} holds ledger key {signer.verifier().to_string()}, but this "
                    f"ledger's verifier key is {led.verifier.to_string()}: not its key")
            if legacy is not None:
                if led.migrated is None:
                    led.migrated = kp     # key file already written (an earlier try)
                led._forget_legacy_signer(signer)
        except BaseException:
            led.close()
            raise
        led._signer, led.key_file = signer, kp
        return led

    def _forget_legacy_signer(self, signer: note.Signer) -> None:
        """Keep the verifier key, drop the signer, and leave no copy of it on disk."""
        self.storage.drop_legacy_signer(signer.verifier().to_string())

    @classmethod
    def create(cls, path: str | os.PathLike[str], origin: str, *,
               key_file: str | os.PathLike[str] | None = None,
               signer: note.Signer | None = None) -> Ledger:
        """A new ledger file and its key file (ledger_key.key_path; mode 0600, never
        overwritten); the ledger keeps only the verifier key. Returns it open to sign."""
        p = backend.where(path)
        note.check_origin(origin)
        if isinstance(p, Path) and p.exists():
            raise ConfigError(f"{p} already exists", hint="pick a new file for a new ledger")
        kp = backend.signing_key_path(p, key_file)
        backend.check_new(p)                   # before the key file is written
        if kp.exists():
            raise LedgerKeyError(f"refusing to overwrite the existing key file {kp}: move "
                                 "it away or name another with --key-file")
        signer = signer or note.Signer.generate(origin)
        if signer.name != origin:
            raise ConfigError("the ledger key's name must be the checkpoint origin")
        write_key(kp, signer)
        try:
            storage = backend.create_storage(p, {
                "origin": origin, "verifier": signer.verifier().to_string(), "size": "0"})
        except BaseException as e:
            kp.unlink()          # no ledger, so no key for it either
            if isinstance(e, sqlite3.DatabaseError):
                raise LedgerError(f"cannot open ledger {p}: {e}") from e
            raise
        led = cls(storage, p)
        led._signer, led.key_file = signer, kp
        led.sign_checkpoint()
        return led

    def close(self) -> None:
        self.storage.close()

    def __enter__(self) -> Ledger:
        return self

    def __exit__(self, et: type[BaseException] | None, ev: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()

    @contextmanager
    def transaction(self) -> Iterator[None]:
        """One unit of work on the storage (its write lock, all or nothing)."""
        with self.storage.transaction():
            yield

    def _meta(self, key: str) -> str | None:
        return self.storage.meta(key)

    # -- identity and tree ---------------------------------------------------------------

    @property
    def origin(self) -> str:
        return self._meta("origin") or ""

    @property
    def verifier(self) -> note.Verifier:
        """The ledger's public key, as kept in the file (a ledger from before the key
        file rule: derived from the signer it still holds, without writing anything)."""
        text = self._meta("verifier")
        if text is not None:
            return note.Verifier.from_string(text)
        legacy = self._meta("signer")
        if legacy is None:
            raise LedgerError(f"{backend.display(self.path)} holds no ledger verifier key",
                              hint="the ledger file is damaged; run `hashtrail verify`")
        return note.Signer.from_string(legacy).verifier()

    @property
    def can_sign(self) -> bool:
        return self._signer is not None

    def require_signer(self) -> note.Signer:
        """The loaded ledger key; LedgerKeyError when opened without one (Ledger.open)."""
        if self._signer is None:
            raise LedgerKeyError(f"{backend.display(self.path)} was opened without its "
                                 "ledger key: signing needs Ledger.open_signing (the key "
                                 "file)")
        return self._signer

    @property
    def size(self) -> int:
        return int(self._meta("size") or 0)

    def node(self, level: int, index: int) -> bytes:
        """The hash of the complete subtree (level, index). Levels 0 and 1 are not
        stored (STORED_LOWEST): a leaf's hash is computed from the leaf's entries row,
        the bytes it hashes, and a level-1 node from its two leaves' rows."""
        if level < STORED_LOWEST:
            return self.nodes(level, index, index)[0]
        h = self.storage.node(level, index)
        if h is None:
            raise LedgerError(f"ledger tree is missing node ({level}, {index})",
                              hint="the ledger file is damaged; run `hashtrail verify`")
        return h

    def nodes(self, level: int, lo: int, hi: int) -> list[bytes]:
        """The hashes of `level` at indexes lo..hi (inclusive), one query (levels 0 and
        1: from the leaves' entries rows)."""
        if level == 0:
            got = [_leaf_hash(*r) for r in self.storage.leaf_entries(lo, hi)]
        elif level == 1:
            hs = [_leaf_hash(*r) for r in self.storage.leaf_entries(2 * lo, 2 * hi + 1)]
            got = ([] if len(hs) != 2 * (hi - lo + 1) else
                   [merkle.node_hash(hs[i], hs[i + 1]) for i in range(0, len(hs), 2)])
        else:
            got = self.storage.nodes(level, lo, hi)
        if len(got) != hi - lo + 1:
            raise LedgerError(f"ledger tree is missing nodes of level {level} in {lo}..{hi}",
                              hint="the ledger file is damaged; run `hashtrail verify`")
        return got

    def root(self, size: int | None = None) -> bytes:
        return merkle.root(self.node, self.size if size is None else size)

    def append_leaf(self, leaf: bytes) -> int:
        """Inside a transaction: add one leaf and its completed subtrees; returns its index."""
        return self.append_leaves([leaf])

    def append_leaves(self, leaves: list[bytes]) -> int:
        """Inside a transaction: add leaves in order; returns the index of the first.
        Each leaf must be the leaf bytes (leaf_bytes) of the entries row the caller
        adds at its index in the same transaction: the tree keeps no leaf hashes, it
        reads a leaf's from that row (`node`).

        The new subtree hashes are computed in memory (a left sibling comes from this
        batch or, at most once per level, from the stored tree) and handed to the
        storage in one bulk write, so a batch costs a statement per few hundred rows
        instead of one per node. Levels 0 and 1 are not written (STORED_LOWEST): a
        leaf hash is the hash of its entries row's leaf bytes, a level-1 node that of
        two, so storing them was a second copy of what the entries rows hold, three
        quarters of the rows of `nodes` and about a tenth of a large reconcile's time
        (docs/LEDGER.md "At scale")."""
        return self._append(leaves, hashed=False)

    def append_leaf_hashes(self, hashes: list[bytes]) -> int:
        """`append_leaves` given each leaf's hash (merkle.leaf_hash of its leaf bytes)
        instead of its bytes: reconcile has most of them from its bundle reader, which
        hashed the leaves on the other core (ledger.chunk_reader). The caller vouches
        that each is the hash of its entries row's leaf bytes, as `append_leaves` asks
        of the bytes: `verify --ledger` rebuilds the tree from the rows."""
        return self._append(hashes, hashed=True)

    def _append(self, leaves: list[bytes], hashed: bool) -> int:
        first = self.size
        if leaves:
            self.storage.add_nodes(merkle.appended_nodes(first, leaves, self.node,
                                                         lowest=STORED_LOWEST,
                                                         hashed=hashed))
            self.storage.set_meta("size", str(first + len(leaves)))
        return first

    def leaf(self, index: int) -> bytes:
        row = self.storage.leaf_entry(index)
        if row is None:
            raise LedgerError(f"no leaf {index} in the ledger")
        return leaf_bytes(*row)

    def leaves(self, lo: int, hi: int) -> list[bytes]:
        """The leaf bytes of leaves lo..hi (inclusive), one query."""
        rows = self.storage.leaf_entries(lo, hi)
        if len(rows) != hi - lo + 1:
            raise LedgerError(f"the ledger is missing leaves in {lo}..{hi}",
                              hint="the ledger file is damaged; run `hashtrail verify`")
        return [leaf_bytes(*r) for r in rows]

    # -- accepted entries (read-only: what an inclusion proof carries) ---------------------

    def entry(self, device_id: str, seq: int) -> StoredEntry | None:
        """The accepted entry `seq` of a device, or None."""
        return self.storage.entry(device_id, seq)

    def entry_bodies(self, device_id: str, lo: int, hi: int) -> list[bytes]:
        """The accepted entry bytes of seqs lo..hi (inclusive), in seq order."""
        return self.storage.entry_bodies(device_id, lo, hi)

    def covering_checkpoint(self, device_id: str, seq: int) -> tuple[int, bytes] | None:
        """(seq, COSE bytes) of the first stored device checkpoint at or after `seq`
        whose head is the accepted entry at its seq: the device's signed word over the
        accepted chain up to it. None if no such checkpoint is stored."""
        return self.storage.covering_checkpoint(device_id, seq)

    # -- checkpoints ---------------------------------------------------------------------

    def sign_checkpoint(self) -> bytes:
        """Sign (size, root) now with the loaded key; stored once per size, so repeating
        it is a no-op (and needs no key)."""
        with self.storage.transaction():
            size = self.size
            done = self.storage.checkpoint(size)
            if done is not None:
                return done
            s = self.require_signer()
            data = note.sign_checkpoint(note.Checkpoint(self.origin, size, self.root(size)),
                                        [s])
            self.storage.add_checkpoint(size, data, int(time.time()))
            return data

    def checkpoints(self) -> list[bytes]:
        return self.storage.checkpoints()

    def latest_checkpoint(self) -> bytes:
        data = self.storage.latest_checkpoint()
        if data is None:
            raise LedgerError("the ledger has no signed checkpoint yet")
        return data

    # -- trusted collectors --------------------------------------------------------------

    def trust_collector(self, key: note.Verifier, name: str) -> bool:
        """Let bundles signed by `key` enroll devices; False if it was trusted already."""
        with self.storage.transaction():
            return self.storage.add_collector(key.to_string(), name, int(time.time()))

    def trusted_collectors(self) -> list[tuple[str, str, int]]:
        """(verifier key, name, added at) of every trusted collector, oldest first."""
        return self.storage.collectors()

    def collector_name(self, key: note.Verifier | str) -> str | None:
        """The name under which `key` (a verifier, or its key string as a devices row
        keeps it) is trusted, or None if it is not."""
        return self.storage.collector_name(key if isinstance(key, str) else key.to_string())

    # -- devices -------------------------------------------------------------------------

    def device(self, device_id: str) -> Device | None:
        return self.storage.device(device_id)

    def devices(self) -> list[Device]:
        return self.storage.devices()

    def fork_evidence(self, device_id: str) -> str | None:
        """The device's first fork-evidence document (lowest seq), None if it has none."""
        first = self.storage.first_evidence(parse_device_id(device_id))
        return None if first is None else first[1]

    def revoke(self, device_id: str, reason: str) -> Device:
        """Refuse the device's later entries. Opened with the key, the ledger also keeps
        a statement of it signed by the ledger key (hashtrail.ledger.revocation), which
        `serve` and `publish` serve to monitors; revoking again with the key signs a
        revocation made without it (the first time and reason stay)."""
        device_id = parse_device_id(device_id)
        with self.storage.transaction():
            dev = self.device(device_id)
            if dev is None:
                raise LedgerError(f"device {device_id} is not enrolled in this ledger")
            if dev.revoked_at is None:
                self.storage.set_revoked(device_id, int(time.time()), reason)
            out = self.device(device_id)
            assert out is not None and out.revoked_at is not None
            if self._signer is not None:
                r = Revocation(self.origin, device_id, out.revoked_at,
                               out.revoked_reason or "")
                self.storage.add_revocation(device_id, sign_revocation(r, self._signer))
        return out

    def revocations(self) -> list[bytes]:
        """Every ledger-signed revocation statement, by device id."""
        return self.storage.revocations()
