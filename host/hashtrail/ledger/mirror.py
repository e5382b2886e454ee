"""Keep a verified replica of a log served as C2SP tlog-tiles (`hashtrail mirror`).

Why a mirror checks everything itself: its point is that the log keeps existing, and
keeps being checkable, if the operator's server goes away or starts lying. So nothing
the server sends is kept until it is proven: the checkpoint is opened with the ledger
key the user brings; every entry in every new entry bundle hashes to its level-0 tile
hash; every hash of every new tile above level 0 is the root of the full tile below
it; the tree those tiles make has exactly the checkpoint's root; and the tree is an
extension of the last checkpoint this mirror accepted (an RFC 9162 consistency proof
computed from the new tiles, checked against the old signed root). Only then are the
new files moved into the replica, the checkpoint last, so the replica's checkpoint
always names a tree whose tiles are all there.

The replica is the published tlog-tiles layout (hashtrail.ledger.tiles), so any static
web server can serve it and `verify-proof --url` works against it once it also holds
the device words (`hashtrail/word/...`, not in the tree: with `words`, the mirror
fetches each new entry's word and keeps it only if, joined with the verified leaf and
path, it checks as a whole proof down to the device's signature). The log's signed
revocations (`hashtrail/revocations`, not in the tree either) are copied on every run
once each statement checks with the ledger key (hashtrail.ledger.revocation).

The last checkpoint the mirror saw is the replica's own `checkpoint` file: what it
serves is what it checked. Full tiles of that tree are immutable and never fetched
again; a run fetches only what the tree grew by (plus the partial tiles at the edge).

A server that lies (a changed tile or bundle, a checkpoint not signed by the key, a
tree that does not extend the replica's, two roots for one size) gets a MirrorError,
and the replica is left exactly as it was: new files are staged in a temporary folder
inside it, removed on any failure.
"""

from __future__ import annotations

import collections
import hashlib
import json
import os
import shutil
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import NamedTuple, TypeVar

from hashtrail.errors import ConfigError, HashtrailError, VerificationError
from hashtrail.formats import merkle, note
from hashtrail.formats.leaf import parse_leaf
from hashtrail.ledger import proof, revocation, tiles
from hashtrail.ledger.tiles import CHECKPOINT, WIDTH, TileError, TileHashes, TileRef
from hashtrail.ledger.tiles_client import MAX_BUNDLE, MAX_WORD, FetchError, TileSession

STAGING_PREFIX = ".mirror-staging-"
# Leaf indexes whose device word the server did not have yet (JSON list), retried by
# the next run with words. Not a tlog-tiles path: no server of the replica serves it.
WORDS_MISSING = "hashtrail/words-missing.json"
_T = TypeVar("_T")


class MirrorError(VerificationError):
    """The log's server sent something that is not the log it signed, or a log that
    does not extend what this mirror saw before. Nothing in the replica changed."""

    hint = "the replica keeps the last checkpoint it could prove; tell the log's " \
           "operator and keep the server's answer as evidence"


class Mirrored(NamedTuple):
    status: str             # "updated", "unchanged" or "behind" (server's tree is older)
    old_size: int           # the replica's tree size before this run (0: new replica)
    size: int               # the replica's tree size now
    fetched: int            # tiles and entry bundles fetched
    kept: int               # full tiles already in the replica, not fetched again
    requests: int
    bytes: int
    seconds: float          # the whole run
    verify_seconds: float   # hashing and proof checking only
    words: int = 0          # device words fetched and checked (with words=True)
    words_missing: int = 0  # new entries the server has no word for (404)


class _Replica:
    """Tiles of the tree being checked: new ones (fetched this run, held in memory for
    hash tiles) over the replica's files for full tiles of the tree it already proved."""

    def __init__(self, out: Path, known: int) -> None:
        self.out, self.known = out, known
        self.new: dict[TileRef, bytes] = {}

    def is_known(self, ref: TileRef) -> bool:
        """A tile of the replica's proven tree (a partial one is a prefix of its tile,
        as immutable as a full one): already checked, in the replica's folder."""
        if not self.known:
            return False
        try:
            tiles.check_in_tree(ref, self.known)
        except tiles.NotFound:
            return False
        return True

    def tile(self, ref: TileRef) -> bytes:
        got = self.new.get(ref)
        if got is not None:
            return got
        if not self.is_known(ref):
            raise MirrorError(f"{ref.path()}: not among the tiles fetched")
        try:
            return (self.out / ref.path()).read_bytes()
        except OSError as e:
            raise ConfigError(f"the replica in {self.out} lacks {ref.path()}: "
                              f"{e.strerror or e}",
                              hint="mirror into a new folder") from None


