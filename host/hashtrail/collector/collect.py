"""Collect one device: pull what is new, verify it, store it, then let the device prune.

Why this order (docs/PROTOCOL.md "Collection"): bytes from a serial line are suspect,
so they go to the store's quarantine exactly as received; they are accepted only
after the chain links from our anchor and a checkpoint made just now for our random
nonce signs the head we hold; and the device is told it may prune (ACK) only after
the store committed. Killing the collector, pulling the cable or rebooting the device
at any point therefore loses nothing, and the store's idempotent writes mean a re-run
duplicates nothing.

`collect(link, store)` is the plain function behind `hashtrail collect`; it does no
printing (progress and notices, such as the device's own report that its log was
altered, go through callbacks).
"""

from __future__ import annotations

import hashlib
import logging
import os
import shutil
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from hashtrail.collector import collect_verify
from hashtrail.collector.store import RawEntry, Store, device_id_of
from hashtrail.device.link import BoundError, DeviceError, DeviceInfo, Link, LinkError
from hashtrail.errors import HashtrailError, VerificationError, printable
from hashtrail.formats.entry import KIND_ACK, parse_entry
from hashtrail.formats.records import MAGIC_ENTRY, record_fields

log = logging.getLogger(__name__)
Progress = Callable[[int, int, int], None]  # (entries received, entries expected, bytes)
Notice = Callable[[str], None]  # one line for the user, e.g. the device's altered report

# Host bounds (docs/PROTOCOL.md "Host bounds"): the host, not the device, decides how
# long and how much. Defaults are far above what an honest board needs: a full 4 MB
# log is ~30,000 records, ~7 minutes at 115200 baud.
DEADLINE_S = 900.0   # the whole command
MAX_RECORDS = 200_000  # records per run whatever the device announces
BATCH = 1000         # records held before they are quarantined and verified
# The store's filesystem must hold what the device announced: STORE_BYTES_PER_ENTRY for
# each entry still to come (a ~141-byte record as received, its SQLite row and index, a
# WAL copy until checkpointed), plus STORE_MARGIN left for everything else.
STORE_BYTES_PER_ENTRY = 512
STORE_MARGIN = 64 << 20
FreeSpace = Callable[[Path], int]  # bytes free in the filesystem holding a store file


def store_free_bytes(path: Path) -> int:
    """Bytes free (for this user) in the filesystem that holds the store file `path`."""
    return shutil.disk_usage(Path(path).resolve().parent).free
MAX_ROUNDS = 8       # RECORDS/CHECKPOINT/HELLO rounds (the head moving on meanwhile)
MAX_RETRIES = 12     # failed attempts without a new entry, beyond those with one


class NotEnrolledError(HashtrailError):
    """The device on the port is not enrolled in this collector store: an input error
    (that port with that store), exit 2 like every other."""

    exit_code = 2


@dataclass
class CollectResult:
    device_id: str
    label: str
    from_seq: int
    upto_seq: int | None  # last accepted seq after this run
    new_entries: int  # entries accepted in this run
    checkpoints: int  # device checkpoints stored and verified in this run
    time_set: bool
    acked: bool
    device_first_seq: int | None  # what the device still holds after pruning
    bytes_in: int
    seconds: float
    retries: int
    noise_bytes: int
    # The device's own report that its log no longer matches its signatures (HELLO).
    device_altered: dict[str, Any] | None = None
    pushed: int = 0  # entries of this run that came from the device's pushes (MQTT)

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def identify(link: Link, store: Store, notice: Notice | None = None
             ) -> tuple[DeviceInfo, str]:
    """HELLO (soft-resetting a device found at the REPL, with a notice), check the key
    matches the id, and find the enrollment (label)."""
    info = link.hello_waking(notice)
    if info.proto != 1:
        raise LinkError(f"device speaks protocol {info.proto}, this collector speaks 1")
    if device_id_of(info.pub) != info.device_id:
        raise VerificationError(
            f"device claims id {info.device_id} but its public key gives "
            f"{device_id_of(info.pub)}")
    enr = store.enrollment(info.device_id)
    if enr is None:
        raise NotEnrolledError(
            f"device {info.device_id} ({printable(info.board)}, fw {printable(info.fw)}) "
            f"is not enrolled in "
            f"{store.path}",
            hint=f"enroll it first: hashtrail enroll --port PORT --store {store.path} "
                 "--label NAME")
    if enr.pub != info.pub:
        raise VerificationError(f"device {info.device_id} presents another key than the "
                                "one enrolled")
    return info, enr.label


