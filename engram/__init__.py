"""engram: similarity, spreading activation and memory decay kernels for NumPy.

Three hot kernels of a memory engine under one API:

- ``cosine_similarity``, ``normalize``, ``top_k``: embeddings, 384-1536-d;
- ``Graph`` and ``spread``: spreading activation over a weighted graph;
- ``decay``: exponential and power-law forgetting of memory strengths.

A C core (``engram._core``) runs them on NumPy buffers without copies, at the
best SIMD level of the CPU, with scratch memory from a per-thread arena.
``engram._reference`` holds exact pure-NumPy versions with the same
signatures: the oracle of the tests and the fallback backend.
"""
from __future__ import annotations

import contextlib
import operator
import os
import threading
import warnings

import numpy as np

from . import _reference, _verify
from ._verify import VerificationError
from ._version import __version__

__all__ = [
    "__version__",
    "cosine_similarity",
    "normalize",
    "top_k",
    "Graph",
    "spread",
    "decay",
    "simd_info",
    "set_backend",
    "get_backend",
    "backend",
    "backend_info",
    "stats",
    "set_num_threads",
    "get_num_threads",
    "arena",
    "verify",
    "VerificationError",
]

#: the public kernels, in the order the C core counts them
KERNEL_NAMES = ("cosine_similarity", "normalize", "top_k", "spread", "decay")
BACKENDS = ("c", "reference")

try:
    from . import _core
except Exception as exc:  # ImportError, or OSError from a broken shared object
    _core = None
    _core_error = f"{type(exc).__name__}: {exc}"
    warnings.warn(
        f"engram: the C core could not be loaded ({_core_error}); "
        "every function runs on the pure-NumPy reference backend",
        RuntimeWarning,
        stacklevel=2,
    )
else:
    _core_error = None


def _warn_env(message: str) -> None:
    warnings.warn(f"engram: {message}", RuntimeWarning, stacklevel=3)


# --------------------------------------------------------------------------
# Kernels: the C entry points themselves when the core is loaded (they check
# the backend switch in C, so a call costs no Python frame), else the
# reference functions.
# --------------------------------------------------------------------------

_fallback_stats = {"enabled": False, "lock": threading.Lock(), "kernels": {}}


def _counted(name, fn):
    """Reference function that counts calls like the C core does, when stats are on."""
    import functools
    import time

    import numpy as np

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        if not _fallback_stats["enabled"]:
            return fn(*args, **kwargs)
        t0 = time.perf_counter()
        result = fn(*args, **kwargs)
        dt = time.perf_counter() - t0
        size = result.size if isinstance(result, np.ndarray) else 1
        with _fallback_stats["lock"]:
            k = _fallback_stats["kernels"].setdefault(
                name, {"calls": 0, "total_seconds": 0.0, "last_seconds": 0.0, "elements": 0}
            )
            k["calls"] += 1
            k["total_seconds"] += dt
            k["last_seconds"] = dt
            k["elements"] += int(size)
        return result

    return wrapper


def _bind(name):
    ref = getattr(_reference, name, None)
    if _core is not None and hasattr(_core, name):
        if ref is not None:
            _core._set_reference(name, ref)
        return getattr(_core, name)
    if ref is None:
        return None
    return _counted(name, ref)


for _name in KERNEL_NAMES:
    _fn = _bind(_name)
    if _fn is not None:
        globals()[_name] = _fn
del _name, _fn

from .graph import Graph  # noqa: E402  (validated wrapper shared by both backends)

# --------------------------------------------------------------------------
# SIMD levels
# --------------------------------------------------------------------------


def simd_info() -> dict:
    """SIMD levels: ``{"detected": [...], "compiled": [...], "active": name}``.

    ``ENGRAM_SIMD=scalar|avx2|avx512|neon`` caps the level at import.
    """
    if _core is None:
        return {"detected": [], "compiled": [], "active": "reference"}
    return _core.simd_info()


# --------------------------------------------------------------------------
# Backends (rollback): "c" or "reference"
# --------------------------------------------------------------------------


def _check_backend(name) -> str:
    if not isinstance(name, str):
        raise TypeError(f"backend must be one of {', '.join(map(repr, BACKENDS))}, got {type(name).__name__}")
    if name not in BACKENDS:
        raise ValueError(f"backend must be one of {', '.join(map(repr, BACKENDS))}, got {name!r}")
    if name == "c" and _core is None:
        raise RuntimeError(f"the C backend is not available: {_core_error}")
    return name


def set_backend(name: str) -> str:
    """Make ``name`` ("c" or "reference") the backend of every thread; returns the previous."""
    _check_backend(name)
    if _core is None:
        return "reference"
    return _core._set_backend(name)


def get_backend() -> str:
    """The backend this thread's calls use."""
    return "reference" if _core is None else _core._get_backend()


@contextlib.contextmanager
def backend(name: str):
    """Use backend ``name`` in this thread for the duration of a ``with`` block.

    Other threads are not affected; the previous choice is restored on exit,
    also when the block raises.
    """
    _check_backend(name)
    if _core is None:
        yield name
        return
    previous = _core._set_thread_backend(name)
    try:
        yield name
    finally:
        _core._set_thread_backend(previous)


