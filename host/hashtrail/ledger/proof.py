"""Inclusion proofs that carry the device's word (docs/LEDGER.md "Proofs").

Why: a Merkle inclusion proof under a signed ledger checkpoint only shows that the
ledger operator put a leaf in the tree. Whoever holds the ledger key can append a leaf
for a real, enrolled device that the device never produced, and sign it. So a
inclusion proof (`hashtrail-proof/2` on) also carries the device's public key and the
device's own signature over the entry: the per-entry signature (ECDSA P-256 over the
entry hash) or, for a device that signs checkpoints only, the device's COSE checkpoint
that covers the entry plus the entries linking the entry to that checkpoint's head.
With the ledger key alone nobody can make a proof verify for an entry the device did
not sign.

Verb pair: `build_inclusion_proof` (reads a `Ledger` through its read accessors) and
`check_inclusion_proof` (pure: a dict in, a `ProofCheck` out, no I/O). The checker
trusts only the ledger key and witness keys its caller passes, never keys inside the
proof. It runs named steps in a fixed order (`STEPS`) and raises `ProofError` naming the
first that failed; malformed input (missing fields, wrong types, non-canonical hex) is
`ProofFormatError` (a `ProofError`, exit 2).

The enrollment a proof carries (label, board, firmware, enrollment time) is, in a
`hashtrail-proof/3`, signed by the collector that enrolled the device when the ledger
holds that signature (formats.enrollment): the proof carries the collector's verifier
key and its signature, and the checker verifies it over the proof's own device id, key
and enrollment fields, so an operator who edits the label, names another collector or
copies another device's signature is refused at step "enrollment". A key carried by the
proof proves only that someone holding it signed: the caller passes the collector keys
it trusts (`verify-proof --collector-key`), and then an enrollment signed by no such key,
or not signed at all, is refused too. Without them the checker says whose key signed
and that it was not checked against a key the user trusts. An unsigned enrollment (a
device enrolled before collectors signed enrollments, or a `hashtrail-proof/2`) is the
ledger operator's statement, and the checker reports it as such.

Why a new format version: a /2 checker refuses a field it does not know (strict), so a
proof with the enrollment signature would fail there with a confusing message; /3 says
what it is. /2 proofs are still checked (their enrollment as unsigned).
"""

from __future__ import annotations

import hashlib
import json
import re
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

from hashtrail.errors import ConfigError, FormatError, HashtrailError, VerificationError
from hashtrail.formats import merkle, note
from hashtrail.formats.checkpoint import verify_checkpoint
from hashtrail.formats.enrollment import enrollment_signed
from hashtrail.formats.entry import (
    POLICY_EVERY_ENTRY,
    is_key_created_by,
    parse_entry,
    signing_policy,
)
from hashtrail.formats.keys import DeviceKey, genesis_prev, key_fingerprint, parse_device_id
from hashtrail.formats.leaf import parse_leaf
from hashtrail.ledger.held_cover import held_cover
from hashtrail.ledger.ledger_db import Ledger, LedgerError
from hashtrail.ledger.storage import Device, StoredEntry

PROOF_FORMAT = "hashtrail-proof/3"          # inclusion, with the collector's enrollment
PROOF_FORMAT_2 = "hashtrail-proof/2"        # inclusion, with the device's word (read)
CONSISTENCY_FORMAT = "hashtrail-proof/1"    # consistency proofs (unchanged)

STEP_INPUT = "input"
STEP_DEVICE_KEY = "device key"
STEP_LEAF = "leaf"
STEP_DEVICE_SIG = "device signature"
STEP_INCLUSION = "inclusion"
STEP_CHECKPOINT = "checkpoint"
STEP_LEDGER_SIG = "ledger signature"
STEP_WITNESSES = "witnesses"
STEP_ENROLLMENT = "enrollment"
STEPS = (STEP_DEVICE_KEY, STEP_LEAF, STEP_DEVICE_SIG, STEP_INCLUSION, STEP_CHECKPOINT,
         STEP_LEDGER_SIG, STEP_WITNESSES, STEP_ENROLLMENT)

SIG_ENTRY = "entry"
SIG_CHECKPOINT = "checkpoint"

