# Wall clock and uptime shared by the board layers (board_esp32, board_unix).
#
# A board cannot know the time before a host tells it: after power-on the ESP32's RTC
# reads 2000-01-01 and the unix port's time.time() is the host's, not the device's. So
# now() is None until set() is called in this boot (tracked in RAM), and entries made
# before that carry the "time unknown" marker. Uptime accumulates ticks_diff so it does
# not wrap with ticks_ms (call uptime_ms at least every few days; the main loop does).
# Allocation: none beyond the ints the calls return.
import time


class Clock:
    def __init__(self):
        self._offset = None  # Unix seconds minus time.time(), once set
        self._last = time.ticks_ms()
        self._up = 0

    def uptime_ms(self):
        now = time.ticks_ms()
        self._up += time.ticks_diff(now, self._last)
        self._last = now
        return self._up

    def now(self):
        if self._offset is None:
            return None
        return time.time() + self._offset

    def set(self, t):
        """Set the wall clock to Unix time t; returns the previous time (or None)."""
        t = int(t)
        if t < 0:
            raise ValueError("time before 1970")
        prev = self.now()
        self._set_hw(t)
        self._offset = t - time.time()
        return prev

    def _set_hw(self, t):
        """A board with a hardware RTC keeps it in step here; the base keeps RAM time only."""
