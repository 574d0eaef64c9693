"""Rows of the registry (engram/_kernels.py): each kernel's random cases,
error measure and benchmark workloads, one section per kernel."""
from __future__ import annotations

import numpy as np

from ._kernels import Call, Case, Goal, Kernel, Workload, call, register_kernel, register_workload  # noqa: F401

# ==== similarity ====

from . import _reference as _sim_reference  # noqa: E402
from ._kernels import max_abs_error  # noqa: E402

#: dimensions straddling every vector width (4, 8, 16 lanes) and the embedding sizes
SIMILARITY_DIMS = tuple(range(1, 18)) + (31, 32, 33, 63, 64, 65, 127, 128, 129, 383, 384, 385,
                                          767, 768, 769, 1535, 1536, 1537, 4096)
#: what a row can have injected: the values the numerics contract is about
ROW_INJECTIONS = ("none", "zero", "nan", "inf", "neg_inf", "denormal_row", "tiny_row",
                  "huge_row", "denormal_elements", "duplicate", "scaled_copy", "negated")


def inject_rows(rng: np.random.Generator, a: np.ndarray, kinds) -> np.ndarray:
    """A copy of the 2-D array ``a`` with injection ``kinds[i]`` applied to row i.

    denormal_row: every element denormal (the float32 squared norm underflows);
    tiny_row / huge_row: ~1e-21 / ~1e21 magnitudes (squares under- / overflow
    float32); duplicate / scaled_copy / negated: another row again, doubled or
    negated (exact ties and cosines of exactly +-1).
    """
    a = np.array(a, copy=True)
    f32 = a.dtype.itemsize == 4
    denormal = 1e-41 if f32 else 1e-312
    tiny, huge = (1e-21, 1e21) if f32 else (1e-160, 1e160)
    n, d = a.shape
    for i, kind in enumerate(kinds):
        if d == 0 or kind == "none":
            continue
        j = int(rng.integers(d))
        if kind == "zero":
            a[i] = 0
        elif kind == "nan":
            a[i, j] = np.nan
        elif kind == "inf":
            a[i, j] = np.inf
        elif kind == "neg_inf":
            a[i, j] = -np.inf
        elif kind == "denormal_row":
            a[i] = (rng.standard_normal(d) * denormal).astype(a.dtype)
        elif kind == "tiny_row":
            a[i] *= a.dtype.type(tiny)
        elif kind == "huge_row":
            a[i] *= a.dtype.type(huge)
        elif kind == "denormal_elements":
            a[i, rng.random(d) < 0.5] = a.dtype.type(denormal)
        elif n > 1 and kind in ("duplicate", "scaled_copy", "negated"):
            src = a[int(rng.integers(n))].copy()
            a[i] = {"duplicate": src, "scaled_copy": src * 2, "negated": -src}[kind]
    return a


def _sim_rows(rng, n, d, dtype, inject_p=0.3):
    a = rng.standard_normal((n, d)).astype(dtype)
    if n and rng.random() < inject_p:
        kinds = [str(rng.choice(ROW_INJECTIONS)) for _ in range(n)]
        a = inject_rows(rng, a, kinds)
    return a


def _sim_layout(rng, a: np.ndarray):
    """The same values in another memory layout; returns (array, layout name)."""
    kinds = ["contiguous", "row_strided", "reversed", "fortran", "col_strided"]
    if a.ndim == 1:
        kinds = ["contiguous", "col_strided", "reversed"]
    kind = str(rng.choice(kinds))
    if kind == "contiguous":
        return a, kind
    if kind == "row_strided":
        pad = np.zeros((a.shape[0] * 2,) + a.shape[1:], dtype=a.dtype)
        pad[::2] = a
        return pad[::2], kind
    if kind == "reversed":
        return np.ascontiguousarray(a[::-1])[::-1], kind
    if kind == "fortran":
        return np.asfortranarray(a), kind
    wide = np.zeros(a.shape[:-1] + (a.shape[-1] * 2,), dtype=a.dtype)
    wide[..., ::2] = a
    return wide[..., ::2], kind


def _sim_dtypes(rng):
    r = rng.random()
    if r < 0.45:
        return np.float32, np.float32
    if r < 0.9:
        return np.float64, np.float64
    return (np.float32, np.float64) if r < 0.95 else (np.float64, np.float32)


