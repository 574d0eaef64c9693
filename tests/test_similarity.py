"""cosine_similarity, normalize and top_k against the float64 reference, on every SIMD level.

Tolerances (the contract): |engram - reference| <= 1e-6 for float32 inputs of
unit scale, <= 1e-12 for float64; top_k ids equal the reference's full sort
except among scores tied within that tolerance.
"""
from __future__ import annotations

import threading
import time
import tracemalloc

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from strategies import (
    OUT_LAYOUTS,
    STRADDLING_DIMS,
    layouts,
    out_in_layout,
    out_layouts,
    similarity_matrix,
    similarity_shapes,
    vector_layouts,
)

import engram
from engram import _reference as ref

pytestmark = pytest.mark.usefixtures("c_backend")

#: the simd_level fixture is set once per level and shared by that level's examples
level_settings = settings(
    suppress_health_check=[
        HealthCheck.function_scoped_fixture,
        HealthCheck.too_slow,
        HealthCheck.data_too_large,
    ]
)

TOLERANCE = {np.dtype(np.float32): 1e-6, np.dtype(np.float64): 1e-12}
dtypes = st.sampled_from([np.float32, np.float64])


def result_dtype(*arrays):
    return np.dtype(np.float32) if all(a.dtype == np.float32 for a in arrays) else np.dtype(np.float64)


def call_with_out(fn, args, out_and_base, **kwargs):
    """fn(*args, out=out): returns out's values, checking that fn returned out itself and
    wrote nothing in out's buffer outside out's elements."""
    out, base = out_and_base
    before = base.copy()
    assert fn(*args, out=out, **kwargs) is out
    got = out.copy()
    out[...] = 7.0  # the fill out_in_layout() gave it
    assert base.tobytes() == before.tobytes(), "written outside out's elements"
    return got


def assert_close(got, expected, tol, what=""):
    """|got - expected| <= tol where finite; NaN exactly where the reference has NaN."""
    got = np.asarray(got, dtype=np.float64)
    expected = np.asarray(expected, dtype=np.float64)
    assert got.shape == expected.shape, f"{what}: shape {got.shape} != {expected.shape}"
    nan_got, nan_expected = np.isnan(got), np.isnan(expected)
    assert np.array_equal(nan_got, nan_expected), (
        f"{what}: NaN at {np.argwhere(nan_got != nan_expected)[:5].tolist()}: "
        f"got {got[nan_got != nan_expected][:5]}, expected {expected[nan_got != nan_expected][:5]}"
    )
    if got.size:
        err = np.abs(np.where(nan_expected, 0.0, got - expected))
        worst = np.unravel_index(np.argmax(err), err.shape)
        assert err[worst] <= tol, f"{what}: error {err[worst]:.3g} > {tol:g} at {worst}: got {got[worst]!r}, expected {expected[worst]!r}"
    assert np.all(np.abs(got[~nan_got]) <= 1.0), f"{what}: a cosine outside [-1, 1]"


# --------------------------------------------------------------------------
# cosine_similarity
# --------------------------------------------------------------------------


@level_settings
@given(data=st.data(), dtype=dtypes, d=st.sampled_from(STRADDLING_DIMS))
def test_pair_matches_reference(simd_level, data, dtype, d):
    xy = data.draw(similarity_matrix(2, d, dtype), label="x, y")
    x = data.draw(vector_layouts(xy[0]), label="x layout")
    y = data.draw(vector_layouts(xy[1]), label="y layout")
    got = engram.cosine_similarity(x, y)
    assert type(got) is float
    expected = ref._cosine_matrix(xy[:1], xy[1:])[0, 0]
    assert_close(got, expected, TOLERANCE[np.dtype(dtype)], f"{simd_level} d={d}")


@level_settings
@given(data=st.data(), dtype=dtypes, shape=similarity_shapes(max_work=1 << 22, max_rows=2000))
def test_one_to_many_matches_reference(simd_level, data, dtype, shape):
    _, n, d = shape
    rows = data.draw(similarity_matrix(n, d, dtype), label="rows")
    vec = data.draw(similarity_matrix(1, d, dtype), label="vector")[0]
    rows_in = data.draw(layouts(rows), label="rows layout")
    vec_in = data.draw(vector_layouts(vec), label="vector layout")
    tol = TOLERANCE[np.dtype(dtype)]
    expected = ref._cosine_matrix(vec[None, :], rows)[0]
    got = engram.cosine_similarity(vec_in, rows_in)
    assert got.dtype == dtype and got.shape == (n,)
    assert_close(got, expected, tol, f"{simd_level} (d,)x(n,d) n={n} d={d}")
    got = engram.cosine_similarity(rows_in, vec_in)
    assert got.dtype == dtype and got.shape == (n,)
    assert_close(got, expected, tol, f"{simd_level} (m,d)x(d,) m={n} d={d}")
    out = data.draw(out_layouts((n,), dtype), label="out")
    got = call_with_out(engram.cosine_similarity, (vec_in, rows_in), out)
    assert_close(got, expected, tol, f"{simd_level} (d,)x(n,d) into out")
    got = call_with_out(engram.cosine_similarity, (rows_in, vec_in), out)
    assert_close(got, expected, tol, f"{simd_level} (m,d)x(d,) into out")


