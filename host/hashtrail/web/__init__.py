"""The read-only fleet view in the browser, served beside the tlog-tiles (`hashtrail
serve`): data from the ledger (`data.py`), routes and headers (`app.py`), pages and their
scripts (`static/`, with uPlot vendored under `static/vendor/`)."""
