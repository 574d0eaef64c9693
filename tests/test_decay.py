"""decay: accuracy sweeps, differential tests against the reference on every
SIMD level, edge cases, layouts, integer ages, threads and validation.

What the accuracy tests measure
-------------------------------
* exponential, float32: ``strength * exp(-y)`` with ``y = age / stability``
  the float32 IEEE quotient.  The sweeps call the kernel with stability 1,
  so ``y`` is the age itself, and compare with the float64 value
  ``strength * exp(-y)`` in ulps of float32 (the spacing of the exact value's
  binade, the smallest subnormal at least).  With strength 1 that is exp alone
  (bound: 2 ulp, subnormal results included); with random strengths it is the
  product, which the kernel rounds once (strength * (1 + q), then the scaling
  by 2^n), so the same bound holds for it.
* power, float32: against the float64 evaluation, bound 4 ulp; the kernel
  guarantees 0.5 + power + 0.13 ulp for power <= 1 (the float32 argument
  perturbs u) and 0.5 + 2^-12 ulp above (it forms the float64 evaluation's
  own u), for every finite power (decay_internal.h).
* the float32 argument is ``float32(float64(age) / float64(stability))`` for
  operands of every dtype: nothing is rounded to float32 before dividing.
* float64: relative error against the float64 evaluation, bound 1e-15.
"""
from __future__ import annotations

import math
import os
import re

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings

import engram
from engram import _reference
from engram._cases import _decay_exact, _decay_tolerance, _decay_ulps
from engram._kernels import Case

from strategies import decay_cases

pytestmark = pytest.mark.usefixtures("c_backend")

F32_MAX_Y_BITS = np.float32(104.0).view(np.uint32)  # exp(-104) rounds to 0 in float32


def _full_sweep(config) -> bool:
    return (
        config.getoption("--run-slow")
        or os.environ.get("HYPOTHESIS_PROFILE") == "full"
        or config.getoption("hypothesis_profile", None) == "full"
    )


def _exp_ulps(y: np.ndarray, strength: np.ndarray | float = 1.0) -> np.ndarray:
    """ulp error of the kernel's strength * exp(-y) for float32 y (stability 1)."""
    s = np.broadcast_to(np.asarray(strength, dtype=np.float32), y.shape).copy()
    got = engram.decay(s, y, stability=np.float32(1.0))
    exact = s.astype(np.float64) * np.exp(-y.astype(np.float64))
    return _decay_ulps(got, exact, np.float32, s)


def _sweep_edges() -> np.ndarray:
    edges = [0.0, -0.0, 1e-45, 1e-38, 1e-30, 1e-8, 0.3465, 0.3466, 0.5, 1, 10, 75.99, 76, 76.01,
             87.33, 87.34, 100, 103.97, 103.98, 104]
    near = []
    for e in edges:
        v = np.float32(e)
        near += [np.nextafter(v, np.float32(-1)), v, np.nextafter(v, np.float32(200))]
    return np.abs(np.array(near, dtype=np.float32))


# ---------------------------------------------------------------------------
# accuracy sweeps
# ---------------------------------------------------------------------------


def test_exp_f32_ulp_sweep(simd_level, request, record_property):
    """>= 2^22 arguments spread over every float32 in [0, 104] (i.e. x in [-104, 0]) and the edges."""
    bits = np.linspace(0, F32_MAX_Y_BITS, 1 << 22).astype(np.uint32)
    y = np.concatenate([bits.view(np.float32), _sweep_edges()])
    err = _exp_ulps(y)
    worst = float(err.max())
    record_property("max_ulp", worst)
    print(f"\n{simd_level}: exp float32 max error {worst:.4f} ulp over {y.size} arguments")
    assert worst <= 2.0, f"y={y[np.argmax(err)]!r}"


@pytest.mark.slow
def test_exp_f32_ulp_exhaustive(simd_level, record_property):
    """Every float32 in [0, 104] (the `full` profile / --run-slow)."""
    worst, chunk = 0.0, 1 << 24
    for lo in range(0, int(F32_MAX_Y_BITS) + 1, chunk):
        y = np.arange(lo, min(lo + chunk, int(F32_MAX_Y_BITS) + 1), dtype=np.uint32).view(np.float32)
        err = _exp_ulps(y)
        assert err.max() <= 2.0, f"y={y[np.argmax(err)]!r}"
        worst = max(worst, float(err.max()))
    record_property("max_ulp", worst)
    print(f"\n{simd_level}: exp float32 max error {worst:.4f} ulp, every float32 in [0, 104]")


