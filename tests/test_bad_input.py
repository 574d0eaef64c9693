"""Every bad input gets a clear TypeError/ValueError and leaves out= untouched.

One table: (id, call, expected exception, words the message must contain).
Each call gets fresh arrays from its builder, so the table also checks that
`out` and in-place inputs are byte-identical after the error.
"""
from __future__ import annotations

import numpy as np
import pytest

import engram

CASES: list[tuple] = []

# ==== similarity ====

def _sim_f32(*shape, seed=0):
    return np.random.default_rng(seed).standard_normal(shape).astype(np.float32)


def _huge_rows(n, d=1):
    """n rows of d float32 zeros without the memory: every row is the same bytes."""
    return np.lib.stride_tricks.as_strided(np.zeros(d, np.float32), shape=(n, d), strides=(0, 4))


def _readonly(a):
    a.flags.writeable = False
    return a


def _sim_case(fn_name, *args, guarded=(), **kwargs):
    return lambda: (getattr(engram, fn_name), args, kwargs, list(guarded))


def _sim_out_case(fn_name, args, out, **kwargs):
    """A call whose out must stay untouched."""
    def build():
        o = out()
        return getattr(engram, fn_name), args, dict(kwargs, out=o), [o]
    return build


_SIM_BAD_DTYPES = [
    ("int", np.arange(8, dtype=np.int64).reshape(2, 4), "int64"),
    ("bool", np.ones((2, 4), dtype=bool), "bool"),
    ("object", np.array([[1.0, 2.0, 3.0, 4.0]] * 2, dtype=object), "object"),
    ("complex", np.ones((2, 4), dtype=np.complex128), "complex128"),
    ("float16", np.ones((2, 4), dtype=np.float16), "float16"),
]
for _label, _bad, _dtype in _SIM_BAD_DTYPES:
    CASES += [
        (f"cosine-x-{_label}", _sim_case("cosine_similarity", _bad, _sim_f32(3, 4)), TypeError,
         ["cosine_similarity()", "x", "float32 or float64", _dtype, "(2, 4)"]),
        (f"cosine-y-{_label}", _sim_case("cosine_similarity", _sim_f32(4), _bad), TypeError,
         ["cosine_similarity()", "y", "float32 or float64", _dtype]),
        (f"normalize-x-{_label}", _sim_case("normalize", _bad), TypeError,
         ["normalize()", "x", "float32 or float64", _dtype]),
        (f"top_k-queries-{_label}", _sim_case("top_k", _bad, _sim_f32(5, 4), 2), TypeError,
         ["top_k()", "queries", "float32 or float64", _dtype]),
        (f"top_k-corpus-{_label}", _sim_case("top_k", _sim_f32(4), _bad, 2), TypeError,
         ["top_k()", "corpus", "float32 or float64", _dtype]),
    ]

CASES += [
    # ndim 0 or > 2
    ("cosine-x-ndim0", _sim_case("cosine_similarity", np.float32(1.0), _sim_f32(4)), ValueError,
     ["cosine_similarity()", "x", "1- to 2-dimensional", "shape ()"]),
    ("cosine-y-ndim3", _sim_case("cosine_similarity", _sim_f32(4), _sim_f32(2, 3, 4)), ValueError,
     ["cosine_similarity()", "y", "1- to 2-dimensional", "(2, 3, 4)"]),
    ("normalize-ndim3", _sim_case("normalize", _sim_f32(2, 3, 4)), ValueError,
     ["normalize()", "x", "1- to 2-dimensional", "(2, 3, 4)"]),
    ("normalize-ndim0", _sim_case("normalize", np.array(2.0)), ValueError,
     ["normalize()", "x", "1- to 2-dimensional"]),
    ("top_k-queries-ndim3", _sim_case("top_k", _sim_f32(2, 3, 4), _sim_f32(5, 4), 2), ValueError,
     ["top_k()", "queries", "(2, 3, 4)"]),
    ("top_k-corpus-1d", _sim_case("top_k", _sim_f32(4), _sim_f32(4), 2), ValueError,
     ["top_k()", "corpus", "2-dimensional", "(4,)"]),
    ("top_k-corpus-ndim0", _sim_case("top_k", _sim_f32(4), np.float32(3), 2), ValueError,
     ["top_k()", "corpus", "2-dimensional"]),
    # last-dimension mismatch
    ("cosine-dim-mismatch", _sim_case("cosine_similarity", _sim_f32(3, 4), _sim_f32(5, 6)), ValueError,
     ["cosine_similarity()", "same last dimension", "(3, 4)", "(5, 6)"]),
    ("cosine-pair-dim-mismatch", _sim_case("cosine_similarity", _sim_f32(4), _sim_f32(5)), ValueError,
     ["cosine_similarity()", "x", "y", "(4,)", "(5,)"]),
    ("top_k-dim-mismatch", _sim_case("top_k", _sim_f32(2, 4), _sim_f32(5, 3), 2), ValueError,
     ["top_k()", "queries", "corpus", "(2, 4)", "(5, 3)"]),
    # k <= 0 and other bad parameters
    ("top_k-k-zero", _sim_case("top_k", _sim_f32(4), _sim_f32(5, 4), 0), ValueError,
     ["top_k()", "k must be a positive int", "0"]),
    ("top_k-k-negative", _sim_case("top_k", _sim_f32(4), _sim_f32(5, 4), -3), ValueError,
     ["top_k()", "k", "-3"]),
    ("top_k-k-float", _sim_case("top_k", _sim_f32(4), _sim_f32(5, 4), 2.5), TypeError,
     ["top_k()", "k must be a positive int", "float"]),
    ("top_k-k-bool", _sim_case("top_k", _sim_f32(4), _sim_f32(5, 4), True), TypeError,
     ["top_k()", "k", "bool"]),
    ("top_k-metric", _sim_case("top_k", _sim_f32(4), _sim_f32(5, 4), 2, metric="euclid"), ValueError,
     ["top_k()", "metric", "'cosine', 'dot'", "euclid"]),
    ("top_k-metric-type", _sim_case("top_k", _sim_f32(4), _sim_f32(5, 4), 2, metric=1), TypeError,
     ["top_k()", "metric"]),
    ("top_k-threads-zero", _sim_case("top_k", _sim_f32(4), _sim_f32(5, 4), 2, threads=0), ValueError,
     ["top_k()", "threads", "0"]),
    ("cosine-threads-str", _sim_case("cosine_similarity", _sim_f32(2, 4), _sim_f32(5, 4), threads="2"),
     TypeError, ["cosine_similarity()", "threads", "str"]),
    ("cosine-unknown-keyword", _sim_case("cosine_similarity", _sim_f32(4), _sim_f32(4), axis=1), TypeError,
     ["cosine_similarity()", "axis"]),
    ("top_k-missing-k", _sim_case("top_k", _sim_f32(4), _sim_f32(5, 4)), TypeError, ["top_k()", "k"]),
    # out: wrong shape, dtype, read-only, overlapping, not allowed (any layout works)
    ("cosine-out-shape", _sim_out_case("cosine_similarity", (_sim_f32(3, 4), _sim_f32(5, 4)),
                                       lambda: np.zeros((3, 4), np.float32)), ValueError,
     ["cosine_similarity()", "out", "shape (3, 5)", "(3, 4)"]),
    ("cosine-out-dtype", _sim_out_case("cosine_similarity", (_sim_f32(3, 4), _sim_f32(5, 4)),
                                       lambda: np.zeros((3, 5), np.float64)), TypeError,
     ["cosine_similarity()", "out", "float32", "float64"]),
    ("cosine-out-dtype-mixed", _sim_out_case("cosine_similarity",
                                             (_sim_f32(3, 4), _sim_f32(5, 4).astype(np.float64)),
                                             lambda: np.zeros((3, 5), np.float32)), TypeError,
     ["cosine_similarity()", "out", "float64"]),
    ("cosine-out-readonly", _sim_out_case("cosine_similarity", (_sim_f32(3, 4), _sim_f32(5, 4)),
                                          lambda: _readonly(np.zeros((3, 5), np.float32))),
     ValueError, ["cosine_similarity()", "out", "writeable"]),
    ("cosine-out-not-array", _sim_case("cosine_similarity", _sim_f32(3, 4), _sim_f32(5, 4), out=[0.0] * 15),
     TypeError, ["cosine_similarity()", "out", "list"]),
    ("cosine-out-for-pair", _sim_out_case("cosine_similarity", (_sim_f32(4), _sim_f32(4)),
                                          lambda: np.zeros((), np.float32)), TypeError,
     ["cosine_similarity()", "out", "1-D"]),
    ("cosine-out-vector-shape", _sim_out_case("cosine_similarity", (_sim_f32(4), _sim_f32(5, 4)),
                                              lambda: np.zeros(4, np.float32)), ValueError,
     ["cosine_similarity()", "out", "(5,)", "(4,)"]),
    ("normalize-out-shape", _sim_out_case("normalize", (_sim_f32(3, 4),), lambda: np.zeros((4, 3), np.float32)),
     ValueError, ["normalize()", "out", "(3, 4)", "(4, 3)"]),
    ("normalize-out-dtype", _sim_out_case("normalize", (_sim_f32(3, 4),), lambda: np.zeros((3, 4), np.float64)),
     TypeError, ["normalize()", "out", "float32", "float64"]),
    ("normalize-out-readonly", _sim_out_case("normalize", (_sim_f32(3, 4),),
                                             lambda: _readonly(np.zeros((3, 4), np.float32))),
     ValueError, ["normalize()", "out", "writeable"]),
]


