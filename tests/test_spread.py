"""spread() and Graph: the C kernel against the float64 reference on every SIMD level.

Differential tests draw graphs with self-loops, repeated edges, cycles,
dangling nodes and disconnected parts, every option, seeds dense, as a
dict and as batches; thresholds are kept clear of every pulse of the
reference run (strategies.spread_cases), so the float32 result must be
within 1e-5 relative (1e-7 absolute) of the reference.  Closed forms, a
personalised-PageRank oracle and exact equalities (batch vs row by row,
threads vs one thread) pin the semantics down further.
"""
from __future__ import annotations

import contextlib
import threading

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import engram
from engram import _cases as rows
from engram import _reference as ref

from strategies import spread_cases, spread_options

TOL = 1e-5

pytestmark = pytest.mark.usefixtures("c_backend")

fixture_ok = settings(suppress_health_check=[HealthCheck.function_scoped_fixture])


@contextlib.contextmanager
def tuning(direction=None, pull_fraction=None, parallel_hop_edges=None):
    """Force the kernel's direction choices for the duration of a block."""
    before = engram._core._spread_tuning(direction, pull_fraction, parallel_hop_edges)
    try:
        yield
    finally:
        engram._core._spread_tuning(*before)


@pytest.fixture(params=["unblocked", "blocked"])
def pull_layout(request, monkeypatch):
    """Graphs made in the test pull unblocked, or in source blocks of a few rows
    (the layout large graphs get, at sizes small graphs reach)."""
    import engram.graph

    if request.param == "blocked":
        monkeypatch.setattr(engram.graph, "_PULL_BLOCKED_FROM", 0)
        monkeypatch.setattr(engram.graph, "_PULL_BLOCK_ROWS", 24)
        monkeypatch.setattr(engram.graph, "_PULL_WINDOW_ROWS", 40)
    return request.param


def assert_close(got, expected, what=""):
    err = rows.spread_error(got, expected)
    assert err <= TOL, f"{what}: error {err:.3g} > {TOL} (relative, 1e-7 absolute floor)"


def dense(seeds, n):
    if isinstance(seeds, dict):
        d = np.zeros(n)
        for k, v in seeds.items():
            d[k] = v
        return d
    return seeds


# ---------------------------------------------------------------------------
# Differential: every SIMD level, every direction, every option
# ---------------------------------------------------------------------------