_KEYS = frozenset({"format", "type", "leaf", "leaf_index", "tree_size", "root", "path",
                   "checkpoint", "verifier_key", "device", "enrollment", "device_signature"})
_DEVICE_KEYS = frozenset({"id", "pub", "fingerprint"})
_ENROLL_KEYS_2 = frozenset({"label", "board", "fw", "enrolled_at", "collector"})
_ENROLL_KEYS = _ENROLL_KEYS_2 | {"signature"}
_ENROLL_SIG_KEYS = frozenset({"key", "sig"})
_ID = re.compile(r"[0-9a-f]{32}")
_HEX = re.compile(r"(?:[0-9a-f]{2})*")
_MAX_CHAIN = 1 << 20
_MAX_SHOWN_AT = 253402300799        # 9999-12-31 23:59:59 UTC


class ProofError(VerificationError):
    """An inclusion proof that does not verify; `step` names the check that failed."""

    hint = "the proof does not verify: do not trust the entry it shows"

    def __init__(self, step: str, message: str, *, hint: str | None = None) -> None:
        super().__init__(f"proof refused at step '{step}': {message}", hint=hint)
        self.step = step


class ProofFormatError(ProofError):
    """A proof document that is not a well-formed hashtrail proof (bad input)."""

    hint = "the file is not a well-formed hashtrail inclusion proof; make it with " \
           "`hashtrail ledger prove`"
    exit_code = 2

    def __init__(self, message: str, *, hint: str | None = None) -> None:
        super().__init__(STEP_INPUT, message, hint=hint)


@dataclass(frozen=True)
class ProofCheck:
    """What a verified inclusion proof proved."""

    device_id: str
    fingerprint: str            # SHA-256(device public key), 64 hex
    seq: int
    entry_hash: str
    leaf_index: int
    tree_size: int
    root: str
    origin: str
    ledger_key: str             # name of the trusted ledger key that signed the checkpoint
    signature_kind: str         # "entry" (per-entry signature) or "checkpoint"
    device_checkpoint_seq: int | None   # seq of the covering device checkpoint, if used
    witnesses: tuple[str, ...]  # trusted witnesses whose cosignatures verified
    enrollment: dict[str, Any]  # label, board, fw, enrolled_at, collector (as in the proof)
    # The collector key whose signature over the enrollment verified, as
    # `<name>+<key id>`; None: the enrollment is unsigned (the operator's statement).
    enrollment_signer: str | None = None
    # whether that key is one the caller trusts (`--collector-key`), not only the
    # proof's own
    enrollment_trusted: bool = False

    def to_json(self) -> dict[str, Any]:
        d = asdict(self)
        d["witnesses"] = list(self.witnesses)
        return d

    def enrollment_line(self) -> str:
        """What the enrollment rests on: the collector's signature, or nobody's."""
        e = self.enrollment
        at = e["enrolled_at"]
        # a time past year 9999 (a proof may state any integer) as its unix seconds, as
        # the page's proof check shows it: gmtime refuses some, strftime pads others
        when = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(at)) \
            if at <= _MAX_SHOWN_AT else f"unix time {at}"
        what = f"label {e.get('label')!r}, board {e.get('board')}, enrolled at {when}"
        if self.enrollment_signer is None:
            return (f"enrollment not signed (the operator's statement): {what}"
                    + (f" by collector {e['collector']}" if e.get("collector") else ""))
        if self.enrollment_trusted:
            return (f"enrollment signed by collector {self.enrollment_signer}, a key you "
                    f"trust: {what}")
        return (f"enrollment signed by collector {self.enrollment_signer} (the proof's "
                f"key; give --collector-key to require one you trust): {what}")

    def describe(self) -> str:
        """One summary line, then what each part rests on."""
        if self.signature_kind == SIG_ENTRY:
            sig = "its own per-entry signature (ECDSA P-256 over the entry hash)"
        else:
            links = (self.device_checkpoint_seq or 0) - self.seq
            sig = (f"device checkpoint at seq {self.device_checkpoint_seq} (COSE ES256) "
                   f"and {links} chain link{'s' if links != 1 else ''} to its head")
        lines = [
            f"inclusion OK: device {self.device_id} seq {self.seq} is leaf "
            f"{self.leaf_index} of {self.tree_size} in {self.origin}",
            f"  device key fingerprint: {self.fingerprint} (SHA-256 of the key; the id "
            "is its first 16 bytes)",
            f"  entry {self.entry_hash} signed by the device: {sig}",
            f"  ledger checkpoint signed by your key {self.ledger_key}",
            "  witnesses: " + (", ".join(self.witnesses) if self.witnesses
                               else "none checked"),
            "  " + self.enrollment_line(),
        ]
        return "\n".join(lines)