def test_exp_f32_full_profile_runs_exhaustive(request):
    """The `full` Hypothesis profile includes the exhaustive sweep."""
    if not _full_sweep(request.config):
        pytest.skip("ci profile: the exhaustive sweep runs with --run-slow or the full profile")
    if request.config.getoption("--run-slow"):
        pytest.skip("--run-slow runs test_exp_f32_ulp_exhaustive itself")
    for level in engram.simd_info()["compiled"]:
        if level in engram.simd_info()["detected"]:
            previous = engram._core._set_simd(level)
            try:
                test_exp_f32_ulp_exhaustive(level, lambda *a: None)
            finally:
                engram._core._set_simd(previous)


def test_exp_f32_product_sweep(simd_level, rng, record_property):
    """strength * exp(-y) for strengths of every magnitude: one rounding, same bound."""
    y = rng.uniform(0, 110, 1 << 20).astype(np.float32)
    s = (10.0 ** rng.uniform(-38, 38, y.size) * rng.choice([-1, 1], y.size)).astype(np.float32)
    s[::7] = rng.random(s[::7].size)  # and many in [0, 1)
    err = _exp_ulps(y, s)
    worst = float(err.max())
    record_property("max_ulp", worst)
    assert worst <= 2.0, f"y={y[np.argmax(err)]!r} s={s[np.argmax(err)]!r}"


def _power_bound(power: float) -> float:
    """The documented bound (decay_internal.h), well inside the 4 ulp of the contract."""
    return 0.5 + power + 0.13 if power <= 1.0 else 0.5 + 2.0**-12


def _power_ulps(s, t, S, power, factor=19 / 81):
    got = engram.decay(s, t, stability=S, model="power", power=power, factor=factor)
    exact = _decay_exact(Case((s, t), {"stability": S, "model": "power", "power": power, "factor": factor}))
    return got, _decay_ulps(got, exact, np.float32, s)


@pytest.mark.parametrize("power", [0.5, 0.3, 1.0, 2.0, 7.5, 0.01])
def test_power_f32_ulp(simd_level, rng, power, record_property):
    n = 1 << 16
    s = rng.random(n).astype(np.float32)
    t = (10.0 ** rng.uniform(-3, 12, n)).astype(np.float32)
    worst = 0.0
    for S in (np.float32(86400.0), (10.0 ** rng.uniform(0, 8, n)).astype(np.float32)):
        _, err = _power_ulps(s, t, S, power)
        worst = max(worst, float(err.max()))
    record_property("max_ulp", worst)
    assert worst <= _power_bound(power) <= 4.0


def _ages_for_exponents(rng, n, power, S, factor=19 / 81):
    """float32 ages whose power * log(u) spreads over [0, 120]: results from strength to 0."""
    target = rng.uniform(0, 120, n) / power
    with np.errstate(over="ignore"):
        return (np.expm1(target) / factor * np.asarray(S, np.float64)).astype(np.float32)


@pytest.mark.parametrize("power", [1.0000000000000002, 3.0, 1e3, 1e4, 1e5, 1e6, 1e9, 1e12])
def test_power_f32_large_powers(simd_level, rng, power, record_property):
    """Large powers multiply the log's error: it is relative (and 0 at u = 1), so the bound
    holds however large.  Strengths of every magnitude, ages 0 among them."""
    n = 1 << 15
    S = (10.0 ** rng.uniform(0, 7, n)).astype(np.float32)
    s = (rng.uniform(0.5, 2, n) * 10.0 ** rng.integers(-30, 30, n)).astype(np.float32)
    worst = 0.0
    for stab in (S, np.float32(86400.0), S.astype(np.float64), 86400.1):
        t = _ages_for_exponents(rng, n, power, stab)
        t[::17] = 0
        got, err = _power_ulps(s, t, stab, power)
        worst = max(worst, float(err.max()))
        assert got[::17].tobytes() == s[::17].tobytes()
    record_property("max_ulp", worst)
    assert worst <= _power_bound(power), worst


