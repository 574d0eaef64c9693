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

#: a pulse this close (relative) to the threshold may go either way in float32/float64 sums
SPREAD_KNIFE_EDGE = 1e-7
#: positive pulses below this are near float64 underflow, where rounding can flip "> 0"
SPREAD_UNDERFLOW = 1e-280


def spread_graph_arrays(rng: np.random.Generator, n: int, m: int, *, self_loops=True,
                        multi_edges=True, cycle=False, components=1, dangling=0.0,
                        index_dtype=np.int64, weights="f64", edge_values=False):
    """Random CSR arrays (indptr, indices, weights or None) of a directed graph.

    Self-loops, repeated edges and a long cycle on demand; ``components`` >
    1 keeps edges inside disjoint blocks of nodes; a ``dangling`` share of
    the nodes has no out-edges.  ``edge_values`` puts zeros, float32
    subnormals, tiny and large values among the weights.
    """
    if n == 0:
        return np.zeros(1, index_dtype), np.zeros(0, index_dtype), (
            None if weights == "none" else np.zeros(0, np.float32 if weights == "f32" else np.float64))
    src = rng.integers(0, n, m)
    block = max(1, -(-n // max(1, components)))
    # keep each edge inside its source's block: disconnected parts
    lo = (src // block) * block
    dst = lo + rng.integers(0, block, m) % np.maximum(1, np.minimum(block, n - lo))
    if not self_loops and n > 1:
        clash = dst == src
        dst[clash] = lo[clash] + (dst[clash] - lo[clash] + 1) % np.maximum(1, np.minimum(block, n - lo[clash]))
    if multi_edges and m:
        k = rng.integers(0, max(1, m // 4) + 1)
        pick = rng.integers(0, m, k)
        src, dst = np.concatenate([src, src[pick]]), np.concatenate([dst, dst[pick]])
    if cycle and n > 1:
        nodes = rng.permutation(n)
        src = np.concatenate([src, nodes])
        dst = np.concatenate([dst, np.roll(nodes, -1)])
    if dangling > 0:
        gone = rng.random(n) < dangling
        keep = ~gone[src]
        src, dst = src[keep], dst[keep]
    order = np.argsort(src, kind="stable")
    src, dst = src[order], dst[order]
    indptr = np.zeros(n + 1, dtype=np.int64)
    np.cumsum(np.bincount(src, minlength=n), out=indptr[1:])
    nnz = src.shape[0]
    w = None
    if weights != "none":
        w = rng.uniform(0.1, 1.0, nnz)
        if edge_values and nnz:
            special = np.array([0.0, 1e-40, 1e-20, 1e-3, 1.0, 1e6])
            pick = rng.random(nnz) < 0.15
            w[pick] = rng.choice(special, int(pick.sum()))
        w = w.astype(np.float32 if weights == "f32" else np.float64)
    return indptr.astype(index_dtype), dst.astype(index_dtype), w


def spread_seed_values(rng: np.random.Generator, rows: int, n: int, density: float,
                       threshold: float, dtype, edge_values=False) -> np.ndarray:
    """Sparse non-negative seeds; ``edge_values`` adds zeros, subnormals, the threshold itself."""
    s = np.where(rng.random((rows, n)) < density, rng.uniform(0.0, 1.0, (rows, n)), 0.0)
    if edge_values and n:
        special = np.array([0.0, 1e-300, 1e-40, threshold, 1.0, 1e3])
        pick = rng.random((rows, n)) < 0.1
        s[pick] = rng.choice(special, int(pick.sum()))
    return s.astype(dtype)


def spread_knife_edge(graph, seeds, kwargs) -> bool:
    """Whether some pulse of the float64 reference run lands where rounding could flip it:
    within SPREAD_KNIFE_EDGE (relative) of a positive threshold, or near underflow."""
    from . import _reference as ref

    g, rows, _, decays, threshold, revisit = ref._spread_check(
        graph, seeds, kwargs.get("max_depth", 4), kwargs.get("decay", 0.85),
        kwargs.get("threshold", 1e-4), kwargs.get("normalize", "none"),
        kwargs.get("combine", "sum"), kwargs.get("revisit", False), None)
    src, dst, w = ref._spread_edges(g, kwargs.get("normalize", "none"))
    for row in rows:
        trace: list = []
        ref._spread_row(src, dst, w, row, decays, threshold, kwargs.get("combine", "sum"),
                        revisit, trace=trace)
        for pulses in trace:
            if pulses.size == 0:
                continue
            if threshold > 0 and np.any(np.abs(pulses - threshold) <= SPREAD_KNIFE_EDGE * threshold):
                return True
            # near underflow a product may round to 0 in one order and not in the other;
            # that matters only where such a pulse could fire
            if threshold < SPREAD_UNDERFLOW and np.any(pulses < SPREAD_UNDERFLOW):
                return True
    return False


def spread_clear_threshold(rng, graph, seeds, kwargs) -> dict:
    """kwargs with a threshold no pulse lands near: moved by a random factor until clear."""
    kwargs = dict(kwargs)
    for _ in range(20):
        if not spread_knife_edge(graph, seeds, kwargs):
            return kwargs
        t = kwargs.get("threshold", 1e-4)
        kwargs["threshold"] = float(t * rng.uniform(1.01, 3.0)) if t >= SPREAD_UNDERFLOW else 1e-250
    raise RuntimeError("no threshold clear of the pulses found")  # pragma: no cover


def spread_random_case(rng: np.random.Generator, max_nodes: int = 60) -> Case:
    """One random call: graph form, seeds form and every option drawn; no knife edges."""
    n = int(rng.integers(0, max_nodes + 1)) if rng.random() < 0.9 else int(rng.integers(0, 2))
    m = int(rng.integers(0, 4 * n + 1)) if n else 0
    weights = str(rng.choice(["none", "f32", "f64"]))
    indptr, indices, w = spread_graph_arrays(
        rng, n, m, self_loops=bool(rng.random() < 0.7), multi_edges=bool(rng.random() < 0.5),
        cycle=bool(rng.random() < 0.3), components=int(rng.integers(1, 4)),
        dangling=float(rng.choice([0.0, 0.2])),
        index_dtype=np.int32 if rng.random() < 0.5 else np.int64, weights=weights,
        edge_values=bool(rng.random() < 0.3))
    form = str(rng.choice(["graph", "tuple", "csr", "coo"]))
    from .graph import Graph

    graph = Graph(indptr, indices, w, n)
    if form == "tuple":
        graph = (indptr, indices) if w is None else (indptr, indices, w)
    elif form in ("csr", "coo"):
        try:
            import scipy.sparse as sp
        except ImportError:  # pragma: no cover
            pass
        else:
            data = np.ones(indices.shape[0]) if w is None else w
            mat = sp.csr_matrix((data, indices, indptr), shape=(n, n))
            graph = mat if form == "csr" else mat.tocoo()
    max_depth = int(rng.choice([0, 1, 2, 3, 4, 6, 12]))
    kwargs = {
        "max_depth": max_depth,
        "threshold": float(rng.choice([0.0, 1e-4, 1e-2, 0.1, float(rng.uniform(0, 0.3))])),
        "normalize": str(rng.choice(["none", "out"])),
        "combine": str(rng.choice(["sum", "max"])),
        "revisit": bool(rng.random() < 0.5),
    }
    if rng.random() < 0.3:
        kwargs["decay"] = rng.uniform(0.05, 1.0, max_depth)
        if max_depth and rng.random() < 0.3:
            kwargs["decay"][rng.integers(0, max_depth)] = 1.0
    else:
        kwargs["decay"] = float(rng.choice([0.85, 1.0, 0.5, float(rng.uniform(0.01, 1.0))]))
    shape = str(rng.choice(["dense", "dense", "dict", "batch"]))
    dtype = np.float32 if rng.random() < 0.5 else np.float64
    density = float(rng.choice([0.05, 0.3, 1.0]))
    if shape == "batch":
        seeds = spread_seed_values(rng, int(rng.integers(0, 5)), n, density, kwargs["threshold"], dtype,
                                   edge_values=bool(rng.random() < 0.3))
    else:
        seeds = spread_seed_values(rng, 1, n, density, kwargs["threshold"], dtype,
                                   edge_values=bool(rng.random() < 0.3))[0]
        if shape == "dict":
            seeds = {int(i): float(seeds[i]) for i in np.flatnonzero(seeds)}
    kwargs = spread_clear_threshold(rng, graph, seeds, kwargs)
    return Case((graph, seeds), kwargs, f"n={n} nnz={indices.shape[0]} {weights} {form} {shape}")


def spread_error(got, expected, case=None) -> float:
    """Largest |got - expected| / max(|expected|, 1e-2): 1e-5 means 1e-5 relative, 1e-7 absolute."""
    g = np.asarray(got, dtype=np.float64)
    e = np.asarray(expected, dtype=np.float64)
    if g.shape != e.shape:
        return float("inf")
    if g.size == 0:
        return 0.0
    if np.any(np.isnan(g) != np.isnan(e)) or np.any((np.isinf(g) | np.isinf(e)) & (g != e)):
        return float("inf")
    ok = np.isfinite(e)
    if not ok.any():
        return 0.0
    return float(np.max(np.abs(g[ok] - e[ok]) / np.maximum(np.abs(e[ok]), 1e-2)))


def _spread_kernel():
    from . import _reference

    return Kernel(
        name="spread",
        reference=_reference.spread,
        random_case=spread_random_case,
        error=spread_error,
        tolerance=lambda case: 1e-5,
        unit="rel",
        edge_cases=spread_edge_cases,
    )


def spread_edge_cases() -> list:
    """Fixed cases: empty graph, one node with a self-loop, zero seeds, zero weights, a hub."""
    from .graph import Graph

    cases = []
    empty = Graph(np.zeros(1, np.int64), np.zeros(0, np.int64))
    cases.append(Case((empty, np.zeros(0)), {}, "n=0"))
    cases.append(Case((empty, np.zeros((3, 0), np.float32)), {}, "n=0 batch"))
    loop = Graph(np.array([0, 1]), np.array([0]), np.array([0.5]))
    cases.append(Case((loop, np.array([1.0])), {"revisit": True, "threshold": 0.0, "max_depth": 30},
                      "self-loop revisited"))
    cases.append(Case((loop, {0: 1.0}), {"revisit": False}, "self-loop once"))
    zero_w = Graph(np.array([0, 2, 2]), np.array([1, 1]), np.zeros(2))
    cases.append(Case((zero_w, np.array([1.0, 0.0])), {"normalize": "out", "threshold": 0.0},
                      "zero out-weight"))
    hub_n = 300
    hub = Graph(np.concatenate([[0], np.full(hub_n, hub_n - 1)]).cumsum()[: hub_n + 1].astype(np.int64)
                if False else np.r_[0, np.full(hub_n, hub_n - 1)].cumsum(),
                np.concatenate([np.delete(np.arange(hub_n), i) for i in range(hub_n)]),
                np.linspace(0.1, 1.0, hub_n * (hub_n - 1)))
    cases.append(Case((hub, np.eye(hub_n)[:3]), {"normalize": "out", "threshold": 0.0, "revisit": True,
                                                  "max_depth": 5}, "complete graph, batch"))
    cases.append(Case((loop, np.array([0.0])), {"threshold": 0.0}, "zero seeds"))
    return cases


register_kernel(_spread_kernel())


# spread workloads (benchmarks/test_bench_spread.py, the report)


def _spread_random_graph(n: int, m: int, seed: int):
    """n nodes, m random edges (uniform ends, weights U[0.1, 1) float32) as canonical CSR."""
    import scipy.sparse as sp

    rng = np.random.default_rng(seed)
    src, dst = rng.integers(0, n, m), rng.integers(0, n, m)
    w = rng.uniform(0.1, 1.0, m).astype(np.float32)
    return sp.csr_matrix((w, (src, dst)), shape=(n, n))


def _spread_scipy_loop(state, hops: int):
    """The baseline: x = decay * (P.T @ x); total += x with P row-normalised CSR, float32."""
    import scipy.sparse as sp

    a = state["matrix"]
    sums = np.asarray(a.sum(axis=1)).ravel()
    inv = np.divide(1.0, sums, out=np.zeros_like(sums), where=sums > 0).astype(np.float32)
    pt = (sp.diags(inv) @ a).T.tocsr()  # CSR of P.T: SciPy's fastest matvec layout
    x0 = np.asarray(state["seeds"], dtype=np.float32)
    decay = np.float32(state["decay"])

    def loop():
        x = x0.copy()
        total = x0.copy()
        for _ in range(hops):
            x = decay * (pt @ x)
            total += x
        return total

    return Call(loop)


def _spread_edges_pushed(state) -> int:
    """Edges a push-only run visits: the out-degrees of the frontier of every hop."""
    from . import _reference as ref

    g, kw = state["graph"], state["kwargs"]
    deg = np.diff(g.indptr)
    src, dst, w = ref._spread_edges(g, kw.get("normalize", "none"))
    decays = ref._spread_decays(kw.get("decay", 0.85), kw["max_depth"])
    total = 0
    for row in np.asarray(state["seeds"], dtype=np.float64).reshape(-1, g.n):
        frontier = (row > 0) & (row >= kw["threshold"])
        fired = frontier.copy()
        pulse = np.where(frontier, row, 0.0)
        for k in range(kw["max_depth"]):
            total += int(deg[frontier].sum())  # hop k + 1 pushes these
            active = frontier[src]
            nxt = np.zeros(g.n)
            np.add.at(nxt, dst[active], decays[k] * w[active] * pulse[src[active]])
            frontier = (nxt > 0) & (nxt >= kw["threshold"]) & (kw.get("revisit", False) | ~fired)
            fired |= frontier
            pulse = np.where(frontier, nxt, 0.0)
    return total


def _spread_setup(n: int, m: int, seeds: str, kwargs: dict, batch: int = 0, graph_seed: int = 0):
    def setup(quick: bool) -> dict:
        from .graph import Graph

        scale = 10 if quick and n >= 100_000 else 1
        nn, mm = n // scale, m // scale
        a = _spread_random_graph(nn, mm, graph_seed)
        rng = np.random.default_rng(graph_seed + 1)
        if seeds == "dense":
            x = rng.random(nn).astype(np.float32)
        elif seeds == "cue":
            x = np.zeros(nn, np.float32)
            x[rng.choice(nn, 10, replace=False)] = 1.0
        else:  # one node
            x = np.zeros(nn, np.float32)
            x[int(rng.integers(nn))] = 1.0
        state = {"matrix": a, "graph": Graph(a), "seeds": x, "kwargs": dict(kwargs),
                 "decay": kwargs.get("decay", 0.85), "quick": quick}
        if batch:
            xs = np.zeros((batch, nn), np.float32)
            xs[np.arange(batch), rng.integers(0, nn, batch)] = 1.0
            state["batch"] = xs
        return state

    return setup


def _spread_bytes_dense(state) -> int:
    """Bytes a dense hop must move at least, times the hops: every edge's source and
    weight once (4 + 4 B), every node's pulse read and written and its total read
    and written once (4 x 8 B).  Random pulse reads move whole lines: more."""
    g, hops = state["graph"], state["kwargs"]["max_depth"]
    return hops * (g.nnz * 8 + g.n * 32)


def _spread_run(state, threads=1, batch=False):
    import engram

    seeds = state["batch"] if batch else state["seeds"]
    return Call(engram.spread, (state["graph"], seeds), dict(state["kwargs"], threads=threads))


_S1_KW = {"max_depth": 100, "normalize": "out", "threshold": 0.0, "revisit": True}
_S2_KW = {"max_depth": 4, "normalize": "out", "threshold": 1e-4}
_S3_KW = {"max_depth": 10, "normalize": "out", "threshold": 0.0, "revisit": True}

register_workload(Workload(
    id="S1", kernel="spread",
    title="1,000 nodes / 5,000 edges, 100 hops from a 10-node cue, normalize='out', threshold=0, revisit",
    setup=_spread_setup(1000, 5000, "cue", _S1_KW),
    run=lambda s: _spread_run(s),
    baselines={"scipy loop": lambda s: _spread_scipy_loop(s, 100)},
    goals=(Goal("speedup", 6.0, "scipy loop", ">= 6x a SciPy loop doing the same 100 hops"),),
    seed_target_us=95.8,
    elements=lambda s: s["graph"].nnz * s["kwargs"]["max_depth"],
))

register_workload(Workload(
    id="S2", kernel="spread",
    title="100,000 nodes / 1,000,000 edges, one seed, max_depth 4, threshold 1e-4, normalize='out'",
    setup=_spread_setup(100_000, 1_000_000, "one", _S2_KW),
    run=lambda s: _spread_run(s),
    baselines={"scipy loop": lambda s: _spread_scipy_loop(s, 4)},
    goals=(Goal("speedup", 20.0, "scipy loop", ">= 20x the SciPy loop doing 4 dense hops"),),
    elements=_spread_edges_pushed,
))

register_workload(Workload(
    id="S3", kernel="spread",
    title="1,000,000 nodes / 10,000,000 edges, 10 dense hops (dense seeds, threshold 0, revisit)",
    setup=_spread_setup(1_000_000, 10_000_000, "dense", _S3_KW),
    run=lambda s: _spread_run(s),
    baselines={
        "scipy loop": lambda s: _spread_scipy_loop(s, 10),
        "engram (2 threads)": lambda s: _spread_run(s, threads=2),
    },
    goals=(Goal("speedup", 3.0, "scipy loop", ">= 3x the SciPy loop"),
           Goal("bandwidth", 0.6, "", ">= 60% of the same-run read bandwidth for the bytes moved")),
    bytes_moved=_spread_bytes_dense,
    elements=lambda s: s["graph"].nnz * s["kwargs"]["max_depth"],
))

register_workload(Workload(
    id="S4", kernel="spread",
    title="S2 with a batch of 64 one-node seed vectors, 2 threads",
    setup=_spread_setup(100_000, 1_000_000, "one", _S2_KW, batch=64),
    run=lambda s: _spread_run(s, threads=2, batch=True),
    baselines={"engram (1 thread)": lambda s: _spread_run(s, threads=1, batch=True)},
    goals=(Goal("scaling", 1.6, "engram (1 thread)", ">= 1.6x one thread"),),
    elements=lambda s: s["batch"].size,
    threads=2,
))

# ==== end spread ====

# ==== decay ====

_DAY = 86400.0


def _decay_ulps(got, exact, dtype, strength) -> np.ndarray:
    """|got - exact| in ulps of ``dtype`` at ``exact`` (the binade's spacing, the smallest
    subnormal at least).  NaN matches NaN and an infinity itself; anything else is inf.

    For float64, ``exact`` is the float64 evaluation strength * exp(-y), which carries
    an absolute error of up to strength * 2^-1074 where exp(-y) is subnormal; the unit
    grows to that there.
    """
    got = np.asarray(got, dtype=np.float64)
    exact = np.asarray(exact, dtype=np.float64)
    bits = 24 if dtype == np.float32 else 53
    tiny = 2.0 ** (-149 if dtype == np.float32 else -1074)
    _, e = np.frexp(np.abs(exact))
    unit = np.maximum(np.ldexp(1.0, e - bits), tiny)
    if dtype == np.float64:
        unit = np.maximum(unit, np.abs(np.asarray(strength, dtype=np.float64)) * 2.0**-1074)
    with np.errstate(invalid="ignore", over="ignore"):
        err = np.abs(got - exact) / unit
        rounded = exact.astype(dtype).astype(np.float64)  # overflow: the correct result is +-inf
    same = (got == exact) | (np.isinf(rounded) & (got == rounded)) | (np.isnan(got) & np.isnan(exact))
    err = np.where(same, 0.0, err)
    return np.where(np.isnan(err) | (np.isinf(got) | np.isinf(exact)) & ~same, np.inf, err)


def _decay_exact(case: Case) -> np.ndarray:
    from ._reference import _decay_check, _decay_float64

    kw = dict(stability=86400.0, model="exponential", power=0.5, factor=19 / 81, out=None,
              validate=True, threads=None)
    kw.update(case.kwargs)
    s, a, S, power, factor = _decay_check(*case.args, **kw)
    return _decay_float64(s, a, S, kw["model"], power, factor)


def _decay_error(got, expected, case: Case) -> float:
    s = np.asarray(case.args[0])
    if np.shape(got) != s.shape:
        return float("inf")
    if s.size == 0:
        return 0.0
    return float(np.max(_decay_ulps(got, _decay_exact(case), s.dtype.type, s)))


def _decay_tolerance(case: Case) -> float:
    """2 ulp for the float32 exponential, 4 ulp for the power model and for float64."""
    s = np.asarray(case.args[0])
    return 2.0 if s.dtype == np.float32 and case.kwargs.get("model", "exponential") == "exponential" else 4.0


def _decay_layout(rng, arr: np.ndarray) -> np.ndarray:
    """The same values contiguous, strided or reversed."""
    kind = rng.integers(3)
    if kind == 1 and arr.size:
        wide = np.zeros(arr.size * 3, dtype=arr.dtype)
        wide[::3] = arr
        return wide[::3]
    if kind == 2:
        return np.ascontiguousarray(arr[::-1])[::-1]
    return arr


def _decay_inject(rng, arr: np.ndarray, values, rate=0.04) -> np.ndarray:
    for v in values:
        hit = rng.random(arr.size) < rate
        arr[hit] = v
    return arr


def _decay_random_case(rng: np.random.Generator) -> Case:
    n = int(rng.choice([0, 1, 2, 7, 15, 16, 17, 31, 32, 33, 100, 1000, 1025]))
    dtype = np.float32 if rng.random() < 0.65 else np.float64
    model = "power" if rng.random() < 0.3 else "exponential"
    validate = bool(rng.random() < 0.85)
    tiny = 1e-40 if dtype == np.float32 else 1e-310
    # strengths: [0, 1] mostly, sometimes any magnitude and sign
    if rng.random() < 0.7:
        s = rng.random(n)
    else:
        s = 10.0 ** rng.uniform(-30, 30, n) * rng.choice([-1.0, 1.0], n)
    s = _decay_inject(rng, s.astype(dtype), [np.nan, np.inf, -np.inf, tiny, 0.0, -0.0], 0.02)
    # stabilities: seconds to years, a number or an array (of any accepted dtype)
    if rng.random() < 0.4:
        S = float(10.0 ** rng.uniform(0, 7)) if rng.random() < 0.7 else int(rng.integers(1, 10**7))
        S_values = np.full(n, S, dtype=np.float64)
    else:
        S_values = 10.0 ** rng.uniform(-1, 8, n)
        sdt = rng.choice([dtype, np.float32, np.float64, np.int64])
        S_values = _decay_inject(rng, S_values, [np.inf, 1e30, 1e-40 if sdt == np.float32 else tiny], 0.02)
        if sdt == np.int64:
            S_values = np.clip(np.nan_to_num(S_values, posinf=1e15), 1, 1e15)
        S = _decay_layout(rng, S_values.astype(sdt))
        S_values = np.asarray(S, dtype=np.float64)
    # ages: y = age / stability in a regime from fresh to long forgotten
    y = rng.uniform(0, float(rng.choice([1, 10, 80, 110, 800])), n)
    ages = y * np.where(np.isfinite(S_values), S_values, 1e6)
    adt = rng.choice(["float32", "float64", "int64", "uint64", "scalar"])
    if adt == "scalar":
        age = float(ages[0]) if n and rng.random() < 0.5 else int(rng.integers(0, 10**8))
    else:
        if adt in ("int64", "uint64"):
            ages = np.clip(np.nan_to_num(ages), 0, 9e18)
            a = ages.astype(adt)
            a = _decay_inject(rng, a, [0, 2**53 + 1, 2**62 + 12345], 0.02)
        else:
            a = _decay_inject(rng, ages.astype(adt), [0.0, np.inf, tiny, 1e30], 0.02)
        if not validate:
            if adt == "int64":
                a = _decay_inject(rng, a, [-5, -(2**40)], 0.05)
            elif adt != "uint64":
                a = _decay_inject(rng, a, [-1.0, np.nan, -np.inf], 0.05)
        age = _decay_layout(rng, a)
    if not validate and isinstance(S, np.ndarray) and S.dtype.kind == "f":
        S = S.copy()
        _decay_inject(rng, S, [0.0, -1.0, np.nan], 0.03)
    kwargs = {"stability": S, "model": model, "validate": validate}
    if model == "power":
        kwargs["power"] = float(rng.choice([0.5, 0.3, 1.0, 2.0, 5.0, 1e3, 1e9]))
        kwargs["factor"] = float(rng.choice([19 / 81, 1.0, 0.01]))
    s = _decay_layout(rng, s)
    label = f"{model} {np.dtype(dtype).name} n={n} age={adt}"
    return Case((s, age), kwargs, label)


def _decay_edge_cases() -> list:
    f32, f64 = np.float32, np.float64
    s = np.array([1.0, 0.5, np.nan, 0.0, -0.0, 1e-40, np.inf, 3e38, -2.0], dtype=f32)
    cases = []
    for model in ("exponential", "power"):
        for dt in (f32, f64):
            sd = s.astype(dt)
            n = sd.size
            cases += [
                Case((sd, np.zeros(n, dt)), {"model": model}, f"{model} age 0 gives strength"),
                Case((sd, np.full(n, np.inf, dt)), {"model": model}, f"{model} age inf gives 0"),
                Case((sd, 3600.0), {"stability": 1e30, "model": model}, f"{model} huge stability"),
                Case((sd, np.arange(n, dtype=np.uint64) * 2**60), {"model": model}, f"{model} uint64 ages"),
                Case((sd, np.full(n, 1e-40, dt)), {"stability": 1e-38, "model": model}, f"{model} denormal ages"),
                Case((sd, 0), {"stability": 1e-50, "model": model},
                     f"{model} a float64 stability below float32's range"),
                Case((sd, np.full(n, 1e39)), {"stability": np.full(n, 1e39), "model": model},
                     f"{model} float64 ages and stabilities above float32's range"),
                Case((np.zeros(0, dt), np.zeros(0, dt)), {"model": model}, f"{model} empty"),
            ]
    for dt in (f32, f64):
        sd = s.astype(dt)
        ages = np.array([0, 0, 1, 3600, 1e5, 1e-30, 86400, 1e9, 0], dtype=dt)
        for power in (1e6, 1e12, 8e306, np.finfo(np.float64).max):
            cases.append(Case((sd, ages), {"model": "power", "power": power},
                              f"power {power:g}: strength where u = 1, 0 elsewhere"))
    y = np.array([0, 1e-30, 0.5, 76, 87.3, 103.97, 104, 200, 745.5, 1e30], dtype=f32)
    cases.append(Case((np.ones(y.size, f32), y), {"stability": 1.0}, "exp over the underflow edge"))
    cases.append(Case((np.full(y.size, 3e38, f32), y), {"stability": 1.0}, "large strength, subnormal exp"))
    return cases


register_kernel(
    Kernel(
        name="decay",
        reference=__import__("engram._reference", fromlist=["decay"]).decay,
        random_case=_decay_random_case,
        error=_decay_error,
        tolerance=_decay_tolerance,
        unit="ulp",
        edge_cases=_decay_edge_cases,
    )
)


def _decay_memories(n: int, seed: int = 6, age_dtype=np.float32) -> dict:
    """n float32 memories: strength in [0, 1), age up to 60 days, stability 1 to 30 days."""
    rng = np.random.default_rng(seed)
    ages = rng.uniform(0, 60 * _DAY, n)
    return {
        "s": rng.random(n, dtype=np.float32),
        "t": ages.astype(np.float32) if age_dtype == np.float32 else ages.astype(age_dtype),
        "S": rng.uniform(_DAY, 30 * _DAY, n).astype(np.float32),
        "o": np.zeros(n, dtype=np.float32),
        "n": n,
    }


def _decay_tick(n: int, seed: int = 7) -> dict:
    """n float32 memories decayed in place by one tick: ages up to a minute (the time since
    the last update), stabilities of 1 to 30 days.  Strengths lose < 0.1 % per call, so
    repeated timing rounds keep them in the same range (the kernel's work does not depend
    on the values within it)."""
    rng = np.random.default_rng(seed)
    return {
        "s": rng.uniform(0.5, 1.0, n).astype(np.float32),
        "t": rng.uniform(0, 60, n).astype(np.float32),
        "S": rng.uniform(_DAY, 30 * _DAY, n).astype(np.float32),
        "n": n,
    }


def _decay_engram():
    import engram

    return engram.decay


def _decay_numpy_exp(st):
    s, t, S = st["s"], st["t"], st["S"]
    return call(lambda: s * np.exp(-t / S))


def _decay_numpy_power(st):
    s, t, S, p = st["s"], st["t"], st["S"], st.get("power", 0.5)
    return call(lambda: s * (1 + 19 / 81 * t / S) ** -p)


def _decay_triad(st):
    """The bandwidth probe moving the same bytes: 3 float32 streams read, 1 written."""
    from . import _core

    if _core is None:
        raise ImportError("the C core is not loaded")
    probe = {"out": st["s"].copy(), "a": st["t"], "b": st["S"]}
    return call(_core._probe_triad, probe["out"], probe["a"], probe["b"], 1)


def _decay_bytes(st) -> int:
    return 16 * st["n"]


register_workload(Workload(
    id="D1", kernel="decay",
    title="10,000 float32 memories, exponential, per-memory stability (defaults: validated, new output)",
    setup=lambda quick: _decay_memories(10_000),
    run=lambda st: call(_decay_engram(), st["s"], st["t"], stability=st["S"]),
    baselines={"numpy": _decay_numpy_exp},
    goals=(Goal("speedup", 3.0, "numpy", "≥ 3× NumPy s * np.exp(-t / S)"),),
    seed_target_us=66.7,
    elements=lambda st: st["n"],
))

def _decay_kernel_alone(st):
    """The kernel 100 times per call (engram._core._decay_repeat): its own time per element."""
    from . import _core

    return call(_core._decay_repeat, st["s"], st["t"], st["S"], st["o"], 100)


register_workload(Workload(
    id="D1-kernel", kernel="decay",
    title="D1, the kernel alone: 100 calls inside C (no Python call, out given, validate=False)",
    setup=lambda quick: _decay_memories(10_000),
    run=_decay_kernel_alone,
    goals=(Goal("rate", 4.0, "", "≥ 4 elements/ns with AVX-512"),),
    elements=lambda st: 100 * st["n"],
))

register_workload(Workload(
    id="D2", kernel="decay",
    title="10,000,000 float32 memories updated in place (out=strength), one fused pass (validate=False)",
    setup=lambda quick: _decay_tick(1_000_000 if quick else 10_000_000),
    run=lambda st: call(_decay_engram(), st["s"], st["t"], stability=st["S"], out=st["s"],
                        validate=False, threads=st.get("threads", 1)),
    baselines={"numpy": _decay_numpy_exp, "triad": _decay_triad},
    goals=(
        Goal("speedup", 0.8, "triad", "≥ 80 % of the bandwidth of a probe moving the same bytes"),
        Goal("speedup", 3.0, "numpy", "≥ 3× NumPy"),
    ),
    bytes_moved=_decay_bytes,
    elements=lambda st: st["n"],
))

register_workload(Workload(
    id="D2-validated", kernel="decay",
    title="D2 with validate=True (ages and stabilities are scanned before anything is written)",
    setup=lambda quick: _decay_tick(1_000_000 if quick else 10_000_000),
    run=lambda st: call(_decay_engram(), st["s"], st["t"], stability=st["S"], out=st["s"],
                        threads=st.get("threads", 1)),
    baselines={"numpy": _decay_numpy_exp, "triad": _decay_triad},
    bytes_moved=_decay_bytes,
    elements=lambda st: st["n"],
))

register_workload(Workload(
    id="D3", kernel="decay",
    title="D1 with uint64 ages (converted in registers)",
    setup=lambda quick: _decay_memories(10_000, age_dtype=np.uint64),
    run=lambda st: call(_decay_engram(), st["s"], st["t"], stability=st["S"]),
    goals=(Goal("ratio_to", 1.2, "D1", "≤ 1.2× the float32-age time"),),
    elements=lambda st: st["n"],
))

register_workload(Workload(
    id="D4", kernel="decay",
    title="10,000 float32 memories, power model (FSRS defaults: power 0.5, factor 19/81)",
    setup=lambda quick: _decay_memories(10_000),
    run=lambda st: call(_decay_engram(), st["s"], st["t"], stability=st["S"], model="power"),
    baselines={"numpy": _decay_numpy_power},
    goals=(Goal("speedup", 3.0, "numpy", "≥ 3× NumPy's expression"),),
    elements=lambda st: st["n"],
))

register_workload(Workload(
    id="D4-power0.3", kernel="decay",
    title="D4 with power 0.3 (a logarithm and an exponential per memory)",
    setup=lambda quick: {**_decay_memories(10_000), "power": 0.3},
    run=lambda st: call(_decay_engram(), st["s"], st["t"], stability=st["S"], model="power", power=0.3),
    baselines={"numpy": _decay_numpy_power},
    goals=(Goal("speedup", 3.0, "numpy", "≥ 3× NumPy's expression"),),
    elements=lambda st: st["n"],
))

register_workload(Workload(
    id="D5", kernel="decay",
    title="D2 with 2 threads (state['threads'] sets the count; 1 for the scaling baseline)",
    setup=lambda quick: {**_decay_tick(1_000_000 if quick else 10_000_000), "threads": 2},
    run=lambda st: call(_decay_engram(), st["s"], st["t"], stability=st["S"], out=st["s"],
                        validate=False, threads=st.get("threads", 2)),
    goals=(Goal("scaling", 1.6, "", "≥ 1.6× one thread where memory allows"),),
    bytes_moved=_decay_bytes,
    elements=lambda st: st["n"],
    threads=2,
))

# ==== end decay ====

# ==== regress ====
# Instruction counts under callgrind (python -m engram regress): small fixed
# inputs, one thread, one row per hot path of each kernel.

from ._kernels import RegressCase, aligned, register_regress  # noqa: E402


def _regress_rows(seed, *shape, dtype=np.float32):
    return aligned(np.random.default_rng(seed).standard_normal(shape).astype(dtype))


def _regress_graph(n=1000, m=5000, seed=7):
    import engram

    rng = np.random.default_rng(seed)
    src = np.sort(rng.integers(0, n, m))
    indptr = np.searchsorted(src, np.arange(n + 1)).astype(np.int64)
    return engram.Graph(indptr, rng.integers(0, n, m).astype(np.int32),
                        rng.uniform(0.1, 1.0, m).astype(np.float32), n=n)


def _regress_engram():
    import engram

    return engram


for _row in [
    RegressCase("cosine-pair-768", "cosine_similarity",
                lambda: {"a": _regress_rows(1, 768), "b": _regress_rows(2, 768)},
                lambda s: call(_regress_engram().cosine_similarity, s["a"], s["b"]), repeat=200,
                title="one 768-d float32 pair"),
    RegressCase("cosine-1x2000x768", "cosine_similarity",
                lambda: {"q": _regress_rows(3, 768), "c": _regress_rows(4, 2000, 768)},
                lambda s: call(_regress_engram().cosine_similarity, s["q"], s["c"], threads=1), repeat=5,
                title="one query against 2,000 x 768 float32"),
    RegressCase("cosine-64x512x384", "cosine_similarity",
                lambda: {"x": _regress_rows(5, 64, 384), "y": _regress_rows(6, 512, 384)},
                lambda s: call(_regress_engram().cosine_similarity, s["x"], s["y"], threads=1), repeat=5,
                title="64 x 512 cosines of 384-d float32 rows"),
    RegressCase("cosine-f64-32x256x128", "cosine_similarity",
                lambda: {"x": _regress_rows(7, 32, 128, dtype=np.float64),
                         "y": _regress_rows(8, 256, 128, dtype=np.float64)},
                lambda s: call(_regress_engram().cosine_similarity, s["x"], s["y"], threads=1), repeat=5,
                title="32 x 256 cosines of 128-d float64 rows"),
    RegressCase("normalize-256x768", "normalize",
                lambda: {"x": _regress_rows(9, 256, 768)},
                lambda s: call(_regress_engram().normalize, s["x"]), repeat=5,
                title="256 rows of 768 float32"),
    RegressCase("top_k-8x4000x384-k10", "top_k",
                lambda: {"q": _regress_rows(10, 8, 384), "c": _regress_rows(11, 4000, 384)},
                lambda s: call(_regress_engram().top_k, s["q"], s["c"], 10, threads=1), repeat=3,
                title="top 10 of 4,000 x 384 float32 for 8 queries"),
    RegressCase("spread-1000x5000-100hops", "spread",
                lambda: {"g": _regress_graph(), "seeds": {0: 1.0, 17: 0.5}},
                lambda s: call(_regress_engram().spread, s["g"], s["seeds"], max_depth=100, threshold=0.0,
                               normalize="out", revisit=True, threads=1), repeat=3,
                title="the original report's graph: 1,000 nodes, 5,000 edges, 100 hops"),
    RegressCase("spread-1000x5000-depth4", "spread",
                lambda: {"g": _regress_graph(), "seeds": {3: 1.0}},
                lambda s: call(_regress_engram().spread, s["g"], s["seeds"], threads=1), repeat=10,
                title="one seed, 4 hops with the default threshold"),
    RegressCase("decay-exp-f32-10000", "decay",
                lambda: {"s": aligned(np.random.default_rng(12).random(10_000).astype(np.float32)),
                         "t": aligned(np.random.default_rng(13).uniform(0, 1e6, 10_000).astype(np.float32)),
                         "S": aligned(np.random.default_rng(14).uniform(1e3, 1e6, 10_000).astype(np.float32))},
                lambda s: call(_regress_engram().decay, s["s"], s["t"], stability=s["S"], threads=1), repeat=10,
                title="10,000 float32 memories, exponential, per-memory stability"),
    RegressCase("decay-exp-u64-10000", "decay",
                lambda: {"s": aligned(np.random.default_rng(15).random(10_000).astype(np.float32)),
                         "t": aligned(np.random.default_rng(16).integers(0, 10**7, 10_000).astype(np.uint64))},
                lambda s: call(_regress_engram().decay, s["s"], s["t"], stability=86400.0, threads=1), repeat=10,
                title="10,000 float32 memories, uint64 ages"),
    RegressCase("decay-power-f32-10000", "decay",
                lambda: {"s": aligned(np.random.default_rng(17).random(10_000).astype(np.float32)),
                         "t": aligned(np.random.default_rng(18).uniform(0, 1e6, 10_000).astype(np.float32))},
                lambda s: call(_regress_engram().decay, s["s"], s["t"], model="power", threads=1), repeat=10,
                title="10,000 float32 memories, power model"),
    RegressCase("decay-exp-f64-10000", "decay",
                lambda: {"s": aligned(np.random.default_rng(19).random(10_000)),
                         "t": aligned(np.random.default_rng(20).uniform(0, 1e6, 10_000))},
                lambda s: call(_regress_engram().decay, s["s"], s["t"], threads=1), repeat=10,
                title="10,000 float64 memories, exponential"),
]:
    register_regress(_row)
del _row

# ==== end regress ====
