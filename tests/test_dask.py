"""engram.dask: chunked corpora and memory stores give exactly the in-memory results."""
from __future__ import annotations

import numpy as np
import pytest

dask = pytest.importorskip("dask", reason="the dask extra is not installed (pip install '.[dask]')")
import dask.array as da  # noqa: E402

import engram  # noqa: E402
import engram.dask as ed  # noqa: E402


def corpus_with_ties(rng, n, d, dtype=np.float32):
    c = rng.standard_normal((n, d)).astype(dtype)
    if n >= 6:
        c[n // 2] = c[1]  # equal rows in different chunks: ties go to the smaller id
        c[n - 1] = c[2]
    return c


CHUNKINGS = [
    ("even", lambda n: n // 4 or 1),
    ("uneven last", lambda n: (n // 3 + 1) or 1),
    ("smaller than k", lambda n: 3),
    ("one chunk", lambda n: n or 1),
]


@pytest.mark.parametrize("metric", ["cosine", "dot"])
@pytest.mark.parametrize("name, chunk", CHUNKINGS, ids=[c[0] for c in CHUNKINGS])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_top_k_equals_in_memory(name, chunk, metric, dtype, rng):
    n, d, k = 157, 48, 10
    corpus = corpus_with_ties(rng, n, d, dtype)
    queries = rng.standard_normal((7, d)).astype(dtype)
    queries[0] = corpus[1]
    dc = da.from_array(corpus, chunks=(chunk(n), d))
    scores, ids = dask.compute(*ed.top_k(queries, dc, k, metric=metric), scheduler="threads")
    want_scores, want_ids = engram.top_k(queries, corpus, k, metric=metric)
    np.testing.assert_array_equal(ids, want_ids)
    np.testing.assert_array_equal(scores, want_scores)


def test_top_k_with_empty_chunks_and_padding(rng):
    corpus = rng.standard_normal((8, 16)).astype(np.float32)
    corpus[3] = np.nan  # NaN scores are never returned, in any chunk
    dc = da.from_array(corpus, chunks=((3, 0, 5), (16,)))
    assert 0 in dc.chunks[0]
    q = rng.standard_normal(16).astype(np.float32)
    scores, ids = dask.compute(*ed.top_k(q, dc, 12))
    want_scores, want_ids = engram.top_k(q, corpus, 12)
    assert scores.shape == ids.shape == (12,)
    np.testing.assert_array_equal(ids, want_ids)
    np.testing.assert_array_equal(scores, want_scores)
    assert list(ids[-5:]) == [-1] * 5 and np.all(np.isneginf(scores[-5:]))


def test_top_k_rechunks_a_split_last_axis(rng):
    corpus = rng.standard_normal((40, 32)).astype(np.float32)
    dc = da.from_array(corpus, chunks=(10, 8))
    q = rng.standard_normal((3, 32)).astype(np.float32)
    got = dask.compute(*ed.top_k(q, dc, 5))
    want = engram.top_k(q, corpus, 5)
    np.testing.assert_array_equal(got[1], want[1])


def test_top_k_merge_tree_fan_in(rng):
    corpus = rng.standard_normal((300, 16)).astype(np.float32)
    dc = da.from_array(corpus, chunks=(7, 16))  # 43 chunks: a tree of several levels
    q = rng.standard_normal((2, 16)).astype(np.float32)
    for split_every in (2, 3, 8):
        got = dask.compute(*ed.top_k(q, dc, 9, split_every=split_every))
        want = engram.top_k(q, corpus, 9)
        np.testing.assert_array_equal(got[1], want[1])


@pytest.mark.parametrize("bad, exc", [
    (dict(k=0), ValueError), (dict(k=2.5), ValueError), (dict(split_every=1), ValueError),
])
def test_top_k_bad_arguments(bad, exc, rng):
    corpus = da.from_array(rng.standard_normal((10, 4)).astype(np.float32), chunks=(5, 4))
    args = dict(k=3)
    args.update(bad)
    k = args.pop("k")
    with pytest.raises(exc):
        ed.top_k(np.zeros(4, np.float32), corpus, k, **args)
    with pytest.raises(ValueError, match="queries"):
        ed.top_k(np.zeros(5, np.float32), corpus, 3)


@pytest.mark.parametrize("xs, ys", [((30, 24), (20, 24)), ((24,), (20, 24)), ((30, 24), (24,)), ((24,), (24,))])
def test_cosine_similarity_blockwise(xs, ys, rng):
    x = rng.standard_normal(xs).astype(np.float32)
    y = rng.standard_normal(ys).astype(np.float32)
    dx = da.from_array(x, chunks=(7,) + xs[1:] if len(xs) == 2 else xs)
    dy = da.from_array(y, chunks=(6,) + ys[1:] if len(ys) == 2 else ys)
    got = ed.cosine_similarity(dx, dy).compute()
    want = engram.cosine_similarity(x, y)
    np.testing.assert_array_equal(np.asarray(got), np.asarray(want))


def test_normalize_blockwise(rng):
    x = rng.standard_normal((50, 12)).astype(np.float64)
    x[4] = 0
    got = ed.normalize(da.from_array(x, chunks=(9, 12))).compute()
    np.testing.assert_array_equal(got, engram.normalize(x))


@pytest.mark.parametrize("model", ["exponential", "power"])
def test_decay_blockwise(model, rng):
    n = 1000
    strength = rng.random(n).astype(np.float32)
    age = rng.integers(0, 10**7, n).astype(np.int64)
    stability = rng.uniform(1e3, 1e6, n).astype(np.float32)
    ds = da.from_array(strength, chunks=97)
    got = ed.decay(ds, da.from_array(age, chunks=200), stability=stability, model=model).compute()
    want = engram.decay(strength, age, stability=stability, model=model)
    np.testing.assert_array_equal(got, want)
    got = ed.decay(ds, 3600.0, stability=86400.0, model=model).compute()
    np.testing.assert_array_equal(got, engram.decay(strength, 3600.0, stability=86400.0, model=model))


def test_decay_reports_where_a_bad_age_is(rng):
    strength = np.ones(100, np.float32)
    age = np.zeros(100, np.float32)
    age[57] = -1
    with pytest.raises(ValueError, match="block starting at 50"):
        ed.decay(da.from_array(strength, chunks=25), da.from_array(age, chunks=25)).compute()


def test_local_cluster_top_k(rng):
    distributed = pytest.importorskip("distributed", reason="distributed is not installed")
    corpus = rng.standard_normal((4000, 64)).astype(np.float32)
    q = rng.standard_normal((5, 64)).astype(np.float32)
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                                  dashboard_address=None) as cluster, distributed.Client(cluster) as client:
        dc = da.from_array(corpus, chunks=(700, 64))
        scores, ids = client.compute(list(ed.top_k(q, dc, 10)), sync=True)
        cos = client.compute(ed.cosine_similarity(q, dc), sync=True)
    want_scores, want_ids = engram.top_k(q, corpus, 10)
    np.testing.assert_array_equal(ids, want_ids)
    np.testing.assert_array_equal(scores, want_scores)
    np.testing.assert_array_equal(cos, engram.cosine_similarity(q, corpus))
