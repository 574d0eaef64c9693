"""The registry: one row per kernel, one row per benchmark workload.

The differential tests, the benchmark suite, ``python -m engram report``
and ``python -m engram regress`` all iterate these tables, so adding a
kernel or a workload is one row here, not an edit in five places.

A *kernel* row names the public function, its reference, how to draw a
random case (with NaN/inf/denormal/zero injected) and how to measure the
error of a result in the kernel's own unit.  A *workload* row names what
the original milestone report measured (or what a user runs), the
baselines it is compared with in the same run, and its goals.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, NamedTuple

import numpy as np


class Case(NamedTuple):
    """Arguments of one call, and a label saying what the case exercises."""

    args: tuple
    kwargs: dict
    label: str = ""


class Call(NamedTuple):
    """A call to time: ``fn(*args, **kwargs)``, bound once outside the timing loop."""

    fn: Callable
    args: tuple = ()
    kwargs: dict = {}


def call(fn: Callable, *args, **kwargs) -> Call:
    return Call(fn, args, kwargs)


@dataclass(frozen=True)
class Kernel:
    name: str
    #: the public function's reference (float64, pure NumPy)
    reference: Callable
    #: draws one random case; the report runs 10,000 of them per SIMD level
    random_case: Callable[[np.random.Generator], Case]
    #: error of ``got`` against ``expected`` in ``unit``; NaN where both are NaN is 0
    error: Callable[[Any, Any, Case], float]
    #: the largest error allowed for a case
    tolerance: Callable[[Case], float]
    #: "abs", "rel" or "ulp"
    unit: str
    #: fixed edge cases: NaN, inf, denormal, zero, empty ...
    edge_cases: Callable[[], list] = lambda: []
    #: the public function under test; None means ``engram.<name>``
    function: Callable | None = None


@dataclass(frozen=True)
class Goal:
    """One pass/fail claim about a workload, checked on numbers from the same run.

    kind:
      "speedup"    baseline ``against`` time / engram time >= value
      "bandwidth"  bytes moved / engram time / measured bandwidth >= value; ``against``
                   names the probe: "read" (default, a pure read) or "triad"
                   (out = out * a + b: three streams read, one written)
      "ratio_to"   engram time / workload ``against``'s engram time <= value
      "scaling"    engram time at 1 thread / engram time at ``threads`` >= value
      "rate"       elements / engram time in ns >= value
    """

    kind: str
    value: float
    against: str = ""
    text: str = ""


@dataclass(frozen=True)
class Workload:
    id: str
    kernel: str
    title: str
    #: builds the inputs; ``quick`` may shrink them (the report says so)
    setup: Callable[[bool], dict]
    #: engram's call on the inputs
    run: Callable[[dict], Call]
    #: name -> factory(state) -> Call; a factory raises ImportError if its package is missing
    baselines: dict = field(default_factory=dict)
    goals: tuple = ()
    #: the original report's target mean in microseconds, where it had one
    seed_target_us: float | None = None
    #: bytes the kernel must read and write (memory-bound workloads)
    bytes_moved: Callable[[dict], int] | None = None
    #: elements processed (for rates)
    elements: Callable[[dict], int] | None = None
    #: threads engram runs with, and the thread counts a scaling goal compares
    threads: int | None = 1


@dataclass(frozen=True)
class RegressCase:
    """One row of ``python -m engram regress``: instructions per call under callgrind.

    ``setup`` builds small fixed inputs (seeded: the count must not change
    from run to run, and valgrind runs ~50x slower than the CPU); ``run``
    returns the call to count, which should pin ``threads=1`` (callgrind
    counts the calling thread only).  The call runs once uncounted, then
    ``repeat`` times counted; the baseline keeps instructions per call.
    """

    id: str
    kernel: str
    setup: Callable[[], dict]
    run: Callable[[dict], Call]
    repeat: int = 20
    title: str = ""


KERNELS: dict[str, Kernel] = {}
WORKLOADS: dict[str, Workload] = {}
REGRESS: dict[str, RegressCase] = {}


def register_kernel(kernel: Kernel) -> Kernel:
    KERNELS[kernel.name] = kernel
    return kernel


def register_workload(workload: Workload) -> Workload:
    WORKLOADS[workload.id] = workload
    return workload


def register_regress(case: RegressCase) -> RegressCase:
    REGRESS[case.id] = case
    return case


def aligned(array, alignment: int = 64) -> np.ndarray:
    """A C-contiguous copy of ``array`` whose data starts on an ``alignment``-byte boundary.

    Instruction counts of a SIMD loop can depend on where its data starts
    (alignment peeling); regress rows use this so theirs cannot.
    """
    a = np.asarray(array)
    buf = np.empty(a.nbytes + alignment, dtype=np.uint8)
    start = -buf.ctypes.data % alignment
    out = buf[start:start + a.nbytes].view(a.dtype).reshape(a.shape)
    out[...] = a
    return out


def public_function(kernel: Kernel) -> Callable | None:
    """The function a kernel row tests: ``kernel.function`` or ``engram.<name>``."""
    if kernel.function is not None:
        return kernel.function
    import engram

    return getattr(engram, kernel.name, None)


# ---- helpers shared by the error measures ---------------------------------


def max_abs_error(got, expected) -> float:
    """Largest |got - expected|, NaN matching NaN; inf if NaN-ness or inf differ."""
    got = np.asarray(got, dtype=np.float64)
    expected = np.asarray(expected, dtype=np.float64)
    if got.shape != expected.shape:
        return float("inf")
    if got.size == 0:
        return 0.0
    nan_g, nan_e = np.isnan(got), np.isnan(expected)
    if np.any(nan_g != nan_e):
        return float("inf")
    ok = ~nan_e
    g, e = got[ok], expected[ok]
    inf_mismatch = (np.isinf(g) | np.isinf(e)) & (g != e)
    if np.any(inf_mismatch):
        return float("inf")
    finite = np.isfinite(e)
    if not np.any(finite):
        return 0.0
    return float(np.max(np.abs(g[finite] - e[finite])))


def ulp_error_f32(got, expected_f64) -> float:
    """Largest distance in float32 ULPs between ``got`` and a float64 exact value."""
    got = np.asarray(got, dtype=np.float32)
    exact = np.asarray(expected_f64, dtype=np.float64)
    if got.shape != exact.shape:
        return float("inf")
    if got.size == 0:
        return 0.0
    nan_g, nan_e = np.isnan(got), np.isnan(exact)
    if np.any(nan_g != nan_e):
        return float("inf")
    g = got[~nan_e].astype(np.float64)
    e = exact[~nan_e]
    same = g == e
    # ULP of float32 at the exact value (at least the smallest subnormal)
    rounded = e.astype(np.float32)
    spacing = np.abs(np.spacing(rounded)).astype(np.float64)
    spacing = np.maximum(spacing, float(np.finfo(np.float32).smallest_subnormal))
    err = np.where(same, 0.0, np.abs(g - e) / spacing)
    return float(np.max(err)) if err.size else 0.0


# ---- importing the rows ----------------------------------------------------
# Each kernel's rows live in its own section of engram/_cases.py; importing
# it fills KERNELS, WORKLOADS and REGRESS.


def load() -> tuple[dict, dict]:
    from . import _cases  # noqa: F401  (registers on import)

    return KERNELS, WORKLOADS


def load_regress() -> dict:
    from . import _cases  # noqa: F401  (registers on import)

    return REGRESS