def _sim_overlap_cosine():
    buf = _sim_f32(40)
    x = buf[:12].reshape(3, 4)
    out = buf[8:23].reshape(3, 5)  # shares x's last row
    return engram.cosine_similarity, (x, _sim_f32(5, 4)), {"out": out}, [buf]


def _sim_overlap_cosine_y():
    buf = _sim_f32(40)
    y = buf[15:35].reshape(5, 4)
    out = buf[4:19].reshape(3, 5)[::-1]  # reversed rows whose last bytes are y's first row
    return engram.cosine_similarity, (_sim_f32(3, 4), y), {"out": out}, [buf]


def _sim_overlap_normalize():
    x = _sim_f32(3, 4)
    out = x[::-1]  # same memory, other layout: rows would be read after being written
    return engram.normalize, (x,), {"out": out}, [x]


def _sim_overlap_promoted_x():
    """float32 x is promoted to a float64 copy; the float64 out overlaps the caller's x."""
    buf = np.zeros(64, np.float64)
    x = buf.view(np.float32)[:24].reshape(3, 8)
    x[...] = _sim_f32(3, 8)
    return engram.cosine_similarity, (x, _sim_f32(4, 8).astype(np.float64)), {"out": buf[:12].reshape(3, 4)}, [buf]


def _sim_overlap_unaligned_x():
    """An unaligned x is read from an aligned copy; out overlaps the caller's x."""
    raw = np.zeros(200, np.uint8)
    x = raw[1:97].view(np.float32).reshape(3, 8)
    x[...] = 1.0
    return engram.cosine_similarity, (x, _sim_f32(4, 8)), {"out": raw[8:56].view(np.float32).reshape(3, 4)}, [raw]


def _sim_overlap_byteswapped_y():
    """A big-endian y is read from a native copy; out overlaps the caller's y."""
    buf = np.zeros(40, np.float32)
    y = buf[:32].view(">f4").reshape(4, 8)
    y[...] = _sim_f32(4, 8)
    return engram.cosine_similarity, (_sim_f32(2, 8), y), {"out": buf[30:38].reshape(2, 4)}, [buf]


def _sim_overlap_memoryview_x():
    """x given as a buffer (not an ndarray) that out views."""
    buf = _sim_f32(40)
    return engram.cosine_similarity, (memoryview(buf[:12]), _sim_f32(5, 12)), {"out": buf[10:15]}, [buf]


def _sim_normalize_other_byte_order():
    """Same bytes, same layout, other byte order: not the in-place case; x would be clobbered."""
    out = _sim_f32(3, 8)
    return engram.normalize, (out.view(">f4"),), {"out": out}, [out]