class _Pull:
    """What this run received, from `start` on, without holding it: each record goes to
    the pending batch; `flush` quarantines the batch's entries and feeds it to the
    verifier, so memory is bounded by BATCH records, not by what the device sends."""

    def __init__(self, start: int, verifier: collect_verify.Verifier,
                 cap: int = MAX_RECORDS) -> None:
        self.start = start
        self.verifier = verifier
        self.cap = cap  # records this run may hold (set from what the device announced)
        self.why = "the ceiling"
        self.count = 0  # records received and kept
        self.batch: list[bytes] = []
        self.entries: list[RawEntry] = []
        self._seen: set[bytes] = set()  # hashes of the checkpoint records received
        self.cps = bytearray()  # seq (4 bytes) + SHA-256 of each checkpoint record parsed
        self.next = start  # the seq to ask for next
        self.not_acks = False  # an entry other than the device's "acknowledged" ones
        self.announced_last = start - 1  # the last seq the device announced (HELLO)

    def add(self, rec: bytes) -> RawEntry | None:
        """Keep one record; returns it as a store entry when it is an entry record.

        A checkpoint record seen again (a stream restarted after it) is kept once. An
        entry record is always kept, even byte-identical to one already received: the
        device never streams an entry twice, so a repeat is a duplicate on its flash,
        and the verifier must see it to report it.
        """
        if self.count >= self.cap:
            raise BoundError(f"stopped at the host's records bound ({self.cap} records "
                             f"this run: {self.why})")
        magic, seq, body, sig = record_fields(rec)
        if magic != MAGIC_ENTRY:
            h = hashlib.sha256(rec).digest()
            if h not in self._seen:
                self._seen.add(h)
                self.batch.append(rec)
                self.count += 1
            return None  # checkpoint records (or garbage: the verifier names it)
        self.batch.append(rec)
        self.count += 1
        self.next = max(self.next, seq + 1)
        if not self.not_acks:
            self.not_acks = _not_ack(body)
        e = RawEntry(seq, body, sig)
        self.entries.append(e)
        return e

    def flush(self, store: Store, did: str) -> None:
        """Quarantine the pending entries (as received, before anything is judged),
        then walk the batch."""
        if self.entries:
            store.quarantine(did, self.entries)
            self.entries = []
        if self.batch:
            for cp in self.verifier.feed(self.batch):
                # as received, before the verdict; 36 bytes kept to accept it after
                store.add_checkpoint(did, cp.raw, cp.nonce, seq=cp.seq, head=cp.head)
                self.cps += cp.seq.to_bytes(4, "big") + hashlib.sha256(cp.raw).digest()
            self.batch = []

    def checkpoints(self) -> Iterator[tuple[int, bytes]]:
        """(seq, SHA-256 of the COSE bytes) of the checkpoint records received."""
        for i in range(0, len(self.cps), 36):
            yield int.from_bytes(self.cps[i:i + 4], "big"), bytes(self.cps[i + 4:i + 36])


