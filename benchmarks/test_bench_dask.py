"""Scaling out: engram.dask.top_k on a 2-worker LocalCluster vs in-memory engram, same run.

The measurement itself is ``engram.dask.benchmark_top_k`` (the report's
*Scaling out* section runs the same function): a 1,000,000 x 768 float32
corpus (3 GB) in 64 chunks persisted on the workers, 16 queries, k=10.
Goal: the cluster takes at most 1.3x the in-memory time.  Set
ENGRAM_BENCH_DASK_ROWS to run a smaller corpus.
"""
from __future__ import annotations

import os

import pytest

pytest.importorskip("distributed", reason="dask.distributed is not installed (pip install '.[dask]')")

import engram.dask as ed  # noqa: E402

ROWS = int(os.environ.get("ENGRAM_BENCH_DASK_ROWS", "1000000"))


def test_top_k_on_a_local_cluster(benchmark):
    result = benchmark.pedantic(ed.benchmark_top_k, kwargs=dict(n=ROWS, n_chunks=64, repeats=5),
                                rounds=1, iterations=1)
    benchmark.extra_info.update({k: v for k, v in result.items() if k != "equal"})
    print(f"\ncluster {result['cluster_seconds']['median'] * 1e3:.1f} ms, in memory "
          f"{result['in_memory_seconds']['median'] * 1e3:.1f} ms, overhead {result['overhead']:.2f}x (goal <= 1.3x)")
    assert result["equal"], "the cluster's answer differs from the in-memory answer"
