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
    # out: wrong shape, dtype, read-only, overlapping, wrong layout, not allowed
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
    ("cosine-out-columns", _sim_out_case("cosine_similarity", (_sim_f32(3, 4), _sim_f32(5, 4)),
                                         lambda: np.zeros((3, 10), np.float32)[:, ::2]), ValueError,
     ["cosine_similarity()", "out", "contiguous last axis", "(3, 5)"]),
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


CASES += [
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
