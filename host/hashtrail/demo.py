"""`hashtrail demo`: the whole product on virtual devices, one step at a time.

Why it exists: a user with no board must be able to see every claim of the brief hold
on real parts in about ten seconds: the real firmware running under the MicroPython
unix port (its own littlefs image and pseudo-terminal per device), two collectors with
their own SQLite stores collecting over those ptys, bundles reconciled into one Merkle
ledger, a signed ledger checkpoint, an offline inclusion proof checked down to the
device's own signature, and the keyless flash rewrite of issue 10 caught (the same
surgery the attack suite runs: hashtrail.sim.tamper). Nothing here is simulated around
the parts: the demo only calls the same plain functions the CLI commands call
(`collect`, `from_store`, `reconcile`, `verify_ledger`, `check_proof_doc`) and reports
what they returned.

One setting differs from boards/unix.json, written into each device's own /board.json
(the firmware reads it at boot like any board would): readings every 0.25 s instead
of 10 s, so "time passes" in a second. Two collectors read each device; that works
because the firmware's default keeps acknowledged data until space is needed
(docs/STORAGE.md "Pruning"), so collector A's ACK does not delete entries collector B
has not read yet.

`run_demo(directory, devices, out)` does no argument parsing and returns a
`DemoReport`; progress is written to `out` as it happens. Every device process is
stopped on the way out, whatever happened (Ctrl-C included).
"""

from __future__ import annotations

import contextlib
import io
import json
import shlex
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import IO, Any

from hashtrail.chain.chainverify import Anchor as ChainAnchor
from hashtrail.chain.chainverify import verify_chain
from hashtrail.collector.bundle import from_store, read_bundle, write_bundle
from hashtrail.collector.collect import collect
from hashtrail.collector.store import Store, device_id_of
from hashtrail.device import imagefs
from hashtrail.device.boards import load_board
from hashtrail.device.link import DeviceInfo, LinkError, open_serial
from hashtrail.device.mqtt_link import Broker, open_broker, parse_url
from hashtrail.device.release import compile_release, keygen, load_key
from hashtrail.device.update import UpdateRefused, update
from hashtrail.errors import FormatError, HashtrailError, VerificationError
from hashtrail.formats import manifest, merkle, note
from hashtrail.formats.entry import KIND_READING, entry_hash, parse_entry
from hashtrail.formats.records import LOG_DIR, MAGIC_ENTRY, Record, parse_segments
from hashtrail.ledger.firmware import firmware_history
from hashtrail.ledger.http_app import available as can_serve
from hashtrail.ledger.http_app import serve_app, serving_app
from hashtrail.ledger.ledger_db import Ledger
from hashtrail.ledger.ledger_verify import LedgerReport, verify_ledger
from hashtrail.ledger.mirror import mirror
from hashtrail.ledger.proof import SIG_ENTRY, check_proof_doc
from hashtrail.ledger.proof_file import check_proof
from hashtrail.ledger.proof_file import prove as prove_file
from hashtrail.ledger.reconcile import Result, reconcile
from hashtrail.ledger.serve import serving
from hashtrail.ledger.tiles_client import FetchError, verify_proof_url
from hashtrail.ledger.witness_http import Witness, make_witness_app, request_cosignature
from hashtrail.sim import Fleet, VirtualDevice, provision
from hashtrail.sim.tamper import (
    Rewrite,
    TamperError,
    change_first_value,
    first_value,
    log_records,
    rewrite_chain,
)
from hashtrail.web.app import make_app as make_web_app

SAMPLE_INTERVAL_S = 0.25
# Over a broker a collection round costs more (Mosquitto's default Nagle: ~44 ms a
# reply, docs/MQTT.md): sample slower so a round fits between two readings.
MQTT_SAMPLE_INTERVAL_S = 1.0
ORIGIN = "demo.hashtrail.example/ledger"
# Step 8's releases: the firmware the devices run is release 1 (FW_VERSION of app.py);
# the update is release 2, the rollback attempt release 1 offered again.
OLD_RELEASE = ("0.1.0", 1)
NEW_RELEASE = ("0.2.0", 2)
_READY_TIMEOUT_S = 30.0
_WAIT_S = 6 * SAMPLE_INTERVAL_S  # "time passes" between collection rounds: ~6 readings


class DemoError(HashtrailError):
    """A demo step that should have succeeded did not."""

    hint = "run again with --keep and inspect the folder it names; `hashtrail sim --log` " \
           "shows device boots"


# -- the report ------------------------------------------------------------------------

@dataclass
class DeviceRow:
    name: str
    port: str
    device_id: str
    image: str


@dataclass
class CollectionRow:
    collector: str
    device: str
    from_seq: int
    upto_seq: int | None
    new_entries: int
    seconds: float
    acked: bool = False


@dataclass
class TamperReport:
    """Step 9, the keyless flash rewrite: what was changed on the flash, how it looked
    to the record layer and the hash chain afterwards, and who caught it where."""

    device: str
    device_id: str
    edited_seq: int                  # the reading no collector had and no checkpoint covered
    reading: str
    old_value: float
    new_value: float
    relinked_upto: int               # entries edited_seq+1 .. this got a recomputed prev
    records_rewritten: int           # records re-encoded with a recomputed CRC
    signatures_kept: int             # of those, carrying their old (now wrong) signature
    crc_valid_after_edit: bool       # every record CRC on the image checks: no CRC catch
    links_valid_after_edit: bool     # every prev link on the image checks: no chain catch
    device_reported_seq: int | None  # the device's boot check: "log altered from seq X"
    device_report: str
    collector_refused: bool
    collector_acked: bool            # did collector A acknowledge anything from this run
    collector_message: str
    findings: list[dict[str, Any]]   # structured re-check of the quarantined bytes
    caught_seq: int | None           # the seq the first finding names
    caught_code: str
    anchor_before: int | None
    anchor_after: int | None
    ledger_tip_before: int
    ledger_tip_after: int
    ledger_held: int
    caught: bool = False


@dataclass
class UpdateReport:
    """Step 8, a signed firmware update on one device and a rollback refused."""

    device: str
    device_id: str
    old_version: str
    new_version: str
    counter: int
    manifest_sha256: str
    package_bytes: int
    seconds: float                   # BEGIN to the new firmware answering HELLO
    update_seq: int | None           # the device's update entry (kind 7), in the ledger
    history: list[dict[str, Any]]    # `ledger firmware --device` for it, as JSON
    proof_ok: bool                   # its inclusion proof checks, down to its signature
    rollback_counter: int
    rollback_refused: bool
    rollback_reason: str
    still_logging: bool              # after the refusal, on the new firmware
    ledger_ok: bool                  # the ledger verifies with the update in it
    ok: bool = False


