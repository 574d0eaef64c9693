"""Verify mode: the library's canary.

With ``ENGRAM_VERIFY=0.01`` or ``engram.verify(rate=0.01)``, that share of
C-backend calls is also run on the reference backend (on copies of the
inputs, before the C kernel runs, so in-place updates cannot disturb it)
and compared within the kernel's own tolerance from the registry.
Mismatches are counted per kernel with the maximum error and the first few
offending inputs' shapes; with ``strict=True`` (``ENGRAM_VERIFY_STRICT=1``)
a mismatch raises :class:`VerificationError` instead of returning.
"""
from __future__ import annotations

import threading

import numpy as np

MAX_EXAMPLES = 5


class VerificationError(RuntimeError):
    """A C-backend result differed from the reference beyond the kernel's tolerance."""


_lock = threading.Lock()
_state = {"rate": 0.0, "strict": False}
_counts: dict[str, dict] = {}


def _entry(name: str) -> dict:
    return _counts.setdefault(
        name, {"checked": 0, "mismatches": 0, "max_error": 0.0, "unit": "", "examples": []}
    )


def _copy(value):
    return np.array(value, copy=True) if isinstance(value, np.ndarray) else value


def _shape(value):
    return list(np.shape(value)) if isinstance(value, np.ndarray) else type(value).__name__


def prepare(name: str, args: tuple, kwargs: dict):
    """Run the reference on copies of the inputs; returns what check() needs."""
    from . import _kernels

    kernel = _kernels.load()[0][name]
    args = tuple(_copy(a) for a in args)
    kwargs = {k: _copy(v) for k, v in kwargs.items() if k != "out"}
    case = _kernels.Case(args, kwargs, "verify")
    try:
        expected, raised = kernel.reference(*args, **kwargs), None
    except Exception as exc:  # the C call will be judged against this
        expected, raised = None, exc
    return name, kernel, case, expected, raised


def check(token, result) -> None:
    name, kernel, case, expected, raised = token
    if raised is not None:
        error, message = float("inf"), f"the reference raised {type(raised).__name__}: {raised}"
    else:
        error = float(kernel.error(result, expected, case))
        message = ""
    tolerance = kernel.tolerance(case)
    mismatch = not error <= tolerance
    with _lock:
        e = _entry(name)
        e["checked"] += 1
        e["unit"] = kernel.unit
        if error == error and error > e["max_error"]:
            e["max_error"] = error
        if mismatch:
            e["mismatches"] += 1
            if len(e["examples"]) < MAX_EXAMPLES:
                e["examples"].append({
                    "shapes": [_shape(a) for a in case.args],
                    "options": {k: (_shape(v) if isinstance(v, np.ndarray) else repr(v))
                                for k, v in case.kwargs.items()},
                    "error": error,
                    "tolerance": tolerance,
                    "message": message,
                })
        strict = _state["strict"]
    if mismatch and strict:
        raise VerificationError(
            f"{name}: C result differs from the reference by {error:g} {kernel.unit} "
            f"(tolerance {tolerance:g}) for inputs of shapes {[_shape(a) for a in case.args]}"
            + (f"; {message}" if message else "")
        )


def configure(core, rate: float | None = None, strict: bool | None = None) -> dict:
    if rate is not None:
        if isinstance(rate, bool) or not isinstance(rate, (int, float)) or not 0.0 <= rate <= 1.0:
            raise ValueError(f"verify rate must be a number in [0, 1], got {rate!r}")
        _state["rate"] = float(rate)
    if strict is not None:
        _state["strict"] = bool(strict)
    if core is not None:
        on = _state["rate"] > 0
        core._set_verify(_state["rate"], prepare if on else None, check if on else None)
    return dict(_state)


def snapshot() -> dict:
    with _lock:
        return {
            "rate": _state["rate"],
            "strict": _state["strict"],
            "kernels": {k: {**v, "examples": list(v["examples"])} for k, v in _counts.items()},
        }


def clear() -> None:
    with _lock:
        _counts.clear()