def _sim_sizes(rng, d, max_work=1 << 17):
    limit = max(1, int((max_work / max(d, 1)) ** 0.5))
    return int(rng.integers(0, limit + 1)), int(rng.integers(0, limit + 1))


def _sim_tolerance(*arrays) -> float:
    # float32 in either byte order
    return 1e-6 if all(np.asarray(a).dtype.itemsize == 4 for a in arrays) else 1e-12


def _cosine_random_case(rng: np.random.Generator) -> Case:
    d = int(rng.choice(SIMILARITY_DIMS))
    tx, ty = _sim_dtypes(rng)
    kind = str(rng.choice(["pair", "one_to_many", "many_to_one", "many"]))
    m, n = _sim_sizes(rng, d)
    x = _sim_rows(rng, max(m, 1), d, tx)
    y = _sim_rows(rng, max(n, 1), d, ty)
    if kind in ("pair", "one_to_many"):
        x = x[0]
    if kind in ("pair", "many_to_one"):
        y = y[0]
    (x, lx), (y, ly) = _sim_layout(rng, x), _sim_layout(rng, y)
    label = f"{kind} x {x.dtype}{x.shape} {lx}, y {y.dtype}{y.shape} {ly}"
    return Case((x, y), {}, label)


def _normalize_random_case(rng: np.random.Generator) -> Case:
    d = int(rng.choice(SIMILARITY_DIMS))
    dtype = np.float32 if rng.random() < 0.5 else np.float64
    n, _ = _sim_sizes(rng, d, 1 << 16)
    x = _sim_rows(rng, max(n, 1), d, dtype)
    if rng.random() < 0.3:
        x = x[0]
    x, layout = _sim_layout(rng, x)
    return Case((x,), {}, f"x {x.dtype}{x.shape} {layout}")


def _top_k_random_case(rng: np.random.Generator) -> Case:
    d = int(rng.choice(SIMILARITY_DIMS))
    tq, tc = _sim_dtypes(rng)
    m, n = _sim_sizes(rng, d)
    metric = "cosine" if rng.random() < 0.7 else "dot"
    q = _sim_rows(rng, max(m, 1), d, tq)
    c = _sim_rows(rng, n, d, tc)
    if metric == "dot" and n:
        # keep the float64 reference itself finite: dot products of ~1e21-scale rows overflow it
        big = np.abs(np.where(np.isfinite(c), c, 0)).max(axis=1) > (1e10 if tc == np.float32 else 1e100)
        c[big] = 1
        qbig = np.abs(np.where(np.isfinite(q), q, 0)).max(axis=1) > (1e10 if tq == np.float32 else 1e100)
        q[qbig] = 1
    if rng.random() < 0.3:
        q = q[0]
    k = int(rng.integers(1, n + 4))
    (q, lq), (c, lc) = _sim_layout(rng, q), _sim_layout(rng, c)
    return Case((q, c, k), {"metric": metric},
                f"{metric} k={k} queries {q.dtype}{q.shape} {lq}, corpus {c.dtype}{c.shape} {lc}")


def _sim_reference_scores(q, c, metric):
    """float64 scores of every pair, rounded as the result dtype rounds them."""
    q2 = np.atleast_2d(np.asarray(q))
    c = np.asarray(c)
    dtype = np.float32 if q2.dtype.itemsize == 4 and c.dtype.itemsize == 4 else np.float64
    if metric == "cosine":
        s = _sim_reference._cosine_matrix(q2, c)
    else:
        s = _sim_reference._dot_matrix(q2, c)
    return s.astype(dtype).astype(np.float64)


def _top_k_tolerance(case: Case) -> float:
    q, c, _ = case.args
    tol = _sim_tolerance(q, c)
    if case.kwargs.get("metric") == "dot":
        # a dot product's error scales with the norms of its vectors
        with np.errstate(over="ignore", invalid="ignore"):
            qn = np.linalg.norm(np.where(np.isfinite(q), q, 0).astype(np.float64), axis=-1).max(initial=0.0)
            cn = np.linalg.norm(np.where(np.isfinite(c), c, 0).astype(np.float64), axis=-1).max(initial=0.0)
            scale = float(qn * cn)
        tol *= max(1.0, scale) if scale == scale else 1.0
    return tol


