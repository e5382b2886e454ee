"""A hostile device cannot hang, exhaust, crash or fool a collector (issue 19).

Each case runs the real CLI (`python -m hashtrail.cli`, a child process) against a fake
device on a real pty (hostile_device.py) that speaks the protocol and then misbehaves.
The child's wall time and peak RSS are measured: VmHWM of its own address space
(/proc/PID/status), written by the child at exit, or read just before a child still
running after HANG seconds is killed (the case then fails as a hang). Not wait4's
ru_maxrss: it starts from the forking test process's size. Every case
asserts: a clean refusal (one `hashtrail: error:` line, no traceback), exit 1, nothing
accepted into the store, and no control character from the device on the terminal.
The honest fake device is the control: the same fake, misbehaving in nothing, is
collected and accepted.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cbor2
import pytest
from hashtrail.collector import collect as collect_mod
from hashtrail.collector.store import Store, device_id_of
from hashtrail.device.link import (
    REP_CHECKPOINT,
    REP_CHUNK,
    REP_ERROR,
    REP_INFO,
    BoundError,
    open_serial,
)
from hashtrail.errors import VerificationError
from hashtrail.formats.keys import P, device_id_bytes
from hashtrail.formats.records import MAGIC_CHECKPOINT, MAGIC_ENTRY, format_record
from hostile_device import SECRET, Behaviour, FakeDevice, devchain

pytestmark = pytest.mark.e2e

HOST = Path(os.environ.get("HOSTILE_HOST", Path(__file__).resolve().parents[2] / "host"))
HANG = 60.0          # a collector still running after this long is hung
DEADLINE = "25"      # --deadline the hostile cases run with
MAX_RSS_MB = 250     # generous: the interpreter with its imports is ~40 MB
CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f\x9b]")
ESC_BOARD = "\x1b]0;owned\x07\x1b[2J\x1b[1;1Hroot# "


@dataclass
class Run:
    rc: int | None           # None: hung, killed after HANG seconds
    out: str
    err: str
    seconds: float
    rss_mb: float


# The CLI as `python -m hashtrail.cli`, plus its peak RSS written to $HWM_FILE at exit.
WRAPPER = """
import atexit, os, re, runpy, sys
def hwm():
    kb = re.search(r"VmHWM:\\s+(\\d+)", open("/proc/self/status").read()).group(1)
    with open(os.environ["HWM_FILE"], "w") as f:
        f.write(kb)