CASES += [
    ("cosine-out-overlaps-promoted-x", _sim_overlap_promoted_x, ValueError, ["cosine_similarity()", "out overlaps x"]),
    ("cosine-out-overlaps-unaligned-x", _sim_overlap_unaligned_x, ValueError,
     ["cosine_similarity()", "out overlaps x"]),
    ("cosine-out-overlaps-byteswapped-y", _sim_overlap_byteswapped_y, ValueError,
     ["cosine_similarity()", "out overlaps y"]),
    ("cosine-out-overlaps-memoryview-x", _sim_overlap_memoryview_x, ValueError,
     ["cosine_similarity()", "out overlaps x"]),
    ("normalize-out-other-byte-order", _sim_normalize_other_byte_order, ValueError,
     ["normalize()", "out overlaps x"]),
    ("cosine-threads-huge", _sim_case("cosine_similarity", _sim_f32(2, 4), _sim_f32(5, 4), threads=2**70),
     ValueError, ["cosine_similarity()", "threads", "1..256", str(2**70)]),
    ("top_k-threads-negative-huge", _sim_case("top_k", _sim_f32(4), _sim_f32(5, 4), 2, threads=-(2**70)),
     ValueError, ["top_k()", "threads", str(-(2**70))]),
    ("top_k-threads-numpy-zero", _sim_case("top_k", _sim_f32(4), _sim_f32(5, 4), 2, threads=np.int64(0)),
     ValueError, ["top_k()", "threads", "got 0"]),
    ("cosine-threads-float", _sim_case("cosine_similarity", _sim_f32(2, 4), _sim_f32(5, 4), threads=2.0),
     TypeError, ["cosine_similarity()", "threads", "float"]),
    ("cosine-threads-bool", _sim_case("cosine_similarity", _sim_f32(2, 4), _sim_f32(5, 4), threads=True),
     TypeError, ["cosine_similarity()", "threads", "bool"]),
    ("cosine-out-overlaps-x", _sim_overlap_cosine, ValueError, ["cosine_similarity()", "out overlaps x"]),
    ("cosine-out-overlaps-y", _sim_overlap_cosine_y, ValueError, ["cosine_similarity()", "out overlaps y"]),
    ("normalize-out-overlaps-x", _sim_overlap_normalize, ValueError, ["normalize()", "out overlaps x"]),
    # sizes overflowing size_t: the result of m x n, or q x k
    ("cosine-result-overflow", lambda: (engram.cosine_similarity, (_huge_rows(2**32), _huge_rows(2**32)), {}, []),
     ValueError, ["cosine_similarity()", "4294967296 x 4294967296", "overflows"]),
    ("top_k-result-overflow", _sim_case("top_k", _sim_f32(8, 4), _sim_f32(5, 4), 2**62), ValueError,
     ["top_k()", "8 x 4611686018427387904", "overflows"]),
]

# ==== end similarity ====

# ==== spread ====


def _spread_graph():
    """A 5-node graph, fresh for every case."""
    return engram.Graph(np.array([0, 2, 3, 4, 5, 5]), np.array([1, 2, 3, 4, 0]),
                        np.array([0.5, 0.5, 1.0, 1.0, 1.0]))


def _spread_case(seeds=None, out=None, graph=None, **kwargs):
    def build():
        s = np.array([1.0, 0, 0, 0, 0], np.float32) if seeds is None else seeds()
        g = _spread_graph() if graph is None else graph()
        o = out() if out is not None else None
        if o is not None:
            kwargs["out"] = o
        guarded = [a for a in (s, o) if isinstance(a, np.ndarray)]
        return engram.spread, (g, s), dict(kwargs), guarded
    return build


def _spread_overlap():
    buf = np.array([1, 0, 0, 0, 0, 0], np.float32)
    return engram.spread, (_spread_graph(), buf[:5]), {"out": buf[1:6]}, [buf]


def _graph_case(*args, **kwargs):
    def build():
        made = [a() if callable(a) else a for a in args]
        return engram.Graph, tuple(made), dict(kwargs), [a for a in made if isinstance(a, np.ndarray)]
    return build


