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


_readonly = lambda s, t, S: np.frombuffer(np.zeros(8, np.float32).tobytes(), np.float32)  # noqa: E731

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
    ("decay-out-readonly", _decay_case(out=_readonly), ValueError, ["out", "writeable", "read-only"]),
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