@dataclass
class DemoReport:
    directory: str
    devices: list[DeviceRow] = field(default_factory=list)
    collections: list[CollectionRow] = field(default_factory=list)
    reconciles: list[dict[str, Any]] = field(default_factory=list)
    rerun_noop: bool = False
    entries_a: int = 0
    entries_b: int = 0
    entries_union: int = 0
    ledger_size: int = 0
    verify_ok: bool = False
    checkpoint: str = ""
    verifier_key: str = ""
    proof_ok: bool = False           # checked offline down to the entry's own device signature
    proof_check: dict[str, Any] | None = None  # what verify-proof proved (ProofCheck)
    proof_tampered_refused: bool = False
    # Step 7: the same entry's proof fetched from the ledger served as tlog-tiles and
    # checked like a proof file; None when aiohttp (the `serve` extra) is not installed.
    served_url: str = ""
    served_proof_ok: bool | None = None
    witness_ok: bool | None = None   # a witness cosigned the served checkpoint over HTTP
    mirror_size: int | None = None   # tree size a mirror proved (-1: it refused)
    tamper: TamperReport | None = None
    ledger_intact_after_tamper: bool = False
    update: UpdateReport | None = None
    update_skipped: str = ""         # why step 8 did not run (--mqtt), else ""
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        return (self.rerun_noop and self.verify_ok and self.proof_ok
                and self.proof_tampered_refused and self.entries_union == self.ledger_size
                and self.served_proof_ok is not False and self.witness_ok is not False
                and (self.mirror_size is None or self.mirror_size >= 0)
                and self.tamper is not None and self.tamper.caught
                and self.ledger_intact_after_tamper
                and (self.update.ok if self.update is not None
                     else bool(self.update_skipped)))

    def to_json(self) -> dict[str, Any]:
        d = asdict(self)
        d["ok"] = self.ok
        return d


# -- output ------------------------------------------------------------------------------

class Narrator:
    """Step headings, indented lines and aligned tables, flushed as they happen."""

    def __init__(self, out: IO[str], steps: int = 10) -> None:
        self.out = out
        self.steps = steps
        self.t0 = time.monotonic()
        self.current: int | None = None

    def step(self, n: int, title: str) -> None:
        """Start step n; the one before ends here, with how long it took itself."""
        self.end_step()
        self.current, self.t0 = n, time.monotonic()
        self.out.write(f"\n[{n}/{self.steps}] {title}\n")
        self.out.flush()

    def end_step(self) -> None:
        if self.current is not None:
            self.say(f"(step {self.current} took {time.monotonic() - self.t0:.1f} s)")
        self.current = None

    def say(self, text: str = "", indent: int = 4) -> None:
        for line in text.splitlines() or [""]:
            self.out.write(" " * indent + line + "\n")
        self.out.flush()

    def table(self, headers: Sequence[str], rows: Sequence[Sequence[object]],
              right: Sequence[int] = ()) -> None:
        cells = [[str(c) for c in r] for r in [list(headers), *rows]]
        widths = [max(len(r[i]) for r in cells) for i in range(len(headers))]

        def fmt(r: list[str]) -> str:
            return "  ".join(c.rjust(w) if i in right else c.ljust(w)
                             for i, (c, w) in enumerate(zip(r, widths, strict=True))).rstrip()

        self.say(fmt(cells[0]))
        self.say("  ".join("-" * w for w in widths))
        for r in cells[1:]:
            self.say(fmt(r))


def _utc(t: int | None) -> str:
    return "-" if t is None else time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(t))


def _q(path: Path) -> str:
    """A path as a shell word: the printed commands run as printed."""
    return shlex.quote(str(path))


# -- devices -----------------------------------------------------------------------------

def demo_image(board_name: str = "unix", mqtt: dict[str, Any] | None = None,
               release_keys: Sequence[bytes] = ()) -> bytes:
    """One littlefs image for every demo device: the compiled firmware plus a
    /board.json with the demo's sampling interval (compiled once, copied to each device),
    the broker to serve when `mqtt` names one ({"host", "port"}), and the release keys
    it takes updates from pinned in /ht/release_keys (as `deploy --release-key` does)."""
    board = load_board(board_name)
    files = imagefs.firmware_files(board)
    cfg = json.loads(files[imagefs.BOARD_FILE])
    if mqtt is None:
        cfg["sample_interval_s"] = SAMPLE_INTERVAL_S
    else:
        cfg.update(sample_interval_s=MQTT_SAMPLE_INTERVAL_S, mqtt=mqtt)
    files[imagefs.BOARD_FILE] = json.dumps(cfg).encode()
    if release_keys:
        files[manifest.RELEASE_KEYS_PATH] = manifest.release_keys_file(release_keys)
    return imagefs.build_image(files, board.vfs_size, board.block_size)


def hello(dev: VirtualDevice, timeout: float = _READY_TIMEOUT_S) -> DeviceInfo:
    """HELLO over the device's pty, retried until it has booted and answers."""
    try:
        return provision.wait_ready(dev, timeout, poll_s=0.1)
    except (HashtrailError, OSError) as e:
        raise DemoError(f"{dev.name} on {dev.port} did not answer within "
                        f"{timeout:.0f} s: {e}") from e


def wait_for_entries(dev: VirtualDevice, last_seq: int, timeout: float = 20.0) -> DeviceInfo:
    """Poll HELLO until the device's log reaches `last_seq` (it appends on its own)."""
    deadline = time.monotonic() + timeout
    while True:
        info = hello(dev)
        if info.last_seq is not None and info.last_seq >= last_seq:
            return info
        if time.monotonic() > deadline:
            raise DemoError(f"{dev.name} logged up to seq {info.last_seq} in {timeout:.0f} s, "
                            f"expected {last_seq}")
        time.sleep(SAMPLE_INTERVAL_S)


# -- collectors --------------------------------------------------------------------------

@dataclass
class Collector:
    name: str          # "A" / "B"
    store: Store
    path: Path
    broker: Broker | None = None  # collect over this MQTT broker, not the pty (--mqtt)


def collect_one(c: Collector, dev: VirtualDevice, ack: bool = True,
                device_id: str | None = None) -> CollectionRow:
    """One `hashtrail collect` run: pull, verify against a fresh nonce, store, ACK;
    over the device's pty, or over the collector's broker (then `device_id` names it)."""
    if c.broker is not None and device_id is None:
        raise DemoError("collection over MQTT needs the device id")
    link = open_serial(dev.port) if c.broker is None else c.broker.link(str(device_id))
    with link:
        try:
            res = collect(link, c.store, ack=ack, device_id=device_id)
        except LinkError as e:
            # What the device printed instead of frames (a traceback, a MemoryError)
            # is the only clue to why it went silent: show it.
            console = bytes(link.decoder.text[-800:]).decode("utf-8", "replace").strip()
            raise DemoError(f"collector {c.name} could not collect {dev.name}: {e}"
                            + (f"\ndevice console:\n{console}" if console else "")) from e
    return CollectionRow(c.name, dev.name, res.from_seq, res.upto_seq, res.new_entries,
                         res.seconds, res.acked)