CASES += [
    # seeds
    ("spread-seeds-length", _spread_case(seeds=lambda: np.zeros(4, np.float32)), ValueError,
     ["seeds", "(5,)", "shape (4,)"]),
    ("spread-seeds-batch-length", _spread_case(seeds=lambda: np.zeros((2, 6))), ValueError,
     ["seeds", "(b, 5)", "shape (2, 6)"]),
    ("spread-seeds-int", _spread_case(seeds=lambda: np.array([1, 0, 0, 0, 0])), TypeError,
     ["seeds", "float32 or float64", "int64"]),
    ("spread-seeds-bool", _spread_case(seeds=lambda: np.ones(5, bool)), TypeError,
     ["seeds", "float32 or float64", "bool"]),
    ("spread-seeds-complex", _spread_case(seeds=lambda: np.ones(5, complex)), TypeError,
     ["seeds", "complex128"]),
    ("spread-seeds-float16", _spread_case(seeds=lambda: np.ones(5, np.float16)), TypeError,
     ["seeds", "float16"]),
    ("spread-seeds-3d", _spread_case(seeds=lambda: np.zeros((1, 1, 5))), ValueError,
     ["seeds", "1- to 2-dimensional", "(1, 1, 5)"]),
    ("spread-seeds-0d", _spread_case(seeds=lambda: np.float64(1.0)), ValueError,
     ["seeds", "1- to 2-dimensional"]),
    ("spread-seeds-negative", _spread_case(seeds=lambda: np.array([1.0, 0, -0.5, 0, 0])), ValueError,
     ["seeds[2]", "-0.5", "negative"]),
    ("spread-seeds-nan", _spread_case(seeds=lambda: np.array([1.0, 0, 0, np.nan, 0], np.float32)),
     ValueError, ["seeds[3]", "NaN"]),
    ("spread-seeds-inf", _spread_case(seeds=lambda: np.array([np.inf, 0, 0, 0, 0])), ValueError,
     ["seeds[0]", "infinite"]),
    ("spread-seeds-batch-negative",
     _spread_case(seeds=lambda: np.array([[1.0, 0, 0, 0, 0], [0, 0, 0, 0, -1.0]], np.float32)),
     ValueError, ["seeds[1, 4]", "negative"]),
    ("spread-seeds-negative-out",
     _spread_case(seeds=lambda: np.array([[1.0, 0, 0, 0, 0], [0, 0, 0, np.nan, 0]]),
                  out=lambda: np.full((2, 5), 3.0, np.float32)),
     ValueError, ["seeds[1, 3]", "NaN"]),
    ("spread-dict-node-range", _spread_case(seeds=lambda: {0: 1.0, 7: 1.0}), ValueError,
     ["seeds", "node 7", "out of range", "5 nodes"]),
    ("spread-dict-node-negative", _spread_case(seeds=lambda: {-1: 1.0}), ValueError,
     ["seeds", "node -1", "out of range"]),
    ("spread-dict-node-type", _spread_case(seeds=lambda: {"a": 1.0}), TypeError,
     ["seeds", "int node ids", "str"]),
    ("spread-dict-value-negative", _spread_case(seeds=lambda: {2: -1.0}), ValueError,
     ["seeds[2]", "negative"]),
    ("spread-dict-value-nan", _spread_case(seeds=lambda: {2: float("nan")}), ValueError,
     ["seeds[2]", "NaN"]),
    ("spread-dict-value-type", _spread_case(seeds=lambda: {2: "x"}), TypeError,
     ["seeds", "real number", "str"]),
    # options
    ("spread-decay-zero", _spread_case(decay=0.0), ValueError, ["decay", "(0, 1]", "0"]),
    ("spread-decay-above-one", _spread_case(decay=1.5), ValueError, ["decay", "(0, 1]", "1.5"]),
    ("spread-decay-nan", _spread_case(decay=float("nan")), ValueError, ["decay", "(0, 1]", "nan"]),
    ("spread-decay-array-length", _spread_case(decay=np.array([0.9, 0.8, 0.7])), ValueError,
     ["decay", "max_depth = 4", "shape (3,)"]),
    ("spread-decay-array-value", _spread_case(decay=[0.9, 0.8, 0.0, 0.5]), ValueError,
     ["decay[2]", "(0, 1]"]),
    ("spread-decay-array-2d", _spread_case(decay=np.full((2, 2), 0.5)), ValueError,
     ["decay", "max_depth = 4", "shape (2, 2)"]),
    ("spread-decay-type", _spread_case(decay="fast"), TypeError, ["decay", "real"]),
    ("spread-threshold-negative", _spread_case(threshold=-1e-3), ValueError, ["threshold", ">= 0"]),
    ("spread-threshold-nan", _spread_case(threshold=float("nan")), ValueError, ["threshold", "NaN"]),
    ("spread-threshold-type", _spread_case(threshold="low"), TypeError, ["threshold", "real number"]),
    ("spread-max-depth-negative", _spread_case(max_depth=-1), ValueError, ["max_depth", ">= 0", "-1"]),
    ("spread-max-depth-float", _spread_case(max_depth=2.5), TypeError, ["max_depth", "int"]),
    ("spread-max-depth-bool", _spread_case(max_depth=True), TypeError, ["max_depth", "int"]),
    ("spread-normalize-unknown", _spread_case(normalize="in"), ValueError,
     ["normalize", "'none', 'out'", "'in'"]),
    ("spread-normalize-type", _spread_case(normalize=1), TypeError, ["normalize", "'none', 'out'"]),
    ("spread-combine-unknown", _spread_case(combine="mean"), ValueError,
     ["combine", "'sum', 'max'", "'mean'"]),
    ("spread-revisit-type", _spread_case(revisit="yes"), TypeError, ["revisit", "bool", "str"]),
    ("spread-threads-zero", _spread_case(threads=0), ValueError, ["threads", "1..256"]),
    ("spread-unknown-keyword", _spread_case(depth=3), TypeError, ["depth"]),
    # out
    ("spread-out-shape", _spread_case(out=lambda: np.zeros(4, np.float32)), ValueError,
     ["out", "shape (5,)", "shape (4,)"]),
    ("spread-out-batch-shape",
     _spread_case(seeds=lambda: np.zeros((2, 5)), out=lambda: np.zeros((5,), np.float32)),
     ValueError, ["out", "shape (2, 5)", "shape (5,)"]),
    ("spread-out-dtype", _spread_case(out=lambda: np.zeros(5)), TypeError,
     ["out", "float32", "float64"]),
    ("spread-out-readonly",
     _spread_case(out=lambda: np.lib.stride_tricks.as_strided(np.zeros(5, np.float32), writeable=False)),
     ValueError, ["out", "writeable"]),
    ("spread-out-type", _spread_case(out=lambda: [0.0] * 5), TypeError, ["out", "numpy.ndarray", "list"]),
    ("spread-out-overlaps-seeds", lambda: _spread_overlap(), ValueError, ["out", "overlaps", "seeds"]),
    # graphs
    ("spread-graph-type", _spread_case(graph=lambda: [[0, 1], [1, 0]]), TypeError,
     ["Graph()", "scipy.sparse", "list"]),
    ("spread-graph-tuple-size", _spread_case(graph=lambda: (np.array([0, 1]),)), TypeError,
     ["(indptr, indices[, weights[, n]])", "tuple of 1"]),
    ("graph-indptr-decreasing", _graph_case(np.array([0, 2, 1, 3]), np.array([1, 2, 0])), ValueError,
     ["indptr", "non-decreasing", "indptr[2] = 1", "indptr[1] = 2"]),
    ("graph-indptr-length", _graph_case(np.array([0, 1, 2]), np.array([1, 0]), None, 3), ValueError,
     ["indptr", "n + 1 = 4", "shape (3,)"]),
    ("graph-indptr-start", _graph_case(np.array([1, 2]), np.array([0, 0])), ValueError,
     ["indptr[0]", "0"]),
    ("graph-indptr-beyond-indices", _graph_case(np.array([0, 2, 5]), np.array([1, 0])), ValueError,
     ["indptr[-1] = 5", "indices", "2"]),
    ("graph-indptr-empty", _graph_case(np.array([], np.int64), np.array([], np.int64)), ValueError,
     ["indptr", "n + 1"]),
    ("graph-indptr-float", _graph_case(np.array([0.0, 1.0]), np.array([0])), TypeError,
     ["indptr", "int32 or int64", "float64"]),
    ("graph-indices-range", _graph_case(np.array([0, 1, 3]), np.array([1, 0, 2])), ValueError,
     ["indices[2] = 2", "out of range", "2 nodes"]),
    ("graph-indices-negative", _graph_case(np.array([0, 1, 2]), np.array([1, -1])), ValueError,
     ["indices[1] = -1", "out of range"]),
    ("graph-indices-2d", _graph_case(np.array([0, 1]), np.array([[0]])), ValueError,
     ["indices", "1-dimensional"]),
    ("graph-weights-negative", _graph_case(np.array([0, 1, 2]), np.array([1, 0]), np.array([0.5, -1.0])),
     ValueError, ["weights[1] = -1.0", "negative"]),
    ("graph-weights-nan", _graph_case(np.array([0, 1, 2]), np.array([1, 0]), np.array([np.nan, 1.0])),
     ValueError, ["weights[0]", "NaN"]),
    ("graph-weights-inf",
     _graph_case(np.array([0, 1, 2]), np.array([1, 0]), np.array([1.0, np.inf], np.float32)),
     ValueError, ["weights[1]", "infinite"]),
    ("graph-weights-length", _graph_case(np.array([0, 1, 2]), np.array([1, 0]), np.array([1.0])),
     ValueError, ["weights", "one entry per edge (2)", "shape (1,)"]),
    ("graph-weights-complex",
     _graph_case(np.array([0, 1, 2]), np.array([1, 0]), np.array([1.0, 2.0], complex)),
     TypeError, ["weights", "float32 or float64", "complex128"]),
    ("graph-n-negative", _graph_case(np.array([0]), np.array([], np.int64), None, -1), ValueError,
     ["n", ">= 0"]),
]