# -- canonical identifiers ----------------------------------------------------------------

def canonical_device_id(text: str) -> str:
    """A device id exactly as every tool prints it (32 lower-case hex); anything else
    (upper case, 0x, whitespace, short) is a usage error, never a second identity."""
    try:
        return parse_device_id(text)
    except FormatError as e:        # a usage error here: the id comes from the user
        raise ConfigError(str(e), hint=e.hint) from None


# -- building -----------------------------------------------------------------------------

def build_inclusion_proof(ledger: Ledger, device_id: str, seq: int,
                          checkpoint: bytes | None = None) -> dict[str, Any]:
    """A `hashtrail-proof/3` inclusion proof of a device's accepted entry `seq`, under
    `checkpoint` (a signed, possibly cosigned, checkpoint of this ledger) or else the
    latest stored one. Reads only; never signs."""
    did = canonical_device_id(device_id)
    dev = ledger.device(did)
    if dev is None:
        raise ConfigError(f"device {did} is not enrolled in this ledger",
                          hint="`hashtrail devices list --ledger FILE` lists the devices it "
                               "holds")
    row = ledger.entry(did, seq)
    if row is None:
        held = ("no accepted entries yet" if dev.tip_seq < 0
                else f"accepted seqs 0..{dev.tip_seq}")
        raise ConfigError(f"device {did} seq {seq} is not in the ledger: it holds {held} "
                          "of that device",
                          hint=(f"give --seq between 0 and {dev.tip_seq}" if dev.tip_seq >= 0
                                else "reconcile a bundle with its entries first")
                          + "; `hashtrail devices list --ledger FILE` shows every device's "
                            "entries")
    mine = ledger.verifier
    if checkpoint is None:
        cp_bytes = ledger.latest_checkpoint()
        cp, _ = note.open_checkpoint(cp_bytes, [mine])
    else:
        cp_bytes = checkpoint
        try:
            cp, _ = note.open_checkpoint(cp_bytes, [mine])
        except HashtrailError as e:
            raise LedgerError(f"the checkpoint is not signed by this ledger's key "
                              f"{mine.to_string()}: {e}",
                              hint="pass a checkpoint of this ledger (`hashtrail ledger "
                                   "checkpoint`, possibly cosigned by witnesses)") from None
        if cp.origin != ledger.origin or cp.size > ledger.size \
                or cp.root != ledger.root(cp.size):
            raise LedgerError(f"the checkpoint (origin {cp.origin!r}, size {cp.size}) does "
                              f"not match this ledger's tree (origin {ledger.origin!r}, "
                              f"size {ledger.size})",
                              hint="pass a checkpoint this ledger signed")
    if row.leaf_index >= cp.size:
        raise LedgerError(f"device {did} seq {seq} is leaf {row.leaf_index}, not covered by "
                          f"the checkpoint of tree size {cp.size}",
                          hint="sign a newer one: `hashtrail ledger checkpoint`")
    dsig = device_signature(ledger, did, seq, row)
    path = merkle.prove_inclusion(ledger.node, row.leaf_index, cp.size)
    fp = key_fingerprint(dev.pub)
    return {
        "format": PROOF_FORMAT, "type": "inclusion",
        "leaf": ledger.leaf(row.leaf_index).hex(), "leaf_index": row.leaf_index,
        "tree_size": cp.size, "root": cp.root.hex(), "path": [h.hex() for h in path],
        "checkpoint": cp_bytes.decode("utf-8"), "verifier_key": mine.to_string(),
        "device": {"id": did, "pub": dev.pub.hex(), "fingerprint": fp},
        "enrollment": enrollment_doc(ledger, dev),
        "device_signature": dsig,
    }