def accepted_seqs(c: Collector, device_id: str) -> set[int]:
    return {r.seq for r in c.store.accepted_records(device_id)}


# -- tampering ---------------------------------------------------------------------------

@dataclass
class FlashEdit:
    seq: int
    reading: str
    old_value: float
    new_value: float
    rewrite: Rewrite
    crc_valid: bool    # every record on the image parses, CRC good, after the rewrite
    links_valid: bool  # every entry's prev is the hash of the entry before it


def quiet_power_cut(dev: VirtualDevice, timeout: float = 5.0) -> None:
    """Switch the device off just after it logged an entry, between two readings: a cut
    in the middle of a write would leave a torn record (the device's own recovery drops
    it at the next boot), and the rewrite wants whole records."""
    seq0 = hello(dev).last_seq
    deadline = time.monotonic() + timeout
    while hello(dev).last_seq == seq0 and time.monotonic() < deadline:
        time.sleep(0.02)
    dev.power_cut()


def rewrite_target(image_path: Path, block_size: int, after_seq: int) -> int | None:
    """The first reading no collector has (seq > `after_seq`) and no device checkpoint
    record on the flash covers, with a later entry to relink and a first value the edit
    can move in place; None when the log holds none yet. The device must be off."""
    fs = imagefs.mount_image(image_path.read_bytes(), block_size)
    try:
        recs = log_records(fs)
    finally:
        fs.unmount()
    covered = max((r.seq for r in recs if not r.is_entry), default=-1)
    last = max((r.seq for r in recs if r.is_entry), default=-1)
    return next((r.seq for r in recs
                 if r.is_entry and max(after_seq, covered) < r.seq < last
                 and parse_entry(r.body).kind == KIND_READING
                 and first_value(r.body) is not None), None)


def rewrite_flash(image_path: Path, block_size: int, seq: int,
                  delta: float = -2.5) -> FlashEdit:
    """The keyless rewrite (hashtrail.sim.tamper): entry `seq`'s first reading moved by
    about `delta`, the `prev` link of every later entry and every record CRC recomputed,
    the per-entry signature records kept as they were. No key is used. Then the image
    is read back: does every record and every link check?"""
    before = _image_entries(image_path, block_size)[0][seq]
    got = first_value(before)
    if got is None:
        raise DemoError(f"{image_path.name}: entry {seq} has no value to edit in place")
    box: list[Rewrite] = []
    try:
        imagefs.edit_image(image_path, block_size, lambda fs: box.append(
            rewrite_chain(fs, {seq: change_first_value(delta)})))
    except TamperError as e:
        raise DemoError(f"{image_path.name}: the flash rewrite failed: {e}") from e
    entries, crc_ok = _image_entries(image_path, block_size)
    links_ok = all(parse_entry(b).prev == entry_hash(entries[s - 1])
                   for s, b in entries.items() if s - 1 in entries)
    after = first_value(entries[seq])
    return FlashEdit(seq, got[0], round(got[1], 3),
                     round(after[1], 3) if after else float("nan"), box[0], crc_ok, links_ok)


def _image_entries(image_path: Path, block_size: int) -> tuple[dict[int, bytes], bool]:
    """seq -> entry bytes on the image, and whether every record parsed whole."""
    files = imagefs.read_image(image_path.read_bytes(), block_size)
    recs, problems = parse_segments(sorted((p, b) for p, b in files.items()
                                           if p.startswith(LOG_DIR + "/")
                                           and p.endswith(".seg")))
    return {r.seq: r.body for r in recs if r.is_entry}, not problems


def recheck_quarantine(c: Collector, pub: bytes) -> list[dict[str, Any]]:
    """Re-verify, offline, what the collector kept in quarantine from its anchor on:
    the structured findings (device, seq, reason code) behind its refusal."""
    did = device_id_of(pub)
    anchor = c.store.anchor(did)
    start = 0 if anchor is None else anchor.seq + 1
    recs = [Record(MAGIC_ENTRY, r.seq, r.body, r.sig, "quarantine", 0)
            for r in c.store.quarantined(did, start)]
    rep = verify_chain(pub, recs, anchor=None if anchor is None
                       else ChainAnchor(anchor.seq, anchor.head), policy=c.store.policy(did))
    return [{"device_id": f.device_id, "seq": f.seq, "code": f.code, "text": f.text}
            for f in rep.findings]


# -- the demo ----------------------------------------------------------------------------

def _reconcile_row(label: str, r: Result, size: int) -> dict[str, Any]:
    return {"bundle": label, "enrolled": r.enrolled, "accepted": r.accepted,
            "duplicates": r.duplicates, "held": r.pending, "checkpoints": r.checkpoints,
            "findings": [f._asdict() for f in r.findings], "ledger_size": size}