def _top_k_error(got, expected, case: Case) -> float:
    """Largest score error; inf if an id differs from the reference's where the scores are not
    tied within the tolerance, or a NaN is returned, or the padding differs."""
    gs, gi = (np.atleast_2d(np.asarray(a)) for a in got)
    es, ei = (np.atleast_2d(np.asarray(a)) for a in expected)
    if gs.shape != es.shape or gi.shape != ei.shape or gs.dtype != es.dtype or gi.dtype != np.int64:
        return float("inf")
    if np.isnan(gs).any() or not np.array_equal(gi < 0, ei < 0):
        return float("inf")
    err = max_abs_error(gs, es)
    mismatch = gi != ei
    if mismatch.any():
        q, c, _ = case.args
        full = _sim_reference_scores(q, c, case.kwargs.get("metric", "cosine"))
        rows, cols = np.nonzero(mismatch)
        got_ref = full[rows, gi[rows, cols]]
        with np.errstate(invalid="ignore"):
            gap = np.where(got_ref == es[rows, cols], 0.0, np.abs(got_ref - es[rows, cols]))
        if not np.all(gap <= 2 * _top_k_tolerance(case)):
            return float("inf")
        err = max(err, float(gap.max()))
    return err


def _cosine_edge_cases() -> list:
    out = []
    for dtype, denormal, huge in ((np.float32, 1e-40, 1e20), (np.float64, 1e-310, 1e200)):
        a = np.array([1, 2, -3, 0.5], dtype=dtype)
        b = np.array([-2, 0, 1, 4], dtype=dtype)
        zero = np.zeros(4, dtype)
        name = np.dtype(dtype).name
        out += [
            Case((a, zero), {}, f"zero vector {name}"),
            Case((a, np.array([1, np.nan, 0, 0], dtype)), {}, f"NaN {name}"),
            Case((np.array([np.inf, 0, 0, 0], dtype), b), {}, f"inf {name}"),
            Case((a * dtype(denormal), b), {}, f"denormal vector {name}"),
            Case((a * dtype(huge), b * dtype(huge)), {}, f"huge vectors {name}"),
            Case((a, a * 2), {}, f"parallel (clamped to 1) {name}"),
            Case((a, np.stack([a, zero, a * dtype(denormal), a * dtype(huge), -a])), {},
                 f"one-to-many edge rows {name}"),
            Case((np.zeros(0, dtype), np.zeros(0, dtype)), {}, f"empty vectors {name}"),
            Case((a, np.zeros((0, 4), dtype)), {}, f"empty corpus {name}"),
            Case((np.zeros((2, 0), dtype), np.zeros((3, 0), dtype)), {}, f"d = 0 {name}"),
        ]
    return out


def _normalize_edge_cases() -> list:
    out = []
    for dtype, denormal, huge in ((np.float32, 1e-40, 1e30), (np.float64, 1e-310, 1e300)):
        out.append(Case((np.array([[3, 4], [0, 0], [-0.0, 0], [np.nan, 1], [np.inf, 1],
                                   [3 * huge, 4 * huge], [3 * denormal, 4 * denormal]], dtype),), {},
                        f"zero, NaN, inf, huge and denormal rows {np.dtype(dtype).name}"))
        out.append(Case((np.zeros((0, 5), dtype),), {}, f"no rows {np.dtype(dtype).name}"))
    return out


def _top_k_edge_cases() -> list:
    base = np.array([1.0, 2.0, 3.0], np.float32)
    corpus = np.stack([base * 0, base, -base, base * np.nan, base * 3, base, base * 2])
    return [
        Case((base, corpus, 10), {}, "ties, NaN, zero row, padding"),
        Case((np.stack([base, -base]), corpus, 3), {"metric": "dot"}, "dot metric"),
        Case((base, np.full((20, 3), np.nan, np.float32), 4), {}, "all NaN: all padding"),
        Case((base, np.zeros((0, 3), np.float32), 2), {}, "empty corpus"),
        Case((np.zeros((0, 3), np.float32), corpus, 2), {}, "no queries"),
    ]


