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
import os
import sys
import time

from micropython import const

FW_VERSION = "0.1.0"
ROOT = "/ht"
_POLL_MS = const(50)  # longest console poll while idle: keeps request latency low
_WDT_MS = const(30000)


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
        import gc

        from hashtrail import boardcfg, drop

        cfg, layer = boardcfg.load(cfg_path)
        # The parsed board definition takes about 4 KB of heap and boardcfg 1.7 KB:
        # take what the app needs, build the sensors, then drop both before the log
        # and the link make their long-lived buffers.
        drop("boardcfg")
        # The layer is named at run time (board_esp32 / board_unix): a non-empty
        # fromlist makes __import__ return hashtrail.<layer> itself, not the package.
        board = __import__("hashtrail." + layer, None, None, (layer,))
        name = cfg["name"]
        self.cfg = {"name": name}
        self.clock = _IntClock(board.Clock())
        self.sensors = board.sensors(cfg)
        wdt_ms = int(cfg.get("watchdog_ms", _WDT_MS)) if cfg.get("watchdog") else 0
        self.interval = int(float(cfg.get("sample_interval_s", 10)) * 1000)
        chunk = int(cfg.get("link_chunk", 512))
        log_cfg = {"log": cfg.get("log")}
        body = int((log_cfg["log"] or {}).get("max_body", 1024))
        reset_cause = board.reset_cause()
        mqtt_cfg = cfg.get("mqtt")
        net = board.network(cfg) if mqtt_cfg else None
        cfg = boardcfg = None
        # MicroPython's GC never moves objects. Loading modules leaves many small holes
        # between the code it keeps, and so do the identity check's bigints and the
        # recovery scan, so near the budget a 1 KB buffer made after them finds no
        # room although the heap has 15 KB free. The long-lived buffers (the log's
        # entry and record buffers, the link's frame and line buffers) therefore get
        # one contiguous block, held while the modules load and released just before
        # they are made; the log makes them before its boot work (devlog.Log).
        gc.collect()
        try:
            room = bytearray(chunk + body * 3 + 1024)
        except MemoryError:
            room = None  # the block is a layout aid, not a need: boot without it
        # logboot (devlog.Log's boot-only half, dropped once the log is open) loads
        # here too, so its code is not placed where those buffers should go.
        from hashtrail import devlog, link, logboot

        room = logboot = None
        gc.collect()
        self.inp = inp if inp is not None else sys.stdin.buffer
        out = out if out is not None else sys.stdout.buffer
        self.link = link.Link(None, out, name, FW_VERSION, self.clock, chunk=chunk)
        self._one = bytearray(1)
        self.log = devlog.Log(root, name, FW_VERSION, self.clock, log_cfg,
                              reset_cause=reset_cause)
        self.link.log = self.log
        # A switched-in update waits behind the marker (its entry, then cleanup); an
        # update boot.py took back, behind update.reverted (its entry); a full-image
        # update, behind update.img (its entry and confirmation, or its roll-back's). The common
        # boot has neither and fwboot is not loaded at all (heap: with MQTT at the
        # 100 KB budget every loaded module counts, see below).
        pending = False
        for p in ("/update", "/update.reverted", "/update.img"):
            try:
                os.stat(root + p)
                pending = True
            except OSError:
                pass
        if pending:
            from hashtrail import fwboot

            fwboot.finish(self.log, root)
            drop("fwboot")
        self.mqtt = None
        if mqtt_cfg:
            # Loaded and made once the log has booted: the boot check's peak (bigints,
            # the recovery scan, boot-only modules, all dropped by now) does not have to
            # fit beside the MQTT client's ~9 KB (measured at 100 KB: boot fails with it
            # loaded first, the whole run passes with it loaded here). Its names must
            # fit the qstr pools made before the boot: a pool grown here is one block of
            # ~7 KB (unix port) in a fragmented heap (docs/MQTT.md "Heap").
            gc.collect()
            from hashtrail import mqttlink

            self.mqtt = mqttlink.MqttLink(name, FW_VERSION, self.clock, mqtt_cfg,
                                          chunk=chunk, net=net)
            self.mqtt.attach(self.log)
        net = mqtt_cfg = None
        # The watchdog starts once the log is open: a boot check of a long log can take
        # longer than its timeout.
        self.wdt = board.watchdog(wdt_ms) if wdt_ms else None
        board = None
        self.samples = 0

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
        # until it has as many bytes as asked for.
        ready = poller.poll(timeout_ms)
        if not ready:
            return
        if self.mqtt is not None:
            # The broker socket is polled too: read the console only when it is ready.
            for ev in ready:
                if ev[0] is self._src:
                    break
            else:
                return
        one = self._one
        inp = self.inp
        feed = self.link.feed_byte
        while True:
            if inp.readinto(one) != 1:
                return
            feed(one[0])
            if not poller.poll(0):
                return

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