def collect(link: Link, store: Store, *, set_time: bool = True, ack: bool = True,
            progress: Progress | None = None, attempts: int = 4,
            window: int = 4, notice: Notice | None = None,
            deadline: float = DEADLINE_S, max_records: int = MAX_RECORDS,
            max_rounds: int = MAX_ROUNDS, max_retries: int = MAX_RETRIES,
            device_id: str | None = None,
            preload: Callable[[int], Sequence[bytes]] | None = None,
            free_space: FreeSpace = store_free_bytes) -> CollectResult:
    """Collect one device within host bounds: `deadline` seconds for everything,
    at most `max_records` records (fewer when the device announces fewer), `max_rounds`
    HELLO/CHECKPOINT rounds, and failed attempts that received no new entry: `attempts`
    in a row (LinkError), or `max_retries` more than those that did (BoundError). An
    attempt that breaks after new entries (a frame lost, a slow or rebooting device)
    resumes at once and is never counted against the device. A bound hit raises
    BoundError naming the device and the bound; nothing of this run is accepted then.
    `device_id`: the device expected behind the link (a broker topic names it); another
    one answering is refused before anything is pulled. `preload(start)`: records the
    device already pushed (MQTT), from entry `start` (the store's head + 1) on, in log
    order: taken as if pulled (quarantined, then verified with the rest), and the pull
    asks only for what follows them. `free_space(store path)`: bytes free where the
    store lives; the run stops at the bytes bound when what the device announced would
    not fit, at HELLO and after every batch."""
    t0 = time.monotonic()
    link.set_deadline(deadline)
    info, label = identify(link, store, notice)
    did = info.device_id
    if device_id is not None and did != device_id:
        raise VerificationError(f"device {did} answered on the topics of {device_id}")
    link.name = f"device {did}"
    try:
        return _collect(link, store, info, label, t0, set_time=set_time, ack=ack,
                        progress=progress, attempts=attempts, window=window,
                        notice=notice, max_records=max_records, max_rounds=max_rounds,
                        max_retries=max_retries, preload=preload, free_space=free_space)
    except BoundError as e:
        msg = str(e)
        raise BoundError(msg if msg.startswith(link.name) else f"{link.name}: {msg}"
                         ) from None


def _bounds(link: Link, pull: _Pull, info: DeviceInfo, max_records: int,
            space: Callable[[], None]) -> None:
    """Caps derived from what the device announced in its latest HELLO: its entries
    after our anchor, twice over (its checkpoint records are interleaved) plus slack,
    never above max_records; bytes: a chunk holds at least one record; and the store's
    free space must hold those entries (`space`)."""
    announced = 0 if info.last_seq is None else max(0, info.last_seq + 1 - pull.start)
    pull.cap = min(max_records, 2 * announced + 64)
    pull.why = ("the --max-records ceiling" if pull.cap == max_records else
                f"it announced {announced} entries after seq {pull.start - 1}")
    link.max_bytes = (1 << 20) + pull.cap * (max(info.chunk, 64) + 16)
    pull.announced_last = pull.start - 1 if info.last_seq is None else info.last_seq
    space()


def _hello_again(link: Link, did: str, pull: _Pull, max_records: int,
                 space: Callable[[], None]) -> DeviceInfo:
    """HELLO during a collection: the device may have rebooted (same id, new boot) or
    appended (new bounds); another device on the port ends the run."""
    info = link.hello()
    if info.device_id != did:
        raise VerificationError("another device appeared on the port during collection")
    _bounds(link, pull, info, max_records, space)
    return info


def _space_check(link: Link, store: Store, pull: _Pull, free_space: FreeSpace
                 ) -> Callable[[], None]:
    """The bytes bound on the store's side: the entries announced and not yet received
    must fit in the store's filesystem, STORE_MARGIN kept free."""

    def check() -> None:
        left = min(max(0, pull.announced_last + 1 - pull.next), pull.cap - pull.count)
        need = left * STORE_BYTES_PER_ENTRY
        free = free_space(store.path)
        if free - STORE_MARGIN < need:
            raise link.bound("bytes", (
                f"the store's filesystem has {_mb(free)} free, {_mb(STORE_MARGIN)} kept as "
                f"margin; the {left} entries announced and not yet received need about "
                f"{_mb(need)}"))
    return check


def _mb(n: int) -> str:
    return f"{n / (1 << 20):.1f} MB"


