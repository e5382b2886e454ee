"""One virtual device: the real firmware under the MicroPython unix port.

The device is a supervisor (this object, in the host process) around a child
process, the MicroPython VM running the ROM (`rom/rom.py`) over a littlefs image
file. The supervisor owns everything that must outlive the child, as the board's
hardware outlives its firmware:

- the flash: `image_path`, created on first start from `imagefs` (the same layout
  `hashtrail image` writes for a real board) and kept, so a restart is a reboot;
- the console: a pseudo-terminal whose slave path (`port`) is what users open with
  pyserial, mpremote or `hashtrail collect`; the supervisor keeps both ends open, so
  the path survives every reset, and relays bytes between the pty and the child's
  stdin/stdout pipes (also kept across resets, like the UART FIFO);
- Ctrl-C: byte 0x03 from the host becomes SIGINT to the child, but only while the
  child catches SIGINT (read from /proc/PID/status), i.e. while MicroPython's
  keyboard interrupt is enabled; otherwise 0x03 is passed on as a data byte. This is
  what the UART driver of a board does with `micropython.kbd_intr()`, and it
  interrupts main.py even inside time.sleep().

Output nobody reads is dropped once the pty's buffer is full, like a UART nobody
listens to. A soft reset (Ctrl-D) makes the ROM exit with a code the supervisor
answers by starting a fresh VM with reset cause "soft"; `power_cut()` is kill -9;
`restart()` is a hard reset (the EN button), and so is `machine.reset()` (the ROM exits
with EXIT_HARD). A Ctrl-C the unix port raised inside its garbage collector (a board
never does) ends the VM with EXIT_KBD_IN_GC: a fresh one starts at the REPL (at the raw
REPL's prompt after EXIT_KBD_IN_GC_RAW, when the raw REPL ran the code), counted in
`kbd_in_gc` (rom.py says why).
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import logging
import os
import select
import signal
import subprocess
import termios
import threading
import time
import tty
from pathlib import Path
from typing import Any

from hashtrail.device.boards import Board, load_board
from hashtrail.device.imagefs import BOARD_FILE, build_image, firmware_files
from hashtrail.errors import ConfigError, HashtrailError
from hashtrail.paths import venv_tool

log = logging.getLogger(__name__)

ROM_DIR = Path(__file__).resolve().parent / "rom"
EXIT_SOFT_FRIENDLY = 80  # must match rom/rom.py
EXIT_SOFT_RAW = 81
EXIT_HARD = 82  # machine.reset()
EXIT_KBD_IN_GC = 83  # a Ctrl-C the unix port raised inside its GC (rom.py): to the REPL
EXIT_KBD_IN_GC_RAW = 84  # the same in code the raw REPL ran: to the raw REPL's prompt
# The unix port exits if a second SIGINT arrives before it raised the first: two 0x03
# closer than this, to the same VM, count as one (as two taps on a board would).
_SIGINT_GUARD_S = 0.02
# The ROM lives in the VM's heap, where a board's ROM is C in flash: its code and
# objects are added to the board's heap budget so the firmware gets the budget. Measured
# with measure_rom_heap(): 10208 bytes in use before boot.py (576 of them the `machine`
# module with reset(), _vmachine.py; 256 the ROM's answers to a Ctrl-C the unix port
# raised inside its GC, at either REPL; 96 the lifeline, _open_console), of which 992
# are the littlefs mount a board's _boot.py also makes. tests/e2e/test_sim.py
# re-measures.
ROM_HEAP_OVERHEAD = 9216
# What the device printed since its last boot, kept by the supervisor (console()):
# pyserial drops whatever waits on the pty when a client opens it, so a traceback
# printed at boot is gone by the time a host asks why the device does not answer. The
# first and the last CONSOLE_KEEP bytes are kept: a device stuck at the REPL answers
# every request line with a SyntaxError, which would soon push the boot's own words
# out of a plain tail.
CONSOLE_KEEP = 2048
# Lines of text a VM that died on its own printed last, in the supervisor's warning: a
# traceback's innermost frames and its error.
_LAST_WORDS = 8


def _catches_sigint(pid: int) -> bool:
    """True when the process has a SIGINT handler installed (MicroPython kbd_intr on)."""
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("SigCgt:"):
                    return bool(int(line.split()[1], 16) & (1 << (signal.SIGINT - 1)))
    except OSError:
        return False
    return True  # no /proc (not Linux): assume interrupts are enabled


def stat_state(stat: str) -> str:
    """The state letter of a /proc/PID/stat line ("pid (comm) S ..."; the name may hold
    spaces and parentheses): R running, S sleeping, Z ended and not reaped yet."""
    return stat.rpartition(")")[2].split()[0] if ")" in stat else stat


class VirtualDevice:
    """A virtual board with a persistent flash image and a stable serial port."""

    def __init__(self, directory: Path | str, name: str, board: Board | str = "unix",
                 log: bool = False, config: dict[str, Any] | None = None,
                 files: dict[str, bytes] | None = None) -> None:
        self.board = load_board(board) if isinstance(board, str) else board
        if self.board.name != "unix":
            raise ConfigError(f"board {self.board.name!r} cannot run virtually",
                              hint="virtual devices use --board unix")
        self.name = name
        self.dir = Path(directory).resolve()  # the VM runs with cwd=self.dir
        self.image_path = self.dir / f"{name}.lfs"
        self.log = log
        # Keys added to the board definition the device reads (/board.json), e.g.
        # {"mqtt": {"host": "127.0.0.1", "port": 1883}}: written into a new image.
        self.config = dict(config or {})
        # Files put on its flash beside the firmware, by device path (e.g. the CA that
        # board.json's "mqtt": {"ca": "/ca.der"} names): written into a new image.
        self.files = dict(files or {})
        self._lock = threading.RLock()
        self._proc: subprocess.Popen[bytes] | None = None
        self._master = self._slave = -1
        self._life, self._life_path = -1, ""   # the VM's lifeline (_open_console)
        self._in_r = self._in_w = self._out_r = self._out_w = -1
        self._relay: threading.Thread | None = None
        self._running = False
        self._last_sigint = (0, 0.0)  # (pid, time) of the last SIGINT sent
        self.port = ""
        self.boots = 0
        self.kbd_in_gc = 0  # boots after a Ctrl-C the unix port took inside its GC
        self._cause = ""
        self._console = bytearray()  # since the last boot (CONSOLE_KEEP)
        self._console_cut = 0        # bytes dropped from its middle

    # -- lifecycle -------------------------------------------------------------
    def start(self) -> VirtualDevice:
        """Power on: create the flash image if it does not exist, then boot."""
        with self._lock:
            if self._running:
                return self
            self.dir.mkdir(parents=True, exist_ok=True)
            if not self.image_path.exists():
                self.write_image()
            if self._master < 0:
                self._open_console()
            self._running = True
            self._spawn("power_on", "friendly")
        return self

    def write_image(self) -> None:
        """(Re)flash: a fresh littlefs image with the current compiled firmware."""
        files = firmware_files(self.board)
        if self.config:
            files[BOARD_FILE] = json.dumps(
                {**json.loads(files[BOARD_FILE]), **self.config}).encode()
        files.update(self.files)
        data = build_image(files, self.board.vfs_size, self.board.block_size)
        tmp = self.image_path.with_suffix(".tmp")
        tmp.write_bytes(data)
        os.replace(tmp, self.image_path)

    def power_cut(self) -> None:
        """Kill -9 the VM: whatever littlefs had not committed is lost, as on a board."""
        with self._lock:
            self._running = False
            proc, self._proc = self._proc, None
        if proc is not None and proc.poll() is None:
            proc.kill()
            proc.wait()

    def restart(self, cause: str = "hard") -> None:
        """Hard reset (EN button): cut the VM and boot again with `cause`."""
        self.power_cut()
        with self._lock:
            self._running = True
            self._spawn(cause, "friendly")

    def stop(self) -> None:
        """Power off and release the console; the image stays for the next start()."""
        self.power_cut()
        with self._lock:
            for fd in (self._master, self._slave, self._in_r, self._in_w, self._out_r,
                       self._out_w, self._life):
                if fd >= 0:
                    with contextlib.suppress(OSError):
                        os.close(fd)
            self._master = self._slave = self._in_r = self._in_w = self._life = -1
            self._out_r = self._out_w = -1
        if self._relay is not None:
            self._relay.join(timeout=2)
            self._relay = None

    def console(self, n: int = 800) -> str:
        """What the device printed on its console since its last boot (whether or not a
        host read it), as text, after a line "[NAME: boot N (CAUSE)]" (the supervisor's);
        past `n` bytes, its first and last n/2 bytes: what to show when it does not
        answer (a "cannot start" and its traceback come first, the REPL last)."""
        data = bytes(self._console)
        cut = self._console_cut
        if len(data) > n:
            cut += len(data) - n
            data = data[:n // 2] + b"\n[... %d bytes ...]\n" % cut + data[len(data) - n // 2:]
        elif cut:
            data = data[:len(data) // 2] + b"\n[... %d bytes ...]\n" % cut \
                + data[len(data) // 2:]
        head = f"[{self.name}: boot {self.boots} ({self._cause})]\n"
        return head + data.decode("utf-8", "replace")

    @property
    def pid(self) -> int | None:
        proc = self._proc
        return proc.pid if proc is not None else None

    def vm_state(self) -> str:
        """One line on what the VM process is doing now, from /proc (Linux): its state,
        the kernel function it sleeps in and its system call with arguments. For a
        device that stopped answering but printed nothing: blocked in a read or a write
        (which descriptor), or running."""
        pid = self.pid
        if pid is None:
            return f"[{self.name}: no VM running]"
        proc = Path(f"/proc/{pid}")
        parts = [f"[{self.name}: VM pid {pid}"]
        for name in ("stat", "wchan", "syscall"):
            try:
                text = (proc / name).read_text().strip()
            except OSError as e:
                text = f"unreadable ({e.strerror})"
            if name == "stat":
                text = stat_state(text)
            parts.append(f"{name} {text}")
        return ", ".join(parts) + "]"

    @property
    def running(self) -> bool:
        proc = self._proc
        return self._running and proc is not None and proc.poll() is None

    def __enter__(self) -> VirtualDevice:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- internals -------------------------------------------------------------
    def _open_console(self) -> None:
        self._master, self._slave = os.openpty()
        # Raw, no echo: without a client the line discipline would otherwise echo the
        # device's output back to it as input.
        tty.setraw(self._slave, termios.TCSANOW)
        self.port = os.ttyname(self._slave)
        fl = fcntl.fcntl(self._master, fcntl.F_GETFL)
        fcntl.fcntl(self._master, fcntl.F_SETFL, fl | os.O_NONBLOCK)
        self._in_r, self._in_w = os.pipe()
        self._out_r, self._out_w = os.pipe()
        # The VM's lifeline: a terminal the ROM opens first, which becomes its
        # controlling one (rom.py); this process holds the other end. However this
        # process ends (SIGKILL, a crash, a killed test worker), the kernel closes that
        # end and hangs the terminal up, and the VM gets SIGHUP. Before, an orphaned VM
        # read end-of-file from its console pipe at every pass of the app's loop and
        # spun at full CPU until someone killed it.
        self._life, life = os.openpty()
        self._life_path = os.ttyname(life)
        os.close(life)
        self._relay = threading.Thread(target=self._relay_loop, name=f"vdev-{self.name}",
                                       daemon=True)
        self._relay.start()

    def _spawn(self, cause: str, mode: str) -> None:
        env = dict(os.environ, MICROPYPATH=str(ROM_DIR), HASHTRAIL_LIFELINE=self._life_path)
        cmd = [venv_tool("micropython"), "-X",
               f"heapsize={self.board.heap_budget + ROM_HEAP_OVERHEAD}",
               str(ROM_DIR / "rom.py"), str(self.image_path), str(self.board.block_size),
               self.name, cause, mode]
        self._proc = subprocess.Popen(cmd, stdin=self._in_r, stdout=self._out_w,
                                      stderr=self._out_w, env=env, cwd=str(self.dir),
                                      start_new_session=True)
        self.boots += 1
        self._cause = cause
        self._console = bytearray()
        self._console_cut = 0
        # --log asks for boots and resets (INFO); -v shows them anyway (DEBUG)
        (log.info if self.log else log.debug)(
            f"[{self.name}] boot {self.boots} ({cause}) pid {self._proc.pid}")
        threading.Thread(target=self._watch, args=(self._proc,), daemon=True).start()

    def _watch(self, proc: subprocess.Popen[bytes]) -> None:
        """Answer the ROM's soft-reset exit by booting again; a crash reboots too."""
        rc = proc.wait()
        with self._lock:
            if self._proc is not proc or not self._running:
                return  # power cut or stop(): stay off
            if rc in (EXIT_SOFT_FRIENDLY, EXIT_SOFT_RAW):
                self._spawn("soft", "raw" if rc == EXIT_SOFT_RAW else "friendly")
                return
            if rc in (EXIT_KBD_IN_GC, EXIT_KBD_IN_GC_RAW):
                # (where a board stops at the REPL after Ctrl-C: a fresh VM there, its
                # heap whole again; counted apart from the reboots the device chose)
                self.kbd_in_gc += 1
                log.info(f"[{self.name}] Ctrl-C landed inside the VM's GC: "
                         "restarted at the REPL")
                self._spawn("soft", "raw>" if rc == EXIT_KBD_IN_GC_RAW else "repl")
                return
            if rc == EXIT_HARD:  # machine.reset(): boot.py and main.py, like EN
                self._spawn("hard", "friendly")
                return
        # The VM died on its own (fatal error, killed): a board would reset.
        # (a warning, with the VM's last lines of text: a reboot nobody asked for is what
        # a soak or a test then reports, and the console is cleared by the next boot)
        last = text_lines(bytes(self._console).decode("ascii", "replace"))[-_LAST_WORDS:]
        log.warning(f"[{self.name}] VM exited with {rc}; rebooting"
                    + "".join(f"\n  {ln[:200]}" for ln in last))
        time.sleep(0.2)
        with self._lock:
            if self._proc is proc and self._running:
                self._spawn("unknown", "friendly")

    def _relay_loop(self) -> None:
        master, out_r = self._master, self._out_r
        while True:
            try:
                ready, _, _ = select.select([master, out_r], [], [], 0.5)
            except (OSError, ValueError):
                return
            if self._master < 0:
                return
            if out_r in ready:
                try:
                    data = os.read(out_r, 4096)
                except OSError:
                    return
                self._to_host(data)
            if master in ready:
                try:
                    data = os.read(master, 4096)
                except BlockingIOError:
                    continue
                except OSError as e:
                    if e.errno == errno.EIO:  # no client and nothing buffered
                        time.sleep(0.05)
                        continue
                    return
                self._to_device(data)

    def _to_host(self, data: bytes) -> None:
        c = self._console
        c += data
        if len(c) > 2 * CONSOLE_KEEP:
            self._console_cut += len(c) - 2 * CONSOLE_KEEP
            del c[CONSOLE_KEEP:len(c) - CONSOLE_KEEP]
        try:
            os.write(self._master, data)
        except BlockingIOError:
            pass  # nobody reads the port and its buffer is full: the bytes are lost
        except OSError:
            pass

    def _to_device(self, data: bytes) -> None:
        start = 0
        while True:
            i = data.find(b"\x03", start)
            chunk = data[start:] if i < 0 else data[start:i]
            if chunk:
                os.write(self._in_w, chunk)
            if i < 0:
                return
            proc = self._proc
            if proc is not None and proc.poll() is None and _catches_sigint(proc.pid):
                now = time.monotonic()
                last_pid, last_t = self._last_sigint
                if last_pid != proc.pid or now - last_t >= _SIGINT_GUARD_S:
                    self._last_sigint = (proc.pid, now)
                    with contextlib.suppress(ProcessLookupError):
                        os.kill(proc.pid, signal.SIGINT)
            else:
                os.write(self._in_w, b"\x03")
            start = i + 1


def text_lines(console: str) -> list[str]:
    """The console's lines of text, without the link's frames between them (binary):
    what a person reads of a device that stopped answering or died."""
    return [ln for ln in console.splitlines()
            if ln.strip() and sum(" " <= c <= "~" or c == "\t" for c in ln) >= 0.9 * len(ln)]


def measure_rom_heap(image: Path, block_size: int) -> int:
    """Bytes of VM heap the ROM holds just before it runs boot.py (image untouched)."""
    proc = subprocess.run(
        [venv_tool("micropython"), "-X", "heapsize=1M", str(ROM_DIR / "rom.py"), str(image),
         str(block_size), "measure", "power_on", "raw", "report-heap"],
        input=b"", capture_output=True, env=dict(os.environ, MICROPYPATH=str(ROM_DIR)),
        timeout=30)
    for line in proc.stdout.splitlines():
        if line.startswith(b"ROM heap in use: "):
            return int(line.split(b": ")[1])
    raise SimError(f"the ROM did not report its heap: {proc.stdout[-300:]!r}")


class SimError(HashtrailError):
    """A virtual device could not start or run."""

    hint = "check that the firmware compiles (python3 tools/build_mpy.py --board unix)"
