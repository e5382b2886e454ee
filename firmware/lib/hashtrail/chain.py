# The hash chain (docs/FORMATS.md "Entry"): the device's running (next seq, head).
#
# API
#   Chain(next_seq, head)      state after the entry next_seq - 1 whose hash is head
#   Chain.genesis(pub)         a fresh chain: next_seq 0, head = entry.genesis_prev(pub)
#   c.advance(b) -> head       accept entry bytes b as the next entry: checks that b
#                              carries seq == c.next_seq and prev == c.head (raises
#                              ChainError otherwise), then head = SHA-256(b), next_seq+1
#   fields(b) -> (seq, prev)   seq and the memoryview of prev from entry bytes, by
#                              reading the canonical map prefix (keys 0..5 in order)
#   check_link(b, seq, prev)   raise ChainError unless b has that seq and that prev
#   ChainError (ValueError)
#
# Used by the log store on boot to re-walk the tail of the log, and by the writer after
# every append. Allocation: fields() allocates one memoryview and small ints; advance()
# allocates a sha256 object and the 32-byte head.
import hashlib

from hashtrail import entry

_err_bad = "entry bytes are not a canonical version-1 entry"


class ChainError(ValueError):
    pass


def _head(mv, i):
    """(major, value, next offset) of the CBOR item head at mv[i]."""
    if i >= len(mv):
        raise ChainError(_err_bad)
    ib = mv[i]
    major = ib >> 5
    ai = ib & 31
    if ai < 24:
        return major, ai, i + 1
    if ai == 24:
        n = 1
    elif ai == 25:
        n = 2
    elif ai == 26:
        n = 4
    elif ai == 27:
        n = 8
    else:
        return major, -1, i + 1  # simple values (null) and indefinite: caller decides
    if i + 1 + n > len(mv):
        raise ChainError(_err_bad)
    v = 0
    for k in range(i + 1, i + 1 + n):
        v = (v << 8) | mv[k]
    return major, v, i + 1 + n


def _uint_field(mv, i, key):
    major, v, i = _head(mv, i)
    if major != 0 or v != key:
        raise ChainError(_err_bad)
    major, v, i = _head(mv, i)
    if major != 0:
        raise ChainError(_err_bad)
    return v, i


def fields(b):
    mv = memoryview(b)
    major, v, i = _head(mv, 0)
    if major != 5 or v != 9:
        raise ChainError(_err_bad)
    ver, i = _uint_field(mv, i, 0)
    if ver != entry.VERSION:
        raise ChainError("unsupported entry version")
    seq, i = _uint_field(mv, i, 1)
    major, v, i = _head(mv, i)  # key 2: t, uint or null
    if major != 0 or v != 2:
        raise ChainError(_err_bad)
    if i < len(mv) and mv[i] == 0xF6:
        i += 1
    else:
        major, v, i = _head(mv, i)
        if major != 0:
            raise ChainError(_err_bad)
    _, i = _uint_field(mv, i, 3)
    _, i = _uint_field(mv, i, 4)
    major, v, i = _head(mv, i)
    if major != 0 or v != 5:
        raise ChainError(_err_bad)
    major, v, i = _head(mv, i)
    if major != 2 or v != 32 or i + 32 > len(mv):
        raise ChainError(_err_bad)
    return seq, mv[i:i + 32]


def check_link(b, seq, prev):
    s, p = fields(b)
    if s != seq:
        raise ChainError("entry seq %d where %d was expected" % (s, seq))
    if bytes(p) != bytes(prev):  # MicroPython memoryviews do not compare by value
        raise ChainError("entry %d does not link to the previous entry's hash" % s)


class Chain:
    def __init__(self, next_seq, head):
        if len(head) != 32:
            raise ChainError("head must be 32 bytes")
        self.next_seq = next_seq
        self.head = bytes(head)

    @classmethod
    def genesis(cls, pub):
        return cls(0, entry.genesis_prev(pub))

    def advance(self, b):
        check_link(b, self.next_seq, self.head)
        self.head = hashlib.sha256(b).digest()
        self.next_seq += 1
        return self.head