def _spread_overlapping(kind):
    """Seeds the binding converts or copies (strided, unaligned, byte-swapped) whose memory out
    shares: the check looks at the caller's memory, not at the copy."""
    def build():
        if kind == "strided":
            buf = np.zeros(10, np.float32)
            seeds, out = buf[::2], buf[:5]
        elif kind == "unaligned":
            buf = np.zeros(5 * 4 + 4, np.uint8)
            seeds = np.ndarray((5,), np.float32, buf.data, 1)
            out = np.ndarray((5,), np.float32, buf.data, 4)
        else:
            buf = np.zeros(5, np.float32)
            seeds, out = buf.view(">f4"), buf
        seeds[0] = 1.0
        return engram.spread, (_spread_graph(), seeds), {"out": out}, [buf]
    return build


def _spread_out_on_graph(name):
    """out in the memory of a graph that shares the caller's arrays (copy=False)."""
    def build():
        indptr = np.array([0, 2, 3, 4, 5, 5], np.int32)
        indices = np.array([1, 2, 3, 4, 0], np.int32)
        weights = np.array([0.5, 0.5, 1.0, 1.0, 1.0], np.float32)
        g = engram.Graph(indptr, indices, weights, copy=False)
        out = weights if name == "weights" else indices.view(np.float32)
        return engram.spread, (g, np.array([1.0, 0, 0, 0, 0])), {"out": out}, [indices, weights]
    return build


CASES += [
    ("spread-out-overlaps-strided-seeds", _spread_overlapping("strided"), ValueError,
     ["out", "overlaps", "seeds"]),
    ("spread-out-overlaps-unaligned-seeds", _spread_overlapping("unaligned"), ValueError,
     ["out", "overlaps", "seeds"]),
    ("spread-out-overlaps-swapped-seeds", _spread_overlapping("swapped"), ValueError,
     ["out", "overlaps", "seeds"]),
    ("spread-out-is-graph-weights", _spread_out_on_graph("weights"), ValueError,
     ["out", "overlaps", "graph's weights"]),
    ("spread-out-is-graph-indices", _spread_out_on_graph("indices"), ValueError,
     ["out", "overlaps", "graph's indices"]),
    ("spread-threshold-1d", _spread_case(threshold=np.array([0.5])), TypeError,
     ["threshold", "real number", "shape (1,)"]),
    ("spread-threshold-0d-bool", _spread_case(threshold=np.array(True)), TypeError,
     ["threshold", "real number", "bool"]),
    ("spread-threshold-huge-int", _spread_case(threshold=10**400), ValueError,
     ["threshold", "float64 range"]),
    ("spread-decay-huge-int", _spread_case(decay=10**400), ValueError, ["decay", "float64 range"]),
    ("spread-decay-0d-out-of-range", _spread_case(decay=np.array(1.5)), ValueError,
     ["decay", "(0, 1]", "1.5"]),
    ("spread-normalize-none", _spread_case(normalize=None), TypeError, ["normalize", "'none', 'out'", "None"]),
    ("spread-threads-float", _spread_case(threads=2.0), TypeError, ["threads", "float"]),
    ("spread-threads-bool", _spread_case(threads=True), TypeError, ["threads", "bool"]),
    ("spread-threads-range", _spread_case(threads=257), ValueError, ["threads", "1..256", "257"]),
    ("spread-dict-value-huge-int", _spread_case(seeds=lambda: {2: 10**400}), ValueError,
     ["seeds[2]", "infinite"]),
    ("graph-copy-type", _graph_case(np.array([0, 1]), np.array([0]), copy=None), TypeError,
     ["copy", "bool"]),
]


def _spread_scipy_case(make):
    def build():
        sp = pytest.importorskip("scipy.sparse")
        return engram.Graph, (make(sp),), {}, []
    return build


CASES += [
    ("graph-scipy-not-square", _spread_scipy_case(lambda sp: sp.csr_matrix(np.ones((2, 3)))), ValueError,
     ["square", "(2, 3)"]),
    ("graph-scipy-negative", _spread_scipy_case(lambda sp: sp.csr_matrix(np.array([[0, -1.0], [1, 0]]))),
     ValueError, ["weights[0] = -1.0", "negative"]),
    ("graph-matrix-with-weights", lambda: (engram.Graph, (np.eye(2),), {}, []), TypeError,
     ["Graph()", "scipy.sparse", "ndarray"]),
]

# ==== end spread ====

# ==== decay ====


def _decay_data(n=8, dtype=np.float32):
    rng = np.random.default_rng(8)
    return (rng.random(n).astype(dtype), rng.uniform(0, 1e6, n).astype(dtype),
            rng.uniform(1e3, 1e6, n).astype(dtype))


def _decay_case(strength=None, age=None, guard_strength=False, **kwargs):
    """decay(strength, age, **kwargs) on fresh arrays; out= and in-place strength guarded."""
    def build():
        s, t, S = _decay_data()
        args = (s if strength is None else strength(s), t if age is None else age(t))
        kw = {"stability": S}
        kw.update({k: (v(s, t, S) if callable(v) else v) for k, v in kwargs.items()})
        guarded = [a for a in (args[0], kw.get("out")) if isinstance(a, np.ndarray)]
        return engram.decay, args, kw, guarded if guard_strength or "out" in kw else []
    return build


def _bad_age(value, index):
    def age(t):
        t = t.copy()
        t[index] = value
        return t
    return age


_decay_readonly = lambda s, t, S: np.frombuffer(np.zeros(8, np.float32).tobytes(), np.float32)  # noqa: E731