atexit.register(hwm)
sys.argv = ["hashtrail", *sys.argv[1:]]
runpy.run_module("hashtrail.cli", run_name="__main__", alter_sys=True)
"""


def _hwm_kb(pid: int) -> int:
    with open(f"/proc/{pid}/status") as f:
        return int(re.search(r"VmHWM:\s+(\d+)", f.read()).group(1))  # type: ignore[union-attr]


def cli(tmp: Path, *args: str) -> Run:
    hwm = tmp / "hwm.txt"
    hwm.unlink(missing_ok=True)
    env = dict(os.environ, PYTHONPATH=str(HOST), HWM_FILE=str(hwm))
    out, err = tmp / "out.txt", tmp / "err.txt"
    t0 = time.monotonic()
    kb = 0
    with open(out, "wb") as fo, open(err, "wb") as fe:
        p = subprocess.Popen([sys.executable, "-c", WRAPPER, *args], stdout=fo,
                             stderr=fe, env=env, start_new_session=True)
        try:
            p.wait(HANG)
            rc: int | None = p.returncode
            kb = int(hwm.read_text()) if hwm.exists() else 0
        except subprocess.TimeoutExpired:
            rc = None
            kb = _hwm_kb(p.pid)
            os.killpg(p.pid, signal.SIGKILL)
            p.wait()
    secs = time.monotonic() - t0
    run = Run(rc, out.read_bytes().decode("utf-8", "replace"),
              err.read_bytes().decode("utf-8", "replace"), secs, kb / 1024)
    print(f"figures: rc={run.rc} {run.seconds:.1f} s peak {run.rss_mb:.0f} MB")
    return run


def enrolled_store(tmp: Path, b: Behaviour) -> Path:
    path = tmp / "c.db"
    with Store.open(path) as st:
        st.enroll(device_id_of(b.pub), b.pub, label="fake", board=b.board, fw=b.fw)
    return path


def collect(tmp: Path, b: Behaviour, store: Path | None = None, *extra: str,
            deadline: str = DEADLINE) -> Run:
    store = enrolled_store(tmp, b) if store is None else store
    with FakeDevice(b) as dev:
        return cli(tmp, "collect", "--port", dev.port, "--store", str(store),
                   "--deadline", deadline, *extra)


def refused(run: Run, *words: str) -> None:
    """Exit 1 in bounded time and memory, one error line, no traceback, no raw text."""
    assert run.rc is not None, f"hung: still running after {HANG} s\n{run.err[-2000:]}"
    assert run.rc == 1, (run.rc, run.err)
    assert "Traceback" not in run.err, run.err
    errors = [x for x in run.err.splitlines() if x.startswith("hashtrail: error:")]
    assert len(errors) == 1, run.err
    for w in words:
        assert w in errors[0], errors[0]
    assert run.rss_mb < MAX_RSS_MB, run.rss_mb
    assert not CONTROL.search(run.out + run.err.replace("\r", "")), repr(run.err)


def nothing_accepted(store: Path, b: Behaviour) -> None:
    did = device_id_of(b.pub)
    with Store.open(store, create=False) as st:
        assert st.anchor(did) is None
        assert st.accepted_records(did) == []


# -- the control --------------------------------------------------------------------------


def test_honest_fake_device_is_enrolled_and_collected(tmp_path: Path) -> None:
    b = Behaviour()
    store = tmp_path / "c.db"
    with FakeDevice(b) as dev:
        run = cli(tmp_path, "enroll", "--port", dev.port, "--store", str(store),
                  "--label", "fake")
    assert run.rc == 0, run.err
    run = collect(tmp_path, b, store, "--json")
    assert run.rc == 0, run.err
    res = json.loads(run.out)
    assert res["new_entries"] == b.entries + 1 and res["upto_seq"] == b.entries
    assert res["acked"] is True and run.seconds < HANG


# -- it decides when collect ends -----------------------------------------------------------


class EndlessStream(Behaviour):
    """Valid-looking record chunks, within credit, with no end."""

    announce: int | None = None

    def last_seq(self) -> int:
        return super().last_seq() if self.announce is None else self.announce

    def info_map(self) -> dict[int, Any]:
        m = super().info_map()
        m[6] = self.last_seq()
        return m

    def records(self, dev: FakeDevice, rid: int, from_seq: int, credit: int) -> None:
        body = self.chain.entries[1][1]
        seq, no = from_seq, 0
        dev.stream(rid, [], credit, end=False)
        while True:
            recs = [format_record(MAGIC_ENTRY, s, body) for s in range(seq, seq + 3)]
            no = dev.stream(rid, recs, 0, end=False, chunk_no=no)
            seq += 3


def test_endless_record_stream_stops_at_the_announced_count(tmp_path: Path) -> None:
    b = EndlessStream()
    run = collect(tmp_path, b)
    refused(run, device_id_of(b.pub), "records")
    nothing_accepted(tmp_path / "c.db", b)


def test_endless_stream_under_a_huge_announcement_stops_at_the_ceiling(tmp_path: Path
                                                                      ) -> None:
    b = EndlessStream()
    b.announce = 2**32 - 2
    run = collect(tmp_path, b, None, "--max-records", "20000")
    refused(run, device_id_of(b.pub), "records", "20000")
    nothing_accepted(tmp_path / "c.db", b)


class LongChain(Behaviour):
    """A valid chain of LONG entries (no per-entry signatures, so it builds fast): all
    of it verifies and is accepted, which is where the old collector held every record,
    its parsed copy and the walk's per-seq state at once."""

    LONG = 60_000

    def __init__(self) -> None:
        super().__init__()
        self.chain = devchain.Device(SECRET, per_entry_sig=False)
        self.chain.readings(self.LONG)