@level_settings
@given(data=st.data(), dtype=dtypes, shape=similarity_shapes())
def test_many_to_many_matches_reference(simd_level, data, dtype, shape):
    m, n, d = shape
    x = data.draw(similarity_matrix(m, d, dtype), label="x")
    y = data.draw(similarity_matrix(n, d, dtype), label="y")
    x_in = data.draw(layouts(x), label="x layout")
    y_in = data.draw(layouts(y), label="y layout")
    got = engram.cosine_similarity(x_in, y_in)
    assert got.dtype == dtype and got.shape == (m, n)
    expected = ref._cosine_matrix(x, y)
    assert_close(got, expected, TOLERANCE[np.dtype(dtype)], f"{simd_level} ({m},{d})x({n},{d})")
    out = data.draw(out_layouts((m, n), dtype), label="out")
    got = call_with_out(engram.cosine_similarity, (x_in, y_in), out)
    assert_close(got, expected, TOLERANCE[np.dtype(dtype)], f"{simd_level} ({m},{d})x({n},{d}) into out")


@level_settings
@given(data=st.data(), d=st.sampled_from([1, 7, 33, 768]))
def test_mixed_dtypes_compute_in_float64(simd_level, data, d):
    x = data.draw(similarity_matrix(5, d, np.float32), label="x")
    y = data.draw(similarity_matrix(4, d, np.float64), label="y")
    for a, b in ((x, y), (y, x)):
        got = engram.cosine_similarity(a, b)
        assert got.dtype == np.float64
        assert_close(got, ref._cosine_matrix(a, b), 1e-12, "mixed")
        assert engram.cosine_similarity(a[0], b).dtype == np.float64
    assert_close(engram.cosine_similarity(x[0], y[0]), ref._cosine_matrix(x[:1], y[:1])[0, 0], 1e-12, "pair")


@pytest.mark.parametrize("d", [4096, 20000])
def test_float32_flush_keeps_long_vectors_accurate(simd_level, rng, d):
    """All-positive vectors make every partial sum grow: the worst case for float32 lanes."""
    x = rng.random((6, d)).astype(np.float32)
    y = rng.random((5, d)).astype(np.float32)
    expected = ref._cosine_matrix(x, y)
    assert_close(engram.cosine_similarity(x, y), expected, 1e-6, "many")
    assert_close(engram.cosine_similarity(x[0], y), expected[0], 1e-6, "one-to-many")
    assert abs(engram.cosine_similarity(x[0], y[0]) - expected[0, 0]) <= 1e-6


@pytest.mark.parametrize("d", [5, 40, 67, 130])  # small-d columns and register tiles
def test_tile_position_does_not_change_a_pair(simd_level, rng, d):
    """Permuting rows moves pairs between tile slots (or vector lanes) and blocks; their values
    stay bit-identical."""
    for dtype in (np.float32, np.float64):
        x = rng.standard_normal((29, d)).astype(dtype)
        y = rng.standard_normal((83, d)).astype(dtype)
        full = engram.cosine_similarity(x, y)
        p, r = rng.permutation(29), rng.permutation(83)
        np.testing.assert_array_equal(engram.cosine_similarity(x[p], y[r]), full[p][:, r])
        np.testing.assert_array_equal(engram.cosine_similarity(x[3:11], y[5:70]), full[3:11, 5:70])