CASES += [
    # dtypes
    ("decay-strength-int64", _decay_case(strength=lambda s: np.arange(8)), TypeError,
     ["strength", "float32 or float64", "int64"]),
    ("decay-strength-bool", _decay_case(strength=lambda s: s > 0.5), TypeError, ["strength", "bool"]),
    ("decay-strength-complex", _decay_case(strength=lambda s: s.astype(np.complex64)), TypeError,
     ["strength", "complex64"]),
    ("decay-strength-float16", _decay_case(strength=lambda s: s.astype(np.float16)), TypeError,
     ["strength", "float16"]),
    ("decay-strength-object", _decay_case(strength=lambda s: s.astype(object)), TypeError,
     ["strength", "object"]),
    ("decay-strength-str", _decay_case(strength=lambda s: "strong"), TypeError, ["strength"]),
    ("decay-age-int32", _decay_case(age=lambda t: t.astype(np.int32)), TypeError,
     ["age", "int64 or uint64", "int32"]),
    ("decay-age-bool", _decay_case(age=lambda t: t > 0), TypeError, ["age", "bool"]),
    ("decay-age-complex", _decay_case(age=lambda t: t.astype(np.complex128)), TypeError,
     ["age", "complex128"]),
    ("decay-age-str", _decay_case(age=lambda t: "old"), TypeError, ["age", "str"]),
    ("decay-age-None", _decay_case(age=lambda t: None), TypeError, ["age"]),
    ("decay-stability-float16", _decay_case(stability=lambda s, t, S: np.minimum(S, 6e4).astype(np.float16)),
     TypeError, ["stability", "float16"]),
    ("decay-power-str", _decay_case(model="power", power="half"), TypeError, ["power", "str"]),
    ("decay-model-int", _decay_case(model=1), TypeError, ["model", "'exponential', 'power'"]),
    ("decay-threads-float", _decay_case(threads=2.0), TypeError, ["threads"]),
    ("decay-power-1d", _decay_case(model="power", power=np.array([0.5])), TypeError,
     ["power", "real number", "shape (1,)"]),
    ("decay-factor-1d", _decay_case(model="power", factor=np.array([0.25, 0.5])), TypeError,
     ["factor", "real number", "shape (2,)"]),
    ("decay-power-huge-int", _decay_case(model="power", power=10**400), ValueError,
     ["power", "float64 range"]),
    ("decay-factor-huge-int", _decay_case(model="power", factor=-(10**400)), ValueError,
     ["factor", "float64 range"]),
    # shapes
    ("decay-strength-2d", _decay_case(strength=lambda s: s.reshape(2, 4),
                                      age=lambda t: t.reshape(2, 4)), ValueError,
     ["strength", "1-dimensional", "(2, 4)"]),
    ("decay-strength-0d", _decay_case(strength=lambda s: np.float32(1.0)), ValueError,
     ["strength", "1-dimensional", "()"]),
    ("decay-age-length", _decay_case(age=lambda t: t[:7]), ValueError, ["age", "(8,)", "(7,)"]),
    ("decay-age-2d", _decay_case(age=lambda t: t.reshape(2, 4)), ValueError, ["age", "(2, 4)"]),
    ("decay-stability-length", _decay_case(stability=lambda s, t, S: np.ones(9, np.float32)),
     ValueError, ["stability", "(8,)", "(9,)"]),
    ("decay-age-int-too-large", _decay_case(age=lambda t: 2**70), ValueError, ["age", "range"]),
    # values (nothing written: out=strength is guarded)
    ("decay-age-negative", _decay_case(age=_bad_age(-1.0, 3), out=lambda s, t, S: s), ValueError,
     ["age[3]", "-1", ">= 0"]),
    ("decay-age-nan", _decay_case(age=_bad_age(np.nan, 6), out=lambda s, t, S: s), ValueError,
     ["age[6]", "nan"]),
    ("decay-age-negative-int64", _decay_case(age=lambda t: np.arange(8) - 5, out=lambda s, t, S: s),
     ValueError, ["age[0]", "-5"]),
    ("decay-age-negative-scalar", _decay_case(age=lambda t: -60.0, out=lambda s, t, S: s),
     ValueError, ["age is -60"]),
    ("decay-age-last-negative-in-place", _decay_case(age=_bad_age(-2.0, 7), out=lambda s, t, S: s,
                                                     threads=2), ValueError, ["age[7]"]),
    ("decay-stability-zero", _decay_case(stability=lambda s, t, S: np.where(np.arange(8) == 2, 0, S),
                                         out=lambda s, t, S: s), ValueError, ["stability[2]", "> 0"]),
    ("decay-stability-nan", _decay_case(stability=lambda s, t, S: np.where(np.arange(8) == 5, np.nan, S),
                                        out=lambda s, t, S: s), ValueError, ["stability[5]", "nan"]),
    ("decay-stability-negative-scalar", _decay_case(stability=-3600.0, out=lambda s, t, S: s),
     ValueError, ["stability is -3600", "> 0"]),
    ("decay-stability-zero-int", _decay_case(stability=0), ValueError, ["stability is 0"]),
    ("decay-model-unknown", _decay_case(model="linear"), ValueError,
     ["model", "'exponential', 'power'", "'linear'"]),
    ("decay-power-zero", _decay_case(model="power", power=0.0, out=lambda s, t, S: s), ValueError,
     ["power", "> 0", "0"]),
    ("decay-power-negative", _decay_case(model="power", power=-0.5), ValueError, ["power", "-0.5"]),
    ("decay-power-nan", _decay_case(model="power", power=float("nan")), ValueError, ["power", "nan"]),
    ("decay-power-inf", _decay_case(model="power", power=float("inf")), ValueError, ["power", "inf"]),
    ("decay-factor-negative", _decay_case(model="power", factor=-1.0), ValueError, ["factor", ">= 0"]),
    ("decay-threads-zero", _decay_case(threads=0), ValueError, ["threads", "0"]),
    # out
    ("decay-out-shape", _decay_case(out=lambda s, t, S: np.zeros(7, np.float32)), ValueError,
     ["out", "shape (8,)", "(7,)"]),
    ("decay-out-2d", _decay_case(out=lambda s, t, S: np.zeros((2, 4), np.float32)), ValueError,
     ["out", "(2, 4)"]),
    ("decay-out-dtype", _decay_case(out=lambda s, t, S: np.zeros(8, np.float64)), TypeError,
     ["out", "float32", "float64"]),
    ("decay-out-readonly", _decay_case(out=_decay_readonly), ValueError, ["out", "writeable", "read-only"]),
    ("decay-out-list", _decay_case(out=lambda s, t, S: [0.0] * 8), TypeError, ["out", "ndarray", "list"]),
    ("decay-out-overlaps-age", _decay_case(out=lambda s, t, S: t), ValueError, ["out", "overlaps", "age"]),
    ("decay-out-overlaps-stability", _decay_case(out=lambda s, t, S: S), ValueError,
     ["out", "overlaps", "stability"]),
]


def _decay_shifted_out():
    buf = np.linspace(0, 1, 9, dtype=np.float32)
    s, t, S = _decay_data()
    return engram.decay, (buf[:8], t), {"stability": S, "out": buf[1:]}, [buf]


CASES.append(("decay-out-overlaps-strength-shifted", _decay_shifted_out, ValueError,
              ["out", "overlaps", "strength"]))


def _decay_stride_zero_out():
    """A writeable zero-stride out (here strength itself, updated in place): one location for all."""
    base = np.array([0.8, 0.25], np.float32)
    x = np.lib.stride_tricks.as_strided(base, shape=(5000,), strides=(0,))
    return engram.decay, (x, np.full(5000, 10.0, np.float32)), {"stability": 100.0, "out": x}, [base]


CASES.append(("decay-out-stride-zero", _decay_stride_zero_out, ValueError,
              ["out", "elements do not overlap", "strides (0,)"]))

