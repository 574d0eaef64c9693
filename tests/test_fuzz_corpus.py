"""The fuzz target (tools/fuzz.py) in the test run: every saved spec replayed, and a short run.

tests/fuzz_corpus/ keeps the specs of defects the fuzzer (or a review) found:
each still has to keep the contract (no crash, only TypeError / ValueError /
MemoryError, arguments untouched after an error, results equal to the
reference), and where the entry names the outcome it ended with once fixed
(``expect``), that outcome.  The long run is ``python tools/fuzz.py --seconds 600``
(add ``--sanitized`` for ASan+UBSan); here a few hundred specs from a fixed
seed check that the target itself still builds and runs every kind of call.
"""
from __future__ import annotations

import json
import os
import sys

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(os.path.dirname(HERE), "tools"))

import fuzz  # noqa: E402

CORPUS = os.path.join(HERE, "fuzz_corpus")
ENTRIES = sorted(f for f in os.listdir(CORPUS) if f.endswith(".json"))


def test_corpus_is_not_empty():
    assert ENTRIES, f"no specs in {CORPUS}"


@pytest.mark.parametrize("name", ENTRIES)
def test_saved_spec_keeps_the_contract(name, c_backend):
    with open(os.path.join(CORPUS, name)) as f:
        entry = json.load(f)
    outcome = fuzz.check(entry["spec"])
    if "expect" in entry:
        assert outcome == entry["expect"], f"{name}: {entry['message']}"


def test_short_fuzz_run(c_backend):
    """300 generated specs over every function: none breaks the contract, and they reach
    successes and each kind of refusal (a target that only ever errors tests nothing)."""
    from hypothesis import HealthCheck, Phase, given, seed, settings

    outcomes: dict = {}

    @seed(20261126)
    @settings(max_examples=300, deadline=None, database=None, suppress_health_check=list(HealthCheck),
              phases=[Phase.generate])
    @given(fuzz._strategies())
    def run(spec):
        outcome = fuzz.check(spec)
        outcomes[outcome] = outcomes.get(outcome, 0) + 1

    run()
    assert sum(outcomes.values()) == 300
    assert {"ok", "TypeError", "ValueError"} <= set(outcomes), outcomes