register_kernel(Kernel(
    name="cosine_similarity",
    reference=_sim_reference.cosine_similarity,
    random_case=_cosine_random_case,
    error=lambda got, expected, case: max_abs_error(got, expected),
    tolerance=lambda case: _sim_tolerance(*case.args),
    unit="abs",
    edge_cases=_cosine_edge_cases,
))
register_kernel(Kernel(
    name="normalize",
    reference=_sim_reference.normalize,
    random_case=_normalize_random_case,
    error=lambda got, expected, case: max_abs_error(got, expected),
    tolerance=lambda case: _sim_tolerance(*case.args),
    unit="abs",
    edge_cases=_normalize_edge_cases,
))
register_kernel(Kernel(
    name="top_k",
    reference=_sim_reference.top_k,
    random_case=_top_k_random_case,
    error=_top_k_error,
    tolerance=_top_k_tolerance,
    unit="abs",
    edge_cases=_top_k_edge_cases,
))


# ---- similarity workloads (benchmarks/test_bench_similarity.py, the report) ----

def _sim_gaussian(shape, seed, dtype=np.float32):
    """Unit-scale rows, generated in slices so 300 MB corpora never exist in float64."""
    rng = np.random.default_rng(seed)
    out = np.empty(shape, dtype=dtype)
    flat = out.reshape(-1)
    step = 1 << 22
    for i in range(0, flat.size, step):
        flat[i:i + step] = rng.standard_normal(min(step, flat.size - i), dtype=np.float32)
    return out


def _sim_unit_rows(a):
    """Rows scaled to unit norm (the pre-normalised data an inner-product index expects)."""
    out = np.empty_like(a)
    for i in range(0, a.shape[0], 8192):
        block = a[i:i + 8192]
        out[i:i + 8192] = block / np.linalg.norm(block, axis=1, keepdims=True)
    return out


def _numpy_cosine_pair(a, b):
    return a @ b / (np.linalg.norm(a) * np.linalg.norm(b))


def _numpy_cosine_one_to_many(q, corpus, norms):
    return corpus @ q / (norms * np.linalg.norm(q))


def _numkong(fn_name):
    import numkong  # ImportError when absent: reported as "not installed"

    return getattr(numkong, fn_name)


def _faiss_flat_ip(state):
    import faiss  # ImportError when absent: reported as "not installed"

    faiss.omp_set_num_threads(state.get("threads") or 1)
    if "faiss_index" not in state:
        index = faiss.IndexFlatIP(state["corpus"].shape[1])
        index.add(_sim_unit_rows(state["corpus"]))
        state["faiss_index"] = index
        state["unit_queries"] = _sim_unit_rows(state["queries"])
    return call(state["faiss_index"].search, state["unit_queries"], state["k"])


def _engram():
    import engram

    return engram


def _p1_setup(quick):
    return {"a": _sim_gaussian(768, 1), "b": _sim_gaussian(768, 2)}


def _p2_setup(quick):
    corpus = _sim_gaussian((1000, 768), 3)
    return {"q": _sim_gaussian(768, 4), "corpus": corpus, "norms": np.linalg.norm(corpus, axis=1)}


def _stream_setup(quick):
    n = 10_000 if quick else 100_000
    return {"q": _sim_gaussian(768, 5), "corpus": _sim_gaussian((n, 768), 6), "k": 10}


def _many_setup(quick, threads=1):
    n, q = (20_000, 64) if quick else (100_000, 256)
    return {"queries": _sim_gaussian((q, 768), 7), "corpus": _sim_gaussian((n, 768), 6), "k": 10,
            "threads": threads}


def _p6_setup(quick):
    m, n = (256, 2048) if quick else (1024, 8192)
    return {"x": _sim_gaussian((m, 768), 8), "y": _sim_gaussian((n, 768), 9)}


