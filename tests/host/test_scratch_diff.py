import os
from pathlib import Path
import pytest
import hashtrail.ledger.reconcile as rec
import test_reconcile_spill as s

GEN = {"case": s._random_case, "report": s._random_report_case, "fork": s._random_fork_at_hole_case}

@pytest.mark.parametrize("seed", [int(x) for x in os.environ.get("SEEDS", "303").split(",")])
def test_diff(seed, tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setattr(rec, "CHUNK", int(os.environ.get("CH", "37")))
    sp, wh = s._both(tmp_path, monkeypatch, GEN[os.environ.get("GEN", "report")](seed))
    a, b = s._without_duplicates(sp), s._without_duplicates(wh)
    for i, (x, y) in enumerate(zip(a[0], b[0])):
        if x != y:
            print("run", i)
            print("  spilled:", x)
            print("  whole:  ", y)
    print("state equal:", a[1] == b[1])