def backend_info() -> dict:
    """Which backend runs, which are available, and why the C core is missing if it is."""
    return {
        "active": get_backend(),
        "default": "reference" if _core is None else _core._get_global_backend(),
        "available": list(BACKENDS) if _core is not None else ["reference"],
        "c_core_error": _core_error,
        "simd": simd_info(),
    }


# --------------------------------------------------------------------------
# Threads and monitoring
# --------------------------------------------------------------------------


def set_num_threads(n: int) -> None:
    """Threads used by calls with ``threads=None`` when their work is large."""
    if _core is None:
        if isinstance(n, (bool, np.bool_)) or not hasattr(type(n), "__index__"):
            raise TypeError(f"set_num_threads(): n must be an int in 1..256, got {type(n).__name__}")
        if not 1 <= operator.index(n) <= 256:
            raise ValueError(f"set_num_threads(): n must be in 1..256, got {n!r}")
        return
    _core.set_num_threads(n)


def get_num_threads() -> int:
    """Threads used by calls with ``threads=None`` when their work is large."""
    return 1 if _core is None else _core.get_num_threads()


def stats(enable: bool | None = None, *, reset: bool = False) -> dict:
    """Per-kernel counters and arena totals.

    Counting is off unless ``ENGRAM_STATS=1`` or ``stats(enable=True)``.
    Returns ``{"enabled", "kernels": {name: {calls, total_seconds,
    last_seconds, elements}}, "arena": {overflows, high_water, ...}}``.
    """
    if enable is not None:
        if _core is not None:
            _core._stats_enable(bool(enable))
        _fallback_stats["enabled"] = bool(enable)
    if reset:
        if _core is not None:
            _core._stats_clear()
        with _fallback_stats["lock"]:
            _fallback_stats["kernels"].clear()
        _verify.clear()
    if _core is None:
        zero = {"calls": 0, "total_seconds": 0.0, "last_seconds": 0.0, "elements": 0}
        with _fallback_stats["lock"]:
            kernels = {k: dict(_fallback_stats["kernels"].get(k, zero)) for k in KERNEL_NAMES}
        return {"enabled": _fallback_stats["enabled"], "kernels": kernels, "arena": {},
                "verify": _verify.snapshot()}
    total = _core._arena_stats()["total"]
    return {
        "enabled": _core._stats_enabled(),
        "verify": _verify.snapshot(),
        "kernels": _core._kernel_stats(),
        "arena": {
            "overflows": total["overflows"],
            "overflow_bytes": total["overflow_bytes"],
            "high_water": total["high_water"],
            "allocations": total["allocations"],
            "resets": total["resets"],
        },
    }


def verify(rate: float | None = None, *, strict: bool | None = None) -> dict:
    """Verify mode, a canary for a new build: also run a share of calls on the reference.

    ``rate`` in [0, 1] is the share of C-backend calls that are re-run on the
    reference (on copies of their inputs) and compared within each kernel's
    tolerance; 0 turns it off (the default, costing nothing).  Mismatches
    are counted in ``stats()["verify"]``; with ``strict=True`` they raise
    :class:`VerificationError`.  Also ``ENGRAM_VERIFY=0.01`` and
    ``ENGRAM_VERIFY_STRICT=1``.  Returns the configuration.
    """
    return _verify.configure(_core, rate, strict)


# --------------------------------------------------------------------------
# Environment, read once at import; a bad value warns and keeps the default
# --------------------------------------------------------------------------

from . import arena  # noqa: E402


def _apply_environment() -> None:
    if _core is not None:
        cap = os.environ.get("ENGRAM_SIMD", "").strip() or None
        if cap is not None:  # undecodable bytes arrive as surrogates: shown escaped, never raised
            cap = cap.encode("ascii", "backslashreplace").decode("ascii")
        warning = _core._dispatch_init(cap)
        if warning:
            _warn_env(warning)
    name = os.environ.get("ENGRAM_BACKEND", "").strip()
    if name:
        if name not in BACKENDS:
            _warn_env(f"ENGRAM_BACKEND={name!r} is not one of 'c', 'reference'; using the default")
        elif _core is not None:
            _core._set_backend(name)
    flag = os.environ.get("ENGRAM_STATS", "").strip()
    if flag:
        if flag.lower() in ("1", "true", "yes", "on"):
            stats(enable=True)
        elif flag.lower() not in ("0", "false", "no", "off"):
            _warn_env(f"ENGRAM_STATS={flag!r} is not 0 or 1; stats stay off")
    threads = os.environ.get("ENGRAM_NUM_THREADS", "").strip()
    if threads:
        try:
            set_num_threads(int(threads))
        except ValueError:
            _warn_env(
                f"ENGRAM_NUM_THREADS={threads!r} is not an int in 1..256; "
                f"using {get_num_threads()}"
            )
    arena._apply_environment(_warn_env)
    rate = os.environ.get("ENGRAM_VERIFY", "").strip()
    strict = os.environ.get("ENGRAM_VERIFY_STRICT", "").strip()
    if strict and strict not in ("0", "1"):
        _warn_env(f"ENGRAM_VERIFY_STRICT={strict!r} is not 0 or 1; mismatches will not raise")
        strict = ""
    if rate:
        try:
            verify(float(rate), strict=strict == "1")
        except ValueError:
            _warn_env(f"ENGRAM_VERIFY={rate!r} is not a share in [0, 1]; verify mode stays off")
    elif strict == "1":
        verify(strict=True)


_apply_environment()
