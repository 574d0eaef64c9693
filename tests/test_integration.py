"""The recall pipeline end to end: top_k -> spread -> decay -> rank (engram.recall).

On every SIMD level the C backend gives the same answer as the reference
backend (``same_answer``: identical ids except where two memories' scores
tie within tolerance); many Python threads recalling at once get exactly the
single-thread answers; the arenas are consistent afterwards.
"""
from __future__ import annotations

import threading
import time

import numpy as np
import pytest

import engram
from engram.recall import STAGES, MemoryStore, Recall, RecallParams, recall, same_answer

K = 10
N_QUERIES = 12


@pytest.fixture(scope="module")
def store():
    # 97-d: not a multiple of any vector width, so every level runs its tails
    return MemoryStore.synthetic(3_000, 97, seed=5)


@pytest.fixture(scope="module")
def queries(store):
    return store.cues(N_QUERIES, seed=6)


@pytest.fixture(scope="module")
def big_store():
    # large enough that top_k and spread use worker threads when asked to
    return MemoryStore.synthetic(20_000, 256, seed=7)


@pytest.fixture(scope="module")
def reference_answers(store, queries):
    with engram.backend("reference"):
        return [recall(store, q, K) for q in queries[0]]


def test_store_is_what_it_claims(store):
    assert store.embeddings.dtype == np.float32 and store.embeddings.shape == (3_000, 97)
    assert np.allclose(np.linalg.norm(store.embeddings, axis=1), 1.0, atol=1e-5)
    assert store.age.dtype == np.int64 and store.age.min() >= 60
    assert store.strength.dtype == np.float32 and 0 < store.strength.min() <= store.strength.max() <= 1
    g = store.graph
    assert g.n == 3_000 and g.nnz == 3_000 * (8 + 2)
    src = np.repeat(np.arange(g.n), np.diff(g.indptr))
    same_topic = store.topic[src] == store.topic[g.indices]
    # 8 links within the topic per memory, 2 random ones (which may land in the topic too)
    assert 0.8 <= same_topic.mean() <= 0.82
    sim = np.einsum("ij,ij->i", store.embeddings[src], store.embeddings[g.indices])
    assert sim[same_topic].mean() > 0.5 > abs(sim[~same_topic].mean()) + 0.4


def test_recall_is_meaningful(store, queries):
    qs, sources = queries
    found = [recall(store, q, K) for q in qs]
    for r in found:
        assert r.ids.shape == (K,) and r.ids.dtype == np.int64
        assert np.all(np.diff(r.scores) <= 0)  # best first
        assert np.allclose(r.scores, r.activation.astype(np.float64) * r.retention)
        assert np.all(r.retention <= store.strength[r.ids])  # decay only takes away
        assert len(r.timings) == len(STAGES) and all(t >= 0 for t in r.timings)
    same_topic = np.mean([np.mean(store.topic[r.ids] == store.topic[s]) for r, s in zip(found, sources)])
    assert same_topic > 0.9
    # the spread stage matters: some recalled memories were not among top_k's candidates
    assert sum(np.sum(~np.isin(r.ids, r.candidates)) for r in found) > 0


def test_bad_arguments(store, queries):
    with pytest.raises(ValueError, match="k must be a positive int"):
        recall(store, queries[0][0], 0)
    with pytest.raises(ValueError, match="one \\(d,\\) vector"):
        recall(store, queries[0][:2], K)
    with pytest.raises(ValueError, match="97"):  # top_k names both dimensions
        recall(store, np.ones(96, np.float32), K)


def test_same_answer_on_c_and_reference_at_every_simd_level(simd_level, c_backend, store, queries,
                                                            reference_answers):
    for q, ref in zip(queries[0], reference_answers):
        got = recall(store, q, K)
        same, why = same_answer(got, ref)
        assert same, f"{simd_level}: {why}"
        # same candidates too, so the comparison covers the whole pipeline, not just its end
        assert set(got.candidates.tolist()) == set(ref.candidates.tolist())


def fake(ids, scores, pool=None):
    ids = np.asarray(ids, np.int64)
    scores = np.asarray(scores, np.float64)
    pool_ids, pool_scores = pool if pool is not None else (ids, scores)
    order = np.argsort(pool_ids)
    return Recall(ids, scores, scores.astype(np.float32), np.ones(len(ids), np.float32), ids,
                  np.asarray(pool_ids, np.int64)[order], np.asarray(pool_scores, np.float64)[order],
                  (0.0,) * len(STAGES))


def test_same_answer_allows_only_ties_within_tolerance():
    a = fake([3, 1, 2], [0.9, 0.5, 0.5])
    assert same_answer(a, fake([3, 1, 2], [0.9, 0.5, 0.5]))[0]
    assert same_answer(a, fake([3, 1, 2], [0.9 * (1 + 1e-6), 0.5, 0.5]))[0]
    # 1 and 2 tie: they may swap
    assert same_answer(a, fake([3, 2, 1], [0.9, 0.5, 0.5]))[0]
    assert same_answer(a, fake([3, 2, 1], [0.9, 0.5 + 2e-6, 0.5], ([1, 2, 3], [0.5, 0.5 + 2e-6, 0.9])))[0]
    # a score off by more than the tolerance
    assert not same_answer(a, fake([3, 1, 2], [0.9, 0.5 * (1 + 1e-4), 0.5]))[0]
    # a different memory at the same score, but not a tie: in a, memory 7 scores far less
    b = fake([3, 7, 2], [0.9, 0.5, 0.5], ([2, 3, 7], [0.5, 0.9, 0.5]))
    a7 = fake([3, 1, 2], [0.9, 0.5, 0.5], ([1, 2, 3, 7], [0.5, 0.5, 0.9, 0.1]))
    same, why = same_answer(a7, b)
    assert not same and "not a tie" in why
    assert not same_answer(a, fake([3, 1], [0.9, 0.5]))[0]