def test_memory_is_bounded_by_the_batch_not_by_what_the_device_sends(tmp_path: Path
                                                                     ) -> None:
    """Records are quarantined and verified BATCH at a time: collecting 60,000 entries
    peaks within 15 MB of collecting 21 (the collector that held them all until the
    fresh checkpoint peaked ~38 MB above; ~125 MB above at 199,000)."""
    for d in ("small", "long"):
        (tmp_path / d).mkdir()
    small = collect(tmp_path / "small", Behaviour(), None, "--json")
    assert small.rc == 0, small.err
    b = LongChain()
    run = collect(tmp_path / "long", b, None, "--json")
    assert run.rc == 0, run.err
    assert json.loads(run.out)["new_entries"] == b.LONG + 1
    assert run.rss_mb - small.rss_mb < 15, (small.rss_mb, run.rss_mb)


# -- the store's free space ------------------------------------------------------------------
# In process, with the free-space probe given as a function (collect's `free_space`): the
# store itself is real, only what the filesystem reports is chosen.

PER = collect_mod.STORE_BYTES_PER_ENTRY
MARGIN = collect_mod.STORE_MARGIN


def collect_in_process(tmp: Path, b: Behaviour, free: Any) -> Any:
    store = enrolled_store(tmp, b)
    with FakeDevice(b) as dev, Store.open(store, create=False) as st, \
            open_serial(dev.port) as link:
        return collect_mod.collect(link, st, deadline=20, free_space=free)


@pytest.mark.parametrize("spare", [0, -1])
def test_announced_entries_must_fit_in_the_store_free_space(tmp_path: Path, spare: int
                                                            ) -> None:
    b = Behaviour()      # announces entries 0..20: 21 entries
    need = (b.entries + 1) * PER + MARGIN
    seen: list[Path] = []

    def free(path: Path) -> int:
        seen.append(path)
        return need + spare

    if spare >= 0:
        res = collect_in_process(tmp_path, b, free)
        assert res.new_entries == b.entries + 1
    else:
        with pytest.raises(BoundError) as e:
            collect_in_process(tmp_path, b, free)
        msg = str(e.value)
        assert msg.startswith(f"device {device_id_of(b.pub)}: stopped at the host's bytes "
                              "bound (the store's filesystem has"), msg
        assert "\n" not in msg and "21 entries announced" in msg and "free" in msg
        nothing_accepted(tmp_path / "c.db", b)
        with Store.open(tmp_path / "c.db", create=False) as st:
            assert st.quarantined(device_id_of(b.pub)) == []   # stopped before pulling
    assert seen and all(p == tmp_path / "c.db" for p in seen)


class MidChain(Behaviour):
    entries = 2_500


def test_free_space_running_out_while_receiving_stops_at_the_bytes_bound(tmp_path: Path
                                                                         ) -> None:
    """The probe runs again after every batch: space that runs out mid-stream stops the
    run there, the batch received kept in quarantine, nothing accepted."""
    b = MidChain()
    calls = [0]

    def free(path: Path) -> int:
        calls[0] += 1
        return (1 << 40) if calls[0] == 1 else MARGIN

    with pytest.raises(BoundError, match=r"bytes bound .*has 64\.0 MB free"):
        collect_in_process(tmp_path, b, free)
    assert calls[0] == 2
    nothing_accepted(tmp_path / "c.db", b)
    with Store.open(tmp_path / "c.db", create=False) as st:
        assert len(st.quarantined(device_id_of(b.pub))) == collect_mod.BATCH


