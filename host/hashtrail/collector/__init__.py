"""The collector: collect a device's log over the link, verify it before acknowledging,
keep it in the collector's store, and export it as a bundle for the ledger.
"""
