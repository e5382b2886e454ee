#!/usr/bin/env python3
"""Soak run: virtual devices under collections, reboots and power cuts, for minutes.

Why: the unit and end-to-end tests each check one event; a fleet lives through all of
them interleaved, for hours. This runs several virtual devices (the real firmware
under the unix port, each on its own littlefs image and pty) sampling fast, and at
random: collects a device through one of two collectors (both ACK: the device keeps
acknowledged data until it needs the space, so one collector's ACK does not take data
the other has not read; docs/STORAGE.md), soft-resets one (Ctrl-C, a heap/flash sample over
the raw REPL, Ctrl-D), hard-resets one (EN), cuts one's power (kill -9), and exports
both collectors and reconciles them into one ledger. At the end every device is
collected once more and powered off, and the ledger must: verify (`verify_ledger`),
hold every seq 0..n of every device exactly once, and agree byte for byte with what is
still on each device's flash image (read with littlefs-python, checked with the chain
verifier). Heap (micropython.mem_peak of each app run) and flash use (INFO free bytes,
statvfs) are sampled all along and must stay within the board's budget. The summary
says how many ledger entries came in through each collector's bundle (bundles are
reconciled in a random order each time, so neither gets the shared entries by rank).

    python tools/soak.py --minutes 10 [--devices 3] [--interval 0.1] [--seed N] [--json]

Exit status 0 when there are no findings.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import random
import re
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

from hashtrail.chain.chainverify import Anchor, verify_chain
from hashtrail.collector.bundle import from_store, read_bundle, write_bundle
from hashtrail.collector.collect import collect
from hashtrail.collector.store import Store
from hashtrail.device import imagefs
from hashtrail.device.boards import Board, load_board
from hashtrail.device.link import LinkError, open_serial
from hashtrail.errors import HashtrailError
from hashtrail.formats.keys import device_id
from hashtrail.formats.records import log_segments, parse_segments
from hashtrail.ledger.ledger_db import Ledger
from hashtrail.ledger.ledger_verify import verify_ledger
from hashtrail.ledger.reconcile import reconcile
from hashtrail.sim import VirtualDevice, provision
from hashtrail.sim.device import ROM_HEAP_OVERHEAD
from hashtrail.sim.provision import wait_ready

BOARD = load_board("unix")


# -- virtual device helpers (make_device and wait_ready live in hashtrail.sim.provision;
# tools/fuzz.py and tests/e2e/test_protocol_fuzz.py reach them through this module) -----

def make_device(directory: Path, name: str, interval: float,
                board: Board = BOARD) -> VirtualDevice:
    """A virtual device whose /board.json samples every `interval` s (the only change)."""
    return provision.make_device(directory, name, interval, board)


def image_records(dev: VirtualDevice) -> tuple[list[Any], list[Any]]:
    """The log records on the device's flash image (power it off first), in seq order."""
    files = imagefs.read_image(dev.image_path.read_bytes(), dev.board.block_size)
    return parse_segments(log_segments(files))


def check_image_against(dev: VirtualDevice, pub: bytes,
                        known: dict[int, bytes]) -> tuple[int, list[str]]:
    """Verify the image's chain (anchored on the entry before its first one, taken from
    `known`) and that every entry also in `known` is byte-identical. (entries, findings)"""
    recs, probs = image_records(dev)
    entries = [r for r in recs if r.is_entry]
    if not entries:
        return 0, [f"{dev.name}: no entries on the image"]
    first = entries[0].seq
    anchor = None
    if first > 0:
        if first - 1 not in known:
            return len(entries), [f"{dev.name}: image starts at {first}, entry {first - 1} "
                                  "is not known to the host"]
        import hashlib

        anchor = Anchor(first - 1, hashlib.sha256(known[first - 1]).digest())
    rep = verify_chain(pub, recs, probs, anchor=anchor)
    out = [f"{dev.name}: image chain: seq {f.seq} {f.code}: {f.text}" for f in rep.findings]
    out += [f"{dev.name}: entry {r.seq} differs between image and host"
            for r in entries if r.seq in known and known[r.seq] != r.body]
    return len(entries), out