def enrollment_doc(ledger: Ledger, dev: Device) -> dict[str, Any]:
    """The proof's `enrollment`: the stored fields, the name the ledger trusts the
    signing collector under (`collector`, a label only), and the collector's key and
    signature as stored (`signature`, null when unsigned). Copied as stored, checked by
    nothing here: the proof's checker verifies it, `verify` the ledger."""
    sig = None
    name = None
    if dev.enroll_key is not None and dev.enroll_sig is not None:
        sig = {"key": dev.enroll_key, "sig": dev.enroll_sig.hex()}
        name = ledger.collector_name(dev.enroll_key)
    return {"label": dev.label, "board": dev.board, "fw": dev.fw,
            "enrolled_at": dev.enrolled_at, "collector": name, "signature": sig}


def device_signature(ledger: Ledger, did: str, seq: int, row: StoredEntry) -> dict[str, Any]:
    """The proof's `device_signature` for the accepted entry `row` (device `did`, seq
    `seq`): its per-entry signature, or (a checkpoints-only device) the first device
    checkpoint covering it with the entries that link the entry to that checkpoint's
    head. Also what `hashtrail.ledger.tiles` serves beside the tiles, which carry only
    leaves."""
    first = ledger.entry(did, 0)
    if first is None:
        raise LedgerError(f"device {did} has no entry 0 in the ledger",
                          hint="the ledger file is damaged; run `hashtrail verify`")
    policy = signing_policy(parse_entry(first.body))
    dsig: dict[str, Any]
    if row.sig is not None:
        dsig = {"kind": SIG_ENTRY, "sig": row.sig.hex()}
    elif policy == POLICY_EVERY_ENTRY:
        raise LedgerError(f"device {did} signs every entry (policy in its entry 0), but "
                          f"the ledger holds no signature for seq {seq}",
                          hint="the ledger file is damaged; run `hashtrail verify`")
    else:
        cov = ledger.covering_checkpoint(did, seq)
        if cov is not None:
            cseq, cose = cov
            chain = ledger.entry_bodies(did, seq + 1, cseq)
        else:
            # (accepted under a checkpoint past a range the device disowned: the links
            # to it pass held entries, held_cover)
            dev = ledger.device(did)
            hc = None if dev is None else held_cover(
                ledger.storage, did, dev.tip_seq, dev.tip_head,
                ((c.seq, c.head, c.cose)
                 for c in ledger.storage.device_checkpoints(did, dev.tip_seq + 1)),
                signed=False)
            if dev is None or hc is None:
                raise LedgerError(f"no device checkpoint in the ledger covers device {did} "
                                  f"seq {seq}", hint="the ledger file is damaged; run "
                                                     "`hashtrail verify`")
            cseq, cose = hc.seq, hc.statement
            chain = ledger.entry_bodies(did, seq + 1, dev.tip_seq) + hc.chain
        if len(chain) != cseq - seq:
            raise LedgerError(f"device {did}: entries {seq + 1}..{cseq} are not all in "
                              "the ledger", hint="run `hashtrail verify`")
        dsig = {"kind": SIG_CHECKPOINT, "cose": cose.hex(), "chain": [b.hex() for b in chain]}
    return dsig


# -- checking (pure) ------------------------------------------------------------------------

def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    d = dict(pairs)
    if len(d) != len(pairs):
        raise ProofFormatError("a JSON object names one field twice")
    return d


def load_proof(text: str) -> Any:
    """Parse proof JSON strictly: a field named twice (which two readers could take
    differently) is bad input, as is anything that is not JSON."""
    try:
        return json.loads(text, object_pairs_hook=_no_duplicates)
    except ValueError as e:
        raise ProofFormatError(f"not JSON: {e}") from None
    except RecursionError:
        raise ProofFormatError("JSON nested too deeply") from None


def _field(d: Any, key: str, where: str = "proof") -> Any:
    if not isinstance(d, dict) or key not in d:
        raise ProofFormatError(f"{where} has no field {key!r}")
    return d[key]


def _hex(v: Any, what: str, size: int | None = None) -> bytes:
    if not isinstance(v, str) or not _HEX.fullmatch(v):
        raise ProofFormatError(f"{what} is not lower-case hex of whole bytes")
    if size is not None and len(v) != 2 * size:
        raise ProofFormatError(f"{what} is not {size} bytes")
    return bytes.fromhex(v)


