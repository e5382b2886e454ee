"""Follow a log served as C2SP tlog-tiles and report, per device, what it gained
(`hashtrail monitor`).

Why a monitor beside the mirror: the mirror proves the log is one append-only tree
under the ledger key; the monitor reads what the new leaves say about each device. It
keeps a verified replica (hashtrail.ledger.mirror, so every leaf it reads is proven
against the signed checkpoint and the log's history against the last checkpoint it
saw: a split view is refused there) and walks the new leaves in order, per device:

- new entries and the seq range they cover;
- gaps: a device's next leaf skips seqs (a hashtrail ledger only appends entries that
  continue a device's chain, so a gap means the log left entries out);
- forks: a seq the log already holds for that device appears again;
- chain breaks: the next seq whose `prev` is not the hash of the entry before;
- what the device itself reports: a log-altered entry (its boot check found its flash
  rewritten) and an overflow entry (it dropped entries for lack of space).

- device signatures: each new entry's word (`hashtrail/word/...`, the device's
  per-entry signature or the device checkpoint covering it) is fetched and checked as
  the whole proof it completes, against the key the device id names: an entry whose
  word does not check, or that has none while the server serves words for others, is
  reported for its device (a leaf the operator appended without the device);
- revocations: the ledger-signed statements the server lists (hashtrail.ledger.
  revocation), each checked with the ledger key; new ones are reported per device,
  and one seen in an earlier pass that is no longer listed, or listed changed, is an
  alarm (they are not in the tree: this is how a monitor notices one withheld).

State (`--state FILE`, JSON `hashtrail-monitor/1`, replaced atomically after each pass)
holds the tree size analysed and each device's position (next seq, hash of its last
entry) and totals; the replica lives beside it (`FILE.tiles/`). If a pass stops after
the replica moved on but before the state was written, the next pass reads the leaves
between the two from the replica.
"""

from __future__ import annotations

import json
import os
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from hashtrail import userfile
from hashtrail.errors import ConfigError, HashtrailError
from hashtrail.formats import note
from hashtrail.formats.entry import KIND_LOG_ALTERED, KIND_OVERFLOW, entry_hash, parse_entry
from hashtrail.formats.leaf import parse_leaf
from hashtrail.ledger import revocation, tiles
from hashtrail.ledger.mirror import Mirrored, check_word, mirror
from hashtrail.ledger.tiles import CHECKPOINT, WIDTH, TileHashes
from hashtrail.ledger.tiles_client import MAX_WORD, FetchError, TileClient, TileSession

FORMAT = "hashtrail-monitor/1"
MAX_STATE = 256 << 20


class MonitorStateError(ConfigError):
    """The state file is not a monitor's state for this log."""

    hint = "give --state a new file to start over (the monitor then reads the whole log)"


@dataclass
class DeviceState:
    entries: int = 0
    next_seq: int = 0
    tip: str = ""                # hex SHA-256 of the device's last entry in the log
    gaps: int = 0
    forks: int = 0
    breaks: int = 0
    altered: list[int] = field(default_factory=list)
    overflows: list[int] = field(default_factory=list)
    bad_signatures: int = 0
    revoked: list[Any] | None = None     # [revoked at, reason] as the ledger signed it


@dataclass
class DeviceNews:
    """What one pass found for one device."""

    device: str
    new: int = 0
    first_seq: int | None = None
    last_seq: int | None = None
    entries: int = 0             # in the log, in total
    gaps: list[list[int]] = field(default_factory=list)    # [from, to] seqs missing
    forks: list[int] = field(default_factory=list)         # seqs the log holds twice
    breaks: list[int] = field(default_factory=list)        # seqs whose prev does not link
    altered: list[int] = field(default_factory=list)       # device: log altered from seq
    overflows: list[int] = field(default_factory=list)     # seqs of overflow entries
    signed: int = 0                                         # words that checked
    bad_signatures: list[list[Any]] = field(default_factory=list)  # [seq, why]
    revoked: list[Any] | None = None     # newly listed: [revoked at (unix s), reason]
    revocation_lost: str | None = None   # listed in an earlier pass, now not (or changed)

    @property
    def alarm(self) -> bool:
        return bool(self.gaps or self.forks or self.breaks or self.bad_signatures
                    or self.revocation_lost)


@dataclass
class Pass:
    url: str
    old_size: int
    size: int
    status: str                  # the mirror's: updated, unchanged, behind
    devices: list[DeviceNews]
    problems: list[str]          # leaves that are not hashtrail leaves
    seconds: float
    signatures: str = "checked"  # or why not: not served, --no-signatures
    revocations: str = "checked"  # or why not (not served; a list that does not check)

    @property
    def alarm(self) -> bool:
        return bool(self.problems) or any(d.alarm for d in self.devices)

    def to_json(self) -> dict[str, Any]:
        d = asdict(self)
        d["alarm"] = self.alarm
        for x, dev in zip(d["devices"], self.devices, strict=True):
            x["alarm"] = dev.alarm
        return d