class Console:
    """The device's pty, driven like a human or mpremote would (raw mode, no echo)."""

    def __init__(self, port: str) -> None:
        import termios
        import tty

        self.fd = os.open(port, os.O_RDWR | os.O_NOCTTY | os.O_NONBLOCK)
        tty.setraw(self.fd)
        termios.tcsetattr(self.fd, termios.TCSANOW, termios.tcgetattr(self.fd))

    def write(self, data: bytes) -> None:
        os.write(self.fd, data)

    def read_until(self, marker: bytes, timeout: float = 15.0) -> bytes:
        import select

        data = b""
        end = time.monotonic() + timeout
        while marker not in data:
            left = end - time.monotonic()
            if left <= 0:
                raise LinkError(f"no {marker!r} from the device; got {data[-200:]!r}")
            r, _, _ = select.select([self.fd], [], [], min(left, 0.2))
            if r:
                try:
                    data += os.read(self.fd, 4096)
                except BlockingIOError:
                    pass
        return data

    def close(self) -> None:
        os.close(self.fd)


# Runs the real app (its log over the soaked flash) for a few loop passes at the raw
# REPL, then measures the heap it holds with every object alive (after gc.collect) and
# the flash use. (micropython.mem_peak() counts every allocation ever made by the
# unix port, not the GC heap, so it says nothing about a fixed-size heap.)
_SAMPLE = (b"import gc,os\nfrom hashtrail import app\n"
           b"a=app.App()\na.run(loops=20)\ngc.collect()\n"
           b"s=os.statvfs('/')\n"
           b"print('HTS',gc.mem_alloc(),gc.mem_free(),s[0]*s[2],s[0]*s[3])\n")


def soft_reset_with_sample(dev: VirtualDevice) -> dict[str, int]:
    """Ctrl-C (app stops, log closed), raw REPL: the app's resident heap and the flash
    use, then Ctrl-B and Ctrl-D at the friendly prompt: soft reset, main.py again."""
    wait_ready(dev)  # a 0x03 while the VM boots is not an interrupt yet
    con = Console(dev.port)
    try:
        for _ in range(3):
            con.write(b"\x03")
            try:
                con.read_until(b">>> ", timeout=5)
                break
            except LinkError:
                continue
        con.write(b"\x01")
        con.read_until(b"raw REPL; CTRL-B to exit\r\n>")
        con.write(_SAMPLE + b"\x04")
        out = con.read_until(b"\x04>", timeout=30)
        m = re.search(rb"HTS (\d+) (\d+) (\d+) (\d+)", out)
        if m is None:
            raise LinkError(f"no heap sample from {dev.name}: {out[-300:]!r}")
        con.write(b"\x02")
        con.read_until(b">>> ")
        con.write(b"\x04")
        con.read_until(b"soft reboot")
    finally:
        con.close()
    alloc, free, total, avail = (int(x) for x in m.groups())
    return {"heap_used": alloc, "heap_free": free, "flash_total": total,
            "flash_free": avail}


# -- the soak --------------------------------------------------------------------------

@dataclasses.dataclass
class Stats:
    seconds: float = 0.0
    devices: int = 0
    collections: int = 0
    collect_refused_pruned: int = 0     # a collector fell behind: the device pruned
    collections_by: list[int] = dataclasses.field(default_factory=lambda: [0, 0])
    contributed: list[int] = dataclasses.field(default_factory=lambda: [0, 0])
    held_by: list[int] = dataclasses.field(default_factory=lambda: [0, 0])
    collect_link_failures: int = 0
    soft_resets: int = 0
    hard_resets: int = 0
    power_cuts: int = 0
    reconciles: int = 0
    ledger_entries: int = 0
    image_entries_checked: int = 0
    max_heap_used: int = 0
    heap_limit: int = 0
    unexpected_reboots: int = 0
    # VMs restarted at the REPL after a Ctrl-C the unix port took inside its garbage
    # collector (sim/rom/rom.py): the virtual board's, not the firmware's; not a finding
    kbd_in_gc: int = 0
    heap_samples: int = 0
    min_flash_free: int | None = None
    max_flash_used: int = 0
    flash_total: int = 0
    findings: list[str] = dataclasses.field(default_factory=list)
    events: Counter[str] = dataclasses.field(default_factory=Counter)