def _uint(v: Any, what: str) -> int:
    if type(v) is not int or v < 0:
        raise ProofFormatError(f"{what} is not an unsigned integer")
    return v


def _str(v: Any, what: str) -> str:
    if not isinstance(v, str):
        raise ProofFormatError(f"{what} is not a string")
    return v


def _only(d: Any, keys: frozenset[str], where: str) -> dict[str, Any]:
    if not isinstance(d, dict):
        raise ProofFormatError(f"{where} is not an object")
    extra = sorted(set(d) - keys)
    if extra:
        raise ProofFormatError(f"{where} has unknown fields {extra}")
    return d


def _witness_keys(keys: Sequence[note.Verifier], min_witnesses: int) -> list[note.Verifier]:
    uniq: dict[tuple[str, bytes], note.Verifier] = {}
    for k in keys:
        uniq.setdefault((k.name, k.pub), k)
    if not 0 <= min_witnesses <= len(uniq):
        raise ConfigError(f"--min-witnesses {min_witnesses} needs at least as many distinct "
                          f"--witness-key (got {len(uniq)})",
                          hint="give one --witness-key per witness you trust")
    return list(uniq.values())


def check_inclusion_proof(doc: Any, ledger_key: note.Verifier,
                          witness_keys: Sequence[note.Verifier] = (), min_witnesses: int = 0,
                          device_id: str | None = None,
                          collector_keys: Sequence[note.Verifier] = ()) -> ProofCheck:
    """Check a `hashtrail-proof/3` (or /2) inclusion proof down to the device's
    signature, and its enrollment down to the collector's.

    Trusts only `ledger_key` (and `witness_keys`, `collector_keys`); `device_id`, when
    given, pins the device the proof must be for. Steps, in order (STEPS): the device
    key hashes to the device id; the leaf names that id and seq and carries SHA-256 of
    the entry bytes; the device signature over the entry; the RFC 9162 inclusion path
    to the root; the checkpoint's root and size; the checkpoint's signature by
    `ledger_key`; at least `min_witnesses` valid cosignatures by `witness_keys`; the
    enrollment's collector signature, when the proof carries one, over the proof's
    device id and key and enrollment fields, and (with `collector_keys`) by one of
    those keys, which then also refuses an unsigned enrollment."""
    witnesses = _witness_keys(witness_keys, min_witnesses)
    want = None if device_id is None else canonical_device_id(device_id)
    d = _only(doc, _KEYS, "proof")
    fmt, typ = _field(d, "format"), _field(d, "type")
    if (fmt, typ) == (CONSISTENCY_FORMAT, "inclusion"):
        raise ProofFormatError("a hashtrail-proof/1 inclusion proof carries no device "
                               "signature", hint="make a new one with `hashtrail ledger "
                                                 f"prove` ({PROOF_FORMAT})")
    if typ != "inclusion" or fmt not in (PROOF_FORMAT, PROOF_FORMAT_2):
        raise ProofFormatError(f"not a {PROOF_FORMAT} (or {PROOF_FORMAT_2}) inclusion "
                               "proof")
    leaf = _hex(_field(d, "leaf"), "leaf")
    index = _uint(_field(d, "leaf_index"), "leaf_index")
    size = _uint(_field(d, "tree_size"), "tree_size")
    root = _hex(_field(d, "root"), "root", 32)
    path_v = _field(d, "path")
    if not isinstance(path_v, list):
        raise ProofFormatError("path is not a list")
    path = [_hex(h, "path hash", 32) for h in path_v]
    cp_text = _str(_field(d, "checkpoint"), "checkpoint")
    label = _str(d.get("verifier_key", ledger_key.to_string()), "verifier_key")
    dev = _only(_field(d, "device"), _DEVICE_KEYS, "device")
    pub = _hex(_field(dev, "pub", "device"), "device pub", 65)
    claimed_id = _str(_field(dev, "id", "device"), "device id")
    claimed_fp = _str(_field(dev, "fingerprint", "device"), "device fingerprint")
    if not _ID.fullmatch(claimed_id) or not re.fullmatch(r"[0-9a-f]{64}", claimed_fp):
        raise ProofFormatError("device id and fingerprint must be 32 and 64 lower-case hex")
    enroll = _only(_field(d, "enrollment"),
                   _ENROLL_KEYS if fmt == PROOF_FORMAT else _ENROLL_KEYS_2, "enrollment")
    for k in ("label", "board", "fw"):
        _str(_field(enroll, k, "enrollment"), f"enrollment {k}")
    _uint(_field(enroll, "enrolled_at", "enrollment"), "enrollment enrolled_at")
    if _field(enroll, "collector", "enrollment") is not None:
        _str(enroll["collector"], "enrollment collector")
    esig = _enrollment_signature(enroll) if fmt == PROOF_FORMAT else None
    dsig = _field(d, "device_signature")
    kind = _field(dsig, "kind", "device_signature")
    if kind == SIG_ENTRY:
        _only(dsig, frozenset({"kind", "sig"}), "device_signature")
        sig = _hex(_field(dsig, "sig", "device_signature"), "device signature", 64)
    elif kind == SIG_CHECKPOINT:
        _only(dsig, frozenset({"kind", "cose", "chain"}), "device_signature")
        cose = _hex(_field(dsig, "cose", "device_signature"), "device checkpoint")
        chain_v = _field(dsig, "chain", "device_signature")
        if not isinstance(chain_v, list) or len(chain_v) > _MAX_CHAIN:
            raise ProofFormatError("device_signature chain is not a list of entries")
        chain = [_hex(c, "chain entry") for c in chain_v]
    else:
        raise ProofFormatError(f"unknown device signature kind {kind!r}")

    # 1. the device key hashes to the device id
    try:
        key = DeviceKey(pub)
    except HashtrailError as e:
        raise ProofError(STEP_DEVICE_KEY, f"device pub is not a P-256 key: {e}") from None
    fp = key_fingerprint(pub)
    if claimed_fp != fp:
        raise ProofError(STEP_DEVICE_KEY, f"device fingerprint {claimed_fp} is not SHA-256 "
                                          f"of the device key ({fp})")
    if claimed_id != key.id:
        raise ProofError(STEP_DEVICE_KEY, f"device id {claimed_id} is not the key's id "
                                          f"{key.id}")
    if want is not None and want != key.id:
        raise ProofError(STEP_DEVICE_KEY, f"the proof is for device {key.id} (key "
                                          f"fingerprint {fp}), not device {want} you asked "
                                          "for", hint="the proof shows another device's "
                                                      "key: it says nothing about yours")
    # 2. the leaf names that id and seq, and carries SHA-256 of the entry bytes
    try:
        lf = parse_leaf(leaf)
    except FormatError as err:
        raise ProofError(STEP_LEAF, str(err)) from None
    if lf.device_id != key.id:
        raise ProofError(STEP_LEAF, f"leaf names device {lf.device_id}, not {key.id}")
    seq, raw, h = lf.seq, lf.entry, lf.entry_hash
    try:
        ent = parse_entry(raw)
    except HashtrailError as err:
        raise ProofError(STEP_LEAF, f"entry bytes: {err}") from None
    if ent.seq != seq:
        raise ProofError(STEP_LEAF, f"leaf names seq {seq}, its entry says seq {ent.seq}")
    if seq == 0 and (ent.prev != genesis_prev(pub) or not is_key_created_by(ent, pub)):
        raise ProofError(STEP_LEAF, "entry 0 is not this key's key-created entry")
    # 3. the device's own signature over the entry
    cseq: int | None = None
    if kind == SIG_ENTRY:
        if not key.signed(h, sig):
            raise ProofError(STEP_DEVICE_SIG, f"the device's signature over entry {seq} "
                                              "does not verify with its key",
                             hint="the device never signed this entry")
    else:
        head, s = h, seq
        for link in chain:
            try:
                n = parse_entry(link)
            except HashtrailError as err:
                raise ProofError(STEP_DEVICE_SIG, f"chain entry {s + 1}: {err}") from None
            if n.seq != s + 1 or n.prev != head:
                raise ProofError(STEP_DEVICE_SIG, f"chain entry {s + 1} does not link to "
                                                  f"entry {s}")
            head, s = hashlib.sha256(link).digest(), s + 1
        try:
            dcp = verify_checkpoint(cose, key)
        except HashtrailError as err:
            raise ProofError(STEP_DEVICE_SIG, f"device checkpoint: {err}",
                             hint="the device never signed this entry") from None
        if (dcp.seq, dcp.head) != (s, head):
            raise ProofError(STEP_DEVICE_SIG, f"device checkpoint covers seq {dcp.seq}, "
                                              f"not the chain head at seq {s}",
                             hint="the device never signed this entry")
        cseq = dcp.seq
    # 4. the RFC 9162 inclusion path to the root
    try:
        merkle.check_inclusion(merkle.leaf_hash(leaf), index, size, root, path)
    except VerificationError as err:
        raise ProofError(STEP_INCLUSION, str(err)) from None
    # 5. the checkpoint's root and size
    try:
        cp_bytes = cp_text.encode("utf-8")
        cp = note.parse_checkpoint(note.parse_note(cp_bytes).text)
    except (HashtrailError, UnicodeError) as err:
        raise ProofError(STEP_CHECKPOINT, f"not a signed checkpoint: {err}") from None
    if (cp.size, cp.root) != (size, root):
        raise ProofError(STEP_CHECKPOINT, "the proof's root and tree size differ from its "
                                          "checkpoint's")
    # 6. the checkpoint's signature, by the ledger key the caller trusts
    if label != ledger_key.to_string():
        raise ProofError(STEP_LEDGER_SIG, f"proof names ledger key {label.split('+')[0]!r} "
                                          f"({label}), not the one you trust",
                         hint="a proof signed by another key proves nothing")
    try:
        note.open_checkpoint(cp_bytes, [ledger_key])
    except HashtrailError as err:
        raise ProofError(STEP_LEDGER_SIG, str(err),
                         hint="get the ledger's verifier key from its operator") from None
    # 7. witness cosignatures
    seen: tuple[str, ...] = ()
    if witnesses:
        try:
            seen = tuple(sorted(note.open_cosignatures(cp_bytes, witnesses)))
        except HashtrailError as err:
            raise ProofError(STEP_WITNESSES, str(err)) from None
    if len(seen) < min_witnesses:
        raise ProofError(STEP_WITNESSES, f"{len(seen)} valid cosignature(s) by the "
                                         f"witnesses you trust, {min_witnesses} required",
                         hint="get a checkpoint your witnesses cosigned and prove against "
                              "it: `hashtrail ledger prove --checkpoint FILE`")
    # 8. the enrollment's collector signature
    signer, trusted = _check_enrollment(enroll, esig, key, collector_keys)
    return ProofCheck(device_id=key.id, fingerprint=fp, seq=seq, entry_hash=h.hex(),
                      leaf_index=index, tree_size=size, root=root.hex(), origin=cp.origin,
                      ledger_key=ledger_key.name, signature_kind=kind,
                      device_checkpoint_seq=cseq, witnesses=seen,
                      enrollment={k: enroll[k] for k in sorted(_ENROLL_KEYS_2)},
                      enrollment_signer=signer, enrollment_trusted=trusted)


