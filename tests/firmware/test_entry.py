# Device entries and chain vs entries built on the host with cbor2 (vectors_format.py).
import binascii

import dtest
import fmtvec
from hashtrail import cbor, chain, entry

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
    c = chain.Chain.genesis(pub)
    w = cbor.Writer(bytearray(1024))
    count = 0
    for vec in it:
        kind = vec["kind"]
        body = _readings(vec["body"]) if kind == entry.KIND_READING else fmtvec.untag(vec["body"])
        n = entry.encode(w, vec["seq"], fmtvec.opt_int(vec["t"]), int(vec["up"]), vec["boot"],
                         c.head, "0.1.0", kind, body)
        raw = memoryview(w.buf)[:n]
        dtest.eq(binascii.hexlify(raw).decode(), vec["e"], "seq %d" % vec["seq"])
        seq, prev = chain.fields(raw)
        dtest.eq(seq, vec["seq"])
        dtest.eq(bytes(prev), c.head)
        c.advance(raw)
        dtest.eq(c.head, entry.entry_hash(raw))
        count += 1
    dtest.eq(count, 60)


def test_chain_rejects_wrong_seq_and_prev():
    pub = b"\x04" + b"\x11" * 64
    c = chain.Chain.genesis(pub)
    w = cbor.Writer(bytearray(256))
    n = entry.encode(w, 0, None, 1, 1, c.head, "0.1.0", entry.KIND_KEY_CREATED,
                     entry.key_body(pub))
    first = bytes(w.buf[:n])
    n = entry.encode(w, 1, None, 2, 1, b"\x00" * 32, "0.1.0", entry.KIND_BOOT,
                     entry.boot_body("soft"))
    bad_prev = bytes(w.buf[:n])
    dtest.raises(chain.ChainError, c.advance, bad_prev)
    c.advance(first)
    dtest.eq(c.next_seq, 1)
    dtest.raises(chain.ChainError, c.advance, first)  # seq 0 again: replay
    dtest.raises(chain.ChainError, c.advance, bad_prev)
    # fields() reads the prefix up to prev: every cut inside it must be refused.
    prefix_end = first.find(entry.genesis_prev(pub)) + 32
    dtest.true(prefix_end > 32)
    for cut in range(prefix_end):
        dtest.raises(chain.ChainError, chain.fields, first[:cut])
    dtest.eq(chain.fields(first[:prefix_end])[0], 0)


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