# ==== end decay ====


# ==== hardening ====
# Rows for every item of the error list not covered above, for every public
# function.  Builders make fresh arrays on every call, so each row also checks
# that out= and in-place inputs are byte-identical after the error.

_H_TOO_BIG = 10**400  # an int no float can hold
_as_strided = np.lib.stride_tricks.as_strided


def _h(fn, *args, guarded=(), **kwargs):
    """A row's builder: fn(*args, **kwargs), each argument a value or a zero-argument factory."""
    def build():
        made_args = [a() if callable(a) and not isinstance(a, type) else a for a in args]
        made_kwargs = {k: (v() if callable(v) and not isinstance(v, type) else v) for k, v in kwargs.items()}
        guard = [a for a in made_args + list(made_kwargs.values()) if isinstance(a, np.ndarray)
                 and a.nbytes < (1 << 24)]
        return fn, tuple(made_args), made_kwargs, guard
    return build


def _h_f32(*shape, seed=1):
    return lambda: np.random.default_rng(seed).standard_normal(shape).astype(np.float32)


def _h_graph():
    return engram.Graph(np.array([0, 2, 3, 4, 5, 5]), np.array([1, 2, 3, 4, 0]),
                        np.array([0.5, 0.5, 1.0, 1.0, 1.0]))


def _h_seeds(*shape):
    def make():
        s = np.zeros(shape, np.float32)
        s[..., 0] = 1.0
        return s
    return make


def _h_self_overlapping(shape, zero_axis=0, dtype=np.float32):
    """A writeable out whose rows along zero_axis are the same memory."""
    def make():
        base = np.full(shape, 7.0, dtype)
        strides = list(base.strides)
        strides[zero_axis] = 0
        return _as_strided(base, shape=shape, strides=strides)
    return make


_H_OVERLAP_WORDS = ["out", "do not overlap", "strides (0,"]

CASES += [
    # ints beyond every C type: a ValueError naming the argument, not OverflowError
    ("h-cosine-threads-huge", _h(engram.cosine_similarity, _h_f32(2, 4), _h_f32(3, 4), threads=2**70),
     ValueError, ["cosine_similarity()", "threads", "1..256", str(2**70)]),
    ("h-cosine-threads-huge-negative", _h(engram.cosine_similarity, _h_f32(2, 4), _h_f32(3, 4), threads=-2**70),
     ValueError, ["cosine_similarity()", "threads", str(-2**70)]),
    ("h-top_k-threads-huge", _h(engram.top_k, _h_f32(2, 4), _h_f32(3, 4), 2, threads=2**64), ValueError,
     ["top_k()", "threads", str(2**64)]),
    ("h-spread-threads-huge", _h(engram.spread, _h_graph, _h_seeds(5), threads=2**70), ValueError,
     ["spread()", "threads", str(2**70)]),
    ("h-decay-threads-huge", _h(engram.decay, _h_f32(8), 1.0, threads=2**70), ValueError,
     ["decay()", "threads", str(2**70)]),
    # both backends take the same option values: None is not a normalisation
    ("h-spread-normalize-None", _h(engram.spread, _h_graph, _h_seeds(5), normalize=None), TypeError,
     ["spread()", "normalize", "'none', 'out'", "None"]),
    ("h-set_num_threads-huge", _h(engram.set_num_threads, 2**70), ValueError,
     ["set_num_threads()", "1..256", str(2**70)]),
    # an out whose elements share memory would lose all results but one
    ("h-cosine-out-zero-row-stride", _h(engram.cosine_similarity, _h_f32(3, 4), _h_f32(5, 4),
                                         out=_h_self_overlapping((3, 5))), ValueError,
     ["cosine_similarity()"] + _H_OVERLAP_WORDS),
    ("h-cosine-out-vector-zero-stride", _h(engram.cosine_similarity, _h_f32(4), _h_f32(5, 4),
                                            out=_h_self_overlapping((5,))), ValueError,
     ["cosine_similarity()"] + _H_OVERLAP_WORDS),
    ("h-normalize-out-rows-overlap",
     _h(engram.normalize, _h_f32(3, 4), out=lambda: _as_strided(np.zeros(8, np.float32), shape=(3, 4), strides=(8, 4))),
     ValueError, ["normalize()", "out", "do not overlap", "strides (8, 4)"]),
    ("h-spread-out-zero-row-stride", _h(engram.spread, _h_graph, _h_seeds(2, 5),
                                         out=_h_self_overlapping((2, 5))), ValueError,
     ["spread()"] + _H_OVERLAP_WORDS),
    ("h-decay-out-zero-stride", _h(engram.decay, _h_f32(8), 1.0, out=_h_self_overlapping((8,))), ValueError,
     ["decay()"] + _H_OVERLAP_WORDS),
    # the settings functions: a wrong type is a TypeError, a wrong value a ValueError, and
    # neither changes the setting (test_settings_unchanged_after_errors)
    ("h-arena-size-float", _h(engram.arena.configure, size=1.5), TypeError, ["arena size", "float"]),
    ("h-arena-size-bool", _h(engram.arena.configure, size=True), TypeError, ["arena size", "bool"]),
    ("h-arena-size-small", _h(engram.arena.configure, size=1024), ValueError, ["64 KiB", "1 GiB", "1024"]),
    ("h-arena-size-large", _h(engram.arena.configure, size="2G"), ValueError, ["64 KiB", "1 GiB"]),
    ("h-arena-size-text", _h(engram.arena.configure, size="lots"), ValueError, ["'lots'", "not a size"]),
    ("h-arena-size-surrogate", _h(engram.arena.configure, size="\udcff"), ValueError, ["not a size"]),
    ("h-arena-overflow-int", _h(engram.arena.configure, overflow=3), TypeError, ["'heap'", "'raise'", "int"]),
    ("h-arena-overflow-text", _h(engram.arena.configure, overflow="spill"), ValueError,
     ["'heap'", "'raise'", "'spill'"]),
    ("h-set_backend-None", _h(engram.set_backend, None), TypeError, ["'c'", "'reference'", "NoneType"]),
    ("h-set_backend-gpu", _h(engram.set_backend, "gpu"), ValueError, ["'c'", "'reference'", "'gpu'"]),
    ("h-backend-gpu", _h(lambda name: engram.backend(name).__enter__(), "gpu"), ValueError, ["'gpu'"]),
    ("h-verify-rate-high", _h(engram.verify, 1.5), ValueError, ["[0, 1]", "1.5"]),
    ("h-verify-rate-nan", _h(engram.verify, float("nan")), ValueError, ["[0, 1]", "nan"]),
    ("h-verify-rate-text", _h(engram.verify, "0.5"), (TypeError, ValueError), ["[0, 1]", "'0.5'"]),
    ("h-set_num_threads-zero", _h(engram.set_num_threads, 0), ValueError, ["set_num_threads()", "1..256", "0"]),
    ("h-set_num_threads-float", _h(engram.set_num_threads, 1.5), TypeError,
     ["set_num_threads()", "1..256", "float"]),
    ("h-set_num_threads-bool", _h(engram.set_num_threads, True), TypeError, ["set_num_threads()", "bool"]),
    ("h-set_num_threads-None", _h(engram.set_num_threads, None), TypeError, ["set_num_threads()", "NoneType"]),
]