class _Demo:
    """The ten steps over shared state; `run_demo` owns the processes and files."""

    def __init__(self, directory: Path, fleet: Fleet, stack: contextlib.ExitStack,
                 n: Narrator, mqtt: str | None = None, image: bytes = b"") -> None:
        self.dir = directory
        self.image = image          # every device's first flash image
        self.mqtt = mqtt
        self.interval = SAMPLE_INTERVAL_S if mqtt is None else MQTT_SAMPLE_INTERVAL_S
        self.fleet = fleet
        self.devs = fleet.devices
        self.stack = stack
        self.n = n
        self.rep = DemoReport(str(directory))
        self.infos: dict[str, DeviceInfo] = {}
        self.names: dict[str, str] = {}          # device id -> device name
        self.cols: list[Collector] = []
        self.bundles: dict[str, Path] = {}
        self.ledger_path = directory / "ledger.db"
        self.led: Ledger | None = None
        self.proved: tuple[str, int, dict[str, Any]] = ("", 0, {})

    @property
    def ledger(self) -> Ledger:
        if self.led is None:
            raise DemoError("the ledger was not made")
        return self.led

    def did(self, dev: VirtualDevice) -> str:
        return self.infos[dev.name].device_id

    def start(self) -> None:
        n = self.n
        n.step(1, "Start virtual devices: the real firmware under the MicroPython unix port")
        self.fleet.start()
        self.infos = {d.name: hello(d) for d in self.devs}
        self.names = {i.device_id: name for name, i in self.infos.items()}
        self.rep.devices = [DeviceRow(d.name, d.port, self.did(d), str(d.image_path))
                            for d in self.devs]
        n.table(["device", "serial port", "device id (from its own P-256 key)", "flash image"],
                [[r.name, r.port, r.device_id, Path(r.image).name] for r in self.rep.devices])
        n.say(f"each device made its own key at first boot; readings every {self.interval}"
              f" s; firmware heap budget {self.devs[0].board.heap_budget // 1024} KB "
              "(generic ESP32)")

    def enroll(self) -> None:
        n = self.n
        n.step(2, "Enroll every device in two collectors' stores (separate SQLite files)")
        broker = None
        if self.mqtt is not None:  # both collectors share one broker, each its own store
            broker = self.stack.enter_context(open_broker(parse_url(self.mqtt)))
        for x in ("A", "B"):
            path = self.dir / f"collector-{x}.db"
            self.cols.append(Collector(x, self.stack.enter_context(Store.open(path)), path,
                                       broker))
        for d in self.devs:
            i = self.infos[d.name]
            if device_id_of(i.pub) != i.device_id:
                raise VerificationError(f"{d.name} claims an id its key does not give")
            for c in self.cols:
                c.store.enroll(i.device_id, i.pub, label=d.name, board=i.board, fw=i.fw)
        n.table(["collector", "store", "devices enrolled"],
                [[c.name, c.path.name, len(c.store.enrollments())] for c in self.cols])

    def collect(self) -> None:
        n, devs = self.n, self.devs
        a, b = self.cols
        n.step(3, "Collect over the pseudo-terminals: overlapping, interleaved rounds"
               if self.mqtt is None else
               f"Collect over the MQTT broker {self.mqtt}: overlapping, interleaved rounds")
        first_a = devs[:-1] or devs
        first_b = devs[1:] or devs
        # Round 2 runs without ACK: an ACK appends an "acknowledged" entry, signed by the
        # device like every entry, so after it the first entry no collector holds would
        # not be a reading, and step 9 edits the first reading nobody collected (a ledger
        # rightly takes device-signed entries before the edit from a refused run).
        rounds: list[tuple[str, list[tuple[Collector, VirtualDevice]], bool]] = [
            (f"A collects {_names(first_a)}; B collects {_names(first_b)}",
             [(a, d) for d in first_a] + [(b, d) for d in first_b], True),
            ("A collects all (without ACK)", [(a, d) for d in devs], False),
            (f"B collects {devs[0].name} (its first time: more than A has)", [(b, devs[0])],
             True),
        ]
        for k, (title, plan, ack) in enumerate(rounds):
            if k:
                wait = _WAIT_S * self.interval / SAMPLE_INTERVAL_S
                n.say(f"... {wait:.1f} s pass; the devices keep logging ...")
                time.sleep(wait)
            n.say(f"round {k + 1}: {title}")
            rows = [collect_one(c, d, ack, self.did(d)) for c, d in plan]
            self.rep.collections += rows
            n.table(["collector", "device", "seqs accepted", "new", "time"],
                    [[r.collector, r.device, f"{r.from_seq}..{r.upto_seq}", r.new_entries,
                      f"{r.seconds * 1000:.0f} ms"] for r in rows], right=(3, 4))
        n.say("each run: HELLO, stream records, verify chain + a checkpoint signed just now "
              "over a fresh nonce, store, then ACK (unless said otherwise)")

    def export(self, c: Collector, path: Path) -> Path:
        with path.open("w", encoding="ascii") as f:
            write_bundle(from_store(c.store, name=f"collector {c.name}"), f, c.store.signer)
        return path

    def reconcile(self) -> None:
        n, rep = self.n, self.rep
        n.step(4, "Export one signed bundle per collector; trust both; reconcile into one "
                  "ledger")
        for c in self.cols:
            self.bundles[c.name] = self.export(c, self.dir / f"bundle-{c.name}.jsonl")
        self.led = led = self.stack.enter_context(Ledger.create(self.ledger_path, ORIGIN))
        rep.verifier_key = led.verifier.to_string()
        n.say(f"ledger init: {self.ledger_path.name}, origin {ORIGIN}; verifier key (what "
              f"proof checkers and witnesses must trust): {rep.verifier_key}; signing key "
              f"in its own file {Path(str(led.key_file)).name} (mode 0600): a copy of the "
              "ledger file cannot sign")
        # Only bundles signed by a collector the operator trusts may enroll devices.
        for c in self.cols:
            key = c.store.signer.verifier()
            led.trust_collector(key, f"collector {c.name}")
            n.say(f"$ hashtrail ledger trust --ledger {_q(self.ledger_path)} "
                  f"{key.to_string()} --name 'collector {c.name}'")
        for k, name in enumerate(("A", "B", "A")):
            size0, cps0 = led.size, len(led.checkpoints())
            r = reconcile(led, read_bundle(self.bundles[name]))
            row = _reconcile_row(f"bundle-{name}.jsonl", r, led.size)
            rep.reconciles.append(row)
            again = k == 2
            if again:
                rep.rerun_noop = (r.accepted == 0 and led.size == size0
                                  and len(led.checkpoints()) == cps0 and not r.findings)
            n.say(f"reconcile {row['bundle']}{' again' if again else ''}: accepted "
                  f"{r.accepted}, duplicates {r.duplicates}, held {r.pending}, "
                  f"findings {len(r.findings)} -> ledger size {led.size}"
                  + ("  (no-op: nothing changed)" if again and rep.rerun_noop else ""))
            for f in r.findings:
                n.say(f"! {self.names.get(f.device_id, f.device_id)} seq {f.seq}: "
                      f"{f.reason}", 6)
        a, b = self.cols
        rows: list[list[object]] = []
        for d in self.devs:
            sa, sb = accepted_seqs(a, self.did(d)), accepted_seqs(b, self.did(d))
            rep.entries_a += len(sa)
            rep.entries_b += len(sb)
            rep.entries_union += len(sa | sb)
            rows.append([d.name, _range(sa), _range(sb), len(sa - sb), len(sb - sa),
                         len(sa & sb), _tip(led, self.did(d)) + 1])
        rep.ledger_size = led.size
        n.table(["device", "A holds", "B holds", "only A", "only B", "both", "in ledger"],
                rows, right=(3, 4, 5, 6))
        n.say(f"distinct entries across both collectors: {rep.entries_union}; ledger leaves: "
              f"{led.size} ({'match' if rep.entries_union == led.size else 'MISMATCH'})")

    def verify(self) -> None:
        n, rep, led = self.n, self.rep, self.ledger
        n.step(5, "Verify the ledger from raw bytes; sign a ledger checkpoint")
        vr = verify_ledger(led)
        rep.verify_ok = vr.ok
        _verify_table(n, vr, self.names)
        n.say("the same check as you would run it, with the key you trust:")
        n.say(f"$ hashtrail verify --ledger {_q(self.ledger_path)} --verifier-key "
              f"{rep.verifier_key}")
        rep.checkpoint = led.sign_checkpoint().decode()
        n.say("signed checkpoint (C2SP tlog-checkpoint signed note):")
        n.say(rep.checkpoint.rstrip("\n"), indent=6)
        n.say(f"verifier key: {rep.verifier_key}")

    def prove(self) -> None:
        n, rep = self.n, self.rep
        a, b = self.cols
        n.step(6, "Prove one entry's inclusion; check the proof offline")
        dev = self.devs[0]
        did = self.did(dev)
        only_b = sorted(accepted_seqs(b, did) - accepted_seqs(a, did))
        seq = only_b[len(only_b) // 2] if only_b else max(accepted_seqs(a, did)) // 2
        doc = prove(self.ledger_path, did, seq)
        path = self.dir / "proof.json"
        path.write_text(json.dumps(doc, indent=1) + "\n")
        n.say(f"$ hashtrail ledger prove --ledger {_q(self.ledger_path)} --device {did} "
              f"--seq {seq} > {_q(path)}")
        n.say(f"seq {seq}: " + ("an entry only collector B had" if only_b
                                else "an entry both collectors had"), indent=6)
        n.say(json.dumps(doc, indent=1), indent=6)
        # The verifier brings the ledger's key (printed by `ledger init`, step 4); the
        # key named inside the proof is never what makes it count.
        trusted = note.Verifier.from_string(rep.verifier_key)
        # Collector A's bundle was reconciled first, so A enrolled the devices: its key
        # (`export --show-key`) is what the enrollment in the proof must be signed by.
        enroller = a.store.signer.verifier()
        msg, pc = check_proof_doc(json.loads(path.read_text()), trusted,
                                  collector_keys=[enroller])
        rep.proof_check = None if pc is None else pc.to_json()
        # Checked down to the device's own signature: its per-entry signature over this
        # very entry, with the key whose hash is the device id (not just the ledger's);
        # and its enrollment down to collector A's signature.
        rep.proof_ok = (pc is not None and pc.device_id == did and pc.seq == seq
                        and pc.signature_kind == SIG_ENTRY and pc.enrollment_trusted)
        n.say(f"$ hashtrail ledger verify-proof --verifier-key {rep.verifier_key} "
              f"--collector-key {enroller.to_string()} {_q(path)}")
        n.say(msg, indent=6)
        bad = dict(doc, leaf=_flip_hex(doc["leaf"], len(doc["leaf"]) // 2 - 1))
        refused = []
        try:
            check_proof(bad, trusted)
            n.say("! the same proof with one leaf bit flipped was ACCEPTED")
        except HashtrailError as e:
            refused.append(True)
            n.say(f"the same proof with one leaf bit flipped: refused ({e})")
        forged = _self_signed_proof(doc)
        try:
            check_proof(forged, trusted)
            n.say("! a proof signed by someone else's key was ACCEPTED")
        except HashtrailError as e:
            refused.append(True)
            n.say(f"a made-up proof signed with the forger's own key: refused ({e})")
        rep.proof_tampered_refused = refused == [True, True]
        self.proved = (did, seq, doc)

    def serve(self) -> None:
        """Step 7: the ledger on the network. Served as C2SP tlog-tiles on a free
        loopback port; the client takes nothing on the server's word: it opens the
        checkpoint with the ledger key it brings, computes the path from hash tiles and
        checks the device's own signature, as for a proof file."""
        n, rep = self.n, self.rep
        did, seq, doc = self.proved
        n.step(7, "Serve the ledger as C2SP tlog-tiles: a witness cosigns, a mirror verifies, "
                  "the proof is fetched over HTTP and checked")
        if not can_serve():
            n.say("skipped: serving needs aiohttp (pip install 'hashtrail[serve]')")
            return
        trusted = note.Verifier.from_string(rep.verifier_key)
        with serving(self.ledger_path) as url:
            rep.served_url = url
            n.say(f"serving {self.ledger_path.name} at {url} (as `hashtrail serve --ledger "
                  f"{_q(self.ledger_path)} --listen 127.0.0.1:0` does)")
            self.witness_and_mirror(url, trusted)
            try:
                checked = verify_proof_url(url, did, seq, trusted)
            except (FetchError, HashtrailError) as e:
                rep.served_proof_ok = False
                n.say(f"! the proof fetched over HTTP was refused: {e}")
                return
        pc = checked.check
        # the same entry, leaf and tree as the offline proof of step 6, checked down to
        # the device's own signature
        rep.served_proof_ok = (pc is not None and pc.device_id == did and pc.seq == seq
                               and pc.signature_kind == SIG_ENTRY
                               and pc.leaf_index == doc["leaf_index"]
                               and pc.tree_size == doc["tree_size"])
        n.say(f"as `hashtrail ledger verify-proof --url {url} --device {did} --seq {seq} "
              f"--verifier-key KEY` does: fetched the checkpoint, the device's word, one "
              "entry bundle and the hash tiles on the path; built the proof and checked it:")
        n.say(checked.description, indent=6)
        n.say("same entry, leaf and tree as the proof file of step 6: "
              + ("yes" if rep.served_proof_ok else "NO"))

    def witness_and_mirror(self, url: str, trusted: note.Verifier) -> None:
        """A witness (C2SP tlog-witness over HTTP, its own key, no ledger file)
        cosigns the served checkpoint; a mirror fetches every tile and proves it."""
        n, rep = self.n, self.rep
        wkey = note.Signer.generate("witness.demo.hashtrail.example/w1")
        w = Witness(wkey, trusted, self.dir / "witness.state")
        cp = self.ledger.latest_checkpoint()
        with serving_app(lambda _: make_witness_app(w)) as wurl:
            try:
                line = request_cosignature(wurl, cp, 0, [])
                rep.witness_ok = bool(note.open_cosignatures(
                    cp + line, [wkey.verifier()]))
            except HashtrailError as e:
                rep.witness_ok = False
                n.say(f"! the witness did not cosign: {e}")
        if rep.witness_ok:
            n.say(f"a witness at {wurl}add-checkpoint (as `hashtrail witness serve` does) "
                  f"cosigned tree size {note.parse_checkpoint(note.parse_note(cp).text).size}:")
            n.say(line.decode().rstrip("\n"), indent=6)
        try:
            m = mirror(url, self.dir / "replica", trusted)
            rep.mirror_size = m.size
            n.say(f"mirrored into {_q(self.dir / 'replica')} (as `hashtrail mirror {url} --out "
                  f"... --verifier-key KEY` does): {m.fetched} tiles and entry bundles, every "
                  f"one proven against the signed root of tree size {m.size}")
        except HashtrailError as e:
            rep.mirror_size = -1
            n.say(f"! the mirror refused the served log: {e}")

    def tamper(self) -> None:
        n, rep, led = self.n, self.rep, self.ledger
        a, b = self.cols
        n.step(9, "Tamper without the key: rewrite a reading on one device's flash, relink "
                  "the chain, then collect it")
        victim = self.devs[1] if len(self.devs) > 1 else self.devs[0]
        info = self.infos[victim.name]
        did = info.device_id
        collected = max(accepted_seqs(a, did) | accepted_seqs(b, did))
        tip_before = _tip(led, did)
        seq: int | None = None
        for more in (3, 6, 12):  # an automatic checkpoint may have just covered them
            wait_for_entries(victim, collected + more)
            quiet_power_cut(victim)
            seq = rewrite_target(victim.image_path, victim.board.block_size, collected)
            if seq is not None:
                break
            victim.start()
        if seq is None:
            raise DemoError(f"{victim.name}: no reading after seq {collected} that no device "
                            "checkpoint covers")
        edit = rewrite_flash(victim.image_path, victim.board.block_size, seq)
        w = edit.rewrite
        n.say(f"{victim.name} switched off; in {victim.image_path.name} (littlefs), entry seq "
              f"{edit.seq}, held by no collector and covered by no device checkpoint: "
              f"{edit.reading} {edit.old_value} -> {edit.new_value}")
        n.say(f"no key used: the prev link of every later entry recomputed (seqs "
              f"{edit.seq + 1}..{w.last}), every record CRC recomputed ({w.records} records);"
              f" the {w.signed} per-entry signatures among them left as they were (now over "
              "other bytes)")
        n.say("the flash record layer sees valid records "
              f"({'yes' if edit.crc_valid else 'NO'}) and the hash chain links up "
              f"({'yes' if edit.links_valid else 'NO'}): only the device's signatures can "
              "tell")
        victim.start()
        back = hello(victim)
        n.say(f"{victim.name} powered on again on {victim.port}; its own boot check:")
        n.say(back.altered.describe(did) if back.altered is not None
              else "nothing reported (NOT CAUGHT by the device)", indent=6)
        n.say("collector A collects it:")
        anchor_before = a.store.anchor(did)
        refused, acked, message = False, False, ""
        try:
            got = collect_one(a, victim, device_id=self.did(victim))
            acked = got.acked
            message = f"accepted {got.new_entries} entries up to seq {got.upto_seq}"
        except VerificationError as e:
            refused, message = True, str(e)
        anchor_after = a.store.anchor(did)
        findings = recheck_quarantine(a, info.pub)
        n.say(f"REFUSED: {len(findings)} findings, the first {min(3, len(findings))}:"
              if refused else f"ACCEPTED: {message}", indent=6)
        for f in findings[:3]:
            n.say(f"{self.names[f['device_id']]} ({f['device_id']}) seq {f['seq']}: "
                  f"{f['code']}: {f['text']}", indent=6)
        # The collector keeps the refused bytes; its bundle takes them to the ledger,
        # which must not accept the edited entry or anything after it either.
        r = reconcile(led, read_bundle(self.export(a, self.dir / "bundle-A-tampered.jsonl")))
        tip_after = _tip(led, did)
        first = findings[0] if findings else None
        t = TamperReport(
            victim.name, did, edit.seq, edit.reading, edit.old_value, edit.new_value,
            w.last, w.records, w.signed, edit.crc_valid, edit.links_valid,
            None if back.altered is None else back.altered.first_seq,
            "" if back.altered is None else back.altered.describe(did),
            refused, acked, message, findings,
            None if first is None else first["seq"], "" if first is None else first["code"],
            None if anchor_before is None else anchor_before.seq,
            None if anchor_after is None else anchor_after.seq, tip_before, tip_after,
            r.pending)
        # Caught means: the attack was the real one (records and links all check), the
        # device reports it from the edited seq, collector A refuses at that seq for the
        # entry's signature and takes nothing, and the ledger holds nothing from it on.
        t.caught = (edit.crc_valid and edit.links_valid and w.last > edit.seq
                    and t.device_reported_seq == edit.seq
                    and refused and not acked and anchor_after == anchor_before
                    and first is not None and first["device_id"] == did
                    and (first["code"], first["seq"]) == ("entry_bad_sig", edit.seq)
                    and tip_after < edit.seq)
        rep.tamper = t
        n.say(f"collector A acknowledged {'something' if acked else 'nothing'}; its anchor "
              f"for {victim.name}: seq {t.anchor_before} before, seq {t.anchor_after} after "
              + ("(nothing from this run accepted; the bytes stay in quarantine as evidence)"
                 if t.anchor_after == t.anchor_before else "(MOVED: the edit was accepted)"))
        n.say(f"the ledger, given A's bundle with those bytes: {victim.name} "
              + (f"stays at seq {tip_after}" if tip_after == tip_before else
                 f"goes from seq {tip_before} to {tip_after}, device-signed entries before "
                 "the edit" if tip_after < edit.seq else
                 f"MOVED from seq {tip_before} to {tip_after}, past the edit")
              + f" (accepted {r.accepted}, held back {r.pending}"
              + (f": nothing from seq {edit.seq} on is accepted)" if tip_after < edit.seq
                 else ")"))
        vr = verify_ledger(led)
        rep.ledger_intact_after_tamper = vr.ok     # held entries are expected, not a fault
        n.say("ledger re-verified: chains, signatures, Merkle log "
              f"{'OK' if rep.ledger_intact_after_tamper else 'FAILED'}; expected anomalies "
              "(not integrity problems): "
              + ("; ".join(f"{self.names[d.device_id]}: {x}" for d in vr.devices
                           for x in d.anomalies) or "none"))

    def update(self) -> None:
        """Step 8: the owner's signed release installs on one device over its pty, its
        update entry reaches the ledger's firmware history and a proof; the old release
        offered again (a lower security counter: a rollback) is refused by the device,
        which logs on. The release key was made before the devices started and its
        public half pinned in their images, as `deploy --release-key` pins it."""
        n, led = self.n, self.ledger
        b = self.cols[1]     # B: its store already held dev0 beyond A's (step 4)
        dev = self.devs[0]
        did = self.did(dev)
        n.step(8, "Signed firmware update on one device; an old release (rollback) refused")
        if self.mqtt is not None:
            # Measured: a device serving the MQTT client at the 100 KB budget runs out of
            # heap during the transfer (MemoryError, 4 of 4 runs; docs/DEVICE.md).
            self.rep.update_skipped = ("not run with --mqtt: a device that serves MQTT at "
                                       "the 100 KB heap budget has no room for an update")
            n.say(f"skipped: {self.rep.update_skipped} (`hashtrail demo` without --mqtt "
                  "runs it)")
            return
        key_path = self.dir / "release.key"
        key = load_key(key_path)
        (new, counter), (old, old_counter) = NEW_RELEASE, OLD_RELEASE
        pkgs = {}
        # Release 1 is what the devices were imaged with (compiled once, in run_demo);
        # release 2 is compiled here with its FW_VERSION.
        running = {p: b for p, b in imagefs.read_image(self.image, dev.board.block_size)
                   .items() if p.startswith(manifest.FW_DIR)}
        for version, c in ((new, counter), (old, old_counter)):
            if version == old:
                files = running
            else:
                build = self.dir / f"release-{version}"
                build.mkdir()
                files = compile_release(dev.board.name, version, build)
            raw = manifest.pack(manifest.sign_manifest(manifest.encode_payload(
                version, c, dev.board.name, files), key.pub, key.sign), list(files.values()))
            pkgs[version] = path = self.dir / f"firmware-{version}.htu"
            path.write_bytes(raw)
            n.say(f"$ hashtrail release build --key {_q(key_path)} --version {version} "
                  f"--counter {c} --board {dev.board.name} --out {_q(path)}")
        n.say("(the release key was made by `hashtrail release keygen` before step 1; "
              "every device pins its public half in /ht/release_keys, as `deploy "
              "--release-key` does)")
        # (no `$`: the device is gone when the demo ends, so this one cannot be rerun)
        n.say(f"as `hashtrail update --port {dev.port} {_q(pkgs[new])}` does:")
        res = update(dev.port, pkgs[new])
        n.say(f"{dev.name}: {res.old_version} -> {res.new_version}, security counter "
              f"{res.counter}, {res.bytes_sent} bytes, {res.total_s:.1f} s (transfer "
              f"{res.transfer_s:.1f} s, then the switch-over at reboot)", 6)
        # The new firmware wrote its update entry at its first boot: collect, reconcile.
        collect_one(b, dev, device_id=did)
        bundle = self.dir / "bundle-B-update.jsonl"
        with bundle.open("w", encoding="ascii") as f:
            write_bundle(from_store(b.store, name="collector B", devices=[did]), f,
                         b.store.signer)
        r = reconcile(led, read_bundle(bundle))
        n.say(f"collector B collects {dev.name}; reconcile {bundle.name}: accepted "
              f"{r.accepted}, findings {len(r.findings)} -> ledger size {led.size}")
        (hist,) = firmware_history(led, did)
        n.say(f"$ hashtrail ledger firmware --ledger {_q(self.ledger_path)} --device {did}")
        n.say(f"{dev.name}: running {hist.fw}, {len(hist.updates)} signed update(s)", 6)
        for u in hist.updates:
            n.say(f"seq {u.seq}  {_utc(u.t)}  {u.old} -> {u.new}  counter {u.counter}  "
                  f"manifest {u.manifest.hex()}"
                  + (f"  ! {', '.join(u.findings)}" if u.findings else ""), 8)
        ups = [u for u in hist.updates if u.counter == counter and u.new == new]
        seq = ups[0].seq if ups else None
        proof_ok = False
        if seq is not None:
            doc = prove(self.ledger_path, did, seq)
            (self.dir / "proof-update.json").write_text(json.dumps(doc, indent=1) + "\n")
            msg, pc = check_proof_doc(doc, note.Verifier.from_string(self.rep.verifier_key))
            proof_ok = (pc is not None and pc.device_id == did and pc.seq == seq
                        and pc.signature_kind == SIG_ENTRY)
            n.say(f"$ hashtrail ledger prove --ledger {_q(self.ledger_path)} --device {did} "
                  f"--seq {seq} > {_q(self.dir / 'proof-update.json')}")
            n.say(msg, 6)
        # The old release, signed by the same key, offered again: a rollback.
        before = hello(dev)
        n.say(f"the old release {old} (counter {old_counter}), signed by the same key, as "
              f"`hashtrail update --port {dev.port} {_q(pkgs[old])}` sends it:")
        refused, reason = False, ""
        try:
            update(dev.port, pkgs[old], wait_s=10.0)
            n.say("! the device INSTALLED the old release", 6)
        except UpdateRefused as e:
            refused, reason = True, str(e)
            n.say(f"refused: {reason}", 6)
        after = wait_for_entries(dev, (before.last_seq or 0) + 2)
        logging = after.fw == new
        n.say(f"{dev.name} goes on logging on {after.fw}: seq {before.last_seq} -> "
              f"{after.last_seq}", 6)
        vr = verify_ledger(led)
        ur = UpdateReport(dev.name, did, res.old_version, res.new_version, res.counter,
                         res.manifest_sha256, res.bytes_sent, round(res.total_s, 2), seq,
                         hist.as_json()["updates"], proof_ok, old_counter, refused, reason,
                         logging, vr.ok)
        ur.ok = (res.new_version == new and seq is not None and proof_ok and refused
                 and f"not above the installed {counter}" in reason and logging and vr.ok
                 and not any(x.findings for x in hist.updates))
        self.rep.update = ur
        n.say(f"ledger re-verified with the update entry in it: {'OK' if vr.ok else 'FAILED'}")

    def summary(self) -> None:
        n, rep, t = self.n, self.rep, self.rep.tamper
        n.step(10, "Summary")
        caught = "NOT CAUGHT" if t is None or not t.caught else (
            f"{t.device} seq {t.edited_seq}: device reports it altered from seq "
            f"{t.device_reported_seq}; A refuses ({t.caught_code} at seq {t.caught_seq}); "
            f"ledger stops at seq {t.ledger_tip_after}")
        n.table(["check", "result"], [
            ["devices running the real firmware", len(rep.devices)],
            ["collections (A + B)", len(rep.collections)],
            ["entries held by A / B / distinct",
             f"{rep.entries_a} / {rep.entries_b} / {rep.entries_union}"],
            ["ledger leaves", rep.ledger_size],
            ["same bundle reconciled twice", "no-op" if rep.rerun_noop else "CHANGED THE LEDGER"],
            ["ledger verifies from raw bytes", "yes" if rep.verify_ok else "NO"],
            ["inclusion proof checks offline, down to the device's own signature",
             "yes" if rep.proof_ok else "NO"],
            ["a witness cosigned over HTTP / a mirror proved every tile",
             "skipped (no aiohttp)" if rep.witness_ok is None else
             f"{'yes' if rep.witness_ok else 'NO'} / "
             + ("NO" if rep.mirror_size is None or rep.mirror_size < 0
                else f"yes, tree size {rep.mirror_size}")],
            ["the same proof fetched over HTTP (tlog-tiles) checks",
             "skipped (no aiohttp)" if rep.served_proof_ok is None
             else "yes" if rep.served_proof_ok else "NO"],
            ["keyless flash rewrite caught", caught],
            ["ledger intact after tampering", "yes" if rep.ledger_intact_after_tamper else "NO"],
            ["signed update installed, in the ledger's firmware history and proved / "
             "rollback refused", "skipped (--mqtt)" if rep.update_skipped else
             "NOT RUN" if rep.update is None else
             (f"{rep.update.device} {rep.update.old_version} -> {rep.update.new_version} "
              f"(entry {rep.update.update_seq}) / "
              + ("refused, still logging" if rep.update.rollback_refused
                 and rep.update.still_logging else "NO"))],
            ["time", f"{rep.seconds} s"],
        ])
        n.say("all virtual devices stopped")
        n.end_step()
        n.say("RESULT: OK" if rep.ok else "RESULT: FAILED (see the steps above)", indent=0)


def _verify_table(n: Narrator, rep: LedgerReport, names: dict[str, str]) -> None:
    devs = sorted(rep.devices, key=lambda d: names.get(d.device_id, d.device_id))
    n.table(["device", "id", "entries", "first (UTC)", "last (UTC)", "held",
             "anomalies", "status"],
            [[names.get(d.device_id, "?"), d.device_id, d.entries, _utc(d.first_t),
              _utc(d.last_t), d.pending, len(d.anomalies) + len(d.problems), d.status]
             for d in devs], right=(2, 5, 6))
    for d in devs:
        for a in d.problems + (d.anomalies if d.alarm else []):
            n.say(f"! {names.get(d.device_id, d.device_id)}: {a}", indent=6)
        for a in [] if d.alarm else d.anomalies:
            n.say(f"expected anomaly: {names.get(d.device_id, d.device_id)}: {a}", indent=6)
    n.say(f"Merkle log: {rep.size} leaves, root {rep.root[:16]}..., {rep.checkpoints} signed "
          f"checkpoints re-checked: {'OK' if not rep.problems else 'FAILED'}")
    for p in rep.problems:
        n.say(f"! {p}", indent=6)


def run_demo(directory: Path, devices: int = 3, out: IO[str] | None = None,
             mqtt: str | None = None) -> DemoReport:
    """Run the ten steps in `directory` (must be new or empty); stop every device after.
    `mqtt`: a broker URL (mqtt://HOST:PORT): the devices serve it and the collectors
    collect through it instead of the ptys."""
    if not 1 <= devices <= 16:
        raise DemoError("--devices must be between 1 and 16", hint="the default is 3")
    # Absolute: a virtual device's VM runs in its image folder and is handed the image
    # path, which a relative --dir would make point nowhere.
    directory = directory.resolve()
    directory.mkdir(parents=True, exist_ok=True)
    if any(directory.iterdir()):
        raise DemoError(f"{directory} is not empty", hint="give --dir a new or empty folder")
    t0 = time.monotonic()
    n = Narrator(out if out is not None else io.StringIO())
    n.say(f"hashtrail demo in {directory}: {devices} virtual "
          f"device{'' if devices == 1 else 's'}, collectors A and B, "
          "one ledger", indent=0)
    broker_cfg = None
    if mqtt is not None:
        o = parse_url(mqtt)
        if o.tls or o.username is not None:
            raise DemoError("the demo's devices reach a plain local broker: "
                            "mqtt://HOST:PORT, no TLS or login")
        broker_cfg = {"host": o.host, "port": o.port}
    fleet = Fleet(directory / "devices", devices)
    # the owner's release key (step 8), pinned in every device's image
    image = demo_image(mqtt=broker_cfg, release_keys=[keygen(directory / "release.key")])
    (directory / "devices").mkdir()
    for d in fleet.devices:
        d.image_path.write_bytes(image)
    with contextlib.ExitStack() as stack:
        stack.callback(fleet.stop)
        demo = _Demo(directory, fleet, stack, n, mqtt, image)
        demo.start()
        demo.enroll()
        demo.collect()
        demo.reconcile()
        demo.verify()
        demo.prove()
        demo.serve()
        demo.update()
        demo.tamper()
    demo.rep.seconds = round(time.monotonic() - t0, 1)
    demo.summary()
    return demo.rep


def serve_demo_ledger(directory: Path, host: str, port: int,
                      ready: Callable[[str], None]) -> None:
    """Serve the ledger a demo left in `directory` (tlog-tiles and the fleet view, as
    `hashtrail serve` does) until interrupted; `ready(url)` once it listens."""
    if not can_serve():
        raise DemoError("serving needs aiohttp", hint="pip install 'hashtrail[serve]'")
    with Ledger.open(directory / "ledger.db") as led:
        serve_app(make_web_app(led), host, port, ready)


def prove(ledger_path: Path, device_id: str, seq: int) -> dict[str, Any]:
    """The proof document exactly as `hashtrail ledger prove --json` prints it (the
    same library call, through JSON and back)."""
    doc: dict[str, Any] = json.loads(json.dumps(prove_file(ledger_path, device_id, seq)))
    return doc


def _tip(led: Ledger, device_id: str) -> int:
    d = led.device(device_id)
    return -1 if d is None else d.tip_seq


def _self_signed_proof(doc: dict[str, Any]) -> dict[str, Any]:
    """What anyone can make: a one-leaf log of their own, its checkpoint signed with a
    key of their own under the same origin, named in the proof."""
    forger = note.Signer.generate(ORIGIN)
    leaf = bytes.fromhex(doc["leaf"])
    root = merkle.leaf_hash(leaf)
    cp = note.sign_checkpoint(note.Checkpoint(ORIGIN, 1, root), [forger])
    return dict(doc, leaf_index=0, tree_size=1, root=root.hex(), path=[],
                checkpoint=cp.decode(), verifier_key=forger.verifier().to_string())


def _flip_hex(h: str, byte: int) -> str:
    b = bytearray(bytes.fromhex(h))
    b[byte] ^= 0x01
    return b.hex()


def _names(devs: Sequence[VirtualDevice]) -> str:
    return ", ".join(d.name for d in devs)


def _range(seqs: set[int]) -> str:
    if not seqs:
        return "-"
    lo, hi = min(seqs), max(seqs)
    if len(seqs) != hi - lo + 1:
        raise FormatError("a collector store holds a chain with a hole")
    return f"{lo}..{hi}"