def _tile_root(data: bytes) -> bytes:
    """Root of a full tile's 256 hashes (8 levels of RFC 9162 node hashing)."""
    sha = hashlib.sha256
    hs = [data[i:i + 32] for i in range(0, len(data), 32)]
    while len(hs) > 1:
        hs = [sha(b"\x01" + hs[i] + hs[i + 1]).digest() for i in range(0, len(hs), 2)]
    return hs[0]


def check_bundle(ref: TileRef, bundle: bytes, level0: bytes) -> None:
    """Every entry of an entry bundle hashes to its level-0 tile hash (MirrorError)."""
    try:
        leaves = tiles.parse_bundle(bundle, ref.width)
    except TileError as e:
        raise MirrorError(f"{ref.path()}: {e}") from None
    sha = hashlib.sha256
    got = b"".join(sha(b"\x00" + leaf).digest() for leaf in leaves)
    if got != level0:
        i = next(i for i in range(ref.width) if got[32 * i:32 * i + 32]
                 != level0[32 * i:32 * i + 32])
        raise MirrorError(f"{ref.path()}: entry {ref.n * WIDTH + i} does not hash to its "
                          "level-0 tile hash (a changed entry bundle or tile)")


def check_hash_tile(ref: TileRef, data: bytes, replica: _Replica) -> None:
    """Each hash of a tile above level 0 is the root of the full tile below it."""
    assert ref.level is not None and ref.level > 0
    for i in range(ref.width):
        child = TileRef(ref.level - 1, ref.n * WIDTH + i)
        if _tile_root(replica.tile(child)) != data[32 * i:32 * i + 32]:
            if child not in replica.new:
                raise MirrorError(f"{ref.path()}: hash {i} is not the root of the "
                                  f"replica's {child.path()}: the served tree does not "
                                  f"extend the replica's (size {replica.known})")
            raise MirrorError(f"{ref.path()}: hash {i} is not the root of "
                              f"{child.path()} (a changed tile)")


def _open_checkpoint(data: bytes, verifier: note.Verifier, what: str) -> note.Checkpoint:
    try:
        return note.open_checkpoint(data, [verifier])[0]
    except HashtrailError as e:
        raise MirrorError(f"{what}: {e}") from None


def _local_checkpoint(out: Path, verifier: note.Verifier) -> tuple[note.Checkpoint, bytes] | None:
    path = out / CHECKPOINT
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return None
    except OSError as e:
        raise ConfigError(f"{path}: {e.strerror or e}") from None
    try:
        return note.open_checkpoint(data, [verifier])[0], data
    except HashtrailError as e:
        raise ConfigError(f"{path} is not a checkpoint of this log: {e}",
                          hint="a replica is kept per log: mirror into a new folder, or "
                               "give the key of the log this folder mirrors") from None


def _check_consistent(get: merkle.GetNode, old: note.Checkpoint, new: note.Checkpoint,
                      what: str) -> None:
    """`new` extends `old` (old.size <= new.size): an RFC 9162 consistency proof made
    from `get` (tiles of the bigger tree) checked against both signed roots."""
    try:
        path = merkle.prove_consistency(get, old.size, new.size)
        merkle.check_consistency(old.size, new.size, old.root, new.root, path)
    except (VerificationError, TileError) as e:
        raise MirrorError(f"{what}: {e}") from None


def _stage(staging: Path, rel: str, data: bytes) -> None:
    p = staging / rel
    p.parent.mkdir(parents=True, exist_ok=True)
    with open(p, "wb") as f:
        f.write(data)


def _move_in(staging: Path, out: Path) -> None:
    """Staged files into the replica (each rename atomic), the checkpoint last."""
    files = sorted(p for p in staging.rglob("*") if p.is_file())
    for p in sorted(files, key=lambda p: p.name == CHECKPOINT):
        dst = out / p.relative_to(staging)
        dst.parent.mkdir(parents=True, exist_ok=True)
        os.chmod(p, 0o644)
        os.replace(p, dst)


