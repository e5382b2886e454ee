# app.py: the hashtrail device application; firmware/main.py only calls app.main().
# It lives in lib/hashtrail/ so it is loaded as compiled .mpy: a board compiles main.py
# from source at every boot, in the heap the application needs (about 5 KB for this file).
#
# What it does, in one cooperative loop (no threads, no asyncio):
#   - loads /board.json (boardcfg) and the board layer it names (board_esp32/board_unix)
#   - opens the identity and the log (devlog.Log): first boot makes the key
#   - takes a reading from every sensor every `sample_interval_s` seconds (board.json,
#     default 10 s) and appends it; devlog adds scheduled checkpoints itself
#   - serves the host protocol on the console (link.py, docs/PROTOCOL.md), polling
#     sys.stdin with short timeouts between samples
#   - when board.json names a broker ("mqtt": {"host", "port", ...}), serves the same
#     protocol over MQTT too (mqttlink.py, docs/MQTT.md), its socket polled with stdin;
#     the board layer joins the network first (board.network(cfg): Wi-Fi on an ESP32)
#   - feeds the hardware watchdog where the board has one
#
# The REPL stays reachable: Ctrl-C (0x03 on the console) raises KeyboardInterrupt
# wherever the loop is; it is never caught here (only `Exception` is), the log is
# closed in `finally`, and MicroPython drops to the REPL, so stock mpremote (Ctrl-C,
# then Ctrl-A for the raw REPL) works against a running device. Protocol requests are
# ASCII lines and never contain 0x03. micropython.kbd_intr() is left alone.
#
# Allocation per loop pass: poll() returns a small list; a sample allocates the
# readings (a few small tuples) and whatever devlog.reading() needs.
import sys
import time

from micropython import const

FW_VERSION = "0.1.0"
ROOT = "/ht"
_POLL_MS = const(50)  # longest console poll while idle: keeps request latency low


def _log_error(what, e):
    # Plain text on the console: the host ignores it, a human at the REPL sees it.
    print("hashtrail: %s: %s: %s" % (what, type(e).__name__, e))


class _IntClock:
    # The board-layer contract says now() is an int (Unix seconds) or None; the unix
    # port's time.time() is a float, so enforce the contract here, once, for every board.
    def __init__(self, clock):
        self._c = clock
        self.uptime_ms = clock.uptime_ms

    def now(self):
        t = self._c.now()
        return None if t is None else int(t)

    def set(self, t):
        prev = self._c.set(t)
        return None if prev is None else int(prev)


class App:
    def __init__(self, root=ROOT, cfg_path="/board.json", inp=None, out=None):
        # The boot (board definition, board layer, log, links) runs once: logboot.py,
        # boot-only, dropped again, so that code is not resident while the app runs.
        from hashtrail import drop, logboot

        try:
            logboot.start(self, root, cfg_path, inp, out)
        finally:
            logboot = None
            drop("logboot")

    def sample(self):
        readings = []
        for s in self.sensors:
            try:
                readings.append(s.read())
            except Exception as e:  # one broken sensor must not stop the others
                _log_error("sensor", e)
        if readings:
            self.log.reading(readings)
            self.samples += 1

    def _serve(self, poller, timeout_ms):
        # Read every byte already waiting, one at a time: a board's stdin read blocks
        # until it has as many bytes as asked for. So each byte is read only once the
        # poller said the console itself is ready: the broker socket is polled too, and
        # "something is ready" may be the socket alone; reading the empty console then
        # held the loop (no sampling, no MQTT) until the next byte came on the console.
        one = self._one
        inp = self.inp
        feed = self.link.feed_byte
        src = self._src
        while True:
            for ev in poller.poll(timeout_ms):
                if ev[0] is src:
                    break
            else:
                return
            if inp.readinto(one) != 1:
                return
            feed(one[0])
            timeout_ms = 0

    def run(self, poll_src=None, loops=-1):
        """The main loop. `loops` bounds the passes (tests); -1 runs until Ctrl-C."""
        import select

        poller = select.poll()
        self._src = poll_src if poll_src is not None else sys.stdin
        poller.register(self._src, select.POLLIN)
        msock = None  # the broker socket registered with the poller
        next_sample = time.ticks_ms()
        try:
            while loops != 0:
                if loops > 0:
                    loops -= 1
                if self.wdt is not None:
                    self.wdt.feed()
                now = time.ticks_ms()
                if time.ticks_diff(now, next_sample) >= 0:
                    try:
                        self.sample()
                    except Exception as e:
                        _log_error("sample", e)
                    next_sample = time.ticks_add(next_sample, self.interval)
                    if time.ticks_diff(now, next_sample) >= 0:
                        next_sample = time.ticks_add(now, self.interval)  # fell behind
                busy = False
                try:
                    busy = self.link.step()
                except Exception as e:
                    _log_error("link", e)
                    self.link._close_stream()
                if self.mqtt is not None:
                    try:
                        busy = self.mqtt.step() or busy
                        if not busy:
                            busy = self.mqtt.tick()  # a push of new entries when due
                    except Exception as e:
                        _log_error("mqtt", e)
                    s = self.mqtt.sock
                    if s is not msock:
                        if msock is not None:
                            try:
                                poller.unregister(msock)
                            except (OSError, ValueError, KeyError):
                                pass
                        if s is not None:
                            poller.register(s, select.POLLIN)
                        msock = s
                wait = 0 if busy else min(
                    _POLL_MS, max(0, time.ticks_diff(next_sample, time.ticks_ms())))
                self._serve(poller, wait)
                try:
                    self.log.tick()
                except Exception as e:
                    _log_error("log", e)
        finally:
            if self.mqtt is not None:
                self.mqtt.close()
            self.log.close()


def main():
    try:
        app = App()
    except Exception as e:
        # Stay at the REPL with a clear message instead of a reboot loop.
        _log_error("cannot start", e)
        sys.print_exception(e)
        return None
    print("hashtrail %s on %s: device %s, %d s interval" % (
        FW_VERSION, app.cfg["name"], app.log.device_id, app.interval // 1000))
    app.run()
    return app
