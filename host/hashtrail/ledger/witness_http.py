"""A witness over HTTP: C2SP tlog-witness `add-checkpoint` (`hashtrail witness serve`).

Why: `ledger cosign` needs the ledger's SQLite file to build the consistency path
itself; over HTTP the log sends the path in the request (c2sp.org/tlog-witness), so
a witness needs nothing but its own key, the ledger key it trusts and its state file,
and any log client that speaks the protocol can ask it.

The decision is hashtrail.ledger.witness's: cosign only a checkpoint signed by the
trusted ledger key that is the one last cosigned or extends it, proven by the request's
RFC 6962 consistency proof against the signed roots. Answers, per the spec:
- 200: one cosignature/v1 line (c2sp.org/tlog-cosignature) by the witness key;
- 400: a malformed request, or an old size above the checkpoint's;
- 403: no signature by the trusted ledger key;
- 404: a checkpoint of another origin (the witness is configured for one log);
- 409: the old size is not the size of the latest checkpoint this witness cosigned
  (body: that size and a newline, `text/x.tlog.size`), or one size with another root;
- 422: a consistency proof that does not verify.
A checkpoint of the size last cosigned but another root, or a proof that leads to the
offered root from another old root, is a split view: its evidence
(`hashtrail-split-view/1`, both signed checkpoints and the path) is written next to the
state file, checked first with `witness.check_split_view`, as `ledger cosign` does.

State: the last cosigned checkpoint note, the same file `ledger cosign --state` keeps
(so a witness can move between the two), replaced atomically (temporary file, fsync,
rename, fsync of the folder) before the cosignature is sent. Checking the old size and
persisting happen in one synchronous step of the event loop, so two requests cannot
interleave between them (the spec's rollback race).
"""

from __future__ import annotations

import base64
import binascii
import json
import os
import re
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, NamedTuple

from hashtrail.chain.evidence import SPLIT_VIEW_FORMAT
from hashtrail.errors import FormatError, HashtrailError, VerificationError
from hashtrail.formats import merkle, note
from hashtrail.ledger.http_app import require_aiohttp
from hashtrail.ledger.witness import check_split_view

if TYPE_CHECKING:
    from aiohttp import web

MAX_REQUEST = note.MAX_NOTE + 64 * 50
MAX_PROOF = 63
SIZE_TYPE = "text/x.tlog.size"
_OLD = re.compile(rb"old (0|[1-9][0-9]{0,19})\n")


class Answer(NamedTuple):
    status: int
    body: bytes
    content_type: str = "text/plain; charset=utf-8"


def parse_request(body: bytes) -> tuple[int, list[bytes], bytes]:
    """(old size, proof hashes, checkpoint note bytes); FormatError if malformed."""
    m = _OLD.match(body)
    if m is None:
        raise FormatError("the request does not start with an `old <size>` line")
    old, rest = int(m.group(1)), body[m.end():]
    proof: list[bytes] = []
    while True:
        line, sep, tail = rest.partition(b"\n")
        if not sep:
            raise FormatError("no empty line before the checkpoint")
        rest = tail
        if not line:
            break
        if len(proof) == MAX_PROOF:
            raise FormatError(f"more than {MAX_PROOF} consistency proof lines")
        try:
            h = base64.b64decode(line, validate=True)
        except (binascii.Error, ValueError):
            raise FormatError("a consistency proof line is not base64") from None
        if len(h) != merkle.HASH_SIZE or base64.b64encode(h) != line:
            raise FormatError("a consistency proof line is not one base64 SHA-256 hash")
        proof.append(h)
    if old > 1 << 63:
        raise FormatError("old size out of range")
    return old, proof, rest


def cosignature_line(signer: note.Signer, text: str, timestamp: int) -> bytes:
    """One c2sp.org/tlog-cosignature cosignature/v1 signature line over `text`."""
    kid = note.key_id(signer.name, signer.pub, note.ALG_COSIGNATURE_V1)
    sig = signer.sign(note.cosignature_message(text, timestamp))
    blob = base64.b64encode(kid + timestamp.to_bytes(8, "big") + sig).decode()
    return f"\u2014 {signer.name} {blob}\n".encode()


def _write_atomic(path: Path, data: bytes) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-witness-")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        os.unlink(tmp)
        raise
    dfd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dfd)
    finally:
        os.close(dfd)


