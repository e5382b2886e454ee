"""The device protocol fuzzed on a RUNNING virtual device (tools/fuzz.py has the
fuzzer; `python tools/fuzz.py --protocol-seconds 300` is the long run).

Random and mutated request lines (valid CRCs with fuzzed fields included), over-long
lines, control bytes other than 0x03 and garbage for a few seconds; afterwards the
device answers HELLO, is collected cleanly and its flash image verifies and agrees with
what was collected. Separately: Ctrl-C stops the app, and a soft reset (Ctrl-D at the
REPL) brings it back with the log intact.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from hashtrail.collector.collect import collect
from hashtrail.collector.store import Store
from hashtrail.device.link import LinkError, open_serial
from hashtrail.sim import VirtualDevice

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "tools"))
import fuzz
import soak

pytestmark = pytest.mark.e2e


@pytest.fixture
def dev(tmp_path: Path) -> Iterator[tuple[VirtualDevice, Path, bytes, int]]:
    d = soak.make_device(tmp_path, "pfuzz", 0.1)
    store = tmp_path / "c.db"
    info = soak.wait_ready(d)
    with Store.open(store) as st:
        st.enroll(info.device_id, info.pub, label="pfuzz")
        with open_serial(d.port) as link:
            first = collect(link, st)
    yield d, store, info.pub, first.upto_seq or 0
    d.stop()


def test_fuzzed_requests_leave_the_device_serving_and_its_log_intact(
        dev: tuple[VirtualDevice, Path, bytes, int]) -> None:
    d, store, pub, upto = dev
    counts = fuzz.protocol_fuzz(d.port, 4.0, seed=20240611, ack_upto=upto)
    assert counts["lines"] > 500 and counts["error_frames"] > 100, counts
    assert d.boots == 1  # never crashed or reset
    n, findings = fuzz.check_device_after(d, store, pub)
    assert not findings and n > 0, findings
    with Store.open(store) as st:  # one contiguous accepted chain from 0
        seqs = [r.seq for r in st.accepted_records(st.enrollments()[0].device_id)]
    assert seqs == list(range(len(seqs))) and len(seqs) > upto + 1


def test_ctrl_c_then_soft_reset_brings_the_app_back_with_the_log_intact(
        dev: tuple[VirtualDevice, Path, bytes, int]) -> None:
    d, store, pub, upto = dev
    con = soak.Console(d.port)
    try:
        con.write(b"\x03")
        assert b"KeyboardInterrupt" in con.read_until(b">>> ")
        with pytest.raises(LinkError):  # stopped: no protocol answers at the REPL
            with open_serial(d.port) as link:
                link.timeout = 0.5
                link.request(0x01, expect=0x81, retries=0)
        con.write(b"\x04")
        con.read_until(b"soft reboot")
    finally:
        con.close()
    info = soak.wait_ready(d)
    assert info.last_seq is not None and info.last_seq > upto
    n, findings = fuzz.check_device_after(d, store, pub)
    assert not findings and n > 0, findings