def test_edge_values(simd_level):
    for dtype, huge, denormal in ((np.float32, 1e20, 1e-40), (np.float64, 1e200, 1e-310)):
        a = np.array([1.0, 2.0, -3.0, 0.5], dtype=dtype)
        b = np.array([-2.0, 0.0, 1.0, 4.0], dtype=dtype)
        expected = float(ref._cosine_matrix(a[None], b[None])[0, 0])
        zero = np.zeros(4, dtype=dtype)
        cs = engram.cosine_similarity
        assert cs(a, zero) == 0.0 and cs(zero, zero) == 0.0
        assert np.isnan(cs(a, np.array([1, np.nan, 0, 0], dtype=dtype)))
        assert np.isnan(cs(np.array([np.inf, 0, 0, 0], dtype=dtype), b))
        assert np.isnan(cs(zero, np.array([np.inf, 0, 0, 0], dtype=dtype)))
        assert cs(a, a * 2) == 1.0 and cs(a, -a) == -1.0
        # the rescue path: denormal and huge vectors give the same cosine as unit-scale ones
        assert abs(cs(a * dtype(denormal), b) - expected) <= 1e-6
        assert abs(cs(a * dtype(huge), b * dtype(huge)) - expected) <= 1e-6
        assert abs(cs(a * dtype(denormal), b * dtype(huge)) - expected) <= 1e-6
        many = np.stack([a, a * dtype(denormal), a * dtype(huge), zero, a * np.nan])
        got = cs(b, many)
        assert_close(got, [expected, expected, expected, 0.0, np.nan], 1e-6, "rows")
        assert_close(cs(many, many[:3]), ref._cosine_matrix(many, many[:3]), 1e-6, "matrix")
        # empty inputs are defined results, not errors
        assert cs(np.zeros(0, dtype), np.zeros(0, dtype)) == 0.0
        assert cs(a, np.zeros((0, 4), dtype)).shape == (0,)
        assert cs(np.zeros((3, 4), dtype), np.zeros((0, 4), dtype)).shape == (3, 0)
        assert cs(np.zeros((0, 4), dtype), np.zeros((2, 4), dtype)).shape == (0, 2)
        np.testing.assert_array_equal(cs(np.zeros((2, 0), dtype), np.zeros((3, 0), dtype)), 0.0)


def test_out_is_written_and_returned(simd_level, rng):
    x = rng.standard_normal((7, 40)).astype(np.float32)
    y = rng.standard_normal((9, 40)).astype(np.float32)
    out = np.full((7, 9), 5.0, dtype=np.float32)
    assert engram.cosine_similarity(x, y, out=out) is out
    np.testing.assert_array_equal(out, engram.cosine_similarity(x, y))
    # an out with a row stride (a view of a wider array)
    wide = np.zeros((7, 20), dtype=np.float32)
    engram.cosine_similarity(x, y, out=wide[:, 3:12])
    np.testing.assert_array_equal(wide[:, 3:12], out)
    assert not wide[:, :3].any() and not wide[:, 12:].any()
    vec = np.empty(7, dtype=np.float32)
    assert engram.cosine_similarity(x, y[0], out=vec) is vec
    np.testing.assert_array_equal(vec, engram.cosine_similarity(x, y[0]))


@pytest.mark.parametrize("layout", OUT_LAYOUTS)
def test_out_in_any_layout(simd_level, rng, layout):
    """Any writeable out of the right shape and dtype works, as in NumPy (Fortran order,
    strided or reversed columns, unaligned): the reference's values, nothing else written."""
    cs = engram.cosine_similarity
    for dtype in (np.float32, np.float64):
        tol = TOLERANCE[np.dtype(dtype)]
        for m, n, d in ((7, 9, 3), (7, 9, 40), (5, 6, 200), (70, 150, 5)):  # small-d and tile paths
            x = rng.standard_normal((m, d)).astype(dtype)
            y = rng.standard_normal((n, d)).astype(dtype)
            x[1] = 0
            y[2, 0] = np.nan
            expected = ref.cosine_similarity(x, y)
            what = f"{simd_level} {layout} {np.dtype(dtype)} ({m},{d})x({n},{d})"
            assert_close(call_with_out(cs, (x, y), out_in_layout(layout, (m, n), dtype)), expected, tol, what)
            assert_close(call_with_out(cs, (x[0], y), out_in_layout(layout, (n,), dtype)), expected[0], tol, what)
            assert_close(call_with_out(cs, (x, y[0]), out_in_layout(layout, (m,), dtype)), expected[:, 0], tol, what)
            assert_close(call_with_out(engram.normalize, (x,), out_in_layout(layout, x.shape, dtype)),
                         ref.normalize(x), tol, what)
            assert_close(call_with_out(engram.normalize, (x[0],), out_in_layout(layout, (d,), dtype)),
                         ref.normalize(x[0]), tol, what)


