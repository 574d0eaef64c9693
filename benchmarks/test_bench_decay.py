"""Decay workloads D1-D5 (engram/_cases.py): engram and its baselines timed
side by side in the same run, then each goal's ratio.

    python -m pytest benchmarks/test_bench_decay.py --benchmark-only -s

Every workload row is timed for engram and for each baseline it names
(NumPy's expression, the triad bandwidth probe moving the same bytes);
scaling goals also time engram on one thread.  Ratios use medians; each
engram row carries its goals' ratios in extra_info, and the last benchmark
prints every goal with its measured ratio and whether it is met.  Goals are
reported, not asserted: on a shared machine one run's ratio is noisy.
"""
from __future__ import annotations

import numpy as np
import pytest

import engram
from engram._kernels import load

KERNELS, WORKLOADS = load()
DECAY = [w for w in WORKLOADS.values() if w.kernel == "decay"]

_states: dict = {}
_medians: dict = {}


def _state(workload):
    if workload.id not in _states:
        _states[workload.id] = workload.setup(False)
    return _states[workload.id]


def _contenders(workload):
    names = ["engram"] + list(workload.baselines)
    if any(g.kind == "scaling" for g in workload.goals):
        names.append("engram-1-thread")
    return names


PARAMS = [(w.id, c) for w in DECAY for c in _contenders(w)]


@pytest.mark.parametrize("workload_id, contender", PARAMS, ids=[f"{w}-{c}" for w, c in PARAMS])
def test_decay(benchmark, workload_id, contender):
    workload = WORKLOADS[workload_id]
    state = _state(workload)
    if contender == "engram":
        c = workload.run(state)
    elif contender == "engram-1-thread":
        c = workload.run({**state, "threads": 1})
    else:
        try:
            c = workload.baselines[contender](state)
        except ImportError as exc:
            pytest.skip(f"{contender} not installed ({exc})")
    big = state["n"] >= 1_000_000
    benchmark.group = f"decay {workload_id}: {workload.title}"
    benchmark.extra_info["simd"] = engram.simd_info()["active"]
    slow = big or workload_id == "D1-kernel"  # D1-kernel: 100 kernel calls per call
    benchmark.pedantic(c.fn, args=c.args, kwargs=c.kwargs, rounds=15 if slow else 300,
                       iterations=1 if slow else 10, warmup_rounds=2)
    if benchmark.stats is not None:  # None under --benchmark-disable
        _medians[(workload_id, contender)] = benchmark.stats.stats.median
    if contender == "engram":
        for goal in workload.goals:
            measured = _goal_ratio(workload, goal)
            if measured is not None:
                benchmark.extra_info[f"{goal.kind} {goal.against}".strip()] = round(measured[0], 3)
    if (workload_id, contender) == PARAMS[-1]:
        print("\n" + _goal_table())


def _goal_ratio(workload, goal):
    """(measured value, met) of one goal from the medians of this run, or None."""
    own = _medians.get((workload.id, "engram"))
    if own is None:
        return None
    if goal.kind == "speedup":
        other = _medians.get((workload.id, goal.against))
        return None if other is None else (other / own, other / own >= goal.value)
    if goal.kind == "rate":
        rate = workload.elements(_state(workload)) / (own * 1e9)
        return rate, rate >= goal.value
    if goal.kind == "ratio_to":
        other = _medians.get((goal.against, "engram"))
        return None if other is None else (own / other, own / other <= goal.value)
    if goal.kind == "scaling":
        one = _medians.get((workload.id, "engram-1-thread"))
        return None if one is None else (one / own, one / own >= goal.value)
    return None


def _goal_table() -> str:
    """Every goal with the ratio measured in this run."""
    lines = [f"decay goals ({engram.simd_info()['active']}, medians of this run):"]
    for workload in DECAY:
        own = _medians.get((workload.id, "engram"))
        if own is not None:
            extra = ""
            if workload.bytes_moved is not None:
                extra = f", {workload.bytes_moved(_state(workload)) / own / 1e9:.1f} GB/s"
            lines.append(f"  {workload.id:13s} engram {own * 1e6:10.1f} us{extra}")
        for goal in workload.goals:
            measured = _goal_ratio(workload, goal)
            if measured is not None:
                value, met = measured
                lines.append(f"  {workload.id:13s} {goal.text:55s} measured {value:6.2f}  "
                             f"{'met' if met else 'NOT met'}")
    return "\n".join(lines)
