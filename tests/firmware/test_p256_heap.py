# p256's memory budget on the device: module resident in at most 24 KB of heap when
# loaded from .mpy (under 10 KB now that the comb table is read from p256_table.bin),
# and sign/verify working inside the esp32 budget.
import gc

import dtest

BOARD = "esp32"
RESIDENT_BUDGET = 24 * 1024


def test_resident_heap_of_module_and_table():
    gc.collect()
    before = gc.mem_alloc()
    from hashtrail import p256

    gc.collect()
    resident = gc.mem_alloc() - before
    print("p256 resident heap: %d bytes (%s)" % (resident, p256.__file__))
    if p256.__file__.endswith(".mpy"):
        dtest.true(resident <= RESIDENT_BUDGET,
                   "p256 + table resident %d > %d" % (resident, RESIDENT_BUDGET))
        # The firmware ships p256_table.bin next to p256.mpy: the table stays on flash.
        dtest.true(p256._TABLE_FILE is not None, "comb table read from the .bin file")
        dtest.true(resident <= 10 * 1024, "p256 without its table resident %d" % resident)
    if p256._TABLE_FILE is None:
        dtest.eq(len(p256.COMB), 255 * 64, "comb table size")


def test_table_file_matches_the_constant_module():
    # Frozen builds use p256_table.COMB, .mpy builds the file: both must be the table.
    from hashtrail import p256

    dtest.true(p256._TABLE_FILE is not None)
    with open(p256._TABLE_FILE, "rb") as f:
        raw = f.read()
    from hashtrail.p256_table import COMB

    dtest.eq(len(raw), 255 * 64)
    dtest.true(raw == COMB, "p256_table.bin differs from p256_table.COMB")


def test_sign_and_verify_in_board_heap_with_ballast():
    # Fill the heap so only ~20 KB are left beyond the resident module, as on a
    # device whose log store and link buffers are loaded: sign/verify must still run.
    import hashlib

    from hashtrail import p256

    gc.collect()
    ballast = []
    while gc.mem_free() > 20 * 1024 + 4096:
        ballast.append(bytearray(4096))
    gc.collect()
    d = 0x1234567890ABCDEF << 100
    pub = p256.public_key(d)
    for i in range(5):
        h = hashlib.sha256(b"%d" % i).digest()
        sig = p256.sign(d, h)
        dtest.true(p256.verify(pub, h, sig))
    print("free heap during the run: ~%d bytes" % gc.mem_free())
    dtest.true(len(ballast) > 5)
