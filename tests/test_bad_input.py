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

# ==== end decay ====


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