BOUNDARY_POWERS = [5e-324, 1e-300, 1e-6, 0.5, 1.0, 1.0000000000000002, 2.0, 1e15, 1e100, 7.8e306,
                   8e306, 1e308, np.finfo(np.float64).max]


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_power_age_zero_or_factor_zero_gives_strength_for_any_power(simd_level, rng, dtype):
    s = np.array(STRENGTHS * 4, dtype=dtype)
    n = s.size
    S = rng.uniform(1, 1e6, n).astype(dtype)
    t = rng.uniform(0, 1e6, n).astype(dtype)
    for power in BOUNDARY_POWERS:
        for stability in (S, 3600.0, S.astype(np.float64), 0.1):
            for age in (np.zeros(n, dtype), 0, np.zeros(n, np.int64)):
                got = engram.decay(s, age, stability=stability, model="power", power=power)
                assert got.tobytes() == s.tobytes(), (power, stability)
            got = engram.decay(s, t, stability=stability, model="power", power=power, factor=0.0)
            assert got.tobytes() == s.tobytes(), (power, "factor 0")


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_power_huge_powers_follow_the_reference(simd_level, rng, dtype):
    """power * log(u) overflows: the limit strength * [u == 1] (0 for u > 1), never NaN."""
    n = 64
    s = rng.uniform(-2, 2, n).astype(dtype)
    t = np.where(np.arange(n) % 3 == 0, 0.0, 10.0 ** rng.uniform(-3, 6, n)).astype(dtype)
    t[1] = np.finfo(dtype).tiny  # u - 1 far below float64's precision: u = 1, strength for any power
    for power in BOUNDARY_POWERS:
        for stability in (86400.0, np.full(n, 86400.0, dtype)):
            got = engram.decay(s, t, stability=stability, model="power", power=power)
            want = _reference.decay(s, t, stability=stability, model="power", power=power)
            assert not np.isnan(got).any()
            exact = _decay_exact(Case((s, t), {"stability": stability, "model": "power", "power": power}))
            tol = _power_bound(power) if dtype == np.float32 else 4.0
            assert _decay_ulps(got, exact, np.dtype(dtype).type, s).max() <= tol, power
            if power >= 1e100:
                assert np.array_equal(got, want), power


@pytest.mark.parametrize("model", ["exponential", "power"])
def test_float64_within_1e15(simd_level, rng, model):
    n = 1 << 15
    s = rng.random(n)
    S = 10.0 ** rng.uniform(0, 8, n)
    t = S * rng.uniform(0, 700, n) if model == "exponential" else 10.0 ** rng.uniform(0, 12, n)
    got = engram.decay(s, t, stability=S, model=model)
    want = _reference.decay(s, t, stability=S, model=model)
    normal = np.abs(want) >= np.finfo(np.float64).tiny
    rel = np.abs(got[normal] - want[normal]) / np.abs(want[normal])
    assert rel.max() <= 1e-15


# ---------------------------------------------------------------------------
# edge cases
# ---------------------------------------------------------------------------

STRENGTHS = [1.0, 0.5, 0.0, -0.0, 1e-40, 1e-310, 3e38, -2.0, 123456.789]


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("model", ["exponential", "power"])
def test_age_zero_gives_strength_exactly(simd_level, dtype, model):
    s = np.array(STRENGTHS * 3, dtype=dtype)
    for age in (np.zeros(s.size, dtype), 0, np.zeros(s.size, np.uint64)):
        got = engram.decay(s, age, stability=3600.0, model=model)
        assert got.tobytes() == s.tobytes()


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("model", ["exponential", "power"])
def test_age_inf_gives_zero(simd_level, dtype, model):
    s = np.array(STRENGTHS * 3, dtype=dtype)
    got = engram.decay(s, np.full(s.size, np.inf, dtype), model=model)
    assert np.all(got == 0)
    assert np.array_equal(np.signbit(got), np.signbit(s))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("model", ["exponential", "power"])
def test_nan_strength_gives_nan(simd_level, dtype, model):
    s = np.full(40, np.nan, dtype)
    s[::3] = 0.5
    got = engram.decay(s, np.arange(40, dtype=dtype) * 1000, model=model)
    assert np.array_equal(np.isnan(got), np.isnan(s))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("model", ["exponential", "power"])
def test_huge_stability_gives_strength(simd_level, dtype, model):
    s = np.array(STRENGTHS * 3, dtype=dtype)
    for stability in (1e30, np.inf, np.full(s.size, 1e35, dtype)):
        got = engram.decay(s, np.arange(s.size, dtype=dtype) * 86400, stability=stability, model=model)
        assert got.tobytes() == s.tobytes()