class Soak:
    def __init__(self, work: Path, devices: int, interval: float, seed: int,
                 log: Callable[[str], None]) -> None:
        self.work = work
        self.rng = random.Random(seed)
        self.log = log
        self.devs = [make_device(work, f"soak{i}", interval) for i in range(devices)]
        self.stores = [work / "collector1.db", work / "collector2.db"]
        self.ledger = work / "ledger.db"
        Ledger.create(self.ledger, "soak.example/log").close()
        self.pubs: dict[str, bytes] = {}
        self.boots = {d.name: d.boots for d in self.devs}  # boots we caused
        self.s = Stats(devices=devices, heap_limit=BOARD.heap_budget + ROM_HEAP_OVERHEAD)
        self.behind: set[tuple[str, int]] = set()  # (device, collector) that fell behind
        for i, path in enumerate(self.stores):    # the operator trusts both collectors
            with Store.open(path) as st, Ledger.open(self.ledger) as led:
                led.trust_collector(st.signer.verifier(), f"c{i + 1}")
        for d in self.devs:
            info = wait_ready(d)
            self.pubs[d.name] = info.pub
            for path in self.stores:
                with Store.open(path) as st:
                    st.enroll(info.device_id, info.pub, label=d.name, board=info.board,
                              fw=info.fw)

    def _flash(self, free: int, total: int) -> None:
        self.s.flash_total = total
        self.s.min_flash_free = free if self.s.min_flash_free is None else min(
            self.s.min_flash_free, free)
        self.s.max_flash_used = max(self.s.max_flash_used, total - free)

    def collect(self, dev: VirtualDevice, which: int) -> None:
        with Store.open(self.stores[which]) as st:
            try:
                with open_serial(dev.port) as link:
                    res = collect(link, st, ack=True)
                    self._flash(link.hello().free_bytes, BOARD.vfs_size)
                self.s.collections += 1
                self.s.collections_by[which] += 1
                self.s.events[f"collect-c{which + 1}"] += 1
            except LinkError:
                self.s.collect_link_failures += 1  # rebooting; everything kept, retried later
                return
            except HashtrailError as e:
                if "no longer holds" in str(e):
                    # the device needed the space and pruned what the other collector
                    # ACKed: a finding here, since the soak's flash should never fill
                    self.s.collect_refused_pruned += 1
                    self.behind.add((dev.name, which))
                    self.s.findings.append(f"c{which + 1} fell behind on {dev.name}: {e}")
                    return
                self.s.findings.append(f"collect {dev.name} by c{which + 1}: {e}")
                return
        self.log(f"collect {dev.name} c{which + 1}: +{res.new_entries} -> {res.upto_seq}")

    def soft_reset(self, dev: VirtualDevice) -> None:
        try:
            sample = soft_reset_with_sample(dev)
        except (LinkError, OSError) as e:
            self.s.findings.append(f"soft reset of {dev.name} failed: {e}")
            return
        self.s.soft_resets += 1
        self.boots[dev.name] += 1
        self.s.heap_samples += 1
        self.s.max_heap_used = max(self.s.max_heap_used, sample["heap_used"])
        self.s.heap_limit = sample["heap_used"] + sample["heap_free"]
        self._flash(sample["flash_free"], sample["flash_total"])
        if sample["heap_used"] > BOARD.heap_budget:
            self.s.findings.append(f"{dev.name}: app heap {sample['heap_used']} over the "
                                   f"board budget {BOARD.heap_budget}")
        self.log(f"soft reset {dev.name}: app heap {sample['heap_used']}, flash free "
                 f"{sample['flash_free']}")

    def reconcile(self) -> None:
        order = [0, 1]
        self.rng.shuffle(order)
        for i in order:
            bpath = self.work / f"bundle{i + 1}.jsonl"
            with Store.open(self.stores[i]) as st, open(bpath, "w", encoding="ascii") as f:
                write_bundle(from_store(st, name=f"c{i + 1}"), f, st.signer)
            with Ledger.open_signing(self.ledger) as led:
                res = reconcile(led, read_bundle(bpath))
            self.s.contributed[i] += res.accepted
            self.s.findings += [f"reconcile c{i + 1}: {f.device_id} seq {f.seq}: {f.reason}"
                                for f in res.findings]
        self.s.reconciles += 1
        self.log("reconciled")

    def step(self) -> None:
        dev = self.rng.choice(self.devs)
        action = self.rng.choices(["c1", "c2", "soft", "hard", "cut", "reconcile"],
                                  weights=[30, 20, 6, 5, 5, 8])[0]
        if action in ("c1", "c2") and (dev.name, int(action[1]) - 1) in self.behind:
            action = "c2" if action == "c1" else "c1"
        if action in ("c1", "c2"):
            self.collect(dev, int(action[1]) - 1)
        elif action == "soft":
            self.soft_reset(dev)
        elif action == "hard":
            dev.restart()
            self.boots[dev.name] += 1
            self.s.hard_resets += 1
            self.log(f"hard reset {dev.name}")
        elif action == "cut":
            time.sleep(self.rng.random() * 0.3)  # anywhere: mid-append, mid-flush...
            dev.power_cut()
            time.sleep(0.2)
            dev.start()
            self.boots[dev.name] += 1
            self.s.power_cuts += 1
            self.log(f"power cut {dev.name}")
        else:
            self.reconcile()

    def finish(self) -> None:
        """Collect everything, power off, reconcile, then judge ledger against images."""
        for d in self.devs:
            wait_ready(d)
            for which in self.rng.sample([0, 1], 2):    # both, in a random order
                for _attempt in range(4):
                    before = len(self.s.findings)
                    self.collect(d, which)
                    if len(self.s.findings) == before:
                        break
                    time.sleep(1)
        for d in self.devs:
            self.s.kbd_in_gc += d.kbd_in_gc
            extra = d.boots - d.kbd_in_gc - self.boots[d.name]
            if extra > 0:  # the supervisor rebooted a VM that died: MemoryError, crash...
                self.s.unexpected_reboots += extra
                self.s.findings.append(f"{d.name}: {extra} reboots nobody asked for")
            d.stop()
        self.reconcile()
        for i, path in enumerate(self.stores):
            with Store.open(path) as st:
                self.s.held_by[i] = sum(len(st.accepted_records(e.device_id))
                                        for e in st.enrollments())
        with Ledger.open(self.ledger) as led:
            rep = verify_ledger(led)
            if not rep.ok:
                self.s.findings.append(f"verify_ledger: {json.dumps(rep.as_json())[:2000]}")
            rows = [r[1:3] + r[4:5] for r in led.storage.scan_entries()]
        self.s.ledger_entries = len(rows)
        by_dev: dict[str, dict[int, bytes]] = {}
        counts = Counter((r[0], r[1]) for r in rows)
        for (did, seq), n in counts.items():
            if n != 1:
                self.s.findings.append(f"ledger holds {did} seq {seq} {n} times")
        for did, seq, body in rows:
            by_dev.setdefault(did, {})[int(seq)] = bytes(body)
        for d in self.devs:
            did = device_id(self.pubs[d.name])
            known = by_dev.get(did, {})
            if sorted(known) != list(range(len(known))):
                self.s.findings.append(f"{d.name}: ledger seqs are not 0..{len(known) - 1}")
            n, problems = check_image_against(d, self.pubs[d.name], known)
            self.s.image_entries_checked += n
            self.s.findings += problems
            recs, _ = image_records(d)
            last = max((r.seq for r in recs if r.is_entry), default=-1)
            if known and last > max(known):
                self.s.events["entries-after-final-collect"] += last - max(known)


