# The log's records on flash (docs/FORMATS.md "Records on flash"): the magic bytes, the
# flag, the header and the segment file names, defined once for the store (logstore.py),
# its boot-only recovery scan (logscan.py) and the boot check (bootcheck.py,
# bootfind.py). They all import this module and it imports none of them, so the store
# and its boot-only parts depend one way (logstore -> logscan -> logrec).
#
#   0 magic (0xA7 entry, 0xC7 checkpoint) | 1 flags (bit 0: 64-byte sig follows body)
#   2 seq u32 LE | 6 body length u16 LE | 8 body | [64 sig] | CRC-32 LE of all before
#
# API (logstore re-exports all of it: logstore.ENTRY, logstore.parse, ...)
#   ENTRY, CHECKPOINT   record magic bytes
#   FLAG_SIG            flags bit 0: a 64-byte signature follows the body
#   parse(rec) -> (magic, flags, seq, body_len): header fields of a bytes-like record
#   seg_name(seq) -> "NNNNNNNNNN.seg": the segment file whose first entry is seq
#
# The sizes (header 8, signature 64, CRC 4) are private const()s in each module that
# computes with them: private ones are folded into the bytecode, an imported name is a
# dictionary lookup at every use.
import struct

from micropython import const

ENTRY = const(0xA7)
CHECKPOINT = const(0xC7)
FLAG_SIG = const(1)


def parse(rec):
    """(magic, flags, seq, body_len) of a record held in a bytes-like object."""
    return rec[0], rec[1], struct.unpack_from("<I", rec, 2)[0], struct.unpack_from("<H", rec, 6)[0]


def seg_name(seq):
    return "%010d.seg" % seq
