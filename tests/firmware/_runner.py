# Device-side test runner, executed by the real `micropython` binary.
#
#   micropython -X heapsize=N _runner.py MODULE FUNC DATA_DIR
#
# Imports MODULE (a tests/firmware/test_*.py compiled or not), calls FUNC with no
# arguments, and reports on stdout. A failure prints the device traceback and exits 1
# so the pytest wrapper can show it. The last line is always a machine-readable status
# with the heap high-water mark seen by the VM.
import sys
import gc
import micropython

import dtest

dtest.DATA_DIR = sys.argv[3]
modname = sys.argv[1]
funcname = sys.argv[2]
status = 0
try:
    mod = __import__(modname)
    gc.collect()
    getattr(mod, funcname)()
except BaseException as e:  # noqa: report everything the device raised
    sys.print_exception(e)
    status = 1
gc.collect()
print("@@DTEST status=%d mem_peak=%d mem_current=%d" % (
    status, micropython.mem_peak(), micropython.mem_current()))
sys.exit(status)
