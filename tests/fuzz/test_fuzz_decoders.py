"""Every host decoder fuzzed from real device output (properties in fuzzprops.py).

Bounded for the suite (EXAMPLES per target, about a minute in all); tools/fuzz.py runs
the very same targets for as long as asked. A failure prints the falsifying input.
"""

from __future__ import annotations

from typing import Any

import pytest
from fuzzprops import TARGETS
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

# Per-target example counts: the costlier targets (a SQLite ledger, the CLI, a whole
# chain walk) get fewer, so the suite stays near a minute.
EXAMPLES = {"bundle": 60, "proof-file": 150, "segment": 250, "collect-verify": 200,
            "checkpoint": 300, "evidence": 300}
DEFAULT = 400

SETTINGS = settings(deadline=None, database=None,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                                           HealthCheck.filter_too_much])


@pytest.mark.parametrize("name", sorted(TARGETS))
def test_fuzz(name: str) -> None:
    strategy, prop = TARGETS[name]

    @settings(SETTINGS, max_examples=EXAMPLES.get(name, DEFAULT))
    @given(st.data())
    def run(data: Any) -> None:
        prop(data.draw(strategy()))

    run()
