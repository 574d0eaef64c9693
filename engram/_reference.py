"""Pure-NumPy reference versions of engram's kernels.

Same names, signatures and semantics as the C core, written to be
obviously correct rather than fast, computing in float64.  They are the
oracle of the differential tests and the ``reference`` backend
(``ENGRAM_BACKEND=reference``, ``engram.set_backend("reference")``).
"""
from __future__ import annotations

import numpy as np

__all__: list[str] = []

# ==== similarity ====

# ==== end similarity ====

# ==== spread ====

# ==== end spread ====

# ==== decay ====

_DECAY_MODELS = ("exponential", "power")
_DECAY_OPERAND_TYPES = "a number or a 1-dimensional float32, float64, int64 or uint64 array"


def _describe(arr) -> str:
    return f"{arr.dtype} array of shape {arr.shape} and strides {arr.strides}"


def _decay_operand(name: str, value, n: int) -> np.ndarray:
    """age or stability as a 0-d or (n,) array of an accepted dtype."""
    if isinstance(value, int) and not isinstance(value, bool) and not -(2**63) <= value < 2**64:
        raise ValueError(f"decay(): {name} must be {_DECAY_OPERAND_TYPES}, got the int {value!r} (out of range)")
    try:
        arr = np.asarray(value)
    except (TypeError, ValueError) as exc:
        raise TypeError(f"decay(): {name} must be {_DECAY_OPERAND_TYPES}, got {type(value).__name__}") from exc
    ok = (arr.dtype.kind == "f" and arr.dtype.itemsize in (4, 8)) or (
        arr.dtype.kind in "iu" and arr.dtype.itemsize == 8
    )
    if not ok:
        raise TypeError(f"decay(): {name} must be {_DECAY_OPERAND_TYPES}, got {_describe(arr)}")
    if arr.ndim > 1 or (arr.ndim == 1 and arr.shape[0] != n):
        raise ValueError(
            f"decay(): {name} must be a number or an array of shape ({n},) like strength, got {_describe(arr)}"
        )
    return arr


def _decay_real(name: str, value) -> float:
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise TypeError(f"decay(): {name} must be a real number, got {type(value).__name__}")
    return float(value)


def _decay_check(strength, age, stability, model, power, factor, out, validate, threads):
    """Every argument checked as the C core checks it; returns the arrays to compute with."""
    s = np.asarray(strength)
    if s.dtype not in (np.float32, np.float64):
        raise TypeError(f"decay(): strength must be a float32 or float64 array, got {_describe(s)}")
    if s.ndim != 1:
        raise ValueError(f"decay(): strength must be 1-dimensional, got {_describe(s)}")
    n = s.shape[0]
    if not isinstance(model, str):
        raise TypeError(f"decay(): model must be one of 'exponential', 'power', got {model!r}")
    if model not in _DECAY_MODELS:
        raise ValueError(f"decay(): model must be one of 'exponential', 'power', got {model!r}")
    power = _decay_real("power", power)
    factor = _decay_real("factor", factor)
    if threads is not None:
        if not isinstance(threads, (int, np.integer)) or isinstance(threads, (bool, np.bool_)):
            raise TypeError(f"decay(): threads must be None or a positive int, got {type(threads).__name__}")
        if not 1 <= threads <= 256:
            raise ValueError(f"decay(): threads must be None or in 1..256, got {threads}")
    a = _decay_operand("age", age, n)
    S = _decay_operand("stability", stability, n)
    if out is not None:
        expected = f"a writeable {s.dtype} array of shape ({n},)"
        if not isinstance(out, np.ndarray):
            raise TypeError(f"decay(): out must be a numpy.ndarray, got {type(out).__name__}")
        if out.dtype != s.dtype:
            raise TypeError(f"decay(): out must be {expected}, got {_describe(out)}")
        if out.shape != (n,):
            raise ValueError(f"decay(): out must be {expected}, got {_describe(out)}")
        if not out.flags.writeable:
            raise ValueError(f"decay(): out must be writeable, got a read-only {_describe(out)}")
        for other, name in ((a, "age"), (S, "stability")):
            if np.may_share_memory(out, other):
                raise ValueError(f"decay(): out overlaps {name} in memory; pass a separate array")
        if np.may_share_memory(out, s) and not (
            out.__array_interface__["data"][0] == s.__array_interface__["data"][0]
            and (n <= 1 or out.strides == s.strides)
        ):
            raise ValueError(
                "decay(): out overlaps strength in memory; pass a separate array or exactly the same array"
            )
    if model == "power":
        if not (power > 0 and np.isfinite(power)):
            raise ValueError(f"decay(): power must be a finite number > 0, got {power!r}")
        if not (factor >= 0 and np.isfinite(factor)):
            raise ValueError(f"decay(): factor must be a finite number >= 0, got {factor!r}")
    if validate:
        with np.errstate(invalid="ignore"):
            bad_age = ~(a >= 0)
            bad_stab = ~(S > 0)
        if a.ndim == 0 and bad_age:
            raise ValueError(f"decay(): age is {a}; ages must be >= 0 seconds and not NaN")
        if S.ndim == 0 and bad_stab:
            raise ValueError(f"decay(): stability is {S}; stabilities must be > 0 and not NaN")
        i_age = int(np.argmax(bad_age)) if a.ndim and bad_age.any() else n
        i_stab = int(np.argmax(bad_stab)) if S.ndim and bad_stab.any() else n
        if i_age < n and i_age <= i_stab:
            raise ValueError(f"decay(): age[{i_age}] is {a[i_age]}; ages must be >= 0 seconds and not NaN")
        if i_stab < n:
            raise ValueError(
                f"decay(): stability[{i_stab}] is {S[i_stab]}; stabilities must be > 0 and not NaN"
            )
    return s, a, S, power, factor


def _decay_float64(s, a, S, model, power, factor) -> np.ndarray:
    """The float64 evaluation before the final rounding to strength's dtype.

    Ages and stabilities are first converted to strength's dtype (the
    precision of the computation); for float32 the quotient age / stability
    is the float32 IEEE quotient, as the kernel forms it.
    """
    dt = s.dtype
    s64 = s.astype(np.float64)
    with np.errstate(all="ignore"):
        a_w, S_w = a.astype(dt), S.astype(dt)
        if model == "exponential":
            y = (a_w / S_w).astype(np.float64)
            return s64 * np.exp(-y)
        u = 1.0 + factor * a_w.astype(np.float64) / S_w.astype(np.float64)
        return s64 * u ** -power


def decay(strength, age, *, stability=86400.0, model="exponential", power=0.5, factor=19 / 81,
          out=None, validate=True, threads=None):
    """Decayed memory strengths (reference: float64 NumPy).

    exponential: ``strength * exp(-age / stability)``;
    power: ``strength * (1 + factor * age / stability) ** -power``.
    Computed in float64 from the inputs converted to strength's dtype,
    rounded once to that dtype.  ``validate=True`` rejects negative or NaN
    ages and stabilities <= 0 or NaN, naming the first bad index, before
    anything is written; ``validate=False`` lets IEEE arithmetic decide.
    """
    s, a, S, power, factor = _decay_check(strength, age, stability, model, power, factor, out,
                                          validate, threads)
    with np.errstate(over="ignore"):
        result = _decay_float64(s, a, S, model, power, factor).astype(s.dtype)
    if out is None:
        return result
    out[...] = result
    return out


__all__.append("decay")

# ==== end decay ====
