# Device entries and chain vs entries built on the host with cbor2 (vectors_format.py),
# and the device's link check (bootcheck.Walk) on entries made here.
import binascii

import dtest
import fmtvec
from hashtrail import cbor, entry

NEEDS = ("entry_vectors",)


def _readings(tagged):
    out = []
    for r in tagged["a"]:
        name, unit, value = r["a"]
        out.append((name["s"], None if unit is None else unit["s"], fmtvec.untag(value)))
    return out


def test_entries_match_host_and_chain():
    it = fmtvec.lines(dtest.data("entry_vectors.jsonl"))
    head = next(it)
    pub = binascii.unhexlify(head["pub"])
    dtest.eq(binascii.hexlify(entry.genesis_prev(pub)).decode(), head["genesis"])
    # The host's entries carry the host's chain: each device entry made with prev = the
    # device's hash of the one before must be byte-identical to it.
    head = entry.genesis_prev(pub)
    w = cbor.Writer(bytearray(1024))
    count = 0
    for vec in it:
        kind = vec["kind"]
        body = _readings(vec["body"]) if kind == entry.KIND_READING else fmtvec.untag(vec["body"])
        n = entry.encode(w, vec["seq"], fmtvec.opt_int(vec["t"]), int(vec["up"]), vec["boot"],
                         head, "0.1.0", kind, body)
        raw = memoryview(w.buf)[:n]
        dtest.eq(binascii.hexlify(raw).decode(), vec["e"], "seq %d" % vec["seq"])
        head = entry.entry_hash(raw)
        count += 1
    dtest.eq(count, 60)


def _record(seq, b):
    """A log record around entry bytes as the boot scan hands it over (logstore.py: the
    CRC is the scan's business, not the walk's)."""
    import struct

    from hashtrail import logstore

    return struct.pack("<BBIH", logstore.ENTRY, 0, seq, len(b)) + b + bytes(4)


def test_boot_walk_finds_a_wrong_prev_a_replay_and_an_unreadable_entry():
    from hashtrail import bootcheck

    pub = b"\x04" + b"\x11" * 64
    w = cbor.Writer(bytearray(256))
    n = entry.encode(w, 0, None, 1, 1, entry.genesis_prev(pub), "0.1.0",
                     entry.KIND_KEY_CREATED, entry.key_body(pub))
    first = bytes(w.buf[:n])
    n = entry.encode(w, 1, None, 2, 1, entry.entry_hash(first), "0.1.0", entry.KIND_BOOT,
                     entry.boot_body("soft"))
    second = bytes(w.buf[:n])
    n = entry.encode(w, 1, None, 2, 1, b"\x00" * 32, "0.1.0", entry.KIND_BOOT,
                     entry.boot_body("soft"))
    bad_prev = bytes(w.buf[:n])

    def broken(*recs):
        wk = bootcheck.Walk(True)
        for seq, b in recs:
            wk(_record(seq, b))
        return wk.broken

    dtest.eq(broken((0, first), (1, second)), None)
    dtest.eq(broken((0, first), (1, bad_prev)), 1)
    dtest.eq(broken((0, first), (1, second), (2, first)), 2)  # entry 0 again as seq 2
    # An entry cut anywhere inside its prefix (up to prev) is unreadable: a break there.
    prefix_end = second.find(entry.entry_hash(first)) + 32
    dtest.true(prefix_end > 32)
    for cut in range(1, prefix_end):
        dtest.eq(broken((0, first), (1, second[:cut])), 1, "cut %d" % cut)


def test_field_validation():
    w = cbor.Writer(bytearray(256))
    h = b"\x00" * 32
    dtest.raises(entry.EntryError, entry.encode, w, -1, None, 0, 0, h, "x", 0, [])
    dtest.raises(entry.EntryError, entry.encode, w, 0, None, 0, 0, h[:31], "x", 0, [])
    dtest.raises(entry.EntryError, entry.encode, w, 0, None, 0, 0, h, "x", 9, {})
    dtest.raises(entry.EntryError, entry.encode, w, 0, -5, 0, 0, h, "x", 0, [])
    dtest.raises(entry.EntryError, entry.encode, w, 0, None, 0, 0, h, "x", 0, [("t", "C", "hot")])
    dtest.raises(entry.EntryError, entry.genesis_prev, b"\x04" * 64)
    dtest.eq(entry.boot_body("nonsense"), {1: "unknown"})


def test_reading_entry_allocates_little():
    import gc
    import micropython

    w = cbor.Writer(bytearray(512))
    readings = [("temp", "Cel", 4.25), ("humidity", "%RH", 55.125), ("vbat", "V", 3.7)]
    h = b"\x00" * 32
    entry.encode(w, 1, 1700000000, 5, 1, h, "0.1.0", entry.KIND_READING, readings)
    gc.collect()
    before = gc.mem_alloc()
    gc.disable()
    for i in range(20):
        entry.encode(w, i, 1700000000 + i, 5 * i, 1, h, "0.1.0", entry.KIND_READING, readings)
    used = gc.mem_alloc() - before
    gc.enable()
    # Floats and ints allocate nothing; the 7 short text copies (3 names, 3 units, the
    # fw version) take 32 bytes each on the unix port, plus the VM's call frames
    # (measured: 320 bytes per entry; a float used to cost 64 to 128 bytes alone).
    dtest.true(used <= 20 * 12 * 32, "encode allocated %d bytes for 20 entries" % used)
    micropython.mem_current()
