# The virtual board's ROM: what MicroPython's C startup code (ports/esp32/main.c and
# shared/runtime/pyexec.c) does on a real board, written in MicroPython for the unix
# port, which has no raw REPL of its own. It is not firmware: the firmware is read
# from the littlefs image, exactly as a board reads it from flash.
#
#   micropython -X heapsize=N rom.py IMAGE BLOCK_SIZE NAME RESET_CAUSE MODE
#
# 1. mounts IMAGE (a littlefs image file, the board's flash) with vfs.VfsLfs2 at /,
#    chdir("/"), sys.path = ["", ".frozen", "/lib"] like the ESP32 port;
# 2. runs boot.py, then main.py when MODE is "friendly" (a soft reset from the raw
#    REPL skips main.py, which is how mpremote stops it, as on a board);
# 3. serves the friendly REPL or the raw REPL (Ctrl-A, Ctrl-B, Ctrl-C, Ctrl-D, and
#    raw-paste mode "\x05A\x01" with flow control) on stdin/stdout;
# 4. a soft reset (Ctrl-D at an empty prompt, sys.exit() in main.py or in the raw
#    REPL) prints "MPY: soft reboot" and exits with EXIT_SOFT_FRIENDLY/EXIT_SOFT_RAW:
#    the supervisor starts a fresh process, a fresh heap, like the real soft reset;
# 5. machine.reset() (the `machine` module is _vmachine.py: the unix port's plus reset)
#    ends the VM with EXIT_HARD, no soft reboot: the supervisor boots a fresh one with
#    reset cause "hard", boot.py and main.py, as a board's hard reset does.
#
# Ctrl-C: the supervisor turns byte 0x03 into SIGINT only while this process catches
# SIGINT, i.e. while micropython.kbd_intr(3) is in force (code is running). The ROM
# disables it while it reads the console itself, so the REPLs see 0x03 as a byte, and
# firmware that calls micropython.kbd_intr(-1) receives 0x03 as data, as on a board.
# Where the unix port differs from a board: it raises KeyboardInterrupt from inside the
# signal handler (asynchronously), so a Ctrl-C can land inside the garbage collector
# and leave its heap locked (and its mark bits half set: collecting again cannot be
# trusted). A board raises it between bytecodes, never there. When the code's
# KeyboardInterrupt comes with the heap locked, the ROM prints it and a line saying
# so, and exits with EXIT_KBD_IN_GC: the supervisor starts a fresh VM at the friendly
# REPL (boot.py, not main.py), where a board would have stopped after Ctrl-C; code the
# raw REPL ran ends as there (0x04, the error, 0x04) and EXIT_KBD_IN_GC_RAW (84) brings a
# fresh VM back to the raw REPL's prompt, as a board's raw REPL goes on. Before,
# the REPL's first allocation failed ("heap is locked"), the VM died, and the board
# came back running main.py: a reboot nobody asked for (tools/soak.py under load).
import sys
import os
import gc
import vfs
import micropython

import _vboard
import _vmachine

sys.modules["machine"] = _vmachine

EXIT_SOFT_FRIENDLY = 80
EXIT_SOFT_RAW = 81
EXIT_HARD = 82
# EXIT_KBD_IN_GC = 83, a literal where it is used: each global and constant here is
# heap the firmware would lose (ROM_HEAP_OVERHEAD, test_rom_heap_overhead_is_what_the_vm_adds)
_WINDOW = 256  # raw-paste flow-control window (MICROPY_REPL_STDIN_BUFFER_MAX)
_FORCED_EXIT = 1
_ok = 2


class Flash:
    """The board's flash partition: block device over the image file."""

    def __init__(self, path, block_size):
        self.f = open(path, "r+b")
        self.bs = block_size
        self.f.seek(0, 2)
        self.n = self.f.tell() // block_size

    def readblocks(self, block, buf, off=0):
        self.f.seek(block * self.bs + off)
        self.f.readinto(buf)

    def writeblocks(self, block, buf, off=0):
        self.f.seek(block * self.bs + off)
        self.f.write(buf)

    def ioctl(self, op, arg):
        if op == 4:
            return self.n
        if op == 5:
            return self.bs
        return 0


_in = sys.stdin.buffer
_out = sys.stdout.buffer


def out(s):
    _out.write(s)


def getc():
    b = _in.read(1)
    if not b:
        sys.exit(0)  # the supervisor closed the console: power off
    return b[0]