class WithCheckpoints(Behaviour):
    """Honest, with a checkpoint record after every 100th entry of its log (as the
    firmware writes them), over several of the collector's batches."""

    entries = 2_500
    bad: int | None = None  # the seq of a checkpoint record whose signature is broken

    def records(self, dev: FakeDevice, rid: int, from_seq: int, credit: int) -> None:
        recs = []
        for s, raw, sig in self.chain.entries[from_seq:]:
            recs.append(format_record(MAGIC_ENTRY, s, raw, sig))
            if s and s % 100 == 0:
                cose = self.chain.checkpoint(None, s)
                if s == self.bad:
                    cose = cose[:-1] + bytes((cose[-1] ^ 1,))
                recs.append(format_record(MAGIC_CHECKPOINT, s, cose))
        dev.stream(rid, recs, credit)


def test_checkpoint_records_are_quarantined_per_batch_and_accepted_with_the_run(
        tmp_path: Path) -> None:
    b = WithCheckpoints()
    res = collect_in_process(tmp_path, b, collect_mod.store_free_bytes)
    assert res.new_entries == b.entries + 1 and res.checkpoints == 25 + 1
    with Store.open(tmp_path / "c.db", create=False) as st:
        cps = st.checkpoints(device_id_of(b.pub))
    assert len(cps) == 26 and all(c.accepted for c in cps)
    assert sorted(c.seq for c in cps if c.nonce is None) == list(range(100, 2501, 100))


def test_a_bad_checkpoint_record_refuses_the_run_and_stays_in_quarantine(tmp_path: Path
                                                                        ) -> None:
    b = WithCheckpoints()
    b.bad = 1200
    with pytest.raises(VerificationError, match="checkpoint_bad_sig"):
        collect_in_process(tmp_path, b, collect_mod.store_free_bytes)
    nothing_accepted(tmp_path / "c.db", b)
    with Store.open(tmp_path / "c.db", create=False) as st:
        cps = st.checkpoints(device_id_of(b.pub))
    assert len(cps) == 26 and not any(c.accepted for c in cps)   # 25 records + the fresh


class StrayTrickle(Behaviour):
    """One chunk, then frames answering some other request, one every 0.5 s, forever."""

    def records(self, dev: FakeDevice, rid: int, from_seq: int, credit: int) -> None:
        recs = [format_record(MAGIC_ENTRY, s, raw, sig) for s, raw, sig in self.chain.entries[:2]]
        dev.stream(rid, recs, credit, end=False)
        while True:
            dev.sleep(0.5)
            dev.send(REP_CHUNK, rid ^ 0x55, b"\x00\x00")


def test_stray_frames_do_not_extend_the_wait(tmp_path: Path) -> None:
    """The stray frames keep the line busy; the deadline still ends the run (a shorter
    one than the other cases': the bound is what is tested, not its length)."""
    b = StrayTrickle()
    run = collect(tmp_path, b, deadline="8")
    refused(run, device_id_of(b.pub), "deadline")
    assert run.seconds < 8 + 15, run.seconds
    nothing_accepted(tmp_path / "c.db", b)


class Dribble(Behaviour):
    """Stalls a records stream, then sends a byte every 10 ms forever (answering HELLO
    meanwhile), so the line is never quiet for the 50 ms a drain waits for."""

    def records(self, dev: FakeDevice, rid: int, from_seq: int, credit: int) -> None:
        while True:
            dev.write(b".")
            for r, cmd, _args in dev.poll(0.01):
                if cmd == 0x01:
                    dev.send(REP_INFO, r, self.info())


def test_a_dribbling_line_cannot_hold_the_drain(tmp_path: Path) -> None:
    b = Dribble()
    run = collect(tmp_path, b)
    refused(run, device_id_of(b.pub))
    nothing_accepted(tmp_path / "c.db", b)


