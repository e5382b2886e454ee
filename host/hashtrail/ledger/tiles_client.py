"""Fetch an inclusion proof from a log served as tlog-tiles (`hashtrail serve`, or a
folder from `ledger publish --words` behind any static web server).

Why the client builds the proof itself: nothing a server sends is trusted. It fetches
the checkpoint and opens it with the ledger key the user brings, the device's word
(hashtrail.ledger.tiles: leaf index, device key, device signature), the entry bundle
holding the leaf and the hash tiles the RFC 9162 path needs, and assembles a
`hashtrail-proof/3` document that hashtrail.ledger.proof.check_inclusion_proof then
checks like any proof file: down to the device's own signature, with the device id the
user pins. A lying server can only make the check fail.

Reads are bounded: every response has a size limit (a hash tile is 8 KiB, an entry
bundle at most 256 entries of 64 KiB), and a timeout.
"""

from __future__ import annotations

import http.client
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Sequence
from typing import Any

from hashtrail.errors import ConfigError, HashtrailError
from hashtrail.formats import merkle, note
from hashtrail.ledger import proof, tiles
from hashtrail.ledger.proof_file import CheckedProof
from hashtrail.ledger.tiles import TileError, TileHashes, TileRef

MAX_WORD = 16 << 20
MAX_BUNDLE = tiles.WIDTH * (2 + tiles.MAX_ENTRY)
_WORD_KEYS = frozenset({"format", "leaf_index", "device", "enrollment", "device_signature"})


class FetchError(ConfigError):
    """The log could not be read (unreachable, an HTTP error, a response too large)."""

    hint = "check the log URL (`hashtrail serve` prints it) and that the server is up"


def check_url(url: str) -> str:
    """An http(s) URL with a host, ending in "/" (the log's prefix); ValueError if not."""
    u = urllib.parse.urlsplit(url)
    if u.scheme not in ("http", "https") or not u.hostname or u.query or u.fragment \
            or any(c.isspace() for c in url):
        raise ValueError(f"expected the log's http:// or https:// URL, got {url!r}")
    return url if url.endswith("/") else url + "/"


class TileClient:
    """GETs under a log's URL prefix, each bounded in size and time."""

    def __init__(self, url: str, timeout: float = 10.0) -> None:
        try:
            self.url = check_url(url)
        except ValueError as e:
            raise ConfigError(str(e)) from None
        self.timeout = timeout

    def get(self, path: str, limit: int) -> bytes:
        req = urllib.request.Request(self.url + path,
                                     headers={"Accept-Encoding": "identity",
                                              "User-Agent": "hashtrail"})
        try:
            with urllib.request.urlopen(req, timeout=self.timeout) as r:
                data = bytes(r.read(limit + 1))
        except urllib.error.HTTPError as e:
            raise FetchError(f"{self.url}{path}: HTTP {e.code} {e.reason}") from None
        except (urllib.error.URLError, OSError) as e:
            why = getattr(e, "reason", None) or e
            raise FetchError(f"{self.url}{path}: {why}") from None
        if len(data) > limit:
            raise FetchError(f"{self.url}{path}: response over {limit} bytes")
        return data

    def tile(self, ref: TileRef) -> bytes:
        return self.get(ref.path(), tiles.WIDTH * 32 if ref.level is not None
                        else MAX_BUNDLE)


class TileSession(TileClient):
    """TileClient over one kept-alive HTTP/1.1 connection: a mirror fetches thousands
    of small tiles, and a new TCP connection per tile (urllib) costs more than the
    tile. Same bounds: each response limited in size, each socket read in time; a
    connection the server closed between requests is reopened once."""

    def __init__(self, url: str, timeout: float = 10.0) -> None:
        super().__init__(url, timeout)
        u = urllib.parse.urlsplit(self.url)
        self._https = u.scheme == "https"
        self._host = u.hostname or ""
        self._port = u.port
        self._prefix = u.path or "/"
        self._conn: http.client.HTTPConnection | None = None
        self.requests = 0
        self.bytes = 0

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    def _connect(self) -> http.client.HTTPConnection:
        cls = http.client.HTTPSConnection if self._https else http.client.HTTPConnection
        self._conn = cls(self._host, self._port, timeout=self.timeout)
        return self._conn

    def get(self, path: str, limit: int) -> bytes:
        for retry in (True, False):
            conn = self._conn or self._connect()
            try:
                conn.request("GET", self._prefix + path,
                             headers={"Accept-Encoding": "identity",
                                      "User-Agent": "hashtrail"})
                r = conn.getresponse()
                data = r.read(limit + 1)
            except (http.client.RemoteDisconnected, BrokenPipeError,
                    ConnectionResetError) as e:
                self.close()
                if retry:
                    continue
                raise FetchError(f"{self.url}{path}: {e}") from None
            except (http.client.HTTPException, OSError) as e:
                self.close()
                raise FetchError(f"{self.url}{path}: {e or type(e).__name__}") from None
            self.requests += 1
            if r.status != 200:
                self.close()
                raise FetchError(f"{self.url}{path}: HTTP {r.status} {r.reason}")
            if len(data) > limit:
                self.close()
                raise FetchError(f"{self.url}{path}: response over {limit} bytes")
            self.bytes += len(data)
            return data
        raise AssertionError("unreachable")