def test_out_views_numpy_users_pass(simd_level, rng):
    x = rng.standard_normal((4, 5)).astype(np.float32)
    y = rng.standard_normal((6, 5)).astype(np.float32)
    expected = ref.cosine_similarity(x, y)
    backing = np.zeros(8, np.float32)
    got = engram.cosine_similarity(x, y[0], out=backing[::-2])  # a reversed, strided 1-D view
    assert_close(got, expected[:, 0], 1e-6)
    assert not backing[::2].any()
    transposed = np.zeros((6, 4), np.float32)
    engram.cosine_similarity(x, y, out=transposed.T)  # Fortran order
    assert_close(transposed.T, expected, 1e-6)
    grid = np.zeros((6, 12), np.float32)
    engram.normalize(x, out=grid[1:5, 10:0:-2])  # reversed, strided columns
    assert_close(grid[1:5, 10:0:-2], ref.normalize(x), 1e-6)
    grid[1:5, 10:0:-2] = 0
    assert not grid.any()


def test_out_overlapping_a_converted_input_is_rejected():
    """The overlap check looks at the caller's arrays, not the copies made of them
    (promotion to float64, byte order, alignment): out never clobbers an input."""
    rng = np.random.default_rng(3)
    buf = np.zeros(64, np.float64)
    x = buf.view(np.float32)[:24].reshape(3, 8)  # float32, promoted to a float64 copy
    x[...] = rng.standard_normal((3, 8))
    before = buf.copy()
    for backend in ("c", "reference"):
        with engram.backend(backend), pytest.raises(ValueError, match="out overlaps x"):
            engram.cosine_similarity(x, rng.standard_normal((4, 8)), out=buf[:12].reshape(3, 4))
        assert buf.tobytes() == before.tobytes(), backend


def test_huge_float64_rows_overflowing_products():
    """x with 1e160-scale rows has squared norms past the float64 range: cosines still exact."""
    a = np.array([[1e160, 1e160], [1e160, -1e160], [3e200, 4e200]])
    assert_close(engram.cosine_similarity(a, a), ref.cosine_similarity(a, a), 1e-12)


def test_array_likes_and_lists():
    assert engram.cosine_similarity([1.0, 0.0], [0.0, 2.0]) == 0.0
    got = engram.cosine_similarity([[1.0, 0.0], [1.0, 1.0]], [1.0, 0.0])
    assert got.dtype == np.float64
    np.testing.assert_allclose(got, [1.0, 2 ** -0.5], rtol=1e-15)
    big_endian = np.array([3.0, 4.0], dtype=">f8")
    assert engram.cosine_similarity(big_endian, np.array([3.0, 4.0])) == 1.0


# --------------------------------------------------------------------------
# normalize
# --------------------------------------------------------------------------


@level_settings
@given(data=st.data(), dtype=dtypes, d=st.sampled_from(STRADDLING_DIMS), n=st.integers(0, 40),
       one_d=st.booleans(), out_kind=st.sampled_from(["none", "separate", "in_place"]))
def test_normalize_matches_reference(simd_level, data, dtype, d, n, one_d, out_kind):
    x = data.draw(similarity_matrix(max(n, 1) if one_d else n, d, dtype), label="x")
    if one_d:
        x = x[0]
    x_in = data.draw(vector_layouts(x) if one_d else layouts(x), label="layout")
    expected = ref.normalize(x)
    tol = TOLERANCE[np.dtype(dtype)]
    if out_kind == "none":
        got = engram.normalize(x_in)
    elif out_kind == "separate":
        got = call_with_out(engram.normalize, (x_in,), data.draw(out_layouts(x.shape, dtype), label="out"))
    else:
        work = x.copy()
        got = engram.normalize(work, out=work)
        assert got is work
    assert got.dtype == dtype and got.shape == x.shape
    assert_close(got, expected, tol, f"{simd_level} normalize {x.shape}")
    rows = np.atleast_2d(got)
    finite = np.isfinite(rows).all(axis=1)
    norms = np.linalg.norm(rows[finite].astype(np.float64), axis=1)
    zero_rows = ~np.atleast_2d(x)[finite].any(axis=1)
    np.testing.assert_allclose(norms[~zero_rows], 1.0, atol=10 * tol)


