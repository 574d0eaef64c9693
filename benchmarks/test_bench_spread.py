"""Spreading-activation workloads S1-S4 (engram/_cases.py) against their baselines.

Every contender of a workload is timed in the same pytest run with
``benchmark.pedantic`` (>= 10 rounds); the ratios the goals speak of are
printed at the end of the module and stored in each benchmark's extra_info.
A baseline whose package is missing is skipped as "not installed".

    pytest benchmarks/test_bench_spread.py --benchmark-only
    ENGRAM_BENCH_QUICK=1 ...   # S2-S4 on graphs a tenth the size
"""
from __future__ import annotations

import os

import numpy as np
import pytest

import engram
from engram._kernels import load

_, WORKLOADS = load()
SPREAD = [w for w in WORKLOADS.values() if w.kernel == "spread"]
QUICK = os.environ.get("ENGRAM_BENCH_QUICK", "") not in ("", "0")
ROUNDS = {"S1": 50, "S2": 30, "S3": 10, "S4": 10}

PARAMS = [(w.id, name) for w in SPREAD for name in ("engram", *w.baselines)]


@pytest.fixture(scope="module")
def results():
    """Mean seconds per (workload, contender); the ratios are printed when the module ends."""
    table: dict = {}
    yield table
    lines = ["", "spread workloads (ratios measured in this run):"]
    for w in SPREAD:
        mine = table.get((w.id, "engram"))
        if mine is None:
            continue
        for goal in w.goals:
            if goal.kind in ("speedup", "scaling") and (w.id, goal.against) in table:
                ratio = table[(w.id, goal.against)] / mine
                verdict = "met" if ratio >= goal.value else "NOT met"
                lines.append(f"  {w.id} {goal.text}: {ratio:.2f}x ({verdict})")
            elif goal.kind == "bandwidth" and (w.id, "read GB/s") in table:
                rate = table[(w.id, "bytes")] / mine / 1e9
                share = rate / table[(w.id, "read GB/s")]
                verdict = "met" if share >= goal.value else "NOT met"
                lines.append(f"  {w.id} {goal.text}: {rate:.2f} GB/s = {share:.0%} of "
                             f"{table[(w.id, 'read GB/s')]:.1f} GB/s ({verdict})")
        for name in w.baselines:
            if (w.id, name) in table and not any(g.against == name for g in w.goals):
                lines.append(f"  {w.id} {name}: {table[(w.id, name)] * 1e3:.2f} ms, engram "
                             f"{mine * 1e3:.2f} ms")
        if (w.id, "elements") in table:
            lines.append(f"  {w.id} {table[(w.id, 'elements')] / mine / 1e9:.3f} elements (edges) per ns")
        if w.seed_target_us is not None:
            lines.append(f"  {w.id} mean {mine * 1e6:.1f} us vs the original target {w.seed_target_us} us")
    print("\n".join(lines))


@pytest.fixture(scope="module")
def states():
    return {}


def _state(states, workload):
    if workload.id not in states:
        states[workload.id] = workload.setup(QUICK)
    return states[workload.id]


@pytest.mark.parametrize("workload_id, contender", PARAMS, ids=[f"{w}-{c}" for w, c in PARAMS])
def test_spread_workload(benchmark, workload_id, contender, states, results):
    workload = WORKLOADS[workload_id]
    try:
        state = _state(states, workload)
    except ImportError as exc:  # the graphs are built with scipy
        pytest.skip(f"scipy: not installed ({exc})")
    if contender == "engram":
        c = workload.run(state)
    else:
        try:
            c = workload.baselines[contender](state)
        except ImportError as exc:
            pytest.skip(f"{contender}: not installed ({exc})")
    c.fn(*c.args, **c.kwargs)  # warm: the graph's lazy preparation is not what is timed
    benchmark.group = f"spread {workload_id}"
    benchmark.extra_info["workload"] = workload.title
    benchmark.extra_info["simd"] = engram.simd_info()["active"]
    benchmark.pedantic(c.fn, args=c.args, kwargs=c.kwargs, rounds=ROUNDS.get(workload_id, 10),
                       iterations=1, warmup_rounds=1)
    mean = benchmark.stats.stats.mean
    results[(workload_id, contender)] = mean
    if contender == "engram":
        if workload.elements is not None:
            results[(workload_id, "elements")] = workload.elements(state)
            benchmark.extra_info["elements_per_ns"] = results[(workload_id, "elements")] / mean / 1e9
        if workload.bytes_moved is not None:
            moved = workload.bytes_moved(state)
            hops = state["kwargs"]["max_depth"]
            # the read bandwidth of a buffer one hop's bytes in size, in this run
            probe = np.ones(max(moved // hops // 4, 1 << 20), np.float32)
            gbs = engram._core._probe_read(probe, 5)[0]
            results[(workload_id, "bytes")] = moved
            results[(workload_id, "read GB/s")] = gbs
            benchmark.extra_info["bandwidth_share"] = moved / mean / 1e9 / gbs
    for goal in workload.goals:
        if contender == goal.against and (workload_id, "engram") in results:
            benchmark.extra_info["ratio"] = mean / results[(workload_id, "engram")]