def fetch_inclusion_proof(url: str, device_id: str, seq: int, ledger_key: note.Verifier,
                          timeout: float = 10.0) -> dict[str, Any]:
    """A `hashtrail-proof/3` document (/2 from a `hashtrail-word/1`) for device entry
    `seq`, assembled from the log at
    `url` under its current checkpoint (which must be signed by `ledger_key`). Check it
    with proof.check_inclusion_proof; this only gathers and refuses what cannot be a
    proof at all (raising ProofError with the step that failed)."""
    did = proof.canonical_device_id(device_id)
    client = TileClient(url, timeout)
    cp_bytes = client.get(tiles.CHECKPOINT, note.MAX_NOTE)
    try:
        cp, _ = note.open_checkpoint(cp_bytes, [ledger_key])
    except HashtrailError as e:
        raise proof.ProofError(proof.STEP_LEDGER_SIG, f"the log's checkpoint: {e}",
                               hint="get the ledger's verifier key from its operator"
                               ) from None
    try:
        raw = client.get(tiles.word_path(did, seq), MAX_WORD)
    except FetchError as e:
        raise FetchError(f"{e}: the log has no entry {seq} of device {did} under its "
                         f"checkpoint of tree size {cp.size}",
                         hint="`hashtrail devices list` on the ledger shows each device's "
                              "entries; a new entry is served once a checkpoint covers "
                              "it") from None
    try:
        word = proof.load_proof(raw.decode("utf-8"))
    except UnicodeError:
        raise proof.ProofFormatError("the device word is not UTF-8 JSON") from None
    fmt = tiles.word_proof_format(word.get("format")) if isinstance(word, dict) else None
    if not isinstance(word, dict) or set(word) != _WORD_KEYS or fmt is None:
        raise proof.ProofFormatError(f"the log's device word is not {tiles.WORD_FORMAT} "
                                     f"(or {tiles.WORD_FORMAT_1})")
    index = word["leaf_index"]
    if type(index) is not int or not 0 <= index < cp.size:
        raise proof.ProofError(proof.STEP_INCLUSION, f"the log says the entry is leaf "
                                                     f"{index!r}, outside its tree of size "
                                                     f"{cp.size}")
    try:
        ref = tiles.tile_for(None, index // tiles.WIDTH, cp.size)
        leaf = tiles.parse_bundle(client.tile(ref), ref.width)[index % tiles.WIDTH]
        path = merkle.prove_inclusion(TileHashes(client.tile, cp.size).get, index, cp.size)
    except TileError as e:
        raise proof.ProofError(proof.STEP_INCLUSION, f"the log's tiles: {e}") from None
    return {"format": fmt, "type": "inclusion", "leaf": leaf.hex(),
            "leaf_index": index, "tree_size": cp.size, "root": cp.root.hex(),
            "path": [h.hex() for h in path], "checkpoint": cp_bytes.decode("utf-8"),
            "device": word["device"], "enrollment": word["enrollment"],
            "device_signature": word["device_signature"]}


def verify_proof_url(url: str, device_id: str, seq: int, trusted: note.Verifier,
                     witness_keys: Sequence[note.Verifier] = (),
                     min_witnesses: int | None = None,
                     collector_keys: Sequence[note.Verifier] = ()) -> CheckedProof:
    """Fetch the proof of device entry `seq` from the log at `url` and check it against
    the ledger key `trusted` (and witnesses and collectors, as for a proof file), pinned
    to `device_id`."""
    need = len({(w.name, w.pub) for w in witness_keys}) if min_witnesses is None \
        else min_witnesses
    doc = fetch_inclusion_proof(url, device_id, seq, trusted)
    msg, pc = proof.check_proof_doc(doc, trusted, witness_keys, need, device_id,
                                    collector_keys)
    return CheckedProof(msg, pc)