def _enrollment_signature(enroll: dict[str, Any]) -> tuple[note.Verifier, bytes] | None:
    """The `signature` of a /3 enrollment, well-formed: (the collector key it names,
    the 64 signature bytes), or None for null."""
    v = _field(enroll, "signature", "enrollment")
    if v is None:
        return None
    v = _only(v, _ENROLL_SIG_KEYS, "enrollment signature")
    text = _str(_field(v, "key", "enrollment signature"), "enrollment signature key")
    try:
        key = note.Verifier.from_string(text)
    except FormatError as e:
        raise ProofFormatError(f"enrollment signature key is not a collector verifier key: "
                               f"{e}") from None
    if key.to_string() != text:
        raise ProofFormatError("enrollment signature key must be an Ed25519 note key "
                               "(<name>+<key id>+<base64>), as `hashtrail export "
                               "--show-key` prints it")
    return key, _hex(_field(v, "sig", "enrollment signature"), "enrollment signature", 64)


def _check_enrollment(enroll: dict[str, Any], esig: tuple[note.Verifier, bytes] | None,
                      key: DeviceKey, collector_keys: Sequence[note.Verifier]
                      ) -> tuple[str | None, bool]:
    """Step 8: (the signing collector key as `<name>+<key id>`, or None when unsigned;
    whether it is one of `collector_keys`). ProofError when the signature does not
    verify over this device's enrollment, or when the caller gave collector keys and
    none of them signed it."""
    mine = {(k.name, k.pub) for k in collector_keys}
    if esig is None:
        if mine:
            raise ProofError(STEP_ENROLLMENT, "the enrollment is not signed by a collector "
                                              "(it is the ledger operator's statement), and "
                                              "you asked for one signed by --collector-key",
                             hint="a ledger keeps the signature of devices enrolled from "
                                  "bundles that carry one: ask its operator to reconcile "
                                  "a fresh export of the enrolling collector")
        return None, False
    v, sig = esig
    who = f"{v.name}+{v.key_id.hex()}"
    if not enrollment_signed(v, sig, key.id, key.pub, enroll["label"], enroll["board"],
                             enroll["fw"], enroll["enrolled_at"]):
        raise ProofError(STEP_ENROLLMENT, f"the enrollment signature by collector {who} "
                                          f"does not verify over device {key.id}'s "
                                          "enrollment in the proof: its label, board, "
                                          "firmware or time was changed after the collector "
                                          "signed, or the signature is another device's",
                         hint="the enrollment shown is not what the collector signed")
    if mine and (v.name, v.pub) not in mine:
        raise ProofError(STEP_ENROLLMENT, f"the enrollment is signed by collector key "
                                          f"{who}, not by a --collector-key you trust",
                         hint="a key carried by the proof proves nothing: give the key of "
                              "the collector you expect (`hashtrail export --show-key` on "
                              "it prints it)")
    return who, bool(mine)