def test_normalize_edge_rows(simd_level):
    for dtype, huge, denormal in ((np.float32, 1e30, 1e-42), (np.float64, 1e300, 1e-315)):
        x = np.array([[3, 4], [0, 0], [-0.0, 0], [np.nan, 1], [np.inf, 1],
                      [3 * huge, 4 * huge], [3 * denormal, 4 * denormal]], dtype=dtype)
        got = engram.normalize(x)
        np.testing.assert_allclose(got[[0, 5]], [[0.6, 0.8]] * 2, rtol=1e-6)
        # denormals carry few bits: the input itself is only roughly 3:4
        exact = x[6].astype(np.float64) / np.hypot(*x[6].astype(np.float64))
        np.testing.assert_allclose(got[6], exact, rtol=1e-6)
        assert np.array_equal(np.signbit(got[1:3]), np.signbit(x[1:3])) and not got[1:3].any()
        assert np.isnan(got[3:5]).all()


# --------------------------------------------------------------------------
# top_k
# --------------------------------------------------------------------------


def reference_scores(q2, corpus, metric, dtype):
    """float64 scores of every pair as the result dtype rounds them."""
    if metric == "cosine":
        s = ref._cosine_matrix(q2, corpus)
    else:
        s = ref._dot_matrix(q2, corpus)
    return s.astype(dtype).astype(np.float64)


def check_top_k(scores, ids, q2, corpus, k, metric, dtype):
    """ids equal the reference's full sort except among scores tied within the tolerance."""
    tol = TOLERANCE[np.dtype(dtype)]
    full = reference_scores(q2, corpus, metric, dtype)
    exp_scores, exp_ids = ref.top_k(q2, corpus, k, metric=metric)
    n = corpus.shape[0]
    for i in range(q2.shape[0]):
        valid = int((exp_ids[i] >= 0).sum())
        assert (ids[i] >= 0).sum() == valid, f"query {i}: {(ids[i] >= 0).sum()} results, expected {valid}"
        assert np.all(ids[i, valid:] == -1) and np.all(scores[i, valid:] == -np.inf)
        got_ids = ids[i, :valid]
        assert len(set(got_ids.tolist())) == valid and np.all((got_ids >= 0) & (got_ids < n))
        assert not np.isnan(scores[i]).any()
        if metric == "dot":
            # the dot product's error scales with the norms
            with np.errstate(over="ignore", invalid="ignore"):
                scale = np.linalg.norm(q2[i].astype(np.float64)) * np.linalg.norm(
                    corpus.astype(np.float64), axis=1).max(initial=0.0)
            scale = max(1.0, scale) if np.isfinite(scale) else np.inf
        else:
            scale = 1.0
        limit = tol * scale
        # scores of the returned ids are right, sorted, and as good as the reference's
        row = full[i]
        got_scores = scores[i, :valid].astype(np.float64)
        assert np.all(score_gap(row[got_ids], got_scores) <= limit), f"query {i}: score error"
        assert np.all(got_scores[:-1] >= got_scores[1:]), f"query {i}: not sorted"
        mismatch = got_ids != exp_ids[i, :valid]
        if mismatch.any():
            gap = score_gap(row[got_ids[mismatch]], exp_scores[i, :valid][mismatch])
            assert np.all(gap <= 2 * limit), (
                f"query {i}: ids {got_ids[mismatch]} vs {exp_ids[i, :valid][mismatch]}, score gap {gap.max()}")
        # ties (equal returned scores) go to the smaller id
        if valid > 1:
            equal = got_scores[1:] == got_scores[:-1]
            assert np.all(got_ids[1:][equal] > got_ids[:-1][equal]), f"query {i}: tie not broken by id"


def score_gap(a, b):
    """|a - b|, 0 where both are the same infinity."""
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    with np.errstate(invalid="ignore"):
        return np.where(a == b, 0.0, np.abs(a - b))


@level_settings
@given(data=st.data(), dtype=dtypes, shape=similarity_shapes(max_work=1 << 21, max_rows=400),
       metric=st.sampled_from(["cosine", "dot"]), one_query=st.booleans())
def test_top_k_matches_reference(simd_level, data, dtype, shape, metric, one_query):
    m, n, d = shape
    if one_query:
        m = 1
    q = data.draw(similarity_matrix(m, d, dtype), label="queries")
    corpus = data.draw(similarity_matrix(n, d, dtype), label="corpus")
    if metric == "dot" and n:
        # rows the float64 reference itself overflows are not a fair comparison
        finite = np.isfinite(corpus).all(axis=1)
        big = np.abs(np.where(finite[:, None], corpus, 0)).max(axis=1) > (1e10 if dtype == np.float32 else 1e100)
        corpus[big] = 1.0
    k = data.draw(st.integers(1, n + 3), label="k")
    corpus_in = data.draw(layouts(corpus), label="corpus layout")
    q_in = data.draw(vector_layouts(q[0]), label="query layout") if one_query else data.draw(layouts(q), label="queries layout")
    scores, ids = engram.top_k(q_in, corpus_in, k, metric=metric)
    assert scores.dtype == dtype and ids.dtype == np.int64
    assert scores.shape == ids.shape == ((k,) if one_query else (m, k))
    check_top_k(np.atleast_2d(scores), np.atleast_2d(ids), q, corpus, k, metric, dtype)


