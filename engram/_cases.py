"""Rows of the registry (engram/_kernels.py): each kernel's random cases,
error measure and benchmark workloads, one section per kernel."""
from __future__ import annotations

import numpy as np

from ._kernels import Call, Case, Goal, Kernel, Workload, call, register_kernel, register_workload  # noqa: F401

# ==== similarity ====

# ==== end similarity ====

# ==== spread ====

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
        kwargs["power"] = float(rng.choice([0.5, 0.3, 1.0, 2.0, 5.0]))
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
                Case((np.zeros(0, dt), np.zeros(0, dt)), {"model": model}, f"{model} empty"),
            ]
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