def test_many_threads_get_the_single_thread_answers(big_store, c_backend):
    store = big_store
    qs, _ = store.cues(N_QUERIES, seed=8)
    one = RecallParams(threads=1)
    expected = [recall(store, q, K, one) for q in qs]
    with engram.backend("reference"):
        expected_reference = [recall(store, q, K, one) for q in qs[:3]]
    engram.arena.reset_stats()
    n_threads, rounds = 8, 2
    results: dict = {}
    errors: list = []
    start = threading.Barrier(n_threads)

    def work(t):
        # kernels use worker threads here (threads=2, or automatic): the answer must not change;
        # one thread runs on the reference backend meanwhile, which must not leak into the others
        params = RecallParams(threads=None if t % 2 else 2)
        try:
            start.wait()
            if t == n_threads - 1:
                with engram.backend("reference"):
                    results[t] = [(j, recall(store, qs[j], K, params)) for j in range(3)]
                return
            got = []
            for r in range(rounds):
                for j in np.random.default_rng(t * 100 + r).permutation(len(qs)):
                    got.append((int(j), recall(store, qs[j], K, params)))
            results[t] = got
        except Exception as exc:  # reported below: an exception in a thread would pass silently
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(t,)) for t in range(n_threads)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors
    calls = 0
    for t, got in results.items():
        if t == n_threads - 1:
            for j, r in got:
                assert same_answer(r, expected_reference[j])[0], f"reference thread, query {j}"
            continue
        assert len(got) == rounds * len(qs)
        for j, r in got:
            assert np.array_equal(r.ids, expected[j].ids), f"thread {t}, query {j}"
            assert np.array_equal(r.scores, expected[j].scores), f"thread {t}, query {j}"
            calls += 3  # top_k, spread, decay
    # the recall threads have exited: their arenas are freed (by a thread-exit destructor, which
    # may run just after join() returns) and their counters live on in the total
    exited = {t.ident for t in threads}
    deadline = time.monotonic() + 5.0
    while True:
        st = engram.arena.stats()
        if not {e["thread_id"] for e in st["threads"]} & exited or time.monotonic() > deadline:
            break
        time.sleep(0.01)
    assert not {e["thread_id"] for e in st["threads"]} & exited
    assert all(e["in_use"] == 0 for e in st["threads"])
    total = st["total"]
    assert total["in_use"] == 0
    assert total["resets"] == calls  # one reset per kernel call, exited threads included
    assert total["allocations"] >= calls
    assert total["overflows"] == 0 and 0 < total["high_water"] <= engram.arena.config()["size"]


def test_arena_stats_of_live_threads_after_recalls(store, queries, c_backend):
    """While recall threads are alive, each has its own arena, empty between calls."""
    qs = queries[0]
    engram.arena.reset_stats()
    done, release = threading.Barrier(5), threading.Event()

    def work():
        for q in qs:
            recall(store, q, K)
        done.wait()
        release.wait()

    threads = [threading.Thread(target=work) for _ in range(4)]
    for t in threads:
        t.start()
    try:
        done.wait()
        st = engram.arena.stats()
        mine = {e["thread_id"]: e for e in st["threads"] if e["thread_id"] in {t.ident for t in threads}}
        assert len(mine) == 4
        for e in mine.values():
            assert e["in_use"] == 0
            assert e["resets"] == 3 * len(qs)
            assert e["allocations"] >= 3 * len(qs) and e["high_water"] > 0
            assert e["capacity"] == engram.arena.config()["size"]
        assert st["total"]["resets"] == 4 * 3 * len(qs)
    finally:
        release.set()
        for t in threads:
            t.join()


def test_verify_mode_checks_the_whole_pipeline(store, queries, c_backend):
    engram.verify(1.0)
    engram.stats(reset=True)
    try:
        for q in queries[0][:4]:
            recall(store, q, K)
        v = engram.stats()["verify"]["kernels"]
        for name in ("top_k", "spread", "decay"):
            assert v[name]["checked"] == 4 and v[name]["mismatches"] == 0, (name, v[name])
        # a wrong spread result inside the pipeline is caught and described
        engram._core._set_result_hook("spread", lambda a: np.asarray(a) * 2 + 0.25)
        try:
            recall(store, queries[0][0], K)
        finally:
            engram._core._set_result_hook("spread", None)
        s = engram.stats()["verify"]["kernels"]["spread"]
        assert s["mismatches"] == 1 and s["max_error"] > s["examples"][0]["tolerance"]
    finally:
        engram.verify(0.0, strict=False)
        engram.stats(reset=True)


def test_reference_backend_leaves_arenas_alone(store, queries):
    engram.arena.reset_stats()
    with engram.backend("reference"):
        recall(store, queries[0][0], K)
    assert engram.arena.stats()["total"]["allocations"] == 0
