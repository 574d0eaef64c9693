"""No leaks: every public function, on its success paths and its error paths, called in a loop.

Each row is called in a loop after a warm-up.  The process's resident set
may not grow by more than a few MB (C-level allocations: arena blocks,
scratch, copies), the Python heap traced by tracemalloc (which also sees
NumPy's array buffers) may not grow by more than a few bytes per call, and
every object passed in or handed back keeps its reference count.

The default run makes up to 10,000 calls per row (fewer for the rows whose
calls take long, at least 1,000), of which up to 2,000 under tracemalloc:
a leak of one small object per call shows as 32 kB or more there, and one
of 300 bytes per call fails the RSS bound.  ``--run-slow`` makes 100,000
calls per row under the same bounds.
"""
from __future__ import annotations

import gc
import sys
import time
import tracemalloc

import numpy as np
import pytest

import engram
from helpers import rss_bytes

pytestmark = pytest.mark.plain_build  # RSS and heap bounds mean nothing under ASan's quarantine

WARMUP = 200
LOOP = 10_000
LOOP_MIN = 1_000
LOOP_SLOW = 100_000
#: seconds a row's RSS loop may take in the default run
LOOP_BUDGET = 0.3
TRACED_CALLS = 2_000
RSS_BOUND = 3 << 20  # bytes over the whole loop
TRACED_BOUND = 16 << 10  # bytes of Python heap over TRACED_CALLS calls

f32, f64 = np.float32, np.float64


def _rng(seed=0):
    return np.random.default_rng(seed)


def _graph():
    rng = _rng(3)
    n = 200
    indptr = np.arange(0, 4 * n + 1, 4)
    return engram.Graph(indptr, rng.integers(0, n, 4 * n), rng.random(4 * n))


