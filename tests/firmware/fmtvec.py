# Device-side reader of the tagged JSON values written by vectors_format.py.
import binascii
import json
import struct


def untag(v):
    if v is None or v is True or v is False:
        return v
    if "i" in v:
        return int(v["i"])
    if "f" in v:
        return struct.unpack(">d", binascii.unhexlify(v["f"]))[0]
    if "b" in v:
        return binascii.unhexlify(v["b"])
    if "s" in v:
        return v["s"]
    if "a" in v:
        return [untag(x) for x in v["a"]]
    if "m" in v:
        d = {}
        for k, x in v["m"]:
            d[untag(k)] = untag(x)
        return d
    raise ValueError("bad tagged value")


def opt_int(s):
    return None if s is None else int(s)


def lines(path):
    with open(path) as f:
        for line in f:
            if line.strip():
                yield json.loads(line)