def test_top_k_ties_nan_and_padding(simd_level):
    for dtype in (np.float32, np.float64):
        base = np.array([1.0, 2.0, 3.0], dtype=dtype)
        corpus = np.stack([base * 0, base, -base, base * np.nan, base * 3, base, base * 2]).astype(dtype)
        scores, ids = engram.top_k(base, corpus, 10)
        # equal cosines 1.0 for rows 1, 4, 5, 6 in id order, then 0 (zero row), then -1
        np.testing.assert_array_equal(ids, [1, 4, 5, 6, 0, 2, -1, -1, -1, -1])
        np.testing.assert_array_equal(scores[:6], [1, 1, 1, 1, 0, -1])
        assert np.all(scores[6:] == -np.inf)
        scores, ids = engram.top_k(np.stack([base, -base]), corpus, 2, metric="dot")
        np.testing.assert_array_equal(ids, [[4, 6], [2, 0]])
        nan_corpus = np.full((50, 3), np.nan, dtype=dtype)
        scores, ids = engram.top_k(np.stack([base, base]), nan_corpus, 3)
        assert np.all(ids == -1) and np.all(scores == -np.inf)
        scores, ids = engram.top_k(base, np.zeros((0, 3), dtype), 2)
        np.testing.assert_array_equal(ids, [-1, -1])
        scores, ids = engram.top_k(np.zeros((0, 3), dtype), corpus, 2)
        assert scores.shape == ids.shape == (0, 2)


def test_top_k_dot_keeps_infinite_scores(simd_level):
    corpus = np.array([[1, 0], [1e38, 1e38], [-1e38, -1e38], [0, 1]], dtype=np.float32)
    scores, ids = engram.top_k(np.array([10.0, 10.0], np.float32), corpus, 4, metric="dot")
    np.testing.assert_array_equal(ids, [1, 0, 3, 2])
    assert scores[0] == np.inf and scores[3] == -np.inf


def _exact_dot(x, y):
    """The float64 value of the exact dot product (rounded once)."""
    from fractions import Fraction

    total = sum(Fraction(float(a)) * Fraction(float(b)) for a, b in zip(x, y))
    try:
        return float(total)
    except OverflowError:
        return np.inf if total > 0 else -np.inf


def test_top_k_dot_float64_products_beyond_the_range(simd_level):
    """Products of ~1e160 elements overflow float64: the sum is the true finite value or the
    signed infinity, never inf - inf = NaN (which would drop the row)."""
    a = 2.0**530  # ~3.5e159; powers of two keep every product and sum exact
    corpus = np.array([[a, a], [a, -a * (1 - 2.0**-40)], [-a, -a], [1.0, 2.0], [2.0**-600, 0.0]])
    queries = np.array([[a, a], [-a, -a], [1.0, 1.0]])
    for q in (queries[0], queries):  # one query (streaming) and many (blocks)
        scores, ids = engram.top_k(q, corpus, len(corpus), metric="dot")
        ref_scores, ref_ids = ref.top_k(q, corpus, len(corpus), metric="dot")
        np.testing.assert_array_equal(ids, ref_ids)
        for i, qi in enumerate(np.atleast_2d(q)):
            exact = np.array([_exact_dot(qi, row) for row in corpus])
            order = np.lexsort((np.arange(len(corpus)), -exact))
            np.testing.assert_array_equal(np.atleast_2d(ids)[i], order)
            for got in (np.atleast_2d(scores)[i], np.atleast_2d(ref_scores)[i]):
                assert not np.isnan(got).any()
                np.testing.assert_allclose(got, exact[order], rtol=1e-12, atol=0)
    scores, ids = engram.top_k(queries[0], corpus, 3, metric="dot")
    np.testing.assert_array_equal(ids, [0, 1, 3])
    assert scores[0] == np.inf and scores[1] == 2.0**1020


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_reference_accepts_either_byte_order(rng, dtype):
    """Non-native byte order is valid input for the C core, so for the reference backend, the
    fallback and verify mode too; results are native."""
    x = rng.standard_normal((4, 6)).astype(dtype)
    y = rng.standard_normal((5, 6)).astype(dtype)
    swap = np.dtype(dtype).newbyteorder()
    xs, ys = x.astype(swap), y.astype(swap)
    calls = [("cosine_similarity", lambda x, y: (x, y)), ("cosine_similarity", lambda x, y: (x[0], y)),
             ("cosine_similarity", lambda x, y: (x[0], y[0])), ("cosine_similarity", lambda x, y: (x, y[0])),
             ("normalize", lambda x, y: (x,)), ("top_k", lambda x, y: (x, y, 3)),
             ("top_k", lambda x, y: (x[0], y, 3))]
    for name, args in calls:
        expected = getattr(ref, name)(*args(x, y))
        with engram.backend("reference"):
            got_ref = getattr(engram, name)(*args(xs, ys))
        got_c = getattr(engram, name)(*args(xs, ys))
        for got in (got_ref, got_c):
            for g, e in zip(got if isinstance(got, tuple) else (got,),
                            expected if isinstance(expected, tuple) else (expected,)):
                g, e = np.asarray(g), np.asarray(e)
                assert g.dtype == e.dtype and g.dtype.isnative, (name, g.dtype)
                if g.dtype.kind == "f":
                    assert_close(g, e, TOLERANCE[np.dtype(dtype)], name)
                else:
                    np.testing.assert_array_equal(g, e)
    # out=x in place needs exactly x: same memory, layout and byte order
    with pytest.raises(ValueError, match="out overlaps x"):
        ref.normalize(xs, out=xs.view(x.dtype))
    engram.verify(1.0, strict=True)
    try:
        engram.top_k(xs[0], ys, 2)
        engram.cosine_similarity(xs, ys)
        engram.normalize(xs)
    finally:
        engram.verify(0.0, strict=False)