def _rows():
    """(id, fn, args, kwargs, exception or None); arguments are built once and reused."""
    rng = _rng(1)
    x = rng.standard_normal((16, 32)).astype(f32)
    y = rng.standard_normal((24, 32)).astype(f32)
    v = rng.standard_normal(32).astype(f32)
    g = _graph()
    seeds = np.zeros(200, f32)
    seeds[:3] = 1.0
    batch = np.zeros((3, 200), f64)
    batch[:, 5] = 1.0
    strength = rng.random(257).astype(f32)
    age = rng.uniform(0, 1e6, 257).astype(f32)
    ages_i64 = rng.integers(0, 10**7, 257)
    bad_age = age.copy()
    bad_age[100] = -1.0
    nan_seeds = seeds.copy()
    nan_seeds[7] = np.nan
    scipy_sparse = pytest.importorskip("scipy.sparse")
    csr = scipy_sparse.random(50, 50, density=0.1, format="csr", random_state=2)
    csr.data[:] = np.abs(csr.data)
    indptr, indices = np.array([0, 2, 3, 3]), np.array([1, 2, 0])
    return [
        # cosine_similarity
        ("cosine-pair", engram.cosine_similarity, (v, v.copy()), {}, None),
        ("cosine-pair-f64-list", engram.cosine_similarity, (v.astype(f64), list(v)), {}, None),
        ("cosine-matrix", engram.cosine_similarity, (x, y), {}, None),
        ("cosine-out", engram.cosine_similarity, (x, y), {"out": np.empty((16, 24), f32)}, None),
        ("cosine-mixed-strided", engram.cosine_similarity, (x[:, ::2].astype(f64), y[::2, ::2]), {}, None),
        ("cosine-big-endian", engram.cosine_similarity, (x.astype(">f4"), v), {}, None),
        ("cosine-threads", engram.cosine_similarity, (x, y), {"threads": 2}, None),
        ("cosine-err-dtype", engram.cosine_similarity, (x.astype(np.int64), y), {}, TypeError),
        ("cosine-err-ragged", engram.cosine_similarity, ([[1.0], [1.0, 2.0]], v), {}, TypeError),
        ("cosine-err-dim", engram.cosine_similarity, (x, y[:, :5]), {}, ValueError),
        ("cosine-err-out", engram.cosine_similarity, (x, y), {"out": np.empty((3, 3), f32)}, ValueError),
        ("cosine-err-overlap", engram.cosine_similarity, (x, x[:, :16].copy()), {"out": x[:, :16]}, ValueError),
        ("cosine-err-threads", engram.cosine_similarity, (x, y), {"threads": 2**70}, ValueError),
        ("cosine-err-keyword", engram.cosine_similarity, (x, y), {"axis": 0}, TypeError),
        # normalize
        ("normalize", engram.normalize, (x,), {}, None),
        ("normalize-in-place", engram.normalize, (x.copy(),), {}, None),
        ("normalize-err-ndim", engram.normalize, (x[None],), {}, ValueError),
        ("normalize-err-readonly", engram.normalize, (x,), {"out": np.broadcast_to(f32(0), x.shape)}, ValueError),
        # top_k
        ("top_k", engram.top_k, (x, y, 5), {}, None),
        ("top_k-one-query-padded", engram.top_k, (v, y, 40), {"metric": "dot"}, None),
        ("top_k-err-k", engram.top_k, (x, y, 0), {}, ValueError),
        ("top_k-err-metric", engram.top_k, (x, y, 3), {"metric": "l2"}, ValueError),
        ("top_k-err-overflow", engram.top_k, (x, y, 2**62), {}, ValueError),
        # spread
        ("spread", engram.spread, (g, seeds), {}, None),
        ("spread-batch-out", engram.spread, (g, batch), {"out": np.empty((3, 200), f32), "normalize": "out"}, None),
        ("spread-dict", engram.spread, (g, {1: 1.0, 7: 0.5}), {"combine": "max", "revisit": True}, None),
        ("spread-per-hop-decay", engram.spread, (g, seeds), {"decay": [0.9, 0.8, 0.7, 0.6]}, None),
        ("spread-scipy", engram.spread, (csr, np.ones(50, f32)), {"max_depth": 2}, None),
        ("spread-tuple", engram.spread, ((indptr, indices), np.ones(3)), {}, None),
        ("spread-err-nan-seed", engram.spread, (g, nan_seeds), {}, ValueError),
        ("spread-err-nan-seed-out", engram.spread, (g, nan_seeds), {"out": np.empty(200, f32)}, ValueError),
        ("spread-err-length", engram.spread, (g, seeds[:10]), {}, ValueError),
        ("spread-err-dict-key", engram.spread, (g, {"a": 1.0}), {}, TypeError),
        ("spread-err-decay-length", engram.spread, (g, seeds), {"decay": np.full(3, 0.5)}, ValueError),
        ("spread-err-option", engram.spread, (g, seeds), {"combine": "mean"}, ValueError),
        ("spread-err-graph", engram.spread, ((np.array([0, 5]), indices), np.ones(1)), {}, ValueError),
        # Graph
        ("graph", engram.Graph, (indptr, indices), {}, None),
        ("graph-err", engram.Graph, (indptr, np.array([1, 2, 9])), {}, ValueError),
        # decay
        ("decay", engram.decay, (strength, age), {}, None),
        ("decay-in-place", engram.decay, (strength.copy(), age), {"stability": 1e30}, None),
        ("decay-power-f64-int-ages", engram.decay, (strength.astype(f64), ages_i64),
         {"model": "power", "stability": age.astype(f64) + 1}, None),
        ("decay-scalar-age-threads", engram.decay, (strength, 3600), {"threads": 2}, None),
        ("decay-err-age", engram.decay, (strength, bad_age), {}, ValueError),
        ("decay-err-age-in-place", engram.decay, (strength.copy(), bad_age), {}, ValueError),
        ("decay-err-list-stability", engram.decay, (strength, age), {"stability": [1.0, 2.0]}, ValueError),
        ("decay-err-model", engram.decay, (strength, age), {"model": "linear"}, ValueError),
        ("decay-err-overlap", engram.decay, (strength, age), {"out": age}, ValueError),
    ]


ROWS = _rows()


#: rows also run through the binding's slow path (stats counting on)
SLOW_PATH_ROWS = {"cosine-matrix", "cosine-err-out", "normalize-in-place", "top_k", "top_k-err-k", "spread",
                  "spread-err-nan-seed-out", "decay-in-place", "decay-err-age"}


@pytest.fixture
def stats_on():
    before = engram.stats()["enabled"]
    engram.stats(enable=True)
    try:
        yield
    finally:
        engram.stats(enable=before)


def _loop(fn, args, kwargs, exc, n):
    if exc is None:
        for _ in range(n):
            fn(*args, **kwargs)
    else:
        for _ in range(n):
            try:
                fn(*args, **kwargs)
            except exc:
                pass


def _held(args, kwargs):
    """Everything passed in whose reference count must not change (not the interpreter's
    shared small ints and strings, whose counts move with any code)."""
    objs = list(args) + list(kwargs.values())
    for a in args:
        if isinstance(a, (tuple, list)):
            objs += list(a)
        if isinstance(a, dict):
            objs += list(a.values())
    return [o for o in objs if not isinstance(o, (int, float, str, type(None)))]