def run(minutes: float, devices: int = 3, interval: float = 0.1, seed: int = 1,
        work: Path | None = None, verbose: bool = False) -> Stats:
    def log(msg: str) -> None:
        if verbose:
            print(f"[{time.monotonic() - t0:7.1f}s] {msg}", file=sys.stderr)

    t0 = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="hashtrail-soak-") as tmp:
        soak = Soak(work or Path(tmp), devices, interval, seed, log)
        try:
            deadline = t0 + minutes * 60
            while time.monotonic() < deadline:
                soak.step()
            soak.finish()
        finally:
            for d in soak.devs:
                d.stop()
    soak.s.seconds = round(time.monotonic() - t0, 1)
    return soak.s


def summary(s: Stats) -> str:
    mb = 1024 * 1024
    lines = [
        f"soak: {s.seconds} s, {s.devices} devices",
        f"  collections {s.collections} (c1 {s.collections_by[0]}, c2 "
        f"{s.collections_by[1]}, both ACK; refused because the other's ACK let the device "
        f"prune: {s.collect_refused_pruned}; link failures retried later: "
        f"{s.collect_link_failures})",
        f"  ledger entries contributed (first to reach the ledger) by c1 {s.contributed[0]}"
        f", by c2 {s.contributed[1]}; entries each store holds verified: c1 "
        f"{s.held_by[0]}, c2 {s.held_by[1]}",
        f"  soft resets {s.soft_resets}, hard resets {s.hard_resets}, power cuts "
        f"{s.power_cuts}, reconciles {s.reconciles}",
        f"  ledger entries {s.ledger_entries}, image entries checked against it "
        f"{s.image_entries_checked}",
        f"  heap: app resident max {s.max_heap_used} B (budget {BOARD.heap_budget} B, "
        f"VM heap {s.heap_limit} B, {s.heap_samples} samples); unexpected reboots "
        f"{s.unexpected_reboots}; Ctrl-C inside the unix port's GC {s.kbd_in_gc}",
        f"  flash: max used {s.max_flash_used / mb:.2f} MB of {s.flash_total / mb:.2f} MB, "
        f"min free {s.min_flash_free}",
        f"  findings: {len(s.findings)}",
    ]
    lines += [f"    ! {f}" for f in s.findings[:20]]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--minutes", type=float, default=10.0)
    ap.add_argument("--devices", type=int, default=3)
    ap.add_argument("--interval", type=float, default=0.1, help="device sample interval, s")
    ap.add_argument("--seed", type=int, default=int.from_bytes(os.urandom(4), "little"))
    ap.add_argument("--dir", type=Path, help="keep the images, stores and ledger here")
    ap.add_argument("--json", action="store_true")
    ap.add_argument("-v", "--verbose", action="store_true")
    args = ap.parse_args(argv)
    if args.dir:
        args.dir.mkdir(parents=True, exist_ok=True)
    s = run(args.minutes, args.devices, args.interval, args.seed, args.dir, args.verbose)
    if args.json:
        d = dataclasses.asdict(dataclasses.replace(s, events=Counter()))
        d["events"] = dict(s.events)  # asdict would turn a Counter's items into keys
        d["seed"] = args.seed
        print(json.dumps(d, indent=1))
    else:
        print(summary(s) + f"\n  seed {args.seed}")
    return 1 if s.findings else 0


if __name__ == "__main__":
    sys.exit(main())