class _IndexOnly:
    """An integer by the index protocol only (like a NumPy integer)."""

    def __init__(self, value):
        self.value = value

    def __index__(self):
        return self.value


@pytest.mark.parametrize("backend", ["c", "reference"])
def test_threads_accepts_any_integer(rng, backend):
    x = rng.standard_normal((70, 8)).astype(np.float32)
    y = rng.standard_normal((90, 8)).astype(np.float32)
    with engram.backend(backend):
        expected = engram.cosine_similarity(x, y, threads=1)
        expected_k = engram.top_k(x, y, 3, threads=1)
        for threads in (np.int64(2), np.int32(1), np.uint8(3), _IndexOnly(2), 256):
            np.testing.assert_array_equal(engram.cosine_similarity(x, y, threads=threads), expected)
            np.testing.assert_array_equal(engram.top_k(x, y, 3, threads=threads)[1], expected_k[1])
        for bad in (2**70, -(2**70), 0, -1, 257, np.int64(0), np.uint64(2**63), _IndexOnly(2**80)):
            with pytest.raises(ValueError) as info:
                engram.cosine_similarity(x, y, threads=bad)
            message = str(info.value)
            assert "threads" in message and str(int(bad.__index__())) in message, message
            with pytest.raises(ValueError, match="threads"):
                engram.top_k(x, y, 3, threads=bad)
        for bad in (True, np.bool_(True), 2.0, np.float64(2.0), "2", [2]):
            with pytest.raises(TypeError, match="threads"):
                engram.cosine_similarity(x, y, threads=bad)
            with pytest.raises(TypeError, match="threads"):
                engram.top_k(x, y, 3, threads=bad)


@pytest.mark.parametrize("dtype, d", [(np.float32, 1), (np.float32, 2), (np.float32, 3), (np.float32, 8),
                                      (np.float32, 16), (np.float64, 3)])
@pytest.mark.parametrize("threads", [1, 2])
def test_small_d_many_to_many_fits_the_default_arena(dtype, d, threads):
    """The scratch of the many-to-many paths has a fixed budget per thread whatever d is:
    60000 x d against 500 x d stays within the default 2 MiB arena (overflow="raise")."""
    rng = np.random.default_rng(d)
    x = rng.standard_normal((60000, d)).astype(dtype)
    y = rng.standard_normal((500, d)).astype(dtype)
    config = engram.arena.config()
    engram.arena.configure(size=engram.arena.DEFAULT_SIZE, overflow="raise")
    try:
        engram.arena.reset_stats()
        cos = engram.cosine_similarity(x, y, threads=threads)
        scores, ids = engram.top_k(x, y, 5, threads=threads)
        stats = engram.arena.stats()["total"]
    finally:
        engram.arena.configure(size=config["size"], overflow=config["overflow"],
                               zero_on_reset=config["zero_on_reset"])
    assert stats["overflows"] == 0 and stats["high_water"] < engram.arena.DEFAULT_SIZE, stats
    tol = TOLERANCE[np.dtype(dtype)]
    rows = np.arange(0, 60000, 997)
    expected = ref.cosine_similarity(x[rows], y)
    assert_close(cos[rows], expected, tol, f"d={d}")
    check_top_k(scores[rows], ids[rows], x[rows], y, 5, "cosine", dtype)