class _Pool:
    """Fetching with `connections` kept-alive connections at once (one per thread):
    tiles are small, and on a loaded machine each request waits on the server's
    process and each staged file on the disk, so a few in flight hide the waits. The
    checks stay in order on the tiles each worker hands back."""

    def __init__(self, url: str, timeout: float, connections: int) -> None:
        self.url, self.timeout = url, timeout
        self._local = threading.local()
        self._sessions: list[TileSession] = []
        self._lock = threading.Lock()
        self.connections = connections
        self.ex = ThreadPoolExecutor(max_workers=connections, thread_name_prefix="mirror")

    def session(self) -> TileSession:
        s: TileSession | None = getattr(self._local, "session", None)
        if s is None:
            s = self._local.session = TileSession(self.url, self.timeout)
            with self._lock:
                self._sessions.append(s)
        return s

    @property
    def requests(self) -> int:
        return sum(s.requests for s in self._sessions)

    @property
    def bytes(self) -> int:
        return sum(s.bytes for s in self._sessions)

    def close(self) -> None:
        self.ex.shutdown(wait=True, cancel_futures=True)
        for s in self._sessions:
            s.close()


def _ordered(ex: ThreadPoolExecutor, fn: Callable[[int], _T], items: Iterator[int],
             window: int) -> Iterator[_T]:
    """fn over items on the pool, results in order, at most `window` in flight
    (Executor.map would submit every item first)."""
    pending: collections.deque[Future[_T]] = collections.deque()
    for it in items:
        pending.append(ex.submit(fn, it))
        if len(pending) >= window:
            yield pending.popleft().result()
    while pending:
        yield pending.popleft().result()


def _hash_tile(client: TileSession, ref: TileRef) -> bytes:
    data = client.get(ref.path(), ref.width * merkle.HASH_SIZE)
    if len(data) != ref.width * merkle.HASH_SIZE:
        raise MirrorError(f"{ref.path()} is {len(data)} bytes, not "
                          f"{ref.width * merkle.HASH_SIZE}")
    return data


def mirror(url: str, out: Path, verifier: note.Verifier, timeout: float = 10.0,
           words: bool = False, connections: int = 8,
           revocations: bool = True) -> Mirrored:
    """Bring the replica in folder `out` up to the log at `url` (module docstring).
    `words`: also copy the device's word of every new entry, each checked first as
    part of a whole `hashtrail-proof/3` (down to the device's own signature) built from
    the verified tiles, so `verify-proof --url` works against the replica.
    `revocations`: copy the signed revocation list, every statement checked first (the
    monitor checks and reports it itself)."""
    t0 = time.monotonic()
    pool = _Pool(url, timeout, max(1, connections))
    made = not out.exists()
    try:
        return _mirror(pool, out, verifier, t0, words, revocations)
    except BaseException:
        if made and out.is_dir() and not any(out.iterdir()):
            out.rmdir()
        raise
    finally:
        pool.close()


