"""The ledger as C2SP tlog-tiles (c2sp.org/tlog-tiles): checkpoint, hash tiles, entry
bundles, and the device's word beside them.

Why tiles: a witness, an auditor or a mirror should not need the ledger's SQLite file,
nor a server that computes proofs for them. tlog-tiles lays the Merkle tree out as a
finite set of immutable files (256 hashes per tile), so any static web server, object
store or CDN can serve the log, and clients compute every inclusion and consistency
proof themselves from tiles they can cache forever. Tools that are not ours (Go's
sumdb/tlog, the transparency-dev clients) read the same bytes.

Layout, under the log's prefix (all of it derived from the ledger, nothing stored):

    checkpoint                      the newest signed checkpoint (C2SP signed note)
    tile/<L>/<N>[.p/<W>]            hash tiles: level L, index N, W hashes if partial
    tile/entries/<N>[.p/<W>]        entry bundles: each leaf as uint16 BE length || leaf
    hashtrail/word/<id>/<S>         the device's word for its entry S (JSON, below)

<N> and <S> are written as tlog-tiles writes indexes: zero-padded 3-digit groups, all
but the last prefixed with `x` (1234067 -> x001/x234/067). Everything served stops at
the checkpoint's tree size, so a reader never sees a tile no signed tree commits to.

The word (`hashtrail-word/2`): a leaf only says "the operator put these bytes in the
log", and the per-entry signature or device checkpoint is not in the leaf, so a proof
fetched over the network needs the device's own signature beside the tiles. The word
carries exactly the parts of a `hashtrail-proof/3` that the tiles do not (leaf index,
device key, enrollment with its collector signature, device signature; see
hashtrail.ledger.proof); a client joins it with the leaf, path and checkpoint it took
from tiles and checks the whole proof. A `hashtrail-word/1` (served by a log or a
replica from before enrollment signatures) joins into a `hashtrail-proof/2`
(`word_proof_format`).
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import struct
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, NamedTuple

from hashtrail.errors import ConfigError, FormatError
from hashtrail.formats import merkle, note
from hashtrail.formats.keys import key_fingerprint, parse_device_id
from hashtrail.ledger import proof, revocation
from hashtrail.ledger.ledger_db import Ledger, LedgerError

WIDTH = 256                 # hashes (or entries) per full tile
HEIGHT = 8                  # tree levels per tile: WIDTH = 2**HEIGHT
MAX_LEVEL = 63
MAX_ENTRY = 0xFFFF          # an entry bundle's length prefix is a uint16
WORD_FORMAT = "hashtrail-word/2"
WORD_FORMAT_1 = "hashtrail-word/1"      # before enrollment signatures (read)
CHECKPOINT = "checkpoint"
REVOCATIONS = "hashtrail/revocations"   # ledger-signed revocations (ledger.revocation)
# Longest tile path a reader accepts: an index of 2**64 is 7 groups (27 characters).
_MAX_PATH = 96
_GROUP = re.compile(r"x[0-9]{3}")
_DIGITS = re.compile(r"[0-9]{3}")
_DEC = re.compile(r"0|[1-9][0-9]{0,2}")
_ID = re.compile(r"[0-9a-f]{32}")


class TileError(FormatError):
    """A tile path that is not one tlog-tiles defines, or bytes that are not a tile."""

    hint = "tile paths are tile/<L>/<N>[.p/<W>] and tile/entries/<N>[.p/<W>] " \
           "(c2sp.org/tlog-tiles)"


class NotFound(ConfigError):
    """A resource no signed tree of this log holds (yet): HTTP 404."""

    hint = "fetch the checkpoint first; only what its tree size covers is served"


class TileRef(NamedTuple):
    """One tile: `level` None for an entry bundle; `width` 256 for a full tile."""

    level: int | None
    n: int
    width: int = WIDTH

    @property
    def partial(self) -> bool:
        return self.width < WIDTH

    def path(self) -> str:
        lv = "entries" if self.level is None else str(self.level)
        tail = f".p/{self.width}" if self.partial else ""
        return f"tile/{lv}/{index_path(self.n)}{tail}"


class WordRef(NamedTuple):
    device_id: str
    seq: int

    def path(self) -> str:
        return word_path(self.device_id, self.seq)


# -- paths ------------------------------------------------------------------------------

def index_path(n: int) -> str:
    """tlog-tiles index encoding: 1234067 -> "x001/x234/067", 5 -> "005"."""
    if n < 0:
        raise ValueError("a tile index is not negative")
    groups = [f"{n % 1000:03d}"]
    n //= 1000
    while n:
        groups.append(f"x{n % 1000:03d}")
        n //= 1000
    return "/".join(reversed(groups))


def parse_index(parts: list[str]) -> int:
    """The index written as `parts` (index_path's groups); only the canonical spelling
    (no leading x000 group) is accepted, so one tile has one path."""
    if not parts or not _DIGITS.fullmatch(parts[-1]) or \
            not all(_GROUP.fullmatch(p) for p in parts[:-1]) or \
            (len(parts) > 1 and parts[0] == "x000"):
        raise TileError("not a tile index (3-digit groups, all but the last x-prefixed)")
    n = 0
    for p in parts:
        n = n * 1000 + int(p.removeprefix("x"))
    return n


def word_path(device_id: str, seq: int) -> str:
    return f"hashtrail/word/{device_id}/{index_path(seq)}"


def parse_path(path: str) -> TileRef | WordRef | str | None:
    """A request path (no leading slash) as what it names; None for the checkpoint,
    the path itself for REVOCATIONS.
    Anything else (another spelling, `..`, a level over 63, a width outside 1..255,
    a non-canonical index) is a TileError: there is one path per resource."""
    if path == CHECKPOINT:
        return None
    if path == REVOCATIONS:
        return REVOCATIONS
    if len(path) > _MAX_PATH or not path.isascii():
        raise TileError("no such path")
    parts = path.split("/")
    if len(parts) >= 4 and parts[:2] == ["hashtrail", "word"]:
        if not _ID.fullmatch(parts[2]):
            raise TileError("a device id is 32 lower-case hex characters")
        return WordRef(parts[2], parse_index(parts[3:]))
    if len(parts) < 3 or parts[0] != "tile":
        raise TileError("no such path")
    level: int | None
    if parts[1] == "entries":
        level = None
    elif _DEC.fullmatch(parts[1]) and int(parts[1]) <= MAX_LEVEL:
        level = int(parts[1])
    else:
        raise TileError("a tile level is 0..63, written without leading zeros")
    rest, width = parts[2:], WIDTH
    if len(rest) >= 2 and rest[-2].endswith(".p"):
        w = rest[-1]
        if not _DEC.fullmatch(w) or not 1 <= int(w) < WIDTH:
            raise TileError("a partial tile's width is 1..255, without leading zeros")
        width = int(w)
        rest = [*rest[:-2], rest[-2][:-2]]
    return TileRef(level, parse_index(rest), width)


# -- what a tree of size n holds ----------------------------------------------------------

def tile_for(level: int | None, index: int, size: int) -> TileRef:
    """The tile of `level` (None: entry bundle) holding stored hash `index`*256.. for a
    tree of `size` leaves: full when complete, else the partial tile that size has."""
    count = size >> (HEIGHT * (level or 0))
    if (index + 1) * WIDTH <= count:
        return TileRef(level, index)
    width = count - index * WIDTH
    if width <= 0:
        raise NotFound(f"a tree of size {size} has no tile {index} at level {level}")
    return TileRef(level, index, width)


def tiles_of(size: int) -> Iterator[TileRef]:
    """Every tile and entry bundle a tree of `size` leaves is made of, bottom up."""
    level = 0
    while size >> (HEIGHT * level):
        count = size >> (HEIGHT * level)
        for n in range((count + WIDTH - 1) // WIDTH):
            yield tile_for(level, n, size)
            if level == 0:
                yield tile_for(None, n, size)
        level += 1


def check_in_tree(ref: TileRef, size: int) -> None:
    """NotFound unless a tree of `size` leaves holds `ref` (a partial tile: the first
    `width` hashes of its tile, present in that tree; any such prefix is immutable)."""
    count = size >> (HEIGHT * (ref.level or 0))
    if ref.n * WIDTH + ref.width > count:
        raise NotFound(f"{ref.path()}: not in the log's tree of size {size}")


# -- the ledger as tiles ------------------------------------------------------------------

class LedgerTiles:
    """Tiles, entry bundles, words and the checkpoint, read from a ledger.

    `size` is the newest signed checkpoint's tree size, re-read by `refresh`: a request
    past it refreshes once before it is refused, so a growing ledger is followed without
    polling. Every tile below that size is immutable, so the bytes are cached (up to
    `cache_bytes`, oldest out first), keyed by the request path: a path names one tile
    in one spelling only (parse_path), so a cached tile is served without parsing its
    path or reading the ledger (tools/bench_serve.py)."""

    def __init__(self, ledger: Ledger, cache_bytes: int = 64 << 20,
                 checkpoints: Callable[[], bytes | None] | None = None) -> None:
        self.ledger = ledger
        self.verifier = ledger.verifier
        self._source = checkpoints
        self._cp = b""
        self.size = 0
        self._cache: dict[str, bytes] = {}
        self._cached = 0
        self._limit = cache_bytes
        with contextlib.suppress(NotFound):
            self.refresh()

    def refresh(self) -> bytes:
        """The checkpoint to serve (checked under the ledger's own key): the ledger's
        newest, or what `checkpoints` gives (the newest with enough cosignatures,
        hashtrail.ledger.witness_push); NotFound while it gives none."""
        data = self.ledger.latest_checkpoint() if self._source is None else self._source()
        if data is None:
            raise NotFound("no checkpoint has the witness cosignatures required yet")
        if data != self._cp:
            cp, _ = note.open_checkpoint(data, [self.verifier])
            self._cp, self.size = data, cp.size
        return data

    def checkpoint(self) -> bytes:
        return self.refresh()

    def _covered(self, ref: TileRef) -> None:
        try:
            check_in_tree(ref, self.size)
        except NotFound:
            self.refresh()
            check_in_tree(ref, self.size)

    def tile(self, ref: TileRef, path: str | None = None) -> bytes:
        key = ref.path() if path is None else path
        got = self._cache.get(key)
        if got is not None:
            return got
        self._covered(ref)
        data = self._read(ref)
        if self._limit <= 0:
            return data
        self._cache[key] = data
        self._cached += len(data)
        while self._cached > self._limit:
            old = next(iter(self._cache))
            self._cached -= len(self._cache.pop(old))
        return data

    def _read(self, ref: TileRef) -> bytes:
        start, last = ref.n * WIDTH, ref.n * WIDTH + ref.width - 1
        if ref.level is None:
            out = bytearray()
            for i, leaf in enumerate(self.ledger.leaves(start, last), start):
                if len(leaf) > MAX_ENTRY:
                    raise TileError(f"leaf {i} is {len(leaf)} bytes: an entry bundle holds "
                                    f"entries of at most {MAX_ENTRY}")
                out += struct.pack(">H", len(leaf)) + leaf
            return bytes(out)
        return b"".join(self.ledger.nodes(HEIGHT * ref.level, start, last))

    def word(self, ref: WordRef) -> bytes:
        """The device's word (module docstring) for one of its entries under the
        checkpoint, as JSON bytes. An entry the ledger holds no device signature for
        (a row appended without the device) has none: NotFound, as for a monitor."""
        try:
            word = device_word(self.ledger, ref.device_id, ref.seq, self.size)
        except LedgerError as e:
            raise NotFound(f"no device word for {ref.device_id} seq {ref.seq}: {e}") from None
        return json.dumps(word, separators=(",", ":"), sort_keys=True).encode()

    def get(self, path: str) -> tuple[str, bytes]:
        """(kind, bytes) for a request path: kind is "checkpoint", "tile" or "word".
        TileError for a path that names nothing, NotFound past the signed tree."""
        hit = self._cache.get(path)
        if hit is not None:
            return "tile", hit
        ref = parse_path(path)
        if ref is None:
            return "checkpoint", self.checkpoint()
        if isinstance(ref, str):
            return "revocations", revocation.format_list(self.ledger.revocations())
        if isinstance(ref, WordRef):
            try:
                return "word", self.word(ref)
            except NotFound:
                self.refresh()
                return "word", self.word(ref)
        return "tile", self.tile(ref, path)


def word_proof_format(word_format: object) -> str | None:
    """The proof format a word of this format completes; None for no word format."""
    if word_format == WORD_FORMAT:
        return proof.PROOF_FORMAT
    return proof.PROOF_FORMAT_2 if word_format == WORD_FORMAT_1 else None


def device_word(ledger: Ledger, device_id: str, seq: int, size: int) -> dict[str, Any]:
    """`hashtrail-word/2` for device entry `seq`, if its leaf is under tree `size`."""
    did = parse_device_id(device_id)
    if not 0 <= seq < 1 << 63:          # past any SQLite integer: no such entry
        raise NotFound(f"device {did} has no seq {seq}")
    dev = ledger.device(did)
    row = None if dev is None else ledger.entry(did, seq)
    if dev is None or row is None or row.leaf_index >= size:
        raise NotFound(f"device {did} seq {seq} is not in the log's tree of size {size}")
    return {"format": WORD_FORMAT, "leaf_index": row.leaf_index,
            "device": {"id": did, "pub": dev.pub.hex(),
                       "fingerprint": key_fingerprint(dev.pub)},
            "enrollment": proof.enrollment_doc(ledger, dev),
            "device_signature": proof.device_signature(ledger, did, seq, row)}


# -- reading tiles (any source) ------------------------------------------------------------

def parse_bundle(data: bytes, width: int) -> list[bytes]:
    """An entry bundle's `width` entries; TileError when the bytes say otherwise."""
    out, i = [], 0
    while i < len(data):
        if i + 2 > len(data):
            raise TileError("entry bundle ends inside a length prefix")
        n = struct.unpack_from(">H", data, i)[0]
        if i + 2 + n > len(data):
            raise TileError("entry bundle ends inside an entry")
        out.append(data[i + 2:i + 2 + n])
        i += 2 + n
    if len(out) != width:
        raise TileError(f"entry bundle holds {len(out)} entries, not {width}")
    return out


class TileHashes:
    """merkle's `get(level, index)` over tiles of a tree of `size` leaves, fetched with
    `fetch(ref) -> bytes` and kept: a stored hash at level 8t + k is k levels of
    hashing over 2**k hashes of one level-t tile. The tiles are not trusted: whatever
    they give is checked by the proof built from it against a signed root."""

    def __init__(self, fetch: Callable[[TileRef], bytes], size: int) -> None:
        self.fetch, self.size = fetch, size
        self._tiles: dict[TileRef, bytes] = {}

    def tile(self, ref: TileRef) -> bytes:
        data = self._tiles.get(ref)
        if data is None:
            data = self.fetch(ref)
            want = ref.width * merkle.HASH_SIZE if ref.level is not None else None
            if want is not None and len(data) != want:
                raise TileError(f"{ref.path()} is {len(data)} bytes, not {want}")
            self._tiles[ref] = data
        return data

    def get(self, level: int, index: int) -> bytes:
        t, k = divmod(level, HEIGHT)
        first = index << k
        ref = tile_for(t, first // WIDTH, self.size)
        data = self.tile(ref)
        o = first % WIDTH
        if (o + (1 << k)) > ref.width:
            raise TileError(f"{ref.path()} does not hold hash ({level}, {index})")
        hs = [data[32 * i:32 * i + 32] for i in range(o, o + (1 << k))]
        while len(hs) > 1:
            hs = [merkle.node_hash(hs[i], hs[i + 1]) for i in range(0, len(hs), 2)]
        return hs[0]


# -- publishing to a folder ----------------------------------------------------------------

class Published(NamedTuple):
    size: int
    written: int        # files written this run
    kept: int           # full tiles already there (immutable: not rewritten)
    words: int


def write_atomic(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        os.unlink(tmp)
        raise


def publish(ledger: Ledger, out: Path, words: bool = False,
            checkpoint: bytes | None = None) -> Published:
    """Write the log under its newest signed checkpoint to folder `out` as tlog-tiles.

    Full tiles already in `out` are kept (immutable); partial tiles, words and last the
    checkpoint are (re)written, each file atomically (temporary file, rename), so a
    reader of the folder never sees a checkpoint whose tiles are not all there yet.
    `checkpoint`: the newest checkpoint with cosignatures added, written instead of it.

    `words` also writes every entry's word (what `verify-proof --url` needs beside the
    tiles): one file per entry, each as long as the chain from its entry to the device
    checkpoint that covers it, so for a device that checkpoints rarely this costs far
    more than the tiles; `hashtrail serve` makes words on request instead."""
    src = LedgerTiles(ledger, cache_bytes=0)
    cp, size = src.checkpoint(), src.size
    if checkpoint is not None:
        # the same checkpoint with cosignatures added (hashtrail.ledger.witness_push)
        if note.parse_note(checkpoint).text != note.parse_note(cp).text:
            raise ConfigError("the checkpoint to publish is not the ledger's newest")
        note.open_checkpoint(checkpoint, [src.verifier])
        cp = checkpoint
    written = kept = nwords = 0
    for ref in tiles_of(size):
        p = out / ref.path()
        if not ref.partial and p.is_file() and p.stat().st_size > 0:
            kept += 1
            continue
        write_atomic(p, src.tile(ref))
        written += 1
    if words:
        for dev in ledger.devices():
            for seq in range(dev.tip_seq + 1):
                row = ledger.entry(dev.device_id, seq)
                if row is None or row.leaf_index >= size:
                    continue
                write_atomic(out / word_path(dev.device_id, seq),
                              src.word(WordRef(dev.device_id, seq)))
                nwords += 1
    write_atomic(out / REVOCATIONS, revocation.format_list(ledger.revocations()))
    write_atomic(out / CHECKPOINT, cp)
    return Published(size, written + nwords + 2, kept, nwords)