def test_subnormal_and_zero_results(simd_level):
    """Results that exp(-y) alone could not express, and the underflow to +-0."""
    y = np.array([87.5, 90, 95, 100, 103.9, 103.98, 104, 150, 500, 1e30, np.inf], np.float32)
    for s in (1.0, 3e38, 1e-3, -1.0):
        err = _exp_ulps(y, s)
        assert err.max() <= 2.0, (s, y[np.argmax(err)])
    got = engram.decay(np.full(y.size, -1.0, np.float32), y, stability=np.float32(1))
    assert np.all(np.signbit(got))


def test_levels_bit_identical_float32_exponential(rng):
    """Every level evaluates the same operations: identical bits for every input."""
    y = np.concatenate([np.linspace(0, 120, 200_003, dtype=np.float32), _sweep_edges(),
                        rng.integers(0, 2**32, 50_000, dtype=np.uint64).astype(np.uint32).view(np.float32)])
    s = rng.choice(np.array(STRENGTHS[:8] + [np.inf, np.nan, 1e-45], np.float32), y.size)
    s[::2] = rng.random(s[::2].size)
    results = {}
    for level in engram.simd_info()["compiled"]:
        if level not in engram.simd_info()["detected"]:
            continue
        previous = engram._core._set_simd(level)
        try:
            results[level] = engram.decay(s, y, stability=np.float32(1), validate=False)
        finally:
            engram._core._set_simd(previous)
    first = next(iter(results.values()))
    for level, got in results.items():
        assert np.array_equal(got.view(np.uint32), first.view(np.uint32)) or np.array_equal(
            got, first, equal_nan=True
        ), level


# ---------------------------------------------------------------------------
# differential tests against the reference
# ---------------------------------------------------------------------------


def _check_against_reference(args, kwargs):
    try:
        want = _reference.decay(*args, **kwargs)
    except (TypeError, ValueError) as exc:
        with pytest.raises(type(exc)):
            engram.decay(*args, **kwargs)
        return
    got = engram.decay(*args, **kwargs)
    assert got.dtype == want.dtype and got.shape == want.shape
    case = Case(args, kwargs)
    s = np.asarray(args[0])
    if s.size:
        err = _decay_ulps(got, _decay_exact(case), s.dtype.type, s)
        assert err.max() <= _decay_tolerance(case), f"index {np.argmax(err)}: {got[np.argmax(err)]!r}"


