"""Virtual devices: the real firmware under the unix port, over a real pseudo-terminal.

Stock tools only on the host side (pyserial, the mpremote CLI, littlefs-python), so a
pass here means a real board's users would see the same behaviour.
"""

from __future__ import annotations

import json
import logging
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
import serial
from hashtrail.device.boards import load_board
from hashtrail.device.imagefs import firmware_files, read_image
from hashtrail.formats.records import LOG_DIR
from hashtrail.paths import BOARDS
from hashtrail.sim import VirtualDevice
from hashtrail.sim.device import stat_state, text_lines
from hashtrail.sim.provision import wait_ready

pytestmark = pytest.mark.e2e
MPREMOTE = [sys.executable, "-m", "mpremote"]


def mpremote(port: str, *args: str, timeout: float = 60, dev: VirtualDevice | None = None
             ) -> str:
    # (every call enters mpremote's raw REPL first: three phases of up to 10 s each
    # while the device, just booted or soft-rebooted, runs main.py; on a loaded CI
    # machine that took more than 30 s in all, once for the sleeping-code test and once
    # for the power-cut test's first `exec pass`. A hang guard, not a figure checked.)
    # `dev`: its console goes into the failure (the power-cut test's second `exec pass`
    # hung once in CI with no output; what the device printed says why next time)
    def said() -> str:
        return "" if dev is None else f"\ndevice console:\n{dev.console()}"
    try:
        proc = subprocess.run([*MPREMOTE, "connect", port, *args], capture_output=True,
                              text=True, timeout=timeout)
    except subprocess.TimeoutExpired as e:
        raise AssertionError(f"mpremote {args}: no answer in {timeout} s:\n{e.stdout!r}\n"
                             f"{e.stderr!r}{said()}") from None
    assert proc.returncode == 0, \
        f"mpremote {args} failed:\n{proc.stdout}\n{proc.stderr}{said()}"
    return proc.stdout


def read_until(ser: serial.Serial, marker: bytes, timeout: float = 15) -> bytes:
    data = b""
    end = time.monotonic() + timeout
    while not data.endswith(marker) and marker not in data:
        if time.monotonic() > end:
            raise AssertionError(f"no {marker!r} from the device; got {data[-400:]!r}")
        data += ser.read(ser.in_waiting or 1)
    return data


def exec_value(port: str, expr: str) -> object:
    return json.loads(mpremote(port, "exec", f"import json; print(json.dumps({expr}))"))


@pytest.fixture(scope="module")
def dev(tmp_path_factory: pytest.TempPathFactory) -> Iterator[VirtualDevice]:
    d = VirtualDevice(tmp_path_factory.mktemp("vdev"), "dev0", log=True)
    d.start()
    yield d
    d.stop()


def test_image_is_littlefs_with_exactly_the_firmware(dev: VirtualDevice) -> None:
    board = load_board("unix")
    files = read_image(dev.image_path.read_bytes(), board.block_size)
    expected = firmware_files(board)
    fw = {p: b for p, b in files.items() if p in expected}
    assert fw == expected  # same bytes as a fresh compile: one layout for sim and image
    assert files["/board.json"] == (BOARDS / "unix.json").read_bytes()
    assert "/main.py" in files and any(p.startswith("/lib/hashtrail/") and p.endswith(".mpy")
                                       for p in files)
    assert not any(p.startswith("/lib/") and p.count("/") == 2 for p in files)  # no flat


def test_ctrl_c_interrupts_running_main_into_the_repl(dev: VirtualDevice) -> None:
    time.sleep(1.0)  # main.py is up and sleeping between samples
    with serial.Serial(dev.port, 115200, timeout=0.2) as ser:
        ser.reset_input_buffer()
        ser.write(b"\x03")
        out = read_until(ser, b">>> ")
        assert b"KeyboardInterrupt" in out, out  # main.py was running, and was stopped
        ser.write(b"6*7\r")
        assert b"42" in read_until(ser, b"42")
        ser.write(b"\x04")  # soft reset at an empty prompt: boot.py + main.py again
        read_until(ser, b"MPY: soft reboot\r\n")
    time.sleep(1.0)
    assert dev.running