class Witness:
    """The witness's state and its one operation, without HTTP (tests call it too)."""

    def __init__(self, signer: note.Signer, trusted: note.Verifier, state: Path,
                 clock: Callable[[], float] = time.time) -> None:
        self.signer, self.trusted, self.state, self.clock = signer, trusted, state, clock
        self.latest: bytes | None = state.read_bytes() if state.exists() else None
        self.latest_cp = None if self.latest is None else \
            note.open_checkpoint(self.latest, [trusted])[0]

    @property
    def evidence_path(self) -> Path:
        return self.state.with_suffix(".inconsistent.json")

    def _split_view(self, offered: bytes, path: list[bytes], why: str) -> bool:
        """Keep split-view evidence if these two signed checkpoints prove one."""
        assert self.latest is not None
        doc = {"format": SPLIT_VIEW_FORMAT, "reason": why,
               "seen": self.latest.decode(), "offered": offered.decode(),
               "path": [h.hex() for h in path]}
        text = json.dumps(doc, indent=1)
        try:
            check_split_view(text, self.trusted)
        except HashtrailError:
            return False
        _write_atomic(self.evidence_path, text.encode())
        return True

    def add_checkpoint(self, body: bytes) -> Answer:
        try:
            old, proof, data = parse_request(body)
            origin = note.parse_note(data).text.split("\n", 1)[0]
        except (FormatError, UnicodeError) as e:
            return Answer(400, f"malformed request: {e}\n".encode())
        if origin != self.trusted.name:
            return Answer(404, b"unknown log origin\n")
        try:
            cp, _ = note.open_checkpoint(data, [self.trusted])
        except VerificationError as e:
            return Answer(403, f"not signed by the log's key: {e}\n".encode())
        except HashtrailError as e:
            return Answer(400, f"malformed checkpoint: {e}\n".encode())
        if old > cp.size:
            return Answer(400, b"old size is larger than the checkpoint's\n")
        size = 0 if self.latest_cp is None else self.latest_cp.size
        if old != size:
            return Answer(409, f"{size}\n".encode(), SIZE_TYPE)
        if old == cp.size:
            if proof:
                return Answer(422, b"a checkpoint of the old size needs no proof\n")
            if self.latest_cp is not None and cp.root != self.latest_cp.root:
                self._split_view(data, [], f"two different roots for tree size {old}")
                return Answer(409, f"{size}\n".encode(), SIZE_TYPE)
            if self.latest_cp is None and cp.root != merkle.EMPTY_ROOT:
                return Answer(422, b"an empty tree has the empty root\n")
        elif old == 0:
            if proof:
                return Answer(422, b"the proof from size 0 is empty\n")
        else:
            assert self.latest_cp is not None
            try:
                merkle.check_consistency(old, cp.size, self.latest_cp.root, cp.root, proof)
            except VerificationError as e:
                self._split_view(data, proof, f"the tree signed at size {cp.size} does not "
                                              f"extend the one signed at size {old}")
                return Answer(422, f"consistency proof does not verify: {e}\n".encode())
        line = cosignature_line(self.signer, note.parse_note(data).text, int(self.clock()))
        if self.latest != data:
            _write_atomic(self.state, data)
            self.latest, self.latest_cp = data, cp
        return Answer(200, line)


def make_witness_app(w: Witness) -> web.Application:
    require_aiohttp()
    from aiohttp import web

    async def add(request: web.Request) -> web.StreamResponse:
        if request.content_length is not None and request.content_length > MAX_REQUEST:
            return web.Response(status=413, text="request too large\n")
        try:
            body = await request.content.read(MAX_REQUEST + 1)
        except (OSError, ValueError):
            return web.Response(status=400, text="unreadable request\n")
        if len(body) > MAX_REQUEST:
            return web.Response(status=413, text="request too large\n")
        a = w.add_checkpoint(body)          # no await inside: checked and persisted at once
        return web.Response(status=a.status, body=a.body,
                            headers={"Content-Type": a.content_type})

    app = web.Application(client_max_size=MAX_REQUEST)
    app.router.add_post("/add-checkpoint", add)
    return app


def request_cosignature(url: str, checkpoint: bytes, old: int, proof: list[bytes],
                        timeout: float = 10.0) -> bytes:
    """Ask the witness at `url` (its submission prefix) to cosign `checkpoint`, given
    the consistency proof from `old` (the witness's size); the signature lines it
    returns. A 409 raises WitnessConflict with the witness's size."""
    body = f"old {old}\n".encode() + b"".join(base64.b64encode(h) + b"\n" for h in proof) \
        + b"\n" + checkpoint
    req = urllib.request.Request(url.rstrip("/") + "/add-checkpoint", data=body,
                                 method="POST", headers={"User-Agent": "hashtrail"})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            data = bytes(r.read(MAX_REQUEST + 1))
    except urllib.error.HTTPError as e:
        text = e.read(256).decode("utf-8", "replace").strip()
        if e.code == 409 and e.headers.get("Content-Type") == SIZE_TYPE and text.isdigit():
            raise WitnessConflict(int(text)) from None
        raise WitnessRefused(f"the witness answered HTTP {e.code}: {text}") from None
    except (urllib.error.URLError, OSError) as e:
        raise WitnessRefused(f"{url}: {getattr(e, 'reason', None) or e}") from None
    if len(data) > MAX_REQUEST or not data.startswith("\u2014 ".encode()):
        raise WitnessRefused("the witness's answer is not signature lines")
    return data


class WitnessRefused(VerificationError):
    """The witness did not cosign (or could not be reached)."""


class WitnessConflict(WitnessRefused):
    """409: the witness's latest size is not the old size the request gave."""

    def __init__(self, size: int, message: str | None = None) -> None:
        super().__init__(message or f"the witness's latest cosigned size is {size}")
        self.size = size