@settings(suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(decay_cases())
def test_differential(simd_level, case):
    """The level fixture is set once for all examples of a run, as intended."""
    args, kwargs = case
    _check_against_reference(args, kwargs)


def test_registry_random_cases(simd_level):
    """The registry's cases (what the report runs) pass on this level too."""
    from engram._kernels import load

    kernel = load()[0]["decay"]
    rng = np.random.default_rng(2024)
    for _ in range(300):
        case = kernel.random_case(rng)
        _check_against_reference(case.args, case.kwargs)
    for case in kernel.edge_cases():
        _check_against_reference(case.args, case.kwargs)


# ---------------------------------------------------------------------------
# layouts, in place, operand types
# ---------------------------------------------------------------------------


def _memories(rng, n, dtype=np.float32):
    return (rng.random(n).astype(dtype), rng.uniform(0, 60 * 86400, n).astype(dtype),
            rng.uniform(3600, 30 * 86400, n).astype(dtype))


@pytest.mark.parametrize("model", ["exponential", "power"])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_strided_reversed_and_in_place(simd_level, rng, model, dtype):
    n = 2085
    s, t, S = _memories(rng, n, dtype)
    want = engram.decay(s, t, stability=S, model=model)
    wide = lambda a: np.repeat(a, 3)[::3]  # noqa: E731
    rev = lambda a: np.ascontiguousarray(a[::-1])[::-1]  # noqa: E731
    for ss, tt, SS in ((wide(s), wide(t), wide(S)), (rev(s), rev(t), rev(S)), (s, wide(t), rev(S))):
        assert engram.decay(ss, tt, stability=SS, model=model).tobytes() == want.tobytes()
    # in place, contiguous and strided
    for buf in (s.copy(), np.repeat(s, 2)[::2].copy(), np.repeat(s, 2)):
        view = buf if buf.size == n else buf[::2]
        before = view.copy()
        out = engram.decay(view, t, stability=S, model=model, out=view)
        assert out is view
        assert view.tobytes() == want.tobytes()
        if buf.size != n:
            assert np.array_equal(buf[1::2], before)  # the gaps are untouched
    # a separate strided out
    out = np.zeros(2 * n, dtype)
    engram.decay(s, t, stability=S, model=model, out=out[::-2])
    assert out[::-2].tobytes() == want.tobytes() and not out[-2::-2].any()


@pytest.mark.parametrize("model", ["exponential", "power"])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_broadcast_operands(simd_level, model, dtype):
    """Zero-stride arrays (np.broadcast_to, dask's ones/full) read like their copies."""
    n = 50_000
    cases = [
        (np.broadcast_to(dtype(0.5), (n,)), np.arange(n, dtype=dtype), np.full(n, 7200.0, dtype)),
        (np.linspace(0, 1, n, dtype=dtype), np.broadcast_to(np.int64(86_400), (n,)), np.full(n, 3e4, dtype)),
        (np.broadcast_to(dtype(2.0), (n,)), np.broadcast_to(dtype(60.0), (n,)),
         np.broadcast_to(np.float64(90.0), (n,))),
    ]
    for s, t, S in cases:
        got = engram.decay(s, t, stability=S, model=model)
        want = engram.decay(s.copy(), t.copy(), stability=S.copy(), model=model)
        assert got.tobytes() == want.tobytes()
    with pytest.raises(ValueError, match="age"):
        engram.decay(np.ones(n, dtype), np.broadcast_to(dtype(-1.0), (n,)))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_integer_ages_convert_like_numpy(simd_level, rng, dtype):
    """int64 / uint64 ages give the results of the same ages converted to float64 by NumPy
    first (a C cast), also with float32 strength: never rounded to float32 on the way."""
    u = rng.integers(0, 2**64, 5000, dtype=np.uint64) >> rng.integers(0, 64, 5000).astype(np.uint64)
    u[::7] = (1 << 53) + rng.integers(0, 4096, u[::7].size).astype(np.uint64)
    u[::11] = ((u[::11] >> np.uint64(40)) << np.uint64(40)) | np.uint64(1 << 39)  # float32 ties
    u[::13] = u[::13] | np.uint64(1)  # ... broken in the integer, restored by the float64 rounding
    s = np.ones(u.size, dtype)
    S = np.full(u.size, 2.0**60, dtype)
    for ages in (u, (u >> np.uint64(1)).astype(np.int64), -(u >> np.uint64(1)).astype(np.int64)):
        for stability in (S, 2.0**60):
            got = engram.decay(s, ages, stability=stability, validate=False)
            want = engram.decay(s, ages.astype(np.float64), stability=stability, validate=False)
            assert got.tobytes() == want.tobytes()


def test_operand_types(simd_level, rng):
    s, t, S = _memories(rng, 100)
    want = engram.decay(s, t, stability=np.full(100, np.float32(7200.0)))
    for stability in (7200.0, 7200, np.float32(7200), np.int64(7200), np.array(7200.0),
                      np.full(100, 7200.0), np.full(100, 7200, np.uint64)):
        assert engram.decay(s, t, stability=stability).tobytes() == want.tobytes()
    want = engram.decay(s, np.full(100, np.float32(3600.5)), stability=S)
    for age in (3600.5, np.float32(3600.5), np.array(3600.5), [3600.5] * 100):
        assert engram.decay(s, age, stability=S).tobytes() == want.tobytes()
    assert engram.decay(s, 2**64 - 1, stability=S).tobytes() == engram.decay(
        s, np.uint64(2**64 - 1), stability=S).tobytes()
    assert engram.decay(s.tolist(), t).dtype == np.float64  # a list of floats is float64


@pytest.mark.parametrize("model", ["exponential", "power"])
def test_operands_are_not_rounded_to_float32(simd_level, model):
    """Values that pass validation but do not fit float32 divide in float64: float32
    strength with a tiny or huge float64 stability or age gives the float64 result."""
    s = np.array([1.0, 0.5, 2.0], np.float32)
    assert engram.decay(s, 0, stability=1e-50, model=model).tobytes() == s.tobytes()
    assert engram.decay(s, np.zeros(3), stability=np.full(3, 1e-300), model=model).tobytes() == s.tobytes()
    for age, stability in ((np.full(3, 1e39), np.full(3, 1e39)), (1e39, 1e39), (np.full(3, 1e-60), 1e-60),
                           (1.2e39, np.full(3, 4e38)), (np.full(3, 3 * 2**62, np.uint64), 2.0**62)):
        got = engram.decay(s, age, stability=stability, model=model)
        want = _reference.decay(s, age, stability=stability, model=model)
        assert np.isfinite(got).all() and got.tobytes() == want.tobytes(), (age, stability)
    if model == "exponential":
        assert np.array_equal(engram.decay(s, np.full(3, 1e39), stability=np.full(3, 1e39)),
                              engram.decay(s, np.float32(1), stability=np.float32(1)))


def _argument_f32(age, stability) -> np.ndarray:
    """float32(float64(age) / float64(stability)): the definition of the float32 argument."""
    with np.errstate(all="ignore"):
        return (np.asarray(age).astype(np.float64) / np.asarray(stability).astype(np.float64)).astype(np.float32)


def test_float32_argument_is_the_float64_quotient_rounded(simd_level, rng):
    """Every operand dtype and layout gives the bits of the float32 argument divided by 1:
    the kernel forms exactly float32(float64(age) / float64(stability))."""
    n = 2049
    s = rng.uniform(-2, 2, n).astype(np.float32)
    y = rng.uniform(0, 110, n)
    S64 = 10.0 ** rng.uniform(-30, 30, n)
    ages = {
        "float64": y * S64,
        "float32-values": (y * S64).astype(np.float32).astype(np.float64),
        "int64": np.floor(y * 1e12).astype(np.int64),
        "uint64-large": (rng.integers(0, 2**63, n, dtype=np.uint64) | np.uint64(1)),
        "uint64-small": rng.integers(0, 2**24, n, dtype=np.uint64),
        "int64-around-2^24": rng.integers(2**23, 2**25, n, dtype=np.int64),  # float32 values below 2^24
    }
    stabilities = {
        "float64": S64,
        "float32": S64.astype(np.float32),
        "int64": np.clip(np.floor(S64), 1, 2.0**62).astype(np.int64),
        "one float32 value": 86400.0,
        "one other value": 0.1,
        "float64 strided": np.repeat(S64, 2)[::2],
    }
    for aname, age in ages.items():
        for sname, stability in stabilities.items():
            if aname.startswith(("int", "uint")) and sname in ("float64", "float32", "float64 strided"):
                stability = np.where(np.asarray(stability) < 1, 1.0, stability) * 1e3
                stability = stability.astype(stabilities[sname].dtype)
            want = engram.decay(s, _argument_f32(age, stability), stability=np.float32(1.0), validate=False)
            got = engram.decay(s, age, stability=stability, validate=False)
            assert got.tobytes() == want.tobytes(), (aname, sname)
            ref = _reference.decay(s, age, stability=stability, validate=False)
            err = _decay_ulps(got, _decay_exact(Case((s, age), {"stability": stability, "validate": False})),
                              np.float32, s)
            assert err.max() <= 2.0 and ref.dtype == got.dtype, (aname, sname)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_power_float64_operands_form_the_reference_u(simd_level, rng, dtype):
    """float64 ages and stabilities with float32 strength: the power model's u is the float64
    evaluation's own, so even a huge power stays within the bound."""
    n = 4096
    s = rng.uniform(0.5, 2, n).astype(np.float32)
    for power in (2.0, 1e6, 1e12):
        S = 10.0 ** rng.uniform(0, 7, n)
        t = np.expm1(rng.uniform(0, 110, n) / power) / (19 / 81) * S
        for stab in (S.astype(dtype), 86400.3):
            age = t if np.ndim(stab) else np.expm1(rng.uniform(0, 110, n) / power) / (19 / 81) * stab
            _, err = _power_ulps(s, age, stab, power)
            assert err.max() <= _power_bound(power), (power, err.max())


def test_empty(simd_level):
    for dtype in (np.float32, np.float64):
        out = engram.decay(np.zeros(0, dtype), np.zeros(0, np.int64), model="power")
        assert out.shape == (0,) and out.dtype == dtype


# ---------------------------------------------------------------------------
# threads and validation
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("model", ["exponential", "power"])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_threads_identical(rng, model, dtype):
    n = 300_007
    s, t, S = _memories(rng, n, dtype)
    t[::97] = 1e12  # some lanes off the fast path
    first = engram.decay(s, t, stability=S, model=model, threads=1)
    for threads in (2, 3, 7, None):
        assert engram.decay(s, t, stability=S, model=model, threads=threads).tobytes() == first.tobytes()


def test_scratch_follows_the_workers_not_the_request():
    """threads=256 on a machine of a few cores takes scratch for the workers that run, a few
    KB each for the operands that need it: a 64 KiB arena that raises on overflow suffices."""
    n = 300_000
    rng = np.random.default_rng(3)
    buf = rng.random(2 * n).astype(np.float32)
    s = buf[::2]  # strided: copied block by block into scratch
    t = rng.uniform(0, 1e6, n).astype(np.float32)
    before = engram.arena.config()
    try:
        engram.arena.configure(size="64KiB", overflow="raise")
        engram.decay(s[:16], t[:16])  # the new size takes effect at this thread's next call
        want = engram.decay(s, t, threads=1)
        engram.arena.reset_stats()
        for threads in (2, 3, 256):
            assert engram.decay(s, t, threads=threads).tobytes() == want.tobytes()
            assert engram.decay(s, t, threads=threads, out=s.copy()[::-1]).tobytes() == want.tobytes()
        high = engram.arena.stats()["total"]["high_water"]
        cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
        assert high <= cores * 3 * 4096 + 4096, high  # strength copy, out copy, age: 4 KB each
        assert engram.arena.stats()["total"]["overflows"] == 0
    finally:
        engram.arena.configure(size=before["size"], overflow=before["overflow"])


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_out_with_zero_stride_is_rejected(simd_level, dtype):
    """A writeable zero-stride out is one location for every result (in place, the decay would
    compound once per block): both backends reject it and write nothing."""
    from numpy.lib.stride_tricks import as_strided

    base = np.array([0.8, 0.3], dtype)
    x = as_strided(base, shape=(5000,), strides=(0,))
    t = np.full(5000, 10.0, dtype)
    for backend in ("c", "reference"):
        with engram.backend(backend):
            for out in (x, as_strided(np.zeros(1, dtype), shape=(5000,), strides=(0,))):
                with pytest.raises(ValueError, match=r"out must be an array whose elements do not overlap.*strides \(0,\)"):
                    engram.decay(x, t, stability=100.0, out=out)
            assert base.tolist() == [dtype(0.8), dtype(0.3)]
            one = as_strided(np.array([0.5], dtype), shape=(1,), strides=(0,))
            got = engram.decay(one, np.ones(1, dtype), stability=1.0, out=one)[0]
            assert got == pytest.approx(0.5 * math.exp(-1.0), rel=1e-15 if dtype == np.float64 else 1e-7)


@pytest.mark.parametrize("model", ["exponential", "power"])
def test_any_byte_order(simd_level, rng, model):
    """Big-endian strength, ages and stabilities are read like native ones by both backends;
    the result is native.  A big-endian out is rejected by both."""
    n = 100
    s, t, S = _memories(rng, n)
    want = engram.decay(s, t, stability=S, model=model)
    for st_, tt, SS in ((s.astype(">f4"), t, S), (s, t.astype(">f8"), S.astype(">f4")),
                        (s.astype(">f4"), t.astype(np.uint64).astype(">u8"), S.astype(">i8"))):
        expected = want if tt.dtype.kind == "f" else engram.decay(s, t.astype(np.uint64), stability=S.astype(np.int64),
                                                                  model=model)
        for backend in ("c", "reference"):
            with engram.backend(backend):
                got = engram.decay(st_, tt, stability=SS, model=model)
                assert got.dtype == np.float32 and got.dtype.isnative
                err = _decay_ulps(got, expected.astype(np.float64), np.float32, s)
                assert err.max() <= (0 if backend == "c" else 4.0), backend
    for backend in ("c", "reference"):
        with engram.backend(backend), pytest.raises(TypeError, match="out"):
            engram.decay(s, t, stability=S, model=model, out=np.zeros(n, ">f4"))


@pytest.mark.parametrize("fresh", [True, False])
@pytest.mark.parametrize("threads", [1, 3])
def test_validate_names_first_bad_index(rng, fresh, threads):
    n = 5000
    s, t, S = _memories(rng, n)
    t[4321] = -1.0
    S[4000] = 0.0
    t[4500] = np.nan
    out = None if fresh else s
    before = s.copy()
    with pytest.raises(ValueError, match=r"stability\[4000\] is 0"):
        engram.decay(s, t, stability=S, out=out, threads=threads)
    S[4000] = 1.0
    with pytest.raises(ValueError, match=r"age\[4321\] is -1"):
        engram.decay(s, t, stability=S, out=out, threads=threads)
    assert s.tobytes() == before.tobytes()


BAD_AGES = [-1.0, np.nan, -np.inf, -1e-30, -1e-300]  # -1e-300: -0.0 once float32
BAD_STABILITIES = [0.0, -0.0, -1.0, np.nan, -np.inf]


@pytest.mark.parametrize("model", ["exponential", "power"])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_validate_on_every_level(simd_level, rng, model, dtype):
    """The first bad index is the reference's, whichever path validates (a scan before the
    computation, or the float32 primitives checking as they go), and valid edge values pass."""
    n = 777
    for trial in range(24):
        s, t, S = _memories(rng, n, dtype)
        age = t.astype(rng.choice([dtype, np.float32, np.float64]))
        stab = S
        if trial % 3 == 1:
            stab = S.astype(np.float64 if dtype == np.float32 else np.float32)
        i, j = rng.integers(0, n, 2)
        if trial % 4 != 3:
            age[i] = rng.choice(BAD_AGES)
        if trial % 2:
            stab[j] = rng.choice(BAD_STABILITIES)
        age[rng.integers(0, n)] = -0.0  # valid
        stab[rng.integers(0, n)] = np.inf  # valid
        kwargs = {"stability": stab, "model": model}
        try:
            _reference.decay(s, age, **kwargs)
        except ValueError as exc:
            expected = str(exc).split(";")[0].split(" is ")[0]
            for out in (None, s.copy()):
                with pytest.raises(ValueError, match=re.escape(expected)):
                    engram.decay(s, age, out=out, **kwargs)
        else:
            _check_against_reference((s, age), kwargs)
    # both negative: the quotient is positive, the inputs are still invalid
    s, t, S = _memories(rng, 64, dtype)
    t[40], S[40] = -3600, -86400
    with pytest.raises(ValueError, match=r"age\[40\]"):
        engram.decay(s, t, stability=S, model=model)
    # int64 ages
    ages = np.arange(64, dtype=np.int64) * 1000
    ages[50] = -1
    with pytest.raises(ValueError, match=r"age\[50\] is -1"):
        engram.decay(s, ages, stability=S * 0 + 1e5, model=model)


def test_validate_false_follows_ieee(simd_level):
    """validate=False: negative ages grow, stability 0 gives 0 or NaN, NaN gives NaN."""
    s = np.full(16, 0.5, np.float32)
    t = np.array([-3600, np.nan, 0, 100, -np.inf, 5, 0, -1e30] * 2, np.float32)
    S = np.array([3600, 3600, 0, 0, 3600, -3600, -1, 3600] * 2, np.float32)
    for model in ("exponential", "power"):
        got = engram.decay(s, t, stability=S, model=model, validate=False)
        want = _reference.decay(s, t, stability=S, model=model, validate=False)
        err = _decay_ulps(got, _decay_exact(Case((s, t), {"stability": S, "model": model,
                                                            "validate": False})), np.float32, s)
        assert err.max() <= 4.0, (model, got, want)
    assert engram.decay(s[:1], -3600.0, stability=3600.0, validate=False)[0] == pytest.approx(0.5 * np.e)


def test_reference_backend_agrees(rng):
    s, t, S = _memories(rng, 1000)
    c = engram.decay(s, t, stability=S, model="power")
    with engram.backend("reference"):
        r = engram.decay(s, t, stability=S, model="power")
    assert np.max(_decay_ulps(c, r.astype(np.float64), np.float32, s)) <= 1.0


def test_stats_count_elements(rng):
    s, t, S = _memories(rng, 321)
    engram.stats(enable=True, reset=True)
    try:
        engram.decay(s, t, stability=S)
        k = engram.stats()["kernels"]["decay"]
        assert k["calls"] == 1 and k["elements"] == 321
    finally:
        engram.stats(enable=False, reset=True)