def test_ctrl_c_interrupts_sleeping_code(dev: VirtualDevice) -> None:
    # Code started through the raw REPL sleeps for 30 s; 0x03 must stop it at once.
    mpremote(dev.port, "exec", "--no-follow", "import time\ntime.sleep(30)")
    with serial.Serial(dev.port, 115200, timeout=0.2) as ser:
        t0 = time.monotonic()
        ser.write(b"\x03")
        out = read_until(ser, b"KeyboardInterrupt", timeout=5)
        assert time.monotonic() - t0 < 5, out
    assert exec_value(dev.port, "6*7") == 42


def test_stock_mpremote_exec_ls_cp(dev: VirtualDevice, tmp_path: Path) -> None:
    assert mpremote(dev.port, "exec", "print(6*7)").strip() == "42"
    listing = mpremote(dev.port, "ls", ":/lib/hashtrail")
    assert "board_unix.mpy" in listing and "link.mpy" in listing
    src = tmp_path / "note.bin"
    src.write_bytes(bytes(range(256)) * 20)  # every byte value, 0x03 included
    mpremote(dev.port, "cp", str(src), ":note.bin")
    back = tmp_path / "back.bin"
    mpremote(dev.port, "cp", ":note.bin", str(back))
    assert back.read_bytes() == src.read_bytes()


def test_reset_causes_and_persistence(dev: VirtualDevice) -> None:
    mpremote(dev.port, "exec", "f=open('/persist.txt','w'); f.write('kept'); f.close()")
    cause = "__import__('hashtrail.board_unix').board_unix.reset_cause()"
    assert exec_value(dev.port, cause) == "soft"
    dev.restart()
    time.sleep(0.5)
    # mpremote itself soft-resets on connect, so ask the ROM what started this VM.
    assert exec_value(dev.port, "open('/persist.txt').read()") == "kept"
    boots = dev.boots
    dev.power_cut()
    assert not dev.running
    dev.start()
    assert dev.boots == boots + 1
    assert exec_value(dev.port, "open('/persist.txt').read()") == "kept"