# ==== end hardening ====


@pytest.mark.parametrize("case_id, build, exc, words", CASES, ids=[c[0] for c in CASES])
def test_bad_input(case_id, build, exc, words, c_backend):
    """``build()`` returns (fn, args, kwargs, arrays that must not change)."""
    fn, args, kwargs, guarded = build()
    before = [np.array(a, copy=True) for a in guarded]
    with pytest.raises(exc) as info:
        fn(*args, **kwargs)
    message = str(info.value)
    for word in words:
        assert word in message, f"{word!r} not in {message!r}"
    for a, b in zip(guarded, before):
        assert a.tobytes() == b.tobytes(), "an array was written before the error"


def test_settings_unchanged_after_errors(c_backend):
    """A refused setting leaves every setting as it was."""
    before = (engram.arena.config(), engram.get_num_threads(), engram.verify(), engram.simd_info())
    for case_id, build, exc, _ in CASES:
        if case_id.startswith(("h-arena", "h-set_", "h-backend", "h-verify")):
            fn, args, kwargs, _ = build()
            with pytest.raises(exc):
                fn(*args, **kwargs)
    assert (engram.arena.config(), engram.get_num_threads(), engram.verify(), engram.simd_info()) == before
    assert engram.backend_info()["active"] == "c"


#: (variable, bad value, words of the one RuntimeWarning): a bad environment never stops the
#: import; it warns once and keeps the default, and every kernel still runs.
ENV_CASES = [
    ("ENGRAM_SIMD", "sse9", ["ENGRAM_SIMD=sse9", "not a SIMD level", "using"]),
    ("ENGRAM_SIMD", "\udcff", ["ENGRAM_SIMD=", "not a SIMD level"]),
    ("ENGRAM_ARENA_SIZE", "abc", ["ENGRAM_ARENA_SIZE='abc'", "not a size", "default 2 MiB"]),
    ("ENGRAM_ARENA_SIZE", "1k", ["ENGRAM_ARENA_SIZE='1k'", "64 KiB to 1 GiB", "default"]),
    ("ENGRAM_ARENA_SIZE", "5G", ["ENGRAM_ARENA_SIZE='5G'", "64 KiB to 1 GiB"]),
    ("ENGRAM_ARENA_SIZE", "\udcff", ["ENGRAM_ARENA_SIZE=", "not a size"]),
    ("ENGRAM_BACKEND", "gpu", ["ENGRAM_BACKEND='gpu'", "'c', 'reference'", "default"]),
    ("ENGRAM_NUM_THREADS", "0", ["ENGRAM_NUM_THREADS='0'", "1..256"]),
    ("ENGRAM_NUM_THREADS", "abc", ["ENGRAM_NUM_THREADS='abc'", "1..256"]),
    ("ENGRAM_NUM_THREADS", "9" * 30, ["ENGRAM_NUM_THREADS=", "1..256"]),
    ("ENGRAM_STATS", "maybe", ["ENGRAM_STATS='maybe'", "0 or 1"]),
    ("ENGRAM_VERIFY", "2", ["ENGRAM_VERIFY='2'", "[0, 1]", "off"]),
    ("ENGRAM_VERIFY", "nan", ["ENGRAM_VERIFY='nan'", "[0, 1]"]),
    ("ENGRAM_VERIFY_STRICT", "maybe", ["ENGRAM_VERIFY_STRICT='maybe'", "0 or 1"]),
]

_ENV_PROBE = """
import warnings, sys
warnings.simplefilter("always")
with warnings.catch_warnings(record=True) as caught:
    import engram
import numpy as np
x = np.arange(1, 9, dtype=np.float32).reshape(2, 4)
assert abs(engram.cosine_similarity(x[0], x[0]) - 1.0) < 1e-6
assert engram.top_k(x, x, 1)[1].tolist() == [[0], [1]]
assert engram.decay(np.ones(4, np.float32), 0.0).tolist() == [1.0] * 4
assert engram.spread(engram.Graph(np.array([0, 1, 1]), np.array([1])), {0: 1.0}).shape == (2,)
for w in caught:
    print(f"{w.category.__name__}: {w.message}")
"""


@pytest.mark.parametrize("var, value, words", ENV_CASES, ids=[f"{v}={x[:6]!r}" for v, x, _ in ENV_CASES])
def test_bad_environment_warns_once_and_runs(var, value, words):
    from helpers import run_python

    r = run_python(_ENV_PROBE, env={var: value})  # a surrogate reaches the child as the byte 0xff
    assert r.returncode == 0, r.stderr
    lines = [line for line in r.stdout.splitlines() if line.startswith("RuntimeWarning")]
    assert len(lines) == 1, r.stdout + r.stderr
    for word in words:
        assert word in lines[0], f"{word!r} not in {lines[0]!r}"


# ==== hardening: positive tests ====


@pytest.fixture
def small_raising_arena():
    """The smallest arena, failing instead of spilling to the heap."""
    before = engram.arena.config()
    engram.arena.configure(size="64k", overflow="raise")
    try:
        yield
    finally:
        engram.arena.configure(**before)


@pytest.mark.parametrize("n", [1, 9, 300])
def test_spread_with_out_in_the_smallest_raising_arena(n, small_raising_arena, c_backend):
    """A graph whose hops want the pull layout, in an arena too small to build it: the call
    still answers correctly (pushing instead), and never leaves out half-written."""
    rng = np.random.default_rng(n)
    indptr = np.arange(0, 3 * n + 1, 3)
    g = engram.Graph(indptr, rng.integers(0, n, 3 * n), rng.random(3 * n))
    seeds = rng.random(n).astype(np.float32)
    out = np.full(n, 7.0, np.float32)
    try:
        result = engram.spread(g, seeds, out=out)
    except MemoryError:
        assert np.all(out == 7.0), "out was written before the MemoryError"
        return
    assert result is out
    with engram.backend("reference"):
        expected = engram.spread(g, seeds)
    np.testing.assert_allclose(out, expected, rtol=1e-5, atol=1e-7)