@settings(max_examples=max(200, settings.default.max_examples),
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(case=spread_cases())
def test_matches_reference_every_direction(simd_level, pull_layout, case):
    graph, seeds, kwargs = case
    expected = ref.spread(graph, seeds, **kwargs)
    for direction in ("auto", "push", "pull"):
        with tuning(direction):
            got = engram.spread(graph, seeds, **kwargs)
        assert got.dtype == np.float32 and got.shape == expected.shape
        assert_close(got, expected, f"{simd_level} {direction}")


@settings(max_examples=max(25, settings.default.max_examples // 10),
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    n=st.integers(4000, 12000),
    degree=st.floats(0.5, 8.0),
    seed=st.integers(0, 2**32 - 1),
    density=st.sampled_from([1e-4, 0.01, 0.3, 1.0]),
    weights=st.sampled_from(["none", "f32", "f64"]),
    kwargs=spread_options(max_depth=6),
)
def test_large_graphs_many_windows(simd_level, pull_layout, n, degree, seed, density, weights, kwargs):
    """Graphs of thousands of nodes: several row windows of the pull layout, both directions."""
    rng = np.random.default_rng(seed)
    g = engram.Graph(*rows.spread_graph_arrays(rng, n, int(n * degree), weights=weights,
                                               components=int(rng.integers(1, 4)), dangling=0.1))
    seeds = rows.spread_seed_values(rng, 1, n, density, kwargs["threshold"], np.float32)[0]
    kwargs = rows.spread_clear_threshold(rng, g, seeds, kwargs)
    expected = ref.spread(g, seeds, **kwargs)
    for direction in ("auto", "push", "pull"):
        with tuning(direction):
            assert_close(engram.spread(g, seeds, **kwargs), expected, f"{simd_level} {direction}")


@fixture_ok
@given(case=spread_cases(max_nodes=60), fraction=st.floats(0.0, 1.0))
def test_switching_directions_mid_run(simd_level, case, fraction):
    """Any crossover: runs that go push -> pull -> push agree with the reference."""
    graph, seeds, kwargs = case
    expected = ref.spread(graph, seeds, **kwargs)
    with tuning("auto", pull_fraction=fraction):
        got = engram.spread(graph, seeds, **kwargs)
    assert_close(got, expected, f"{simd_level} pull_fraction={fraction}")


@fixture_ok
@given(case=spread_cases(max_nodes=40, batch=False))
def test_push_equals_pull(simd_level, pull_layout, case):
    graph, seeds, kwargs = case
    with tuning("push"):
        pushed = engram.spread(graph, seeds, **kwargs)
    with tuning("pull"):
        pulled = engram.spread(graph, seeds, **kwargs)
    assert_close(pulled, pushed, f"{simd_level} push vs pull")


def test_registry_random_cases_pass(simd_level):
    """The report's random cases (engram._cases) hold the tolerance on this level."""
    from engram._kernels import KERNELS

    kernel = KERNELS["spread"]
    rng = np.random.default_rng(20240611)
    for _ in range(40):
        case = kernel.random_case(rng)
        expected = kernel.reference(*case.args, **case.kwargs)
        got = engram.spread(*case.args, **case.kwargs)
        assert kernel.error(got, expected, case) <= kernel.tolerance(case), case.label
    for case in kernel.edge_cases():
        expected = kernel.reference(*case.args, **case.kwargs)
        got = engram.spread(*case.args, **case.kwargs)
        assert kernel.error(got, expected, case) <= kernel.tolerance(case), case.label


# ---------------------------------------------------------------------------
# Closed forms
# ---------------------------------------------------------------------------


def cycle_graph(n, w, dtype=np.float64):
    return engram.Graph(np.arange(n + 1), (np.arange(n) + 1) % n, np.full(n, w, dtype))


@pytest.mark.parametrize("direction", ["push", "pull"])
@pytest.mark.parametrize("n", [1, 2, 5, 9, 17])
def test_cycle_fires_each_node_once(simd_level, direction, n):
    """revisit=False: around a directed cycle each node fires once, node k with (d w)^k."""
    d, w = 0.9, 0.8
    g = cycle_graph(n, w)
    with tuning(direction):
        got = engram.spread(g, {0: 1.0}, max_depth=3 * n + 2, decay=d, threshold=0.0)
    expected = (d * w) ** np.arange(n)
    np.testing.assert_allclose(got, expected.astype(np.float32), rtol=1e-6)


@pytest.mark.parametrize("direction", ["push", "pull"])
def test_cycle_with_revisit_goes_around(simd_level, direction):
    """revisit=True: node k collects (d w)^j for every hop j = k (mod n) up to max_depth."""
    n, d, w, depth = 4, 0.9, 0.7, 11
    g = cycle_graph(n, w)
    with tuning(direction):
        got = engram.spread(g, np.eye(n)[0], max_depth=depth, decay=d, threshold=0.0, revisit=True)
    expected = np.zeros(n)
    for j in range(depth + 1):
        expected[j % n] += (d * w) ** j
    np.testing.assert_allclose(got, expected.astype(np.float32), rtol=1e-6)


@pytest.mark.parametrize("direction", ["push", "pull"])
def test_chain_with_decay_per_hop(simd_level, direction):
    """A chain: node k gets prod(weights[:k]) * prod(decay[:k]); the threshold stops it."""
    weights = np.array([0.9, 0.8, 0.7, 0.6, 0.5, 0.4])
    n = weights.size + 1
    g = engram.Graph(np.r_[np.arange(n), n - 1], np.arange(1, n), weights)
    decay = np.array([1.0, 0.5, 0.25, 0.9, 0.8, 0.7])  # a per-hop profile
    with tuning(direction):
        got = engram.spread(g, {0: 2.0}, max_depth=6, decay=decay, threshold=0.0)
        cut = engram.spread(g, {0: 2.0}, max_depth=6, decay=decay, threshold=0.05)
    expected = 2.0 * np.r_[1.0, np.cumprod(weights * decay)]
    np.testing.assert_allclose(got, expected.astype(np.float32), rtol=1e-6)
    # below the threshold a node does not fire and the pulse stops there
    stop = np.argmax(expected < 0.05)
    np.testing.assert_allclose(cut[:stop], expected[:stop].astype(np.float32), rtol=1e-6)
    assert np.all(cut[stop:] == 0)
    # a shorter max_depth truncates the chain
    with tuning(direction):
        short = engram.spread(g, {0: 2.0}, max_depth=2, decay=decay[:2], threshold=0.0)
    np.testing.assert_allclose(short[:3], expected[:3].astype(np.float32), rtol=1e-6)
    assert np.all(short[3:] == 0)


@pytest.mark.parametrize("direction", ["push", "pull"])
def test_diamond_max_and_sum(simd_level, direction):
    """0 -> {1, 2} -> 3: 'max' keeps the stronger path into 3, 'sum' adds both."""
    g = engram.Graph(np.array([0, 2, 3, 4, 4]), np.array([1, 2, 3, 3]),
                     np.array([0.5, 0.8, 1.0, 0.5], np.float32))
    d = 0.85
    with tuning(direction):
        mx = engram.spread(g, {0: 1.0}, decay=d, threshold=0.0, combine="max")
        sm = engram.spread(g, {0: 1.0}, decay=d, threshold=0.0, combine="sum")
    np.testing.assert_allclose(mx, np.float32([1, 0.5 * d, 0.8 * d, max(0.5, 0.4) * d * d]), rtol=1e-6)
    np.testing.assert_allclose(sm, np.float32([1, 0.5 * d, 0.8 * d, 0.9 * d * d]), rtol=1e-6)
    # a seed on 3 fires at hop 0: without revisit it keeps its seed; with it,
    # max keeps the larger of seed and pulse, sum adds them
    with tuning(direction):
        once = engram.spread(g, {0: 1.0, 3: 0.3}, decay=d, threshold=0.0, combine="max")
        mx3 = engram.spread(g, {0: 1.0, 3: 0.3}, decay=d, threshold=0.0, combine="max", revisit=True)
        sm3 = engram.spread(g, {0: 1.0, 3: 0.3}, decay=d, threshold=0.0, combine="sum", revisit=True)
    assert once[3] == np.float32(0.3)
    assert mx3[3] == np.float32(max(0.3, 0.5 * d * d))
    np.testing.assert_allclose(sm3[3], np.float32(0.3 + 0.9 * d * d), rtol=1e-6)


@pytest.mark.parametrize("direction", ["push", "pull"])
def test_pulse_equal_to_threshold_fires(simd_level, direction):
    """x >= threshold fires, x < threshold does not (dyadic values: exact in any order)."""
    g = engram.Graph(np.array([0, 2, 3, 3, 3]), np.array([1, 2, 3, 3]), np.array([0.5, 0.25, 0.5, 0.5]))
    with tuning(direction):
        got = engram.spread(g, {0: 1.0}, decay=0.5, threshold=0.25)
        below = engram.spread(g, {0: 1.0}, decay=0.5, threshold=0.25 + 2**-40)
    # node 1 receives 0.5 * 0.5 = 0.25 and fires; node 2 gets 0.125 and stays
    assert got.tolist() == [1.0, 0.25, 0.0, 0.0]
    assert below.tolist() == [1.0, 0.0, 0.0, 0.0]


def test_seed_equal_to_threshold_fires(simd_level):
    """The hop-0 frontier compares float32 seeds with the float64 threshold exactly."""
    g = engram.Graph(np.array([0, 1, 1]), np.array([1]), np.array([1.0]))
    s32 = np.array([0.1, 0.0], np.float32)
    at = float(s32[0])
    assert engram.spread(g, s32, threshold=at, decay=1.0)[1] == s32[0]
    assert engram.spread(g, s32, threshold=np.nextafter(at, 1.0), decay=1.0)[1] == 0
    assert engram.spread(g, s32, threshold=0.1, decay=1.0)[1] == s32[0]  # 0.1f > 0.1
    s64 = np.array([0.1, 0.0])
    assert engram.spread(g, s64, threshold=0.1, decay=1.0)[1] == np.float32(0.1)
    assert engram.spread(g, s64, threshold=np.nextafter(0.1, 1.0), decay=1.0)[1] == 0
    assert engram.spread(g, {0: 0.1}, threshold=np.nextafter(0.1, 1.0), decay=1.0)[1] == 0


def test_normalize_out_divides_by_out_weight(simd_level):
    g = engram.Graph(np.array([0, 3, 3, 3, 3]), np.array([1, 2, 3]), np.array([1.0, 2.0, 5.0]))
    got = engram.spread(g, {0: 1.0}, decay=1.0, threshold=0.0, normalize="out", max_depth=1)
    np.testing.assert_allclose(got, np.float32([1, 0.125, 0.25, 0.625]), rtol=1e-7)


def test_zero_out_weight_sends_nothing(simd_level):
    """A node whose out-edges all weigh 0 has no out-weight to normalise by: it passes nothing on."""
    g = engram.Graph(np.array([0, 2, 2, 2]), np.array([1, 2]), np.zeros(2))
    for normalize in ("none", "out"):
        got = engram.spread(g, {0: 1.0}, threshold=0.0, normalize=normalize)
        assert np.array_equal(got, np.float32([1, 0, 0]))


# ---------------------------------------------------------------------------
# Oracle: personalised PageRank
# ---------------------------------------------------------------------------


def pagerank(indptr, indices, weights, reset, d, tol=1e-15):
    """pi = (1 - d) reset + d P^T pi by power iteration, float64 (P row-normalised)."""
    n = indptr.size - 1
    src = np.repeat(np.arange(n), np.diff(indptr))
    w = weights / np.bincount(src, weights=weights, minlength=n)[src]
    pi = reset.copy()
    for _ in range(10_000):
        nxt = np.zeros(n)
        np.add.at(nxt, indices, d * w * pi[src])
        nxt += (1 - d) * reset
        if np.max(np.abs(nxt - pi)) < tol:
            return nxt
        pi = nxt
    raise AssertionError("power iteration did not converge")


@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("direction", ["auto", "pull"])
def test_personalised_pagerank(simd_level, pull_layout, seed, direction):
    rng = np.random.default_rng(seed)
    n, m, d = 200, 1000, 0.85
    # a cycle through every node: no dangling nodes, every node reachable
    indptr, indices, weights = rows.spread_graph_arrays(
        rng, n, m, cycle=True, weights="f64" if seed % 2 else "f32")
    reset = np.zeros(n)
    reset[rng.choice(n, 5, replace=False)] = rng.random(5)
    reset /= reset.sum()
    with tuning(direction):
        total = engram.spread((indptr, indices, weights), reset, max_depth=250, decay=d,
                              threshold=0.0, normalize="out", revisit=True)
    pi = pagerank(indptr, indices, weights.astype(np.float64), reset, d)
    assert_close((1 - d) * total.astype(np.float64), pi, "personalised PageRank")


# ---------------------------------------------------------------------------
# Batches and threads: exact equality
# ---------------------------------------------------------------------------


@fixture_ok
@given(case=spread_cases(max_nodes=60))
def test_batch_equals_row_by_row(simd_level, case):
    graph, seeds, kwargs = case
    if isinstance(seeds, dict) or np.ndim(seeds) == 1:
        n = engram.Graph._coerce(graph).n
        seeds = np.stack([dense(seeds, n), dense(seeds, n)[::-1].copy()]).astype(np.float64)
    batch = engram.spread(graph, seeds, **kwargs)
    for i, row in enumerate(seeds):
        np.testing.assert_array_equal(batch[i], engram.spread(graph, row, **kwargs))


@pytest.mark.parametrize("direction", ["auto", "push", "pull"])
def test_threads_equal_single_thread(simd_level, pull_layout, direction):
    rng = np.random.default_rng(7)
    n = 3000
    indptr, indices, weights = rows.spread_graph_arrays(rng, n, 30_000, weights="f32", cycle=True)
    g = engram.Graph(indptr, indices, weights)
    seeds = rows.spread_seed_values(rng, 24, n, 0.002, 1e-4, np.float32)
    kwargs = dict(max_depth=6, threshold=1e-5, normalize="out")
    with tuning(direction):
        one = engram.spread(g, seeds, threads=1, **kwargs)
        for threads in (2, 3, 8):
            np.testing.assert_array_equal(engram.spread(g, seeds, threads=threads, **kwargs), one)


@pytest.mark.parametrize("revisit", [False, True])
def test_single_row_hops_shared_by_threads_are_exact(simd_level, pull_layout, revisit):
    """One row's dense hops split across threads give the same bits as one thread."""
    rng = np.random.default_rng(11)
    n = 5000
    indptr, indices, weights = rows.spread_graph_arrays(rng, n, 50_000, weights="f64", cycle=True)
    g = engram.Graph(indptr, indices, weights)
    seeds = rng.random(n)
    kwargs = dict(max_depth=8, threshold=1e-3, normalize="out", revisit=revisit)
    with tuning("pull", parallel_hop_edges=0):
        one = engram.spread(g, seeds, threads=1, **kwargs)
        for threads in (2, 3, 7):
            np.testing.assert_array_equal(engram.spread(g, seeds, threads=threads, **kwargs), one)
    assert_close(one, ref.spread(g, seeds, **kwargs), "threaded hops vs reference")


def test_concurrent_calls_share_one_graph():
    """Python threads spreading on one Graph (the first builds its pull layout) agree."""
    rng = np.random.default_rng(3)
    n = 4000
    g = engram.Graph(*rows.spread_graph_arrays(rng, n, 40_000, weights="f32"))
    seeds = [rng.random(n).astype(np.float32) for _ in range(8)]
    kwargs = dict(max_depth=5, threshold=1e-3, normalize="out", revisit=True)
    results = [None] * len(seeds)

    def work(i):
        results[i] = engram.spread(g, seeds[i], **kwargs)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(len(seeds))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for s, r in zip(seeds, results):
        np.testing.assert_array_equal(r, engram.spread(g, s, **kwargs))


# ---------------------------------------------------------------------------
# Inputs: graph forms, seed forms, out=, edge sizes
# ---------------------------------------------------------------------------


def test_graph_forms_agree():
    sp = pytest.importorskip("scipy.sparse")
    rng = np.random.default_rng(5)
    indptr, indices, weights = rows.spread_graph_arrays(rng, 50, 200, weights="f64",
                                                        multi_edges=False)
    mat = sp.csr_matrix((weights, indices, indptr), shape=(50, 50))
    mat.sum_duplicates()
    seeds = rng.random(50)
    kwargs = dict(max_depth=5, threshold=1e-3, normalize="out", combine="max")
    base = engram.spread(engram.Graph(mat), seeds, **kwargs)
    for form in (mat, mat.tocsc(), mat.tocoo(), (mat.indptr, mat.indices, mat.data),
                 (mat.indptr.astype(np.int64), mat.indices.astype(np.int64), mat.data, 50),
                 (mat.indptr, mat.indices.astype(np.int32), mat.data.astype(np.float32))):
        assert_close(engram.spread(form, seeds, **kwargs), base, type(form).__name__)


def test_coo_keeps_repeated_entries_as_edges():
    """Repeated COO entries are parallel edges: 'max' sees each, 'sum' adds them."""
    sp = pytest.importorskip("scipy.sparse")
    coo = sp.coo_matrix((np.array([0.3, 0.4]), (np.array([0, 0]), np.array([1, 1]))), shape=(2, 2))
    g = engram.Graph(coo)
    assert g.nnz == 2
    assert engram.spread(g, {0: 1.0}, decay=1.0, threshold=0, combine="max")[1] == np.float32(0.4)
    assert engram.spread(g, {0: 1.0}, decay=1.0, threshold=0, combine="sum")[1] == np.float32(0.7)


def test_graph_copies_by_default_and_shares_on_request():
    indptr = np.array([0, 1, 2], np.int32)
    indices = np.array([1, 0], np.int32)
    weights = np.array([0.5, 0.25], np.float32)
    g = engram.Graph(indptr, indices, weights)
    for mine, theirs in ((g.indptr, indptr), (g.indices, indices), (g.weights, weights)):
        assert not np.shares_memory(mine, theirs) and not mine.flags.writeable
        np.testing.assert_array_equal(mine, theirs)
        assert mine.dtype == theirs.dtype
    assert g.n == 2 and g.nnz == 2
    np.testing.assert_array_equal(g.out_weight(), [0.5, 0.25])
    assert "n=2" in repr(g)
    shared = engram.Graph(indptr, indices, weights, copy=False)
    for mine, theirs in ((shared.indptr, indptr), (shared.indices, indices), (shared.weights, weights)):
        assert np.shares_memory(mine, theirs) and not mine.flags.writeable
    assert theirs.flags.writeable  # the caller's own array stays theirs
    with pytest.raises(TypeError, match="copy"):
        engram.Graph(indptr, indices, weights, copy="no")


def test_graph_is_a_snapshot_of_the_callers_arrays():
    """Changing the arrays a Graph was made from changes nothing it computes, in either direction."""
    rng = np.random.default_rng(14)
    indptr, indices, weights = rows.spread_graph_arrays(rng, 300, 2000, weights="f64")
    g = engram.Graph(indptr, indices, weights)
    seeds = np.zeros(300)
    seeds[:5] = 1.0
    kwargs = dict(revisit=True, threshold=0, max_depth=6, normalize="out")
    before = engram.spread(g, seeds, **kwargs)
    with tuning("pull"):
        engram.spread(g, seeds, **kwargs)  # the pull layout now exists
    weights *= 2
    indices[:] = indices[::-1]
    for direction in ("push", "pull"):
        with tuning(direction):
            assert_close(engram.spread(g, seeds, **kwargs), before, direction)
    with pytest.raises(ValueError, match="read-only"):
        g.indices[0] = 10**6
    with pytest.raises(ValueError, match="read-only"):
        g.weights[0] = 1.0


def test_unaligned_and_byte_swapped_graph_arrays():
    """Any byte order and alignment of int32/int64 indices and float32/float64 weights works,
    copied or shared, and keeps its element size."""
    indptr = np.array([0, 1, 2, 2])
    indices = np.array([1, 2])
    weights = np.array([0.5, 0.5])
    seeds = np.array([1.0, 0, 0])
    expected = engram.spread(engram.Graph(indptr, indices, weights), seeds)

    def unaligned(a):
        raw = np.zeros(a.nbytes + 1, np.uint8)
        u = np.ndarray(a.shape, a.dtype, raw.data, 1)
        u[...] = a
        assert not u.flags.aligned
        return u

    for ityp in ("<i4", ">i4", "<i8", ">i8"):
        for wtyp in ("<f4", ">f4", "<f8", ">f8"):
            for make in (np.asarray, unaligned):
                arrays = (make(indptr.astype(ityp)), make(indices.astype(ityp)), make(weights.astype(wtyp)))
                for copy in (True, False):
                    g = engram.Graph(*arrays, copy=copy)
                    assert g.indices.dtype.itemsize == int(ityp[-1]) and g.indices.dtype.isnative
                    assert g.weights.dtype.itemsize == int(wtyp[-1]) and g.weights.dtype.isnative
                    for a in (g.indptr, g.indices, g.weights):
                        assert a.flags.aligned and a.flags.c_contiguous
                    np.testing.assert_array_equal(engram.spread(g, seeds), expected)
                    np.testing.assert_array_equal(ref.spread(g, seeds), expected)


def test_pull_layout_is_built_once_and_only_when_needed():
    rng = np.random.default_rng(2)
    g = engram.Graph(*rows.spread_graph_arrays(rng, 500, 3000, weights="f32"))
    with tuning("push"):
        engram.spread(g, {0: 1.0})
    assert "pull_plan" not in g._cache
    with tuning("pull"):
        engram.spread(g, {0: 1.0}, normalize="out")
    plan = g._cache["pull_plan"]
    engram.spread(g, rng.random(500), normalize="out", threshold=0)
    assert g._cache["pull_plan"] is plan


def test_dict_seeds_equal_dense():
    rng = np.random.default_rng(9)
    g = engram.Graph(*rows.spread_graph_arrays(rng, 40, 160, weights="f64"))
    d = {3: 1.0, 17: 0.5, 39: 2.0, 0: 0.0}
    for direction in ("push", "pull"):
        with tuning(direction):
            np.testing.assert_array_equal(
                engram.spread(g, d, threshold=1e-3), engram.spread(g, dense(d, 40), threshold=1e-3))
    assert np.array_equal(engram.spread(g, {}), np.zeros(40, np.float32))
    assert engram.spread(g, {np.int64(3): np.float32(1.0)})[3] == 1.0


def test_out_and_in_place():
    rng = np.random.default_rng(4)
    g = engram.Graph(*rows.spread_graph_arrays(rng, 30, 90, weights="f32"))
    seeds = rng.random((3, 30)).astype(np.float32)
    expected = engram.spread(g, seeds, threshold=1e-3)
    out = np.full((3, 30), -1.0, np.float32)
    assert engram.spread(g, seeds, threshold=1e-3, out=out) is out
    np.testing.assert_array_equal(out, expected)
    inplace = seeds.copy()
    assert engram.spread(g, inplace, threshold=1e-3, out=inplace) is inplace
    np.testing.assert_array_equal(inplace, expected)
    # rows of a wider array, and reversed rows
    wide = np.zeros((3, 40), np.float32)
    engram.spread(g, seeds, threshold=1e-3, out=wide[:, :30])
    np.testing.assert_array_equal(wide[:, :30], expected)
    np.testing.assert_array_equal(engram.spread(g, seeds[::-1], threshold=1e-3), expected[::-1])
    # strided seeds (a column step) are copied once
    np.testing.assert_array_equal(engram.spread(g, np.repeat(seeds, 2, axis=1)[:, ::2],
                                                threshold=1e-3), expected)


def test_empty_and_single_node():
    empty = engram.Graph(np.zeros(1, np.int64), np.zeros(0, np.int64))
    assert engram.spread(empty, np.zeros(0)).shape == (0,)
    assert engram.spread(empty, np.zeros((4, 0), np.float32)).shape == (4, 0)
    assert engram.spread(empty, {}).shape == (0,)
    one = engram.Graph(np.array([0, 1]), np.array([0]), np.array([0.5]))
    for direction in ("push", "pull"):
        with tuning(direction):
            assert engram.spread(one, np.array([2.0]), threshold=0)[0] == 2.0
            got = engram.spread(one, np.array([2.0]), threshold=0, revisit=True, max_depth=3)
            assert got[0] == np.float32(2.0 * (1 + 0.425 + 0.425**2 + 0.425**3))
    g = engram.Graph(np.array([0, 0]), np.zeros(0, np.int64))
    assert engram.spread(g, np.zeros((0, 1))).shape == (0, 1)
    assert engram.spread(g, np.array([1.0]), max_depth=0)[0] == 1.0


def test_float64_seeds_round_to_float32():
    g = engram.Graph(np.array([0, 0, 0]), np.zeros(0, np.int64))
    s = np.array([1 + 2**-30, 1e-50])
    np.testing.assert_array_equal(engram.spread(g, s), s.astype(np.float32))


def test_reference_backend_switch():
    rng = np.random.default_rng(6)
    g = engram.Graph(*rows.spread_graph_arrays(rng, 30, 100, weights="f32"))
    s = rng.random(30)
    with engram.backend("reference"):
        r = engram.spread(g, s, normalize="out", threshold=1e-3)
    np.testing.assert_array_equal(r, ref.spread(g, s, normalize="out", threshold=1e-3))


def test_large_graph_overflows_arena_to_heap():
    """Scratch of a big graph does not fit the default arena: it comes from the heap, counted."""
    rng = np.random.default_rng(8)
    n = 200_000
    g = engram.Graph(*rows.spread_graph_arrays(rng, n, 400_000, weights="f32"))
    engram.arena.reset_stats()
    got = engram.spread(g, {0: 1.0, 5: 1.0}, threads=1)
    assert engram.arena.stats()["total"]["overflows"] > 0
    assert got[0] == 1.0


def test_arena_raise_policy_leaves_out_untouched():
    rng = np.random.default_rng(8)
    n = 100_000
    g = engram.Graph(*rows.spread_graph_arrays(rng, n, 200_000, weights="f32"))
    out = np.full(n, 7.0, np.float32)
    config = engram.arena.config()
    engram.arena.configure(size="64K", overflow="raise")
    try:
        with pytest.raises(MemoryError):
            engram.spread(g, {0: 1.0}, out=out, threads=1)
    finally:
        engram.arena.configure(size=config["size"], overflow=config["overflow"])
        engram.spread(g, {0: 1.0})  # the next call resets the arena to its size
    assert np.all(out == 7.0)


def test_reference_backend_rejects_the_same_bad_inputs():
    """Rolled back to the reference, every bad input of the table still raises the same way."""
    import test_bad_input

    rows_checked = 0
    for case_id, build, exc, words in test_bad_input.CASES:
        if not case_id.startswith(("spread-", "graph-")):
            continue
        fn, args, kwargs, guarded = build()
        before = [np.array(a, copy=True) for a in guarded]
        with engram.backend("reference"), pytest.raises(exc) as info:
            fn(*args, **kwargs)
        for word in words:
            assert word in str(info.value), f"{case_id}: {word!r} not in {str(info.value)!r}"
        for a, b in zip(guarded, before):
            assert a.tobytes() == b.tobytes(), case_id
        rows_checked += 1
    assert rows_checked > 50


@pytest.mark.parametrize("direction", ["auto", "pull"])
def test_graph_past_the_blocking_size(simd_level, direction):
    """A graph just large enough for the default blocked layout (several source blocks)."""
    import engram.graph

    rng = np.random.default_rng(12)
    n = engram.graph._PULL_BLOCKED_FROM + 5000
    g = engram.Graph(*rows.spread_graph_arrays(rng, n, 2 * n, weights="f32", multi_edges=False))
    seeds = rng.random(n).astype(np.float32)
    kwargs = dict(max_depth=3, threshold=0.0, normalize="out", revisit=True)
    expected = ref.spread(g, seeds, **kwargs)
    with tuning(direction):
        got = engram.spread(g, seeds, threads=2, **kwargs)
    assert g._pull_sizes()[1] > 0 and len(g._cache["pull_raw"][3]) > 2 * (n // 4096)
    assert_close(got, expected, f"{simd_level} {direction}")


# ---------------------------------------------------------------------------
# The first dense hop on a fresh graph (the pull layout is built mid-call)
# ---------------------------------------------------------------------------


def chain_and_cloud(n, m, seed=0):
    """n random nodes with m edges, and a chain n -> n+1 -> n+2 beside them; the seed rows:
    one on the chain head (every hop pushes) and one over the cloud (the first hop pulls)."""
    sp = pytest.importorskip("scipy.sparse")
    rng = np.random.default_rng(seed)
    src = np.concatenate([rng.integers(0, n, m), [n, n + 1]])
    dst = np.concatenate([rng.integers(0, n, m), [n + 1, n + 2]])
    mat = sp.csr_matrix((np.ones(len(src)), (src, dst)), shape=(n + 3, n + 3))
    seeds = np.zeros((2, n + 3), np.float32)
    seeds[0, n] = 1.0
    seeds[1, :n] = 1.0
    return mat, seeds


@pytest.mark.parametrize("threads", [1, 2])
def test_in_place_batch_while_the_pull_layout_is_built(simd_level, threads):
    """out=seeds on a graph without a pull layout: a row that pushes only is done before the
    row that needs the layout asks for it; its seeds must still be the caller's."""
    mat, seeds = chain_and_cloud(2000, 20000)
    kwargs = dict(revisit=True, threads=threads)
    expected = ref.spread(mat, seeds, **kwargs)
    g = engram.Graph(mat)
    inplace = seeds.copy()
    assert engram.spread(g, inplace, out=inplace, **kwargs) is inplace
    assert "pull_plan" in g._cache  # the call did build the layout
    assert_close(inplace, expected, "in place")
    g = engram.Graph(mat)
    out = np.full_like(seeds, -7.0)
    assert engram.spread(g, seeds, out=out, **kwargs) is out
    assert_close(out, expected, "separate out")
    np.testing.assert_array_equal(out, engram.spread(g, seeds, **kwargs))
    # one row: held back in the kernel until it is complete
    for row in (seeds[0], seeds[1]):
        g = engram.Graph(mat)
        inplace = row.copy()
        assert engram.spread(g, inplace, out=inplace, **kwargs) is inplace
        assert_close(inplace, ref.spread(mat, row, **kwargs), "one row in place")


@contextlib.contextmanager
def small_arena(size):
    config = engram.arena.config()
    engram.arena.configure(size=size, overflow="raise")
    try:
        yield
    finally:
        engram.arena.configure(size=config["size"], overflow=config["overflow"])
        engram.spread(engram.Graph(np.zeros(1, np.int64), np.zeros(0, np.int64)), {})


def test_pull_layout_short_of_memory_falls_back_to_pushing():
    """The first run fits the arena, the pull layout does not: the hops push instead and the
    result is the reference's, whatever form the seeds and out take."""
    mat, seeds = chain_and_cloud(1000, 5000)
    for name, s, shape in (("batch", seeds.astype(np.float64), seeds.shape),
                           ("one row", seeds[1].astype(np.float64), seeds.shape[1:]),
                           ("dict", {int(i): 1.0 for i in range(1000)}, seeds.shape[1:])):
        out = np.full(shape, -7.0, np.float32)
        expected = ref.spread(mat, s)
        with small_arena("64K"):
            assert engram.spread(engram.Graph(mat), s, out=out, threads=1) is out
        assert_close(out, expected, name)
    inplace = seeds.copy()
    with small_arena("64K"):
        engram.spread(engram.Graph(mat), inplace, out=inplace, threads=1)
    assert_close(inplace, ref.spread(mat, seeds), "in place")


def test_failing_scratch_leaves_out_untouched():
    """A graph whose frontier scratch does not fit the arena at all: MemoryError, and out (or
    the seeds given as out) exactly as it was, whatever form the seeds take."""
    mat, seeds = chain_and_cloud(20000, 100000)
    for name, s, shape in (("batch", seeds.astype(np.float64), seeds.shape),
                           ("one row", seeds[1].astype(np.float64), seeds.shape[1:]),
                           ("dict", {int(i): 1.0 for i in range(20000)}, seeds.shape[1:])):
        out = np.full(shape, -7.0, np.float32)
        with small_arena("64K"), pytest.raises(MemoryError):
            engram.spread(engram.Graph(mat), s, out=out, threads=1)
        assert np.all(out == -7.0), name
    inplace = seeds.copy()
    with small_arena("64K"), pytest.raises(MemoryError):
        engram.spread(engram.Graph(mat), inplace, out=inplace, threads=1)
    np.testing.assert_array_equal(inplace, seeds)


def test_pull_layout_scratch_follows_the_graph_size():
    """Laying out a small graph takes scratch by its size, not a fixed window's."""
    rng = np.random.default_rng(3)
    g = engram.Graph(*rows.spread_graph_arrays(rng, 603, 3000, weights="f32"))
    with small_arena("64K"):
        g._spread_arrays(True, True)
    assert g._cache[("arrays", True)][6] is not None


def test_out_of_any_layout(simd_level):
    """out may be strided, reversed, non-contiguous along a row or unaligned, like seeds."""
    rng = np.random.default_rng(21)
    g = engram.Graph(*rows.spread_graph_arrays(rng, 40, 200, weights="f32"))
    seeds = rng.random((3, 40))
    expected = engram.spread(g, seeds, threshold=1e-3)
    raw = np.zeros(3 * 40 * 4 + 1, np.uint8)
    layouts = {
        "every other element": np.zeros((3, 80), np.float32)[:, ::2],
        "reversed rows and columns": np.zeros((3, 40), np.float32)[::-1, ::-1],
        "fortran": np.zeros((3, 40), np.float32, order="F"),
        "unaligned": np.ndarray((3, 40), np.float32, raw.data, 1),
        "rows 161 bytes apart": np.ndarray((3, 40), np.float32, np.zeros(2 * 161 + 160, np.uint8).data,
                                           0, (161, 4)),
        "rows of a wider array": np.zeros((3, 48), np.float32)[:, 4:44],
    }
    for name, out in layouts.items():
        assert engram.spread(g, seeds, threshold=1e-3, out=out) is out, name
        np.testing.assert_array_equal(out, expected, err_msg=name)
    one = np.zeros(80, np.float32)[::2]
    engram.spread(g, seeds[0], threshold=1e-3, out=one)
    np.testing.assert_array_equal(one, expected[0])
    with engram.backend("reference"):
        one[:] = 0
        engram.spread(g, seeds[0], threshold=1e-3, out=one)
    assert_close(one, expected[0], "reference")


# ---------------------------------------------------------------------------
# Dict seeds
# ---------------------------------------------------------------------------


class _Node:
    """A node id by the index protocol, with a side effect when converted."""

    def __init__(self, value, effect=None):
        self.value, self.effect = value, effect

    def __index__(self):
        if self.effect is not None:
            effect, self.effect = self.effect, None
            effect()
        return self.value


class _Value(int):
    """An int seed value whose float conversion runs a side effect."""

    def __new__(cls, value, effect):
        obj = super().__new__(cls, value)
        obj.effect = effect
        return obj

    def __float__(self):
        self.effect()
        return float(int(self))


def test_dict_seeds_changed_while_read():
    """A key's __index__ or a value's __float__ that grows or empties the dict: the call reads
    the entries the dict had when it was passed."""
    n = 1000
    g = engram.Graph(np.arange(n + 1), np.arange(n)[::-1].copy())
    for backend in ("c", "reference"):
        seeds: dict = {}
        seeds[_Node(1, lambda: seeds.update({i: 1.0 for i in range(2, 400)}))] = 1.0
        seeds[0] = 1.0
        with engram.backend(backend):
            got = engram.spread(g, seeds)
        expected = engram.spread(g, {1: 1.0, 0: 1.0})
        np.testing.assert_array_equal(got, expected, err_msg=backend)
        seeds = {}
        seeds[_Node(5, seeds.clear)] = 2.0
        seeds[7] = _Value(3, seeds.clear)
        seeds.update({i: 0.5 for i in range(10, 200)})
        snapshot = {5: 2.0, 7: 3.0, **{i: 0.5 for i in range(10, 200)}}
        with engram.backend(backend):
            got = engram.spread(g, seeds)
        np.testing.assert_array_equal(got, engram.spread(g, snapshot), err_msg=backend)


def test_dict_keys_by_the_index_protocol_later_value_wins():
    g = engram.Graph(np.array([0, 1, 2, 3, 3]), np.array([1, 2, 3]), np.array([1.0, 1.0, 1.0]))
    expected = engram.spread(g, {1: 3.0}, decay=0.5)
    for backend in ("c", "reference"):
        with engram.backend(backend):
            np.testing.assert_array_equal(engram.spread(g, {_Node(1): 1.0, _Node(1): 3.0}, decay=0.5),
                                          expected)
            np.testing.assert_array_equal(engram.spread(g, {_Node(1): 3.0, _Node(1): 0.0}, decay=0.5),
                                          np.zeros(4, np.float32))
            got = engram.spread(g, {np.uint8(1): 3.0, 2: 10**400 - 10**400}, decay=0.5)
            np.testing.assert_array_equal(got, np.float32([0, 3.0, 1.5, 0.75]))
            with pytest.raises(ValueError, match=r"seeds\[2\] = inf is infinite"):
                engram.spread(g, {2: 10**400})


# ---------------------------------------------------------------------------
# Overflow and NaN: one rule for both combines, every level, both directions
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("combine", ["sum", "max"])
@pytest.mark.parametrize("direction", ["push", "pull"])
@pytest.mark.parametrize("weights", ["f32", "f64"])
def test_overflowed_pulse_on_a_zero_weight_edge(simd_level, combine, direction, weights):
    """0 -> 1 overflows to inf; 1 -> 2 weighs 0, so it carries inf * 0 = NaN; 3 -> 2 carries a
    finite pulse.  Node 2's incoming pulse is NaN under either combine, whatever the order of
    its terms, and it does not fire."""
    dtype = np.float32 if weights == "f32" else np.float64
    for order in ((1, 3), (3, 1)):  # which edge into node 2 is laid out first
        indptr = np.array([0, 2, 3, 3, 4])
        indices = np.array([order[0], order[1], 2, 2])
        w = np.array([10.0 if order[0] == 1 else 1.0, 1.0 if order[0] == 1 else 10.0, 0.0, 1.0], dtype)
        g = engram.Graph(indptr, indices, w)
        seeds = np.array([1e308, 0, 0, 0])
        expected = ref.spread(g, seeds, combine=combine, decay=1.0)
        with tuning(direction):
            got = engram.spread(g, seeds, combine=combine, decay=1.0)
        np.testing.assert_array_equal(expected, np.float32([np.inf, np.inf, 0, np.inf]))
        np.testing.assert_array_equal(got, expected, err_msg=f"{order}")


# ---------------------------------------------------------------------------
# The reference takes and rejects what the C core does
# ---------------------------------------------------------------------------


class _Threads:
    def __index__(self):
        return 2


_PARITY_CALLS = {
    "big-endian float32 seeds": ((np.array([1.0, 0, 0, 0], ">f4"),), {}),
    "big-endian float64 batch": ((np.ones((2, 4), ">f8"),), {}),
    "0-d decay": ((np.array([1.0, 0, 0, 0]),), {"decay": np.array(0.5)}),
    "0-d int decay": ((np.array([1.0, 0, 0, 0]),), {"decay": np.array(1)}),
    "0-d bool decay": ((np.array([1.0, 0, 0, 0]),), {"decay": np.array(True)}),
    "numpy bool decay": ((np.array([1.0, 0, 0, 0]),), {"decay": np.bool_(True)}),
    "huge int decay": ((np.array([1.0, 0, 0, 0]),), {"decay": 10**400}),
    "1-d decay of one for max_depth 1": ((np.array([1.0, 0, 0, 0]),), {"decay": [0.5], "max_depth": 1}),
    "0-d threshold": ((np.array([1.0, 0, 0, 0]),), {"threshold": np.array(0.5)}),
    "0-d int threshold": ((np.array([1.0, 0, 0, 0]),), {"threshold": np.array(0, np.uint8)}),
    "1-d threshold": ((np.array([1.0, 0, 0, 0]),), {"threshold": np.array([0.5])}),
    "huge int threshold": ((np.array([1.0, 0, 0, 0]),), {"threshold": 10**400}),
    "float16 threshold": ((np.array([1.0, 0, 0, 0]),), {"threshold": np.float16(0.5)}),
    "normalize None": ((np.array([1.0, 0, 0, 0]),), {"normalize": None}),
    "combine None": ((np.array([1.0, 0, 0, 0]),), {"combine": None}),
    "threads numpy int": ((np.array([1.0, 0, 0, 0]),), {"threads": np.int64(2)}),
    "threads by __index__": ((np.array([1.0, 0, 0, 0]),), {"threads": _Threads()}),
    "threads float": ((np.array([1.0, 0, 0, 0]),), {"threads": 2.0}),
    "threads bool": ((np.array([1.0, 0, 0, 0]),), {"threads": True}),
    "threads 257": ((np.array([1.0, 0, 0, 0]),), {"threads": 257}),
    "threads huge": ((np.array([1.0, 0, 0, 0]),), {"threads": 10**30}),
    "dict key by __index__": (({_Node(1): 1.0},), {}),
    "dict key float": (({1.0: 1.0},), {}),
    "dict value huge int": (({1: 10**400},), {}),
    "strided 1-d out": ((np.array([1.0, 0, 0, 0]),), {"out": lambda: np.zeros(8, np.float32)[::2]}),
    "max_depth huge": ((np.array([1.0, 0, 0, 0]),), {"max_depth": 10**9}),
    "max_depth 2**64": ((np.array([1.0, 0, 0, 0]),), {"max_depth": 2**64}),
}


@pytest.mark.parametrize("name", list(_PARITY_CALLS))
def test_reference_takes_and_rejects_what_c_does(name):
    g = engram.Graph(np.array([0, 1, 2, 3, 3]), np.array([1, 2, 3]), np.array([1.0, 1.0, 1.0]))
    args, kwargs = _PARITY_CALLS[name]
    outcomes = []
    for backend in ("c", "reference"):
        kw = {k: (v() if callable(v) and k == "out" else v) for k, v in kwargs.items()}
        try:
            with engram.backend(backend):
                result = engram.spread(g, *args, **kw)
            outcomes.append(("ok", np.array(result)))
        except (TypeError, ValueError) as exc:
            outcomes.append((type(exc).__name__, str(exc)))
    (c_kind, c_value), (r_kind, r_value) = outcomes
    assert c_kind == r_kind, f"C: {c_kind} {c_value}; reference: {r_kind} {r_value}"
    if c_kind == "ok":
        assert_close(c_value, r_value, name)
    else:
        for word in ("threshold", "decay", "threads", "normalize", "combine", "seeds", "max_depth"):
            if word in name or (word == "seeds" and "dict" in name):
                assert word in c_value and word in r_value, (c_value, r_value)


def test_reference_decay_per_hop_is_lazy():
    """max_depth far beyond where the frontier empties costs what the hops cost."""
    import time

    g = engram.Graph(np.array([0, 1, 2, 3, 3]), np.array([1, 2, 3]), np.array([1.0, 1.0, 1.0]))
    start = time.perf_counter()
    got = ref.spread(g, np.array([1.0, 0, 0, 0]), max_depth=10**12)
    assert time.perf_counter() - start < 1.0
    np.testing.assert_array_equal(got, engram.spread(g, np.array([1.0, 0, 0, 0]), max_depth=10**12))