def test_a_vm_that_dies_on_its_own_reboots_with_a_warning_of_its_last_words(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """As a board resets after a crash; and a reboot nobody asked for is a warning
    naming the device, with the lines it printed last (a traceback: the next boot
    clears its console)."""
    with VirtualDevice(tmp_path, "dies") as d:
        wait_ready(d, timeout=20)
        boots = d.boots
        pid = d.pid
        assert pid is not None
        with caplog.at_level(logging.WARNING, logger="hashtrail.sim.device"):
            os.kill(pid, signal.SIGKILL)
            end = time.monotonic() + 20
            while d.boots == boots and time.monotonic() < end:
                time.sleep(0.05)
        assert d.boots == boots + 1 and d.pid != pid
        wait_ready(d, timeout=20)
    said = [r.getMessage() for r in caplog.records]
    assert len(said) == 1, said
    assert said[0].startswith("[dies] VM exited with -9; rebooting\n  hashtrail "), said
    assert " on unix: device " in said[0], said


@contextmanager
def _stopped_at_the_repl(d: VirtualDevice) -> Iterator[serial.Serial]:
    """The device's console, once its app ran and a Ctrl-C stopped it at the REPL."""
    wait_ready(d, timeout=20)
    with serial.Serial(d.port, 115200, timeout=0.2) as ser:
        ser.reset_input_buffer()
        ser.write(b"\x03")
        read_until(ser, b">>> ")
        yield ser


def test_a_ctrl_c_inside_the_unix_ports_gc_stops_at_the_repl_not_a_reboot(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """The unix port raises KeyboardInterrupt from its signal handler, so a Ctrl-C can
    land inside the garbage collector and leave the heap locked (a board's never does):
    the soak's Ctrl-C into a signing app did so under load, the ROM's REPL then failed
    its first allocation, and the VM died and came back running main.py. Here the heap
    is locked by hand, as the GC leaves it; the device must stop at the REPL, as a
    board does after Ctrl-C, and say why it is a fresh VM."""
    with VirtualDevice(tmp_path, "gc") as d, caplog.at_level(logging.INFO):
        boots = d.boots
        with _stopped_at_the_repl(d) as ser:
            ser.write(b"exec('import micropython\\nmicropython.heap_lock()\\nwhile 1: pass')\r")
            read_until(ser, b"pass')\r\n")
            time.sleep(0.3)
            ser.write(b"\x03")
            out = read_until(ser, b">>> ", timeout=20)
            assert b"KeyboardInterrupt" in out and b"Ctrl-C inside the GC" in out, out
            assert b"MicroPython v" in out, out  # a fresh VM's banner: its heap is whole
            ser.write(b"6*7\r")
            assert b"42" in read_until(ser, b"42")
        assert d.boots == boots + 1 and d.kbd_in_gc == 1
        assert not [r for r in caplog.records if r.levelno >= logging.WARNING], \
            caplog.records  # not a VM that died


def test_a_ctrl_c_inside_the_gc_in_raw_repl_code_ends_it_as_the_raw_repl_does(
        tmp_path: Path) -> None:
    """The same Ctrl-C in code the raw REPL runs (mpremote exec): the host reads the
    run's end as a board's raw REPL writes it (0x04, the error, 0x04, its prompt) and
    the raw REPL goes on, so the next command runs; before, the fresh VM came back at
    the friendly REPL without the 0x04s, and a host waiting for them hung."""
    with VirtualDevice(tmp_path, "gcraw") as d:
        boots = d.boots
        with _stopped_at_the_repl(d) as ser:
            ser.write(b"\x01")
            read_until(ser, b"raw REPL; CTRL-B to exit\r\n>")
            ser.write(b"import micropython\nprint('locked')\nmicropython.heap_lock()\n"
                      b"while 1: pass\x04")
            read_until(ser, b"OKlocked\n")  # (the unix port prints \n, not \r\n)
            time.sleep(0.3)
            ser.write(b"\x03")
            out = read_until(ser, b"\x04>", timeout=20)
            assert re.fullmatch(rb"\x04Traceback[^\x04]*KeyboardInterrupt[^\x04]*"
                                rb"Ctrl-C inside the GC[^\x04]*\x04>", out, re.S), out
            ser.write(b"print(6*7)\x04")
            assert re.search(rb"OK42\r?\n\x04\x04>$", read_until(ser, b"\x04>"))
            ser.write(b"\x02")
            read_until(ser, b">>> ")
        assert d.boots == boots + 1 and d.kbd_in_gc == 1


def test_text_lines_leave_out_the_frames_between_them() -> None:
    frame = "\x00\x11Z\x01\ufffd\ufffd\ufffdA\x04\ufffd\x02"
    assert text_lines(f"boot\n{frame}\n\nsample: MemoryError\n{frame}ok") == [
        "boot", "sample: MemoryError"]


def test_vm_state_says_what_the_vm_is_blocked_in(tmp_path: Path) -> None:
    """What a failed test prints of each device it started (tests/conftest.py): the
    VM's process state and system call, read from /proc while it runs."""
    d = VirtualDevice(tmp_path, "st")
    with d:
        wait_ready(d, timeout=20)
        pid = d.pid
        line = d.vm_state()
        # the app waits for the console between samples: asleep in poll (7) or ppoll (271)
        assert re.fullmatch(rf"\[st: VM pid {pid}, stat [RS], wchan \S+, syscall \S.*\]",
                            line), line
    assert d.vm_state() == "[st: no VM running]"


def _log_files(dev: VirtualDevice) -> dict[str, bytes]:
    files = read_image(dev.image_path.read_bytes(), load_board("unix").block_size)
    return {p: b for p, b in files.items() if p.startswith(LOG_DIR + "/")}


def test_power_cut_keeps_the_log(dev: VirtualDevice) -> None:
    # Let main.py append (first boot makes the key and writes entries), stop it at
    # the REPL so the image is quiescent, and snapshot the log segments.
    dev.restart()
    time.sleep(3.0)
    mpremote(dev.port, "exec", "pass")
    before = _log_files(dev)
    assert before, "the firmware wrote no /ht/log segment"
    # Run main.py again, then cut the power while it works.
    with serial.Serial(dev.port, 115200, timeout=0.2) as ser:
        ser.write(b"\r\x02\x04")  # friendly REPL, soft reset: main.py runs
        read_until(ser, b"MPY: soft reboot\r\n")
    time.sleep(2.5)
    dev.power_cut()
    dev.start()
    time.sleep(2.0)
    mpremote(dev.port, "exec", "pass", dev=dev)
    after = _log_files(dev)
    for path, old in before.items():
        if path in after:  # (a segment may be pruned only once acknowledged)
            assert after[path][: len(old)] == old, f"{path} lost or changed committed records"
    assert sum(map(len, after.values())) >= sum(map(len, before.values()))


def test_rom_heap_overhead_is_what_the_vm_adds(tmp_path: Path) -> None:
    # The VM gets budget + ROM_HEAP_OVERHEAD; if the ROM grows, the firmware would
    # silently lose heap it has on a board. 992 bytes: the mount a board also makes.
    from hashtrail.device.imagefs import build_image
    from hashtrail.sim.device import ROM_HEAP_OVERHEAD, measure_rom_heap

    # The ROM keeps the image's path: each 16 characters cost about 16 bytes (78
    # characters, pytest's folder under a parallel worker, measured 96 bytes more than
    # 12), so the overhead is measured at a short path like the demo's and sim's.
    board = load_board("unix")
    short = Path(tempfile.mkdtemp(prefix="rom-", dir="/tmp"))
    try:
        img = short / "m.lfs"
        img.write_bytes(build_image(firmware_files(board), board.vfs_size, board.block_size))
        used = measure_rom_heap(img, board.block_size)
    finally:
        shutil.rmtree(short, ignore_errors=True)
    assert 0 < used - 992 <= ROM_HEAP_OVERHEAD, used


# -- back to the application after the REPL (issue 15, item 2) ---------------------------


def hashtrail(*args: str) -> subprocess.CompletedProcess[str]:
    import os

    import hashtrail as pkg

    env = dict(os.environ, PYTHONPATH=str(Path(pkg.__file__).resolve().parents[1]))
    return subprocess.run([sys.executable, "-m", "hashtrail.cli", *args], capture_output=True,
                          text=True, timeout=90, env=env)


def app_answers(port: str, timeout: float = 20) -> bool:
    """The application (not the REPL) answers HELLO within `timeout` seconds."""
    from hashtrail.device.link import LinkError, open_serial

    end = time.monotonic() + timeout
    while time.monotonic() < end:
        with open_serial(port) as link:
            link.timeout = 1.0
            try:
                link.request(0x01, expect=0x81, retries=0)
                return True
            except LinkError:
                pass
    return False


def test_mpremote_reset_is_a_hard_reset_that_restarts_main(dev: VirtualDevice) -> None:
    mpremote(dev.port, "exec", "pass")  # leaves the device at the REPL, as on a board
    assert not app_answers(dev.port, timeout=3)
    boots = dev.boots
    mpremote(dev.port, "reset")  # machine.reset()
    assert app_answers(dev.port), "main.py did not run after machine.reset()"
    assert dev.boots == boots + 2  # mpremote's soft reset on connect, then the hard one
    with serial.Serial(dev.port, 115200, timeout=0.2) as ser:  # reset cause "hard"
        ser.write(b"\x03")
        read_until(ser, b">>> ")
        ser.write(b"from hashtrail import board_unix; board_unix.reset_cause()\r")
        assert b"'hard'" in read_until(ser, b"'hard'")
        ser.write(b"\x04")  # soft reset at the friendly prompt: main.py again
        read_until(ser, b"MPY: soft reboot\r\n")
    assert app_answers(dev.port)


def test_enroll_and_collect_take_a_device_at_the_repl_back(dev: VirtualDevice,
                                                           tmp_path: Path) -> None:
    store = str(tmp_path / "c.db")
    notice = "was at the MicroPython REPL, not running hashtrail"
    mpremote(dev.port, "exec", "print(6*7)")
    p = hashtrail("enroll", "--port", dev.port, "--store", store, "--label", "r")
    assert p.returncode == 0, p.stderr
    assert p.stderr.count(notice) == 1 and len(p.stderr.splitlines()) == 1, p.stderr
    time.sleep(1.0)
    mpremote(dev.port, "ls", ":/")
    p = hashtrail("collect", "--port", dev.port, "--store", store, "--json")
    assert p.returncode == 0, p.stderr
    assert p.stderr.count(notice) == 1, p.stderr
    assert json.loads(p.stdout)["new_entries"] >= 1
    # A device running its application gets no reset and no notice.
    p = hashtrail("collect", "--port", dev.port, "--store", store, "--json")
    assert p.returncode == 0 and notice not in p.stderr, p.stderr


def test_a_device_at_the_repl_is_woken_after_one_hello_not_three(
        dev: VirtualDevice, monkeypatch: pytest.MonkeyPatch) -> None:
    """The REPL answers the first HELLO line with its prompt: hello_waking probes and
    soft-resets then, instead of waiting out three tries of the link's timeout (9.4 s
    of an enroll after mpremote, 0.6 s now: tools/bench_wake.py)."""
    from hashtrail.device.link import REQ_HELLO, Link, open_serial

    mpremote(dev.port, "exec", "print(6*7)")  # leaves the device at the REPL
    steps: list[object] = []
    send, at_repl = Link.send, Link.at_repl

    def sent(self: Link, rid: int, cmd: int, args: bytes = b"") -> None:
        steps.append(cmd)
        send(self, rid, cmd, args)

    def probed(self: Link, listen: float = 1.5) -> bool:
        steps.append("probe")
        return at_repl(self, listen)

    monkeypatch.setattr(Link, "send", sent)
    monkeypatch.setattr(Link, "at_repl", probed)
    with open_serial(dev.port) as link:
        assert link.hello_waking(lambda line: None).device_id
    # then the wake: HELLOs every second until the application answers
    assert steps[:2] == [REQ_HELLO, "probe"], steps


def test_a_device_whose_main_returns_is_reported_with_what_it_printed(
        tmp_path: Path) -> None:
    """At the REPL because main.py cannot start: the soft reset brings the prompt back,
    and enroll says so at once with the device's own words, not a generic no-answer."""
    from hashtrail.device.imagefs import edit_image

    d = VirtualDevice(tmp_path, "broken")
    d.write_image()
    board = load_board("unix")

    def broken_main(fs: object) -> None:
        with fs.open("/main.py", "w") as f:  # type: ignore[attr-defined]
            f.write("print('hashtrail: cannot start: OSError: sensor missing')\n")

    edit_image(d.image_path, board.block_size, broken_main)
    with d:
        time.sleep(1.0)
        t0 = time.monotonic()
        p = hashtrail("enroll", "--port", d.port, "--store", str(tmp_path / "c.db"),
                      "--label", "b")
        secs = time.monotonic() - t0
    print(f"figures: enroll gave up after {secs:.1f} s:\n{p.stderr}")
    assert p.returncode == 1, p.stderr
    assert "was at the MicroPython REPL" in p.stderr, p.stderr
    err = [x for x in p.stderr.splitlines() if x.startswith("hashtrail: error:")]
    assert len(err) == 1 and "returned to the REPL" in err[0], p.stderr
    assert "cannot start: OSError: sensor missing" in err[0], p.stderr
    assert secs < 25, secs  # not the 30 s wait: the prompt came back


def test_a_vm_does_not_outlive_its_supervisor(tmp_path: Path) -> None:
    """A process that runs a virtual device and is killed (SIGKILL: no `finally`, no
    stop()) takes the device's VM with it (the ROM's lifeline terminal: its hangup sends
    SIGHUP). Before, the orphaned VM read end-of-file from its console pipe at every
    pass of the app's loop and spun at full CPU until someone killed it (a killed test
    worker or demo left such VMs behind)."""
    code = (
        "import sys, time\n"
        "from hashtrail.sim import VirtualDevice\n"
        "from hashtrail.sim.provision import wait_ready\n"
        f"v = VirtualDevice({str(tmp_path)!r}, 'orphan').start()\n"
        "wait_ready(v)\n"
        "print(v.pid, flush=True)\n"
        "time.sleep(600)\n")
    host = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    try:
        vm = int(host.stdout.readline() if host.stdout else "")
    finally:
        host.kill()
        host.wait()
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            state = stat_state(Path(f"/proc/{vm}/stat").read_text())
        except FileNotFoundError:
            return                                   # (gone, reaped)
        if state == "Z":
            return                                   # (ended, not reaped yet)
        time.sleep(0.1)
    os.kill(vm, signal.SIGKILL)
    pytest.fail(f"the VM (pid {vm}) still runs 10 s after its supervisor was killed")