def _mirror(pool: _Pool, out: Path, verifier: note.Verifier, t0: float,
            words: bool, revocations: bool) -> Mirrored:
    client = pool.session()
    cp_bytes = client.get(CHECKPOINT, note.MAX_NOTE)
    cp = _open_checkpoint(cp_bytes, verifier, "the served checkpoint")
    prev = _local_checkpoint(out, verifier)
    old = None if prev is None else prev[0]
    old_size = 0 if old is None else old.size
    replica = _Replica(out, old_size)

    def done(status: str, verify_s: float = 0.0) -> Mirrored:
        return Mirrored(status, old_size, old_size, 0, 0, pool.requests, pool.bytes,
                        time.monotonic() - t0, verify_s)

    if old is not None and cp.size <= old.size:
        if cp.size == old.size and cp.root != old.root:
            raise MirrorError(f"the served checkpoint has root {cp.root.hex()} for tree size "
                              f"{cp.size}, the replica's checkpoint {old.root.hex()}: two "
                              "trees of one size, both signed (a split view)")
        if cp.size < old.size:
            t = time.monotonic()
            _check_consistent(TileHashes(replica.tile, old.size).get, cp, old,
                              f"the served checkpoint (size {cp.size}) is not a prefix of "
                              f"the replica's (size {old.size})")
            return done("behind", time.monotonic() - t)
        if revocations:
            _copy_revocations(client, out, verifier, cp.origin)
        return done("unchanged")

    out.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=STAGING_PREFIX, dir=out))
    try:
        fetched = kept = 0
        verify_s = 0.0

        def level0(n: int) -> tuple[TileRef, bytes, float]:
            """Level-0 tile n and its entry bundle, the bundle checked against it, both
            staged (run by the pool's threads; the tile is checked with the others)."""
            c = pool.session()
            ref = tiles.tile_for(0, n, cp.size)
            hashes = _hash_tile(c, ref)
            bref = TileRef(None, n, ref.width)
            bundle = c.get(bref.path(), MAX_BUNDLE)
            t = time.monotonic()
            check_bundle(bref, bundle, hashes)
            dt = time.monotonic() - t
            _stage(staging, bref.path(), bundle)
            _stage(staging, ref.path(), hashes)
            return ref, hashes, dt

        # Full tiles of the replica's tree are known; from its edge on, tiles are
        # fetched lazily, a bounded window at a time, so a checkpoint claiming a huge
        # tree costs one failed fetch, not a list of every tile it claims.
        count0 = (cp.size + WIDTH - 1) // WIDTH
        kept += 2 * (old_size // WIDTH)
        todo = (n for n in range(old_size // WIDTH, count0)
                if not replica.is_known(tiles.tile_for(0, n, cp.size)))
        for ref, hashes, dt in _ordered(pool.ex, level0, todo, 4 * pool.connections):
            replica.new[ref] = hashes
            verify_s += dt
            fetched += 2
        level = 1
        while cp.size >> (tiles.HEIGHT * level):
            first = (old_size >> (tiles.HEIGHT * level)) // WIDTH
            kept += first
            for n in range(first, ((cp.size >> (tiles.HEIGHT * level)) + WIDTH - 1) // WIDTH):
                ref = tiles.tile_for(level, n, cp.size)
                if replica.is_known(ref):
                    kept += 1
                    continue
                data = _hash_tile(client, ref)
                t = time.monotonic()
                check_hash_tile(ref, data, replica)
                verify_s += time.monotonic() - t
                replica.new[ref] = data
                fetched += 1
            level += 1
        t = time.monotonic()
        get = TileHashes(replica.tile, cp.size).get
        try:
            root = merkle.root(get, cp.size)
        except TileError as e:
            raise MirrorError(f"the served tiles: {e}") from None
        if root != cp.root:
            raise MirrorError(f"the served tiles make root {root.hex()}, the checkpoint "
                              f"signs {cp.root.hex()} (a changed tile)")
        if old is not None:
            _check_consistent(get, old, cp, f"the served checkpoint (size {cp.size}) does "
                                            f"not extend the replica's (size {old.size})")
        verify_s += time.monotonic() - t
        nwords = missing = 0
        if words:
            nwords, missing = _copy_words(client, staging, out, cp, cp_bytes, get,
                                          old_size, verifier)
        for ref, data in replica.new.items():
            if ref.level:               # level 0: staged by the pool
                _stage(staging, ref.path(), data)
        _stage(staging, CHECKPOINT, cp_bytes)
        _move_in(staging, out)
        if revocations:
            _copy_revocations(client, out, verifier, cp.origin)
    finally:
        pool.ex.shutdown(wait=True, cancel_futures=True)    # no worker writes after this
        shutil.rmtree(staging, ignore_errors=True)
    return Mirrored("updated", old_size, cp.size, fetched, kept, pool.requests,
                    pool.bytes, time.monotonic() - t0, verify_s, nwords, missing)


def _copy_revocations(client: TileSession, out: Path, verifier: note.Verifier,
                      origin: str) -> None:
    """Copy the server's signed revocation list (hashtrail.ledger.revocation) once
    every statement in it checks with the ledger key; a server without one: nothing.
    Not part of the tree, so copied on every run, the tree grown or not."""
    try:
        data = client.get(tiles.REVOCATIONS, revocation.MAX_LIST)
    except FetchError as e:
        if "HTTP 404" in str(e):
            return
        raise
    try:
        revocation.open_list(data, verifier, origin)
    except HashtrailError as e:
        raise MirrorError(f"{tiles.REVOCATIONS}: {e}") from None
    dst = out / tiles.REVOCATIONS
    if not dst.exists() or dst.read_bytes() != data:
        tiles.write_atomic(dst, data)


def _missing_words(out: Path) -> list[int]:
    """Leaf indexes whose word an earlier run could not get yet (WORDS_MISSING)."""
    try:
        got = json.loads((out / WORDS_MISSING).read_text())
    except (OSError, ValueError):
        return []
    return [i for i in got if type(i) is int and i >= 0] if isinstance(got, list) else []


def check_word(raw: bytes, leaf_b: bytes, index: int, cp: note.Checkpoint,
               cp_bytes: bytes, get: merkle.GetNode, verifier: note.Verifier,
               device_id: str) -> None:
    """A device's word (`hashtrail-word/2` or /1, JSON bytes as served) for leaf `index`
    (bytes `leaf_b`, proven under `cp` by `get`), checked as the whole
    `hashtrail-proof/3` (or /2) it completes, down to the device's signature against the
    key its id names (ledger.proof). VerificationError saying why when it does not
    check."""
    try:
        word = json.loads(raw)
        fmt = tiles.word_proof_format(word.get("format"))
        if fmt is None or word.get("leaf_index") != index:
            raise VerificationError(f"not {tiles.WORD_FORMAT} for leaf {index}")
        doc = {"format": fmt, "type": "inclusion",
               "leaf": leaf_b.hex(), "leaf_index": index, "tree_size": cp.size,
               "root": cp.root.hex(),
               "path": [h.hex() for h in merkle.prove_inclusion(get, index, cp.size)],
               "checkpoint": cp_bytes.decode("utf-8"),
               "device": word["device"], "enrollment": word["enrollment"],
               "device_signature": word["device_signature"]}
        proof.check_inclusion_proof(doc, verifier, device_id=device_id)
    except (ValueError, TypeError, KeyError, AttributeError, HashtrailError) as e:
        raise VerificationError(f"the device's word does not check: {e}") from None


def _copy_words(client: TileSession, staging: Path, out: Path, cp: note.Checkpoint,
                cp_bytes: bytes, get: merkle.GetNode, old_size: int,
                verifier: note.Verifier) -> tuple[int, int]:
    """Fetch, check and stage the word of each leaf old_size..cp.size-1, and of each
    leaf an earlier run found no word for: the word joined with the leaf and a path
    from the verified tiles must check as a whole proof. Leaves still without one are
    listed in WORDS_MISSING, asked for again next run."""
    nwords = 0
    still: list[int] = []
    bundles: dict[TileRef, list[bytes]] = {}

    def leaf_at(index: int) -> bytes:
        ref = tiles.tile_for(None, index // WIDTH, cp.size)
        if ref not in bundles:
            src = staging / ref.path()
            data = (src if src.exists() else out / ref.path()).read_bytes()
            bundles.clear()
            bundles[ref] = tiles.parse_bundle(data, ref.width)
        return bundles[ref][index % WIDTH]

    retry = [i for i in _missing_words(out) if i < old_size]
    for index in [*retry, *range(old_size, cp.size)]:
        leaf_b = leaf_at(index)
        try:
            lf = parse_leaf(leaf_b)
        except HashtrailError as e:
            raise MirrorError(f"leaf {index} is not a hashtrail leaf: {e}") from None
        rel = tiles.word_path(lf.device_id, lf.seq)
        try:
            raw = client.get(rel, MAX_WORD)
        except FetchError as e:
            if "HTTP 404" not in str(e):
                raise
            still.append(index)
            continue
        try:
            check_word(raw, leaf_b, index, cp, cp_bytes, get, verifier, lf.device_id)
        except HashtrailError as e:
            raise MirrorError(f"{rel}: {e}") from None
        _stage(staging, rel, raw)
        nwords += 1
    if still or (out / WORDS_MISSING).exists():
        _stage(staging, WORDS_MISSING, json.dumps(still).encode())
    return nwords, len(still)