def _collect(link: Link, store: Store, info: DeviceInfo, label: str, t0: float, *,
             set_time: bool, ack: bool, progress: Progress | None, attempts: int,
             window: int, notice: Notice | None, max_records: int, max_rounds: int,
             max_retries: int, free_space: FreeSpace,
             preload: Callable[[int], Sequence[bytes]] | None = None
             ) -> CollectResult:
    did = info.device_id
    # The device's own report comes first, before anything can fail: what it does not
    # vouch for is for the verifier to refuse, the user must hear it either way.
    altered = info.altered
    if altered is not None:
        (notice or log.warning)(altered.describe(did))
    time_set = False
    if set_time and info.time is None:
        link.set_time(int(time.time()))
        time_set = True
    anchor = store.anchor(did)
    start = 0 if anchor is None else anchor.seq + 1
    if info.first_seq > start:
        raise VerificationError(
            f"device {did} no longer holds seq {start}..{info.first_seq - 1}, which this "
            "collector never received (pruned after another collector's ACK?)",
            hint="collect its bundle from the other collector; this store cannot accept "
                 "a chain with a hole")
    # held to the signing policy of its entry 0, as accepted (this run reads it itself)
    # and to the firmware history it accepted before (a downgrade across collections)
    fw, fw_last = store.firmware(did)
    pull = _Pull(start, collect_verify.Verifier(info.pub, anchor, policy=store.policy(did),
                                                fw=fw, fw_last=fw_last))
    space = _space_check(link, store, pull, free_space)
    _bounds(link, pull, info, max_records, space)
    pushed = 0
    if preload is not None:
        for rec in preload(start):
            if pull.add(rec) is not None:
                pushed += 1
            if len(pull.batch) >= BATCH:
                pull.flush(store, did)
        pull.flush(store, did)
    rounds = 0
    retries = 0  # failed attempts, with or without progress (reported)
    idle = 0  # failed attempts that received no new entry, in all
    resumed = 0  # failed attempts that received new entries first
    stuck = 0  # the same, in a row
    mark = start  # pull.next when the current attempt began
    expected = 0
    nonce = b""
    cose = b""
    need_hello = False
    earlier = False  # the checkpoint judged was asked for before the last records came
    while True:
        earlier = False
        try:
            if need_hello:
                info = _hello_again(link, did, pull, max_records, space)
                need_hello = False
            if info.last_seq is not None:
                expected = max(expected, info.last_seq + 1 - start)
            if info.last_seq is not None and pull.next <= info.last_seq:
                _stream(link, store, did, pull, expected, progress, window, space)
            nonce = os.urandom(16)
            cose = link.checkpoint(nonce)
            signed = collect_verify.checkpoint_seq(cose)
            if signed >= pull.next:
                rounds += 1
                if rounds >= max_rounds:
                    raise link.bound("round trips", (
                        f"{rounds} checkpoints in a row claimed entries beyond seq "
                        f"{pull.next - 1}, the last received"))
                # The device appended meanwhile: fetch the rest, then judge this same
                # checkpoint over the entries up to the one it signs. Asking for a new
                # one instead never converged with a device that appends faster than a
                # round trip (a busy host, a fast sampling rate).
                info = _hello_again(link, did, pull, max_records, space)
                if info.last_seq is not None and pull.next <= info.last_seq:
                    _stream(link, store, did, pull, expected, progress, window, space)
                if signed >= pull.next:
                    continue  # it did not send what it signed: ask again (bounded)
                earlier = True
            break
        except (LinkError, DeviceError) as e:
            retries += 1
            log.debug("device %s: attempt failed at seq %d: %s", did, pull.next, e)
            if pull.next > mark:
                # The attempt received new entries before it broke (a frame lost to
                # noise, a device slow or rebooting): the device is still sending, so
                # nothing is declared lost; resume at once from the last entry kept.
                # Only the host's deadline, records and bytes bounds limit this. No
                # HELLO: a rebooted device serves the same RECORDS request, and the
                # fresh checkpoint at the end proves every record came from its key.
                mark = pull.next
                stuck = 0
                resumed += 1
                link.drain()
                continue
            idle += 1
            stuck += 1
            need_hello = True
            # Bounded: in a row, and in all beyond the attempts that did bring entries
            # (a lossy line that loses a first chunk now and then still progresses).
            over = idle - resumed >= max_retries
            why = (f"{stuck} attempts in a row received no new entry" if stuck >= attempts
                   else f"{idle} attempts received no new entry, {resumed} did"
                   if over else "")
            if why:
                have = "none" if pull.next == start else f"seq {start}..{pull.next - 1}"
                msg = (f"{why} (last: {e}); received {have} of the {expected} "
                       f"entries from seq {start} it announced, in {retries} failed "
                       "attempts")
                if over:
                    raise link.bound("retries", msg) from None
                raise LinkError(f"collection of {did} stopped: {msg}",
                                hint="everything received is kept; run collect again") from e
            # Back off (0.25, 0.5, 1, 2 s): a busy host or a slow device gets time.
            time.sleep(min(2.0, 0.25 * 2 ** (stuck - 1)))
            link.drain()
    report = pull.verifier.finish(cose, nonce, earlier=earlier)
    # Everything as received, even what fails, is kept in quarantine as evidence (the
    # checkpoint records were, batch by batch).
    if report.fresh is not None:
        store.add_checkpoint(did, cose, nonce, seq=report.fresh.seq, head=report.fresh.head)
    if not report.ok or report.last_seq is None or report.head is None:
        n = len(report.findings) + report.more
        raise VerificationError(
            f"device {did}: " + "; ".join(report.findings[:5])
            + (f" (and {n - 5} more)" if n > 5 else ""),
            hint="nothing was accepted or acknowledged; the received records are kept in "
                 "the store's quarantine as evidence")
    new = 0
    if report.last_seq >= start:
        # exactly the entries this run verified: a forged copy of one of their seqs left
        # in quarantine by an earlier, refused run does not block them
        new = store.accept(did, report.last_seq, report.head,
                           walked=pull.verifier.walked)
    store.accept_checkpoint(did, cose)
    for seq, h in pull.checkpoints():
        if seq <= report.last_seq:
            store.accept_checkpoint(did, b"", cose_hash=h)
    acked = False
    first: int | None = info.first_seq
    if ack and new and pull.not_acks:
        try:
            first = link.ack(report.last_seq)
            acked = True
        except BoundError as e:
            # What was verified is committed and stays accepted; the device merely keeps
            # it (no prune) until a later collection's ACK.
            (notice or log.warning)(f"{e}; {did} was not acknowledged, it keeps what was "
                                    "collected")
    return CollectResult(
        device_id=did, label=label, from_seq=start, upto_seq=report.last_seq,
        new_entries=new, checkpoints=len(pull.cps) // 36 + 1, time_set=time_set,
        acked=acked, device_first_seq=first, bytes_in=link.bytes_in,
        seconds=round(time.monotonic() - t0, 3), retries=retries,
        noise_bytes=link.noise_bytes,
        device_altered=None if altered is None else asdict(altered), pushed=pushed)


def _not_ack(body: bytes) -> bool:
    """Whether an entry is other than the device's own "acknowledged" ones. Each ACK
    makes the device append one, so acknowledging a run that brought only those would
    append one more every time: a collector running round after round (collect --mqtt
    --follow) would keep an idle device writing forever. They are acknowledged with the
    next entry of another kind."""
    try:
        return parse_entry(body).kind != KIND_ACK
    except HashtrailError:
        return True


def _stream(link: Link, store: Store, did: str, pull: _Pull, expected: int,
            progress: Progress | None, window: int, space: Callable[[], None]) -> None:
    """One RECORDS stream from pull.next; records are quarantined and walked by the
    verifier BATCH at a time as they arrive, the store's free space checked after each."""
    got = [0]

    def chunk_done(nbytes: int) -> None:
        got[0] += nbytes
        if progress is not None:
            progress(pull.next - pull.start, expected, got[0])

    try:
        for rec in link.records(pull.next, window=window, on_chunk=chunk_done):
            pull.add(rec)
            if len(pull.batch) >= BATCH:
                pull.flush(store, did)
                space()
    finally:
        pull.flush(store, did)
    if progress is not None:
        progress(pull.next - pull.start, expected, got[0])
