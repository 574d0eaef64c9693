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