def banner():
    v = sys.implementation.version
    tag = ("-" + v[3]) if len(v) > 3 and v[3] else ""
    out(b"MicroPython v%d.%d.%d%s on hashtrail virtual board; unix port with littlefs\r\n"
        b"Type \"help()\" for more information.\r\n" % (v[0], v[1], v[2], tag))


def execute(src, name, g, mode, print_eof, ack=b""):
    """Compile and run like pyexec's parse_compile_execute; returns _ok, 0 or _FORCED_EXIT.

    `ack` (raw REPL "OK", raw-paste end "\x04") is written only once Ctrl-C is armed:
    a host that sends 0x03 right after the acknowledgement must interrupt the code.
    """
    ret = _ok
    try:
        micropython.kbd_intr(3)
        if ack:
            out(ack)
        code = compile(src, name, mode)
        src = None
        exec(code, g)
        micropython.kbd_intr(-1)
        if print_eof:
            out(b"\x04")
    except BaseException as e:
        micropython.kbd_intr(-1)
        if isinstance(e, KeyboardInterrupt):
            try:
                bytearray(1)
            except MemoryError:  # (no allocation before this: the heap may be locked)
                if print_eof:  # (raw REPL: the error between the output's 0x04s)
                    _out.write(b"\x04")
                sys.print_exception(e, sys.stdout)
                _out.write(b"[virtual board: Ctrl-C inside the GC: to the REPL]\r\n")
                if print_eof:
                    _out.write(b"\x04")
                sys.exit(84 if print_eof else 83)  # EXIT_KBD_IN_GC(_RAW)
        if print_eof:
            out(b"\x04")
        if isinstance(e, SystemExit):
            ret = _FORCED_EXIT  # sys.exit() or machine.reset() (_vboard.hard_reset)
        else:
            sys.print_exception(e, sys.stdout)
            ret = 0
    if print_eof:
        out(b"\x04")
    return ret


def run_file(path, g):
    try:
        with open(path) as f:
            src = f.read()
    except OSError:
        return _ok  # pyexec_file_if_exists: a missing file counts as success
    gc.collect()
    return execute(src, path, g, "exec", False)


def raw_paste(g):
    out(b"R\x01" + bytes((_WINDOW & 0xFF, _WINDOW >> 8)))
    buf = bytearray()
    remain = _WINDOW
    while True:
        c = getc()
        if c == 3 or c == 4:
            if c == 3:
                out(b"\x04\x04")
                sys.print_exception(KeyboardInterrupt(), sys.stdout)
                out(b"\x04")
                return _ok
            break
        buf.append(c)
        remain -= 1
        if remain == 0:
            out(b"\x01")
            remain = _WINDOW
    return execute(bytes(buf), "<stdin>", g, "exec", True, b"\x04")


def raw_repl(g, banner):
    """pyexec_raw_repl: returns "friendly" for Ctrl-B or "soft" for a soft reset."""
    if banner:
        out(b"raw REPL; CTRL-B to exit\r\n")
    line = bytearray()
    out(b">")
    while True:
        c = getc()
        if c == 1:  # Ctrl-A: raw-paste request when preceded by Ctrl-E + command byte
            if len(line) == 2 and line[0] == 5:
                if line[1] != 65:  # "A"
                    out(b"R\x00")
                    line = bytearray()
                    continue
                if raw_paste(g) == _FORCED_EXIT:
                    return "soft"
                line = bytearray()
                out(b">")
                continue
            out(b"\r\nraw REPL; CTRL-B to exit\r\n>")
            line = bytearray()
        elif c == 2:
            out(b"\r\n")
            return "friendly"
        elif c == 3:
            line = bytearray()
        elif c == 4:
            if not line:
                out(b"OK\r\n")
                return "soft"
            src = bytes(line)
            line = bytearray()
            if execute(src, "<stdin>", g, "exec", True, b"OK") == _FORCED_EXIT:
                return "soft"
            out(b">")
        else:
            line.append(c)