# --------------------------------------------------------------------------
# Threads, GIL, memory
# --------------------------------------------------------------------------


def test_threads_give_identical_results(simd_level, rng):
    x = rng.standard_normal((150, 33)).astype(np.float32)
    y = rng.standard_normal((700, 33)).astype(np.float32)
    y[::97] = 0
    x[::41, 3] = np.nan
    for a, b in ((x, y), (y, x), (x[0], y), (y, x[0])):
        one = engram.cosine_similarity(a, b, threads=1)
        for t in (2, 3, 5):
            np.testing.assert_array_equal(engram.cosine_similarity(a, b, threads=t), one)
    corpus = rng.standard_normal((5000, 40)).astype(np.float32)
    corpus[1000:1010] = corpus[7]  # exact ties across worker boundaries
    for q in (corpus[7], corpus[[7, 8, 9]]):
        for metric in ("cosine", "dot"):
            one = engram.top_k(q, corpus, 25, metric=metric, threads=1)
            for t in (2, 3, 4):
                got = engram.top_k(q, corpus, 25, metric=metric, threads=t)
                np.testing.assert_array_equal(got[0], one[0])
                np.testing.assert_array_equal(got[1], one[1])


def test_large_calls_release_the_gil(rng):
    corpus = rng.standard_normal((40_000, 256)).astype(np.float32)
    queries = rng.standard_normal((64, 256)).astype(np.float32)
    ticks = []
    done = threading.Event()

    def ticker():
        while not done.is_set():
            ticks.append(time.perf_counter())
            time.sleep(0.001)

    t = threading.Thread(target=ticker)
    t.start()
    try:
        start = time.perf_counter()
        for _ in range(3):
            engram.top_k(queries, corpus, 5, threads=1)
        end = time.perf_counter()
    finally:
        done.set()
        t.join()
    during = [s for s in ticks if start < s < end]
    assert len(during) >= 5, f"only {len(during)} ticks in {end - start:.3f} s: the GIL was held"


def test_top_k_memory_is_bounded_by_blocks_not_q_times_n(rng):
    q, n, d = 64, 200_000, 16
    corpus = rng.standard_normal((n, d)).astype(np.float32)
    queries = rng.standard_normal((q, d)).astype(np.float32)
    q_times_n_bytes = q * n * 4
    engram.arena.reset_stats()
    tracemalloc.start()
    try:
        scores, ids = engram.top_k(queries, corpus, 10, threads=2)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    arena = engram.arena.stats()["total"]
    assert peak < q_times_n_bytes / 100, f"Python allocations peaked at {peak} bytes"
    assert arena["high_water"] + arena["overflow_bytes"] < q_times_n_bytes / 20, arena
    # and the answer is right
    expected = ref.top_k(queries[:4], corpus, 10)
    np.testing.assert_array_equal(ids[:4], expected[1])


def test_many_python_threads(rng):
    corpus = rng.standard_normal((3000, 64)).astype(np.float32)
    queries = rng.standard_normal((8, 64)).astype(np.float32)
    expected = engram.top_k(queries, corpus, 7, threads=1)
    errors = []

    def worker():
        try:
            for _ in range(5):
                got = engram.top_k(queries, corpus, 7, threads=2)
                np.testing.assert_array_equal(got[1], expected[1])
                np.testing.assert_array_equal(engram.cosine_similarity(queries[0], corpus, threads=2),
                                              engram.cosine_similarity(queries[0], corpus, threads=1))
        except Exception as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=worker) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors[0]


def test_reference_backend_is_the_reference(rng):
    x = rng.standard_normal((4, 9)).astype(np.float32)
    with engram.backend("reference"):
        np.testing.assert_array_equal(engram.cosine_similarity(x, x), ref.cosine_similarity(x, x))
        np.testing.assert_array_equal(engram.top_k(x, x, 2)[1], ref.top_k(x, x, 2)[1])
        np.testing.assert_array_equal(engram.normalize(x), ref.normalize(x))