def build_consistency_proof(ledger: Ledger, old: int, new: int | None) -> dict[str, Any]:
    """A `hashtrail-proof/1` consistency proof between tree sizes old and new (default:
    the ledger's size); bad bounds name the valid range."""
    size = ledger.size
    new = size if new is None else new
    if not 0 < old <= new <= size:
        raise ConfigError(
            f"no consistency proof from size {old} to size {new}: this ledger holds {size} "
            f"leaves, so 1 <= --old <= --new <= {size}" if size else
            "no consistency proof: this ledger is empty (0 leaves)",
            hint="sizes are tree sizes (leaf counts), as a checkpoint's second line "
                 "states; --new defaults to the ledger's size"
            if size else "reconcile a bundle into it first")
    path = merkle.prove_consistency(ledger.node, old, new)
    return {"format": CONSISTENCY_FORMAT, "type": "consistency", "old_size": old,
            "new_size": new, "old_root": ledger.root(old).hex(),
            "new_root": ledger.root(new).hex(), "path": [h.hex() for h in path]}


def check_consistency_proof(doc: Any) -> str:
    """Check a `hashtrail-proof/1` consistency proof; returns a one-line description.
    It shows two roots are consistent, which matters only for roots the verifier
    already trusts (from signed checkpoints)."""
    try:
        if doc["format"] != CONSISTENCY_FORMAT or doc["type"] != "consistency":
            raise ProofFormatError("not a hashtrail consistency proof")
        path = [bytes.fromhex(h) for h in doc["path"]]
        merkle.check_consistency(doc["old_size"], doc["new_size"],
                                 bytes.fromhex(doc["old_root"]),
                                 bytes.fromhex(doc["new_root"]), path)
    except (KeyError, TypeError, ValueError, AttributeError) as e:
        raise ProofFormatError(f"malformed proof: {e}") from None
    return f"consistency OK: {doc['old_size']} -> {doc['new_size']}"


def check_proof_doc(doc: Any, ledger_key: note.Verifier,
                    witness_keys: Sequence[note.Verifier] = (), min_witnesses: int = 0,
                    device_id: str | None = None,
                    collector_keys: Sequence[note.Verifier] = ()
                    ) -> tuple[str, ProofCheck | None]:
    """Either proof type: (description, ProofCheck for an inclusion proof)."""
    if isinstance(doc, dict) and doc.get("type") == "consistency":
        return check_consistency_proof(doc), None
    pc = check_inclusion_proof(doc, ledger_key, witness_keys, min_witnesses, device_id,
                               collector_keys)
    return pc.describe(), pc