class NoiseFlood(Behaviour):
    """Answers RECORDS with an endless flood of bytes that are never a frame."""

    def records(self, dev: FakeDevice, rid: int, from_seq: int, credit: int) -> None:
        block = b"\xa5Z" * 32768
        while True:
            dev.write(block)


def test_a_noise_flood_stops_at_the_bytes_bound(tmp_path: Path) -> None:
    b = NoiseFlood()
    run = collect(tmp_path, b)
    refused(run, device_id_of(b.pub), "bytes")
    nothing_accepted(tmp_path / "c.db", b)


class OneAhead(Behaviour):
    """Every signed checkpoint claims one entry more than the device announced or sent."""

    def __init__(self) -> None:
        super().__init__()
        self.chain.readings(1)

    def last_seq(self) -> int:
        return len(self.chain.entries) - 2

    def checkpoint(self, dev: FakeDevice, rid: int, nonce: bytes) -> None:
        from hashtrail.device.link import REP_CHECKPOINT
        dev.send(REP_CHECKPOINT, rid, self.chain.checkpoint(nonce, self.last_seq() + 1))


def test_checkpoint_always_one_ahead_caps_the_round_trips(tmp_path: Path) -> None:
    b = OneAhead()
    run = collect(tmp_path, b)
    refused(run, device_id_of(b.pub), "round trips")
    nothing_accepted(tmp_path / "c.db", b)


class FastAppender(Behaviour):
    """The control for OneAhead: an honest device that appends two readings between a
    RECORDS stream and the CHECKPOINT after it (a fast sampling rate, a slow host), so
    every checkpoint signs the first of them and the next stream brings both."""

    def checkpoint(self, dev: FakeDevice, rid: int, nonce: bytes) -> None:
        self.chain.readings(2)
        dev.send(REP_CHECKPOINT, rid, self.chain.checkpoint(nonce, self.last_seq() - 1))


def test_a_device_appending_faster_than_a_round_trip_is_collected_to_what_it_signed(
        tmp_path: Path) -> None:
    """The checkpoint asked for is judged over the entries up to the one it signs once
    they have arrived; asking for a new one each time never converged (the round trips
    bound refused an honest device)."""
    b = FastAppender()
    run = collect(tmp_path, b, None, "--json")
    assert run.rc == 0, run.err
    (res,) = json.loads(run.out) if run.out.lstrip().startswith("[") \
        else [json.loads(run.out)]
    last = len(b.chain.entries) - 1
    assert res["upto_seq"] == last - 1, (res, last)   # signed; the newest waits
    with Store.open(tmp_path / "c.db", create=False) as st:
        assert st.anchor(device_id_of(b.pub)) is not None
        assert st.anchor(device_id_of(b.pub)).seq == last - 1


class SwappedAfterCheckpoint(FastAppender):
    """FastAppender whose HELLO after its first checkpoint (the collector fetching what
    that checkpoint signs) announces another device: another board on the port."""

    def __init__(self) -> None:
        super().__init__()
        self.hellos = 0
        self.other = devchain.Device(SECRET ^ 0xFF, per_entry_sig=True)

    def hello(self, dev: FakeDevice, rid: int) -> None:
        self.hellos += 1
        if self.hellos == 1:
            return super().hello(dev, rid)
        m = self.info_map()
        pub = bytes(self.other.pub)
        m[1], m[2] = device_id_bytes(pub), pub
        dev.send(REP_INFO, rid, bytes(cbor2.dumps(m, canonical=True)))


def test_another_device_answering_a_hello_mid_collection_is_refused(tmp_path: Path
                                                                      ) -> None:
    """Every HELLO inside a collection checks the device id, the one that follows a
    checkpoint signed past the entries received too (that one took the new device's
    word for its bounds and went on)."""
    b = SwappedAfterCheckpoint()
    run = collect(tmp_path, b)
    refused(run, "another device appeared")
    assert b.hellos == 2
    nothing_accepted(tmp_path / "c.db", b)