def _readline(prompt):
    """A small readline: echo, backspace, escape sequences ignored; returns bytes or a
    control code (1, 2, 3, 4 on an empty line, 5)."""
    out(prompt)
    line = bytearray()
    while True:
        c = getc()
        if c in (1, 2, 5) and not line:
            return c
        if c == 3:
            return 3
        if c == 4:
            if not line:
                return 4
            continue
        if c == 13 or c == 10:
            out(b"\r\n")
            return bytes(line)
        if c == 8 or c == 127:
            if line:
                line.pop()
                out(b"\x08 \x08")
        elif c == 27:
            getc()
            while getc() in b"0123456789;":
                pass
        elif c >= 32:
            line.append(c)
            out(bytes((c,)))


def friendly_repl(g):
    """pyexec_friendly_repl: returns "raw" for Ctrl-A or "soft" for a soft reset."""
    banner()
    while True:
        r = _readline(b">>> ")
        if r == 1:
            out(b"\r\n")
            return "raw"
        if r == 2:
            out(b"\r\n")
            banner()
            continue
        if r == 3:
            out(b"\r\n")
            continue
        if r == 4:
            out(b"\r\n")
            return "soft"
        if r == 5:
            out(b"\r\npaste mode; Ctrl-C to cancel, Ctrl-D to finish\r\n=== ")
            buf = bytearray()
            while True:
                c = getc()
                if c == 3:
                    buf = None
                    out(b"\r\n")
                    break
                if c == 4:
                    out(b"\r\n")
                    break
                buf.append(c)
                out(b"\r\n=== " if c == 13 else bytes((c,)))
            if buf and execute(bytes(buf), "<stdin>", g, "exec", False) == _FORCED_EXIT:
                return "soft"
            continue
        if not r:
            continue
        src = r
        if r.rstrip().endswith(b":"):
            while True:
                more = _readline(b"... ")
                if not isinstance(more, bytes):
                    src = None
                    out(b"\r\n")
                    break
                if not more:
                    break
                src += b"\n" + more
        if src is not None and execute(src, "<stdin>", g, "single", False) == _FORCED_EXIT:
            return "soft"


def main():
    micropython.kbd_intr(-1)
    image, bs, name, cause, mode = sys.argv[1:6]
    # The supervisor's lifeline (HASHTRAIL_LIFELINE, sim/device.py): opened first, as
    # this process leads a session of its own, the terminal becomes its controlling one
    # (closing it keeps that), so the supervisor's death hangs it up: SIGHUP ends the VM.
    life = os.getenv("HASHTRAIL_LIFELINE")
    if life:
        try:
            open(life, "rb").close()
        except OSError:
            pass
    _vboard.name = name
    _vboard.reset_cause = cause
    _vboard.report_heap = len(sys.argv) > 6 and sys.argv[6] == "report-heap"
    flash = Flash(image, int(bs))
    try:
        vfs.mount(vfs.VfsLfs2(flash), "/")
    except OSError:
        # What the ESP32 port's _boot.py does with a filesystem it cannot mount.
        out(b"Performing initial setup\r\n")
        vfs.VfsLfs2.mkfs(flash)
        vfs.mount(vfs.VfsLfs2(flash), "/")
    os.chdir("/")
    sys.path[:] = ["", ".frozen", "/lib"]
    g = {"__name__": "__main__"}
    gc.collect()
    if _vboard.report_heap:
        out(b"ROM heap in use: %d\r\n" % gc.mem_alloc())
    ret = run_file("boot.py", g)
    # (mode "repl": after a Ctrl-C the unix port took inside its GC, EXIT_KBD_IN_GC)
    if ret != _FORCED_EXIT and mode == "friendly" and ret:
        ret = run_file("main.py", g)
    # (mode "raw>": after such a Ctrl-C in code the raw REPL ran, EXIT_KBD_IN_GC_RAW:
    # its prompt again, without the banner, as a board's raw REPL goes on)
    banner = mode != "raw>"
    if not banner:
        mode = "raw"
    while ret != _FORCED_EXIT:
        if mode == "raw":
            nxt = raw_repl(g, banner)
            banner = True
        else:
            nxt = friendly_repl(g)
        if nxt == "soft":
            break
        mode = nxt
    if _vboard.hard_reset:
        return EXIT_HARD  # no finalisers, no soft reboot: the chip resets
    out(b"MPY: soft reboot\r\n")
    # Close what the firmware left open (a soft reset runs every finaliser) so the
    # littlefs image holds everything written, then let the supervisor restart us.
    g.clear()
    gc.collect()
    return EXIT_SOFT_RAW if mode == "raw" else EXIT_SOFT_FRIENDLY


sys.exit(main())