def _check_one(row_id, fn, args, kwargs, exc, n_max, fit_budget=True):
    if "in-place" in row_id:
        kwargs = dict(kwargs, out=args[0])
    # the call does what the row says, and its result holds no extra reference
    if exc is None:
        result = fn(*args, **kwargs)
        if "out" in kwargs:
            assert result is kwargs["out"]
        else:
            assert sys.getrefcount(result) == 2, "the result carries a leaked reference"
            if isinstance(result, tuple):
                assert [sys.getrefcount(result[i]) for i in range(len(result))] == [2] * len(result)
        del result
    else:
        with pytest.raises(exc):
            fn(*args, **kwargs)
    held = _held(args, kwargs)
    t0 = time.perf_counter()
    _loop(fn, args, kwargs, exc, WARMUP)
    per_call = (time.perf_counter() - t0) / WARMUP
    n = n_max if not fit_budget else max(LOOP_MIN, min(n_max, int(LOOP_BUDGET / per_call)))
    gc.collect()
    refs = [sys.getrefcount(o) for o in held]
    rss = rss_bytes()
    _loop(fn, args, kwargs, exc, n)
    gc.collect()
    rss_growth = rss_bytes() - rss
    assert [sys.getrefcount(o) for o in held] == refs, "an argument's reference count changed"
    # the Python heap (NumPy buffers included), traced over a shorter loop
    traced_calls = min(n, TRACED_CALLS)
    tracemalloc.start()
    try:
        _loop(fn, args, kwargs, exc, 50)
        gc.collect()
        start = tracemalloc.get_traced_memory()[0]
        _loop(fn, args, kwargs, exc, traced_calls)
        gc.collect()
        traced_growth = tracemalloc.get_traced_memory()[0] - start
    finally:
        tracemalloc.stop()
    print(f"{row_id}: {n} calls, RSS +{rss_growth / 1024:.0f} KiB, traced heap {traced_growth:+d} B "
          f"over {traced_calls} calls")
    assert rss_growth < RSS_BOUND, f"RSS grew by {rss_growth} bytes over {n} calls"
    assert traced_growth < TRACED_BOUND, f"the Python heap grew by {traced_growth} bytes over {traced_calls} calls"


@pytest.mark.parametrize("row", ROWS, ids=[r[0] for r in ROWS])
def test_no_leak(row, c_backend):
    _check_one(*row, LOOP)


@pytest.mark.parametrize("row", [r for r in ROWS if r[0] in SLOW_PATH_ROWS],
                         ids=[r[0] for r in ROWS if r[0] in SLOW_PATH_ROWS])
def test_no_leak_counting_stats(row, stats_on, c_backend):
    _check_one(*row, LOOP)


@pytest.mark.slow
@pytest.mark.parametrize("row", ROWS, ids=[r[0] for r in ROWS])
def test_no_leak_100k(row, c_backend):
    _check_one(*row, LOOP_SLOW, fit_budget=False)


def test_no_leak_verify_and_reference_backends():
    """The slow paths that call back into Python: verify mode and the reference backend."""
    x = _rng(5).standard_normal((8, 16)).astype(f32)
    strength, age = _rng(6).random(64).astype(f32), _rng(7).uniform(0, 1e5, 64)
    before = engram.verify()
    try:
        engram.verify(1.0)
        _check_one("verify-cosine", engram.cosine_similarity, (x, x), {}, None, 1000)
        _check_one("verify-decay-error", engram.decay, (strength, -age), {}, ValueError, 1000)
    finally:
        engram.verify(before["rate"], strict=before["strict"])
    with engram.backend("reference"):
        _check_one("reference-normalize", engram.normalize, (x,), {}, None, 1000)
        _check_one("reference-top_k-error", engram.top_k, (x, x, 0), {}, ValueError, 1000)


def test_no_leak_in_threads_that_come_and_go():
    """Arena blocks of exited threads are freed: 200 short-lived threads add no RSS."""
    import threading

    x = _rng(8).standard_normal((64, 64)).astype(f32)

    def work():
        engram.top_k(x, x, 4)
        engram.decay(x[0], 1.0)

    def wave(count):
        threads = [threading.Thread(target=work) for _ in range(count)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()

    wave(20)
    rss = rss_bytes()
    for _ in range(10):
        wave(20)
    growth = rss_bytes() - rss
    print(f"200 threads: RSS +{growth / 1024:.0f} KiB")
    assert growth < RSS_BOUND