def test_the_total_deadline_is_configurable(tmp_path: Path) -> None:
    b = StrayTrickle()
    run = collect(tmp_path, b, None, "--deadline", "4")
    refused(run, device_id_of(b.pub), "deadline")
    assert run.seconds < 20, run.seconds


class NoAck(Behaviour):
    """Honest until the ACK, which it never answers."""

    def ack(self, dev: FakeDevice, rid: int, seq: int) -> None:
        pass


def test_a_deadline_at_the_ack_keeps_what_was_verified(tmp_path: Path) -> None:
    b = NoAck()
    run = collect(tmp_path, b, None, "--deadline", "4", "--json")
    assert run.rc == 0 and run.seconds < 20, (run.rc, run.err)
    res = json.loads(run.out)
    assert res["new_entries"] == b.entries + 1 and res["acked"] is False
    assert "deadline" in run.err and "not acknowledged" in run.err
    with Store.open(tmp_path / "c.db", create=False) as st:
        anchor = st.anchor(device_id_of(b.pub))
        assert anchor is not None and anchor.seq == b.entries


# -- keys that are not P-256 points --------------------------------------------------------


class BadKey(Behaviour):
    bad = b""

    @property
    def pub(self) -> bytes:
        return self.bad


BAD_KEYS = {
    "off-curve": b"\x04" + (1).to_bytes(32, "big") + (2).to_bytes(32, "big"),
    "x-not-below-p": b"\x04" + P.to_bytes(32, "big") + (2).to_bytes(32, "big"),
    "infinity-as-zeros": b"\x04" + bytes(64),
}


@pytest.mark.parametrize("case", sorted(BAD_KEYS))
def test_enroll_refuses_a_key_that_is_not_a_p256_point(tmp_path: Path, case: str) -> None:
    b = BadKey()
    b.bad = BAD_KEYS[case]
    store = tmp_path / "c.db"
    with FakeDevice(b) as dev:
        run = cli(tmp_path, "enroll", "--port", dev.port, "--store", str(store),
                  "--label", "x")
    refused(run, "public key")
    if store.exists():
        with Store.open(store, create=False) as st:
            assert st.enrollments() == []


# -- the hello reply goes through the strict decoder ------------------------------------------


class RawInfo(Behaviour):
    payload = b""

    def info(self) -> bytes:
        return self.payload


def _bignum_version(b: Behaviour) -> bytes:
    m = b.info_map()
    m[0] = cbor2.CBORTag(2, b"\x01" + bytes(1999))
    return bytes(cbor2.dumps(m, canonical=True))


def _indefinite(b: Behaviour) -> bytes:
    m = bytes(cbor2.dumps(b.info_map(), canonical=True))
    return b"\xbf" + m[1:] + b"\xff"


def _duplicate_key(b: Behaviour) -> bytes:
    m = bytes(cbor2.dumps(b.info_map(), canonical=True))
    return bytes((m[0] + 1,)) + m[1:] + b"\x04" + bytes(cbor2.dumps("other-board"))


def _overlong_int(b: Behaviour) -> bytes:
    m = b.info_map()
    m[5] = 7777                       # first seq: replaced by an over-long 0
    raw = bytes(cbor2.dumps(m, canonical=True))
    return raw.replace(b"\x05\x19\x1e\x61", b"\x05\x1b" + bytes(8), 1)


@pytest.mark.parametrize("make", [_bignum_version, _indefinite, _duplicate_key,
                                  _overlong_int], ids=lambda f: f.__name__.strip("_"))