class _State:
    def __init__(self, path: Path | None) -> None:
        self.path = path
        self.size = 0
        self.devices: dict[str, DeviceState] = {}
        if path is not None and path.exists():
            self._load(path)

    def _load(self, path: Path) -> None:
        doc = userfile.read_json(path, "the monitor's state file", max_bytes=MAX_STATE)
        try:
            if doc.get("format") != FORMAT:
                raise ValueError(f"not {FORMAT}")
            self.size = int(doc["size"])
            self.devices = {k: DeviceState(**v) for k, v in doc["devices"].items()}
        except (OSError, ValueError, TypeError, KeyError, AttributeError) as e:
            raise MonitorStateError(f"{path}: not a monitor state file: {e}") from None

    def save(self) -> None:
        if self.path is None:
            return
        doc = {"format": FORMAT, "size": self.size,
               "devices": {k: asdict(v) for k, v in sorted(self.devices.items())}}
        fd, tmp = tempfile.mkstemp(dir=self.path.parent, prefix=".tmp-monitor-")
        try:
            with os.fdopen(fd, "w") as f:
                json.dump(doc, f, indent=1)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, self.path)
        except BaseException:
            os.unlink(tmp)
            raise


def _leaves(replica: Path, size: int, lo: int) -> Iterator[tuple[int, bytes]]:
    """(index, leaf) for leaves lo..size-1 of the replica (its verified bundles)."""
    for n in range(lo // WIDTH, (size + WIDTH - 1) // WIDTH):
        ref = tiles.tile_for(None, n, size)
        for i, leaf in enumerate(tiles.parse_bundle((replica / ref.path()).read_bytes(),
                                                    ref.width)):
            if n * WIDTH + i >= lo:
                yield n * WIDTH + i, leaf


def _replica_size(replica: Path, verifier: note.Verifier) -> int:
    try:
        data = (replica / CHECKPOINT).read_bytes()
    except FileNotFoundError:
        return 0
    return note.open_checkpoint(data, [verifier])[0].size


def analyse(state: _State, replica: Path, size: int, only: str | None
            ) -> tuple[dict[str, DeviceNews], list[str]]:
    """Walk leaves state.size..size-1 of the replica, updating `state`."""
    news: dict[str, DeviceNews] = {}
    problems: list[str] = []
    for index, raw in _leaves(replica, size, state.size):
        try:
            lf = parse_leaf(raw)
            e = parse_entry(lf.entry)
        except HashtrailError as ex:
            problems.append(f"leaf {index}: not a hashtrail leaf: {ex}")
            continue
        st = state.devices.setdefault(lf.device_id, DeviceState())
        nw = news.setdefault(lf.device_id, DeviceNews(lf.device_id))
        seq = lf.seq
        if seq < st.next_seq:
            nw.forks.append(seq)
            st.forks += 1
            continue                  # the first entry the log gave for seq stays the chain
        if seq > st.next_seq:
            nw.gaps.append([st.next_seq, seq - 1])
            st.gaps += 1
        elif seq > 0 and e.prev.hex() != st.tip:
            nw.breaks.append(seq)
            st.breaks += 1
        if e.kind == KIND_LOG_ALTERED:
            nw.altered.append(seq)
            st.altered.append(seq)
        elif e.kind == KIND_OVERFLOW:
            nw.overflows.append(seq)
            st.overflows.append(seq)
        st.entries += 1
        st.next_seq = seq + 1
        st.tip = entry_hash(lf.entry).hex()
        nw.new += 1
        nw.first_seq = seq if nw.first_seq is None else nw.first_seq
        nw.last_seq = seq
    for did, nw in news.items():
        nw.entries = state.devices[did].entries
    if only is not None:
        news = {k: v for k, v in news.items() if k == only}
    state.size = size
    return news, problems


def check_signatures(client: TileClient, replica: Path, cp_bytes: bytes,
                     cp: note.Checkpoint, verifier: note.Verifier, lo: int,
                     news: dict[str, DeviceNews], state: _State) -> str:
    """Fetch and check the word of every leaf lo..cp.size-1 (module docstring); what
    does not check goes to its device's news. Returns the pass's `signatures`."""
    get = TileHashes(lambda ref: (replica / ref.path()).read_bytes(), cp.size).get
    missing: list[tuple[str, int]] = []
    served = 0
    for index, raw in _leaves(replica, cp.size, lo):
        try:
            lf = parse_leaf(raw)
        except HashtrailError:
            continue                      # reported by analyse
        nw = news.get(lf.device_id)
        if nw is None or lf.seq in nw.forks:
            continue                      # a fork's second leaf: its word is the first's
        try:
            word = client.get(tiles.word_path(lf.device_id, lf.seq), MAX_WORD)
        except FetchError as e:
            if "HTTP 404" not in str(e):
                raise
            missing.append((lf.device_id, lf.seq))
            continue
        served += 1
        try:
            check_word(word, raw, index, cp, cp_bytes, get, verifier, lf.device_id)
        except HashtrailError as e:
            nw.bad_signatures.append([lf.seq, str(e)])
            state.devices[lf.device_id].bad_signatures += 1
            continue
        nw.signed += 1
    if missing and not served:
        return "not served: the server has no device word for any new entry (a folder " \
               "published without --words?)"
    for did, seq in missing:
        news[did].bad_signatures.append([seq, "no device signature served for it"])
        state.devices[did].bad_signatures += 1
    for nw in news.values():
        nw.bad_signatures.sort(key=lambda b: int(b[0]))
    return "checked"


def check_revocations(client: TileClient, verifier: note.Verifier, origin: str,
                      news: dict[str, DeviceNews], state: _State,
                      problems: list[str]) -> str:
    """Fetch the server's signed revocations and compare them with those seen before
    (module docstring). Returns the pass's `revocations`."""
    try:
        data = client.get(tiles.REVOCATIONS, revocation.MAX_LIST)
        listed = {r.device_id: [r.revoked_at, r.reason]
                  for r in revocation.open_list(data, verifier, origin)}
        status = "checked"
    except FetchError as e:
        if "HTTP 404" not in str(e):
            raise
        listed, status = {}, "not served (a server or folder from before signed " \
                             "revocations)"
    except HashtrailError as e:
        problems.append(f"the revocation list does not check: {e}")
        return "refused: the list does not check"
    for did, st in sorted(state.devices.items()):
        if st.revoked is not None and listed.get(did) != st.revoked:
            nw = news.setdefault(did, DeviceNews(did, entries=st.entries))
            now = listed.get(did)
            nw.revocation_lost = f"revoked at {st.revoked[0]} ({st.revoked[1]!r}) in an " \
                                 f"earlier pass, " + ("not listed now" if now is None else
                                                      f"now listed as {now}")
    for did, rv in sorted(listed.items()):
        st = state.devices.setdefault(did, DeviceState())
        if st.revoked is None:
            news.setdefault(did, DeviceNews(did, entries=st.entries)).revoked = rv
            st.revoked = rv
    return status


def monitor_once(url: str, verifier: note.Verifier, state_path: Path | None = None,
                 device: str | None = None, timeout: float = 10.0,
                 signatures: bool = True) -> Pass:
    """One pass: bring the replica up to the log (every tile proven), then report what
    the new leaves say per device (`device`: only that one), their device signatures
    (unless `signatures` is False) and the log's signed revocations."""
    t0 = time.monotonic()
    state = _State(state_path)
    with tempfile.TemporaryDirectory(prefix="hashtrail-monitor-") as tmp:
        replica = Path(tmp) if state_path is None else \
            state_path.with_name(state_path.name + ".tiles")
        if state.size > _replica_size(replica, verifier):
            raise MonitorStateError(f"{state_path} has analysed tree size {state.size}, "
                                    f"more than its replica {replica} holds")
        m: Mirrored = mirror(url, replica, verifier, timeout, revocations=False)
        cp_bytes = (replica / CHECKPOINT).read_bytes()
        cp, _ = note.open_checkpoint(cp_bytes, [verifier])
        lo = state.size
        news, problems = analyse(state, replica, cp.size, None)
        client = TileSession(url, timeout)
        try:
            sigs = check_signatures(client, replica, cp_bytes, cp, verifier, lo, news,
                                    state) if signatures else "not checked (--no-signatures)"
            revs = check_revocations(client, verifier, cp.origin, news, state, problems)
        finally:
            client.close()
        state.save()
    devs = sorted((d for d in news.values() if device is None or d.device == device),
                  key=lambda d: d.device)
    if device is not None and not devs:
        devs = [DeviceNews(device, entries=state.devices.get(device, DeviceState()).entries)]
    return Pass(url, m.old_size, cp.size, m.status, devs, problems,
                round(time.monotonic() - t0, 3), sigs, revs)


def follow(url: str, verifier: note.Verifier, state_path: Path | None,
           device: str | None, interval: float, report: Callable[[Pass], None],
           passes: int | None = None, sleep: Callable[[float], None] = time.sleep,
           signatures: bool = True) -> int:
    """Pass after pass, `interval` seconds apart (`passes`: stop after that many);
    the number of passes that raised an alarm. Without a state file the monitor keeps
    one in a temporary folder for as long as it follows."""
    alarms = done = 0
    with tempfile.TemporaryDirectory(prefix="hashtrail-monitor-") as tmp:
        path = state_path if state_path is not None else Path(tmp) / "state.json"
        while passes is None or done < passes:
            if done:
                sleep(interval)
            p = monitor_once(url, verifier, path, device, signatures=signatures)
            alarms += p.alarm
            report(p)
            done += 1
    return alarms
