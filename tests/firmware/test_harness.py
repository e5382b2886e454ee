# Device tests that check the harness itself: the VM, the heap budget and .mpy loading.
import dtest


def test_heap_budget_is_enforced():
    import gc
    import micropython

    gc.collect()
    total = micropython.mem_total() if hasattr(micropython, "mem_total") else None
    # A 200 KB allocation cannot fit in a 100 KB board budget.
    dtest.raises(MemoryError, bytearray, 200 * 1024)
    dtest.true(gc.mem_free() + gc.mem_alloc() <= 102400, "heap larger than the board budget")
    dtest.true(total is None or total >= 0)


def test_firmware_loads_from_mpy_or_source():
    from hashtrail import p256

    f = getattr(p256, "__file__", "")
    dtest.true(f.endswith(".mpy") or f.endswith(".py"), f)
