#!/usr/bin/env python3
"""Serial collection throughput on a virtual device: entries/s and wire bytes per entry.

What is measured (one run, same machine):
- a virtual device (real firmware, unix port, pty console) fills its log for
  --fill seconds at a fast sample interval, then `collect` pulls it all;
- wire bytes = every byte the host read from the device during the records stream
  (frames, headers, CRCs, any noise); payload = the flash records carried (entry bodies
  plus their 12-byte record framing) and, separately, the entry bodies alone;
- protocol efficiency = payload / wire bytes. On a real 115200-baud UART the device
  transmits at most 11520 B/s, and with the credit window (4 chunks, ~180 ms of line
  time in flight) the line never idles waiting for credit, so the projected line-rate
  utilisation for collection is this efficiency; the unpaced pty rate is reported too.
The pty itself is not paced to 115200 baud (the virtual device drops console output
nobody reads, as a UART would, so pacing the reader would only measure drops).

    python tools/bench_link.py [--fill 5] [--json]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests" / "e2e"))

BAUD = 115200
LINE_BYTES_S = BAUD / 10  # 8N1: 10 bits per byte


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--fill", type=float, default=5.0, help="seconds of sampling before")
    ap.add_argument("--interval", type=float, default=0.01, help="sample interval (s)")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args(argv)

    from hashtrail.collector.store import Store
    from hashtrail.device.link import FdStream, Link
    from hashtrail.formats.records import MAGIC_ENTRY, record_fields
    from test_collect_e2e import make_device  # the e2e helper: fast board.json

    with tempfile.TemporaryDirectory() as tmp:
        d = Path(tmp)
        dev = make_device(d, "bench", interval=args.interval)
        try:
            time.sleep(args.fill)
            import termios
            import tty

            fd = os.open(dev.port, os.O_RDWR | os.O_NOCTTY)
            tty.setraw(fd)
            termios.tcflush(fd, termios.TCIFLUSH)
            link = Link(FdStream(fd, own=True), timeout=3.0)
            info = link.hello()
            with Store.open(d / "s.db") as st:
                st.enroll(info.device_id, info.pub, label="bench", board=info.board,
                          fw=info.fw)
            start_in = link.bytes_in
            records = 0
            rec_bytes = 0
            body_bytes = 0
            entries = 0
            t0 = time.perf_counter()
            for rec in link.records(0, window=4):
                records += 1
                rec_bytes += len(rec)
                magic, _, body, _ = record_fields(rec)
                if magic == MAGIC_ENTRY:
                    entries += 1
                    body_bytes += len(body)
            dt = time.perf_counter() - t0
            wire = link.bytes_in - start_in
            link.close()
        finally:
            dev.stop()
    res = {
        "machine": f"{platform.machine()} {platform.system()} py{platform.python_version()}",
        "entries": entries, "records": records, "seconds": round(dt, 4),
        "entries_per_s_pty": round(entries / dt, 1),
        "wire_bytes": wire, "wire_bytes_per_entry": round(wire / entries, 1),
        "record_bytes_per_entry": round(rec_bytes / entries, 1),
        "entry_body_bytes_per_entry": round(body_bytes / entries, 1),
        "efficiency_records": round(rec_bytes / wire, 4),
        "efficiency_entry_bodies": round(body_bytes / wire, 4),
        "pty_bytes_per_s": round(wire / dt),
        "projected_entries_per_s_at_115200": round(LINE_BYTES_S / (wire / entries), 1),
        "projected_line_utilisation_at_115200": round(rec_bytes / wire, 4),
    }
    if args.json:
        print(json.dumps(res, indent=2))
    else:
        for k, v in res.items():
            print(f"{k:40s} {v}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
