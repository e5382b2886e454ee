"""The shared, append-only ledger: its storage, the Merkle log, reconciling bundles from
many collectors, verifying the whole ledger, inclusion proofs, the ledger's signing key.
"""