@pytest.mark.parametrize("command", ["enroll", "collect"])
def test_hello_reply_is_decoded_strictly(tmp_path: Path, make: Any, command: str) -> None:
    b = RawInfo()
    b.payload = make(b)
    store = enrolled_store(tmp_path, b) if command == "collect" else tmp_path / "c.db"
    with FakeDevice(b) as dev:
        args = ["--label", "x"] if command == "enroll" else ["--deadline", DEADLINE]
        run = cli(tmp_path, command, "--port", dev.port, "--store", str(store), *args)
    refused(run, "device info")
    with Store.open(store) as st:
        assert [e.label for e in st.enrollments()] == ([] if command == "enroll"
                                                      else ["fake"])
    if command == "collect":
        nothing_accepted(store, b)


# -- device text reaches the terminal escaped ---------------------------------------------


def test_enroll_escapes_device_text_and_json_stays_exact(tmp_path: Path) -> None:
    b = Behaviour()
    b.board = ESC_BOARD
    store = tmp_path / "c.db"
    with FakeDevice(b) as dev:
        run = cli(tmp_path, "enroll", "--port", dev.port, "--store", str(store),
                  "--label", "x")
    assert run.rc == 0, run.err
    assert not CONTROL.search(run.out + run.err), repr(run.out)
    assert "\\x1b]0;owned\\x07" in run.out, run.out
    with FakeDevice(b) as dev:
        run = cli(tmp_path, "enroll", "--port", dev.port, "--store", str(store),
                  "--label", "x", "--json")
    assert run.rc == 0 and json.loads(run.out)["board"] == ESC_BOARD


def test_not_enrolled_error_escapes_device_text(tmp_path: Path) -> None:
    b = Behaviour()
    b.board = ESC_BOARD
    store = tmp_path / "empty.db"
    Store.open(store).close()
    with FakeDevice(b) as dev:
        run = cli(tmp_path, "collect", "--port", dev.port, "--store", str(store))
    assert run.rc == 2 and "not enrolled" in run.err, run.err
    assert not CONTROL.search(run.out + run.err), repr(run.err)
    assert "\\x1b[2J" in run.err


class ErrorFrames(Behaviour):
    def records(self, dev: FakeDevice, rid: int, from_seq: int, credit: int) -> None:
        dev.send(REP_ERROR, rid, b"\x05" + ESC_BOARD.encode())


def test_device_error_frame_reason_is_escaped(tmp_path: Path) -> None:
    b = ErrorFrames()
    run = collect(tmp_path, b)
    refused(run, device_id_of(b.pub))
    assert "\\x1b[2J" in run.err


class Altered(Behaviour):
    def info_map(self) -> dict[int, Any]:
        m = super().info_map()
        m[12] = [3, 5, ESC_BOARD]
        return m


def test_log_altered_notice_is_escaped(tmp_path: Path) -> None:
    b = Altered()
    run = collect(tmp_path, b, None, "--json")
    assert not CONTROL.search(run.out + run.err), repr(run.err)
    assert "reports its log altered" in run.err and "\\x1b[2J" in run.err, run.err
    if run.rc == 0:
        assert json.loads(run.out)["device_altered"]["reason"] == ESC_BOARD


def test_verify_log_escapes_the_device_reason_in_its_log(tmp_path: Path) -> None:
    """The device's log-altered reason also reaches a terminal from its own log (a
    segment file read by `verify-log`): escaped there too, exact in --json."""
    b = Behaviour()
    b.chain.log_altered(3, ESC_BOARD)
    seg = tmp_path / "00000000.seg"
    seg.write_bytes(b"".join(format_record(MAGIC_ENTRY, s, raw, sig)
                             for s, raw, sig in b.chain.entries))
    run = cli(tmp_path, "verify-log", "--pubkey", b.pub.hex(), str(seg))
    assert run.rc == 1 and "log_altered" in run.out, (run.out, run.err)
    assert not CONTROL.search(run.out + run.err), repr(run.out)
    assert "\\x1b[2J" in run.out
    run = cli(tmp_path, "verify-log", "--pubkey", b.pub.hex(), "--json", str(seg))
    assert "\\u001b]0;owned\\u0007\\u001b[2J" in run.out    # JSON's own escapes: exact
