# Facts the virtual board's ROM (rom.py) publishes for board_unix.py: the reset cause
# of this boot and the device's name. Stays loaded for the whole life of the process.
reset_cause = "power_on"
name = "unix"
report_heap = False  # set by the supervisor's heap measurement
hard_reset = False  # set by machine.reset() (_vmachine.py): end the VM, boot afresh