register_workload(Workload(
    id="P1", kernel="cosine_similarity",
    title="one pair, 768-d float32, called from Python",
    setup=_p1_setup,
    run=lambda s: call(_engram().cosine_similarity, s["a"], s["b"]),
    baselines={
        "numpy": lambda s: call(_numpy_cosine_pair, s["a"], s["b"]),
        "numkong": lambda s: call(_numkong("angular"), s["a"], s["b"]),
    },
    goals=(Goal("speedup", 15.0, "numpy", "a @ b / (norm(a) * norm(b))"),
           Goal("speedup", 2.0, "numkong", "numkong.angular on the same arrays")),
    seed_target_us=1.73,
    elements=lambda s: 768,
    threads=1,
))
register_workload(Workload(
    id="P2", kernel="cosine_similarity",
    title="one query vs 1,000 x 768 float32 (3 MB)",
    setup=_p2_setup,
    run=lambda s: call(_engram().cosine_similarity, s["q"], s["corpus"]),
    baselines={
        "numpy": lambda s: call(_numpy_cosine_one_to_many, s["q"], s["corpus"], s["norms"]),
        "numkong": lambda s: call(_numkong("angular"), s["q"], s["corpus"]),
    },
    goals=(Goal("speedup", 2.0, "numpy", "C @ q / (norms * norm(q)), norms precomputed"),
           Goal("speedup", 3.0, "numkong", "numkong.angular(q, C)")),
    bytes_moved=lambda s: s["corpus"].nbytes,
    elements=lambda s: s["corpus"].size,
    threads=None,
))
register_workload(Workload(
    id="P3", kernel="cosine_similarity",
    title="one query vs 100,000 x 768 float32 (307 MB), one thread",
    setup=_stream_setup,
    run=lambda s: call(_engram().cosine_similarity, s["q"], s["corpus"], threads=1),
    goals=(Goal("bandwidth", 0.85, "read", "of this machine's single-thread read bandwidth"),),
    bytes_moved=lambda s: s["corpus"].nbytes,
    elements=lambda s: s["corpus"].size,
    threads=1,
))
register_workload(Workload(
    id="P4", kernel="top_k",
    title="top_k, 1 query vs 100,000 x 768, k=10, one thread",
    setup=_stream_setup,
    run=lambda s: call(_engram().top_k, s["q"], s["corpus"], s["k"], threads=1),
    goals=(Goal("ratio_to", 1.1, "P3", "within 10 % of the cosine pass alone"),),
    bytes_moved=lambda s: s["corpus"].nbytes,
    threads=1,
))
register_workload(Workload(
    id="P5", kernel="top_k",
    title="top_k, 256 queries vs 100,000 x 768, k=10, one thread",
    setup=_many_setup,
    run=lambda s: call(_engram().top_k, s["queries"], s["corpus"], s["k"], threads=1),
    baselines={"faiss": _faiss_flat_ip},
    goals=(Goal("speedup", 1.0, "faiss", "faiss IndexFlatIP.search on pre-normalised data"),),
    elements=lambda s: s["queries"].shape[0] * s["corpus"].size,
    threads=1,
))
register_workload(Workload(
    id="P6", kernel="cosine_similarity",
    title="cosine_similarity 1,024 x 8,192, d=768 float32",
    setup=_p6_setup,
    run=lambda s: call(_engram().cosine_similarity, s["x"], s["y"]),
    baselines={"numpy": lambda s: call(np.matmul, s["x"], s["y"].T)},
    goals=(Goal("speedup", 0.5, "numpy", "NumPy's BLAS X @ Y.T alone"),),
    elements=lambda s: s["x"].shape[0] * s["y"].size,
    threads=None,
))
register_workload(Workload(
    id="P7-P3", kernel="cosine_similarity",
    title="P3 with 2 threads",
    setup=_stream_setup,
    run=lambda s: call(_engram().cosine_similarity, s["q"], s["corpus"], threads=2),
    goals=(Goal("scaling", 1.6, "", "2 threads vs 1"),),
    bytes_moved=lambda s: s["corpus"].nbytes,
    threads=2,
))
register_workload(Workload(
    id="P7-P5", kernel="top_k",
    title="P5 with 2 threads",
    setup=lambda quick: _many_setup(quick, threads=2),
    run=lambda s: call(_engram().top_k, s["queries"], s["corpus"], s["k"], threads=2),
    baselines={"faiss": _faiss_flat_ip},
    goals=(Goal("scaling", 1.6, "", "2 threads vs 1"),),
    elements=lambda s: s["queries"].shape[0] * s["corpus"].size,
    threads=2,
))

# ==== end similarity ====

# ==== spread ====

# ==== end spread ====

# ==== decay ====

# ==== end decay ====
