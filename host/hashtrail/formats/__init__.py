"""The bytes hashtrail speaks, one parser each: strict CBOR, device keys and ids,
log entries, flash records, COSE checkpoints, signed notes, ledger leaves.

Why a layer of its own: device tools, collector, ledger, tests and tools must all read
a format the same way, so each format is parsed in exactly one module here, which
imports nothing of hashtrail but errors.
"""
