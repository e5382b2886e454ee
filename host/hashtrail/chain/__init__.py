"""The rules of one device's hash chain: what makes a chain of entries valid, how a
device checkpoint is checked, and the fork evidence that proves two signed histories
conflict.

Why: the collector (before it acknowledges) and the ledger (before it admits) apply the
same rules; they live here, below both.
"""
