#!/usr/bin/env python3
"""Collection over MQTT: entries/s from one device and from many to one collector, wire
bytes per entry, and the device's heap while it publishes.

What is measured (one run, same machine):
- virtual devices (real firmware, unix port) whose /board.json names a broker fill their
  logs for --fill seconds at --interval, are enrolled over their consoles, then ONE
  collector collects them over the broker, device after device, exactly as
  `hashtrail collect --mqtt` does (collect() over device/mqtt_link: RECORDS with credit,
  a fresh checkpoint, verification, store, ACK): entries/s = entries accepted / time;
- wire bytes per entry: the reply frames the collector received, and the same carried
  in MQTT PUBLISH packets (fixed header, topic, packet id), per entry accepted;
- the broker is a private Mosquitto with set_tcp_nodelay true (docs/MQTT.md,
  "Latency"); --shared uses the one on 127.0.0.1:1883 as configured;
- push (--push-seconds, 0: skipped): one device sampling every --push-interval that
  pushes its entries (board.json "push": --push-every) to a collector following it as
  `collect --mqtt --follow` does between rounds (collect_device with its Pushes, at most
  every --push-gap): entries accepted per second of the run (the device's append rate
  when the collector keeps up), the share that came from pushes, and MQTT bytes per
  entry on the log topic and in all (pushes + the replies of HELLO, RECORDS for what
  the pushes lacked, CHECKPOINT, ACK);
- device heap: the firmware test tests/firmware/test_app_mqtt.py (the whole app, MQTT
  link publishing a records stream through the real broker, its collector a thread of
  this process), the same over TLS (tests/firmware/test_app_mqtt_tls.py) and
  tests/firmware/test_app_mqtt_stall.py (the app against a server that stalls it three
  ways) at the board's 100 KB budget and at --heap, --heap-runs
  times each: the smallest free heap after gc at the points they measure (@@APPHEAP),
  or the error a run hit. Skipped with --no-heap.

    python tools/bench_mqtt.py [--devices 1] [--fill 10] [--interval 0.02] [--json]
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests" / "e2e"))
sys.path.insert(0, str(ROOT / "tests" / "firmware"))


def _device_test(fw: Path, data: Path, heap: int, module: str, func: str) -> dict[str, Any]:
    """One firmware test run at `heap`: its @@APPHEAP figure, or the error it hit."""
    from hashtrail.paths import venv_tool

    proc = subprocess.run(
        [venv_tool("micropython"), "-X", f"heapsize={heap}",
         str(ROOT / "tests/firmware/_runner.py"), module, func, str(data)],
        env={"MICROPYPATH": f"{fw / 'lib'}:{ROOT / 'tests/firmware'}",
             "PATH": "/usr/bin:/bin"},
        cwd=str(data), capture_output=True, text=True, timeout=600)
    m = re.search(r"@@APPHEAP min_free=(\d+)", proc.stdout)
    ok = re.search(r"@@DTEST status=0 ", proc.stdout) is not None
    err = re.search(r"((?:MemoryError|AssertionError)[^\n]*)", proc.stdout + proc.stderr)
    return {"min_free": int(m.group(1)) if m else None, "passed": ok,
            "error": None if ok else (err.group(1) if err else proc.stdout[-300:])}


def device_heap(heap: int, runs: int = 1) -> dict[str, Any]:
    """Run the MQTT app firmware test (a live broker), the same over TLS
    (test_app_mqtt_tls.py, a private broker's TLS listener) and the stalling-broker test
    (test_app_mqtt_stall.py) at the 100 KB budget and at `heap`, `runs` times each."""
    import build_mpy
    import vectors_mqtt

    out: dict[str, Any] = {}
    with tempfile.TemporaryDirectory() as tmp:
        fw, data = Path(tmp) / "fw", Path(tmp) / "data"
        fw.mkdir()
        data.mkdir()
        build_mpy.build(fw)
        vectors_mqtt.make_app_mqtt_board(data)
        vectors_mqtt.make_app_mqtt_tls_board(data)
        for h in sorted({102400, heap}):
            for i in range(runs):
                for name, make, module, func in (
                        ("app", vectors_mqtt.make_app_mqtt_collector, "test_app_mqtt",
                         "test_app_over_mqtt_and_its_heap"),
                        ("tls", vectors_mqtt.make_app_mqtt_tls_collector,
                         "test_app_mqtt_tls", "test_app_over_mqtt_tls_and_its_heap")):
                    collector = make(data)  # a thread here, waiting for the device
                    out[f"{name}_{h}_{i}"] = _device_test(fw, data, h, module, func)
                    # a device that failed leaves its collector waiting: let it end
                    # before the next run's collector reads the same files
                    collector.join(150)
                vectors_mqtt.make_stall_broker(data)  # a new stalling server, this run's
                out[f"stall_{h}_{i}"] = _device_test(
                    fw, data, h, "test_app_mqtt_stall",
                    "test_a_stalled_broker_never_holds_the_loop")
    return out


def collect_all(url: str, n: int, fill: float, interval: float) -> dict[str, Any]:
    from hashtrail.collector.collect import collect
    from hashtrail.collector.store import Store
    from hashtrail.device.boards import load_board
    from hashtrail.device.mqtt_link import open_broker, parse_url
    from hashtrail.sim import VirtualDevice, provision

    port = parse_url(url).port
    board = dataclasses.replace(load_board("unix"), heap_budget=160 * 1024)
    cfg = {"sample_interval_s": interval, "mqtt": {"host": "127.0.0.1", "port": port},
           "log": {"checkpoint_every": 64, "checkpoint_s": 0}}
    with tempfile.TemporaryDirectory() as tmp:
        d = Path(tmp)
        devs = [VirtualDevice(d, f"b{i}", board=board, config=cfg).start() for i in range(n)]
        try:
            with Store.open(d / "s.db") as st:
                for dev in devs:
                    info = provision.wait_ready(dev, timeout=60)
                    st.enroll(info.device_id, info.pub, label=dev.name, board=info.board,
                              fw=info.fw)
                time.sleep(fill)
                ids = [e.device_id for e in st.enrollments()]
                entries = frames = wire = msgs = 0
                t0 = time.perf_counter()
                with open_broker(parse_url(url)) as broker:
                    for did in ids:
                        with broker.link(did) as link:
                            r = collect(link, st, device_id=did)
                            s = link.stream
                            entries += r.new_entries
                            frames += link.bytes_in
                            wire += s.wire_bytes  # type: ignore[attr-defined]
                            msgs += s.messages  # type: ignore[attr-defined]
                dt = time.perf_counter() - t0
        finally:
            for dev in devs:
                dev.stop()
    return {"devices": n, "entries": entries, "seconds": round(dt, 3),
            "entries_per_s": round(entries / dt, 1), "messages": msgs,
            "frame_bytes_per_entry": round(frames / entries, 1),
            "mqtt_bytes_per_entry": round(wire / entries, 1)}


def push_follow(url: str, seconds: float, interval: float, every: float,
                gap: float) -> dict[str, Any]:
    from hashtrail.collector.mqtt import collect_device
    from hashtrail.collector.store import Store
    from hashtrail.device.boards import load_board
    from hashtrail.device.mqtt_link import open_broker, parse_url
    from hashtrail.sim import VirtualDevice, provision

    port = parse_url(url).port
    board = dataclasses.replace(load_board("unix"), heap_budget=160 * 1024)
    cfg = {"sample_interval_s": interval,
           "mqtt": {"host": "127.0.0.1", "port": port, "push": every},
           "log": {"checkpoint_every": 64, "checkpoint_s": 0}}
    with tempfile.TemporaryDirectory() as tmp:
        d = Path(tmp)
        dev = VirtualDevice(d, "p0", board=board, config=cfg).start()
        try:
            with Store.open(d / "s.db") as st, open_broker(parse_url(url)) as broker:
                info = provision.wait_ready(dev, timeout=60)
                did = info.device_id
                st.enroll(did, info.pub, label="p0", board=info.board, fw=info.fw)
                pushes = broker.watch(did)
                first = collect_device(broker, st, did)  # the backlog, pulled
                if first.result is None:
                    raise SystemExit(f"first collection failed: {first.error}")
                entries = pushed = runs = rep_bytes = 0
                t0 = last = time.perf_counter()
                wire0 = pushes.wire_bytes
                while time.perf_counter() - t0 < seconds:
                    pushes.event.wait(0.1)
                    if time.perf_counter() - last < gap:
                        continue
                    pushes.event.clear()
                    a = st.anchor(did)
                    if a is None or not pushes.pending(a.seq + 1):
                        continue
                    last = time.perf_counter()
                    o = collect_device(broker, st, did, pushes=pushes)
                    if o.result is None:
                        raise SystemExit(f"push collection failed: {o.error}")
                    runs += 1
                    entries += o.result.new_entries
                    pushed += o.result.pushed
                    rep_bytes += o.result.bytes_in
                dt = time.perf_counter() - t0
                push_wire = pushes.wire_bytes - wire0
        finally:
            dev.stop()
    return {"seconds": round(dt, 2), "device_interval_s": interval, "push_every_s": every,
            "push_gap_s": gap, "collections": runs, "entries": entries,
            "entries_per_s": round(entries / dt, 1),
            "pushed_share": round(pushed / entries, 3) if entries else None,
            "push_mqtt_bytes_per_entry": round(push_wire / entries, 1) if entries else None,
            "reply_frame_bytes_per_entry": round(rep_bytes / entries, 1) if entries
            else None}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--devices", type=int, nargs="+", default=[1],
                    help="device counts to measure (e.g. 1 20)")
    ap.add_argument("--fill", type=float, default=10.0, help="seconds of sampling before")
    ap.add_argument("--interval", type=float, default=0.02, help="sample interval (s)")
    ap.add_argument("--shared", action="store_true",
                    help="use the broker on 127.0.0.1:1883 instead of a private one")
    ap.add_argument("--heap", type=int, default=102400,
                    help="a second heap for the device heap run (the budget, 100 KB, "
                         "is always run)")
    ap.add_argument("--heap-runs", type=int, default=1,
                    help="runs of each device heap test per heap")
    ap.add_argument("--no-heap", action="store_true")
    ap.add_argument("--push-seconds", type=float, default=20.0,
                    help="length of the push run (0: skip it)")
    # 0.02 (50 entries/s) outran the collector's HELLO/RECORDS/CHECKPOINT round on this
    # loaded machine: the round-trips bound stopped a push collection (docs/MQTT.md).
    ap.add_argument("--push-interval", type=float, default=0.1,
                    help="sample interval of the pushing device (s)")
    ap.add_argument("--push-every", type=float, default=0.2,
                    help="the device's least seconds between pushes (board.json push)")
    ap.add_argument("--push-gap", type=float, default=1.0,
                    help="least seconds between push-started collections")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args(argv)

    from mqtt_broker import PrivateBroker

    res: dict[str, Any] = {}
    with tempfile.TemporaryDirectory() as tmp:
        broker = None if args.shared else PrivateBroker(Path(tmp), trace=False).start()
        url = "mqtt://127.0.0.1:1883" if broker is None else broker.url
        res["broker"] = "shared 127.0.0.1:1883" if broker is None else \
            "private mosquitto, set_tcp_nodelay true"
        try:
            for n in args.devices:
                res[f"collect_{n}"] = collect_all(url, n, args.fill, args.interval)
            if args.push_seconds > 0:
                res["push_follow"] = push_follow(url, args.push_seconds, args.push_interval,
                                                 args.push_every, args.push_gap)
        finally:
            if broker is not None:
                broker.stop()
    if not args.no_heap:
        res["device_heap"] = device_heap(args.heap, args.heap_runs)
    if args.json:
        print(json.dumps(res, indent=2))
    else:
        for k, v in res.items():
            print(f"{k:16s} {v}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
