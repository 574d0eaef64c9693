"""Precise wall-clock timing of registry calls, contenders interleaved.

How a call is timed (the way ``timeit`` does it, plus what a shared
machine needs):

- The loop is compiled for the call: ``fn(a0, a1, kw=k0)`` with every
  argument a local, so a sample costs the call and one loop step, not
  ``*args`` unpacking or attribute lookups.
- The inner iteration count is chosen so that one sample lasts at least
  ``min_sample_time`` (1 ms by default; the clock's resolution and the
  loop's own cost vanish next to it); a call that already takes that long
  runs once per sample.
- Contenders of one workload (engram and its baselines) are timed
  interleaved: round r runs every contender once, in an order rotated by r,
  so a noisy neighbour hits all of them alike and ratios stay meaningful.
- Each call runs once before timing and its exception, if any, is kept: an
  erroring call is never timed.
- Outliers are dropped by the IQR rule (outside [Q1 - 1.5 IQR, Q3 + 1.5 IQR]);
  statistics are over the remaining samples, each the mean time per call of
  one sample.  The garbage collector is off while timing.
"""
from __future__ import annotations

import gc
import itertools
import keyword
import math
import time
from dataclasses import dataclass, field
from typing import Callable

from ._kernels import Call

#: one sample lasts at least this long (seconds)
MIN_SAMPLE_TIME = 1e-3
MIN_SAMPLES = 10


@dataclass
class Timing:
    """Seconds per call of one contender, over the samples kept."""

    number: int  # calls per sample
    samples: list = field(repr=False)  # seconds per call, one per kept sample
    rejected: int  # samples dropped as outliers
    mean: float
    p50: float
    p95: float
    p99: float
    min: float
    max: float
    stdev: float

    def as_dict(self) -> dict:
        return {
            "number": self.number,
            "samples": len(self.samples),
            "rejected": self.rejected,
            "mean": self.mean,
            "p50": self.p50,
            "p95": self.p95,
            "p99": self.p99,
            "min": self.min,
            "max": self.max,
            "stdev": self.stdev,
            "seconds": list(self.samples),
        }


def percentile(sorted_values: list, q: float) -> float:
    """Linear-interpolated percentile (NumPy's default) of an ascending list."""
    if not sorted_values:
        return math.nan
    pos = (len(sorted_values) - 1) * q / 100.0
    lo = math.floor(pos)
    hi = min(lo + 1, len(sorted_values) - 1)
    return sorted_values[lo] + (sorted_values[hi] - sorted_values[lo]) * (pos - lo)


def drop_outliers(values: list) -> tuple[list, int]:
    """Values inside [Q1 - 1.5 IQR, Q3 + 1.5 IQR] (all of them below 4 values)."""
    if len(values) < 4:
        return list(values), 0
    s = sorted(values)
    q1, q3 = percentile(s, 25), percentile(s, 75)
    lo, hi = q1 - 1.5 * (q3 - q1), q3 + 1.5 * (q3 - q1)
    kept = [v for v in values if lo <= v <= hi]
    return kept, len(values) - len(kept)


def summarize(per_call: list, number: int) -> Timing:
    kept, rejected = drop_outliers(per_call)
    s = sorted(kept)
    mean = sum(s) / len(s)
    var = sum((v - mean) ** 2 for v in s) / (len(s) - 1) if len(s) > 1 else 0.0
    return Timing(
        number=number,
        samples=kept,
        rejected=rejected,
        mean=mean,
        p50=percentile(s, 50),
        p95=percentile(s, 95),
        p99=percentile(s, 99),
        min=s[0],
        max=s[-1],
        stdev=math.sqrt(var),
    )


def compile_loop(c: Call, timer: Callable[[], float] = time.perf_counter) -> Callable[[int], float]:
    """``inner(n)`` -> seconds for n calls of ``c``, with the call written out literally."""
    fn, args, kwargs = c
    names = {"_fn": fn, "_timer": timer, "_repeat": itertools.repeat}
    arg_text = []
    for i, value in enumerate(args):
        names[f"_a{i}"] = value
        arg_text.append(f"_a{i}")
    for i, (key, value) in enumerate(kwargs.items()):
        if not key.isidentifier() or keyword.iskeyword(key):
            raise ValueError(f"keyword argument {key!r} is not an identifier")
        names[f"_k{i}"] = value
        arg_text.append(f"{key}=_k{i}")
    # Defaults bind every name as a fast local of inner(), as timeit's template does.
    params = ", ".join(f"{n}={n}" for n in names)
    src = (
        f"def inner(_n, {params}):\n"
        f"    _it = _repeat(None, _n)\n"
        f"    _t0 = _timer()\n"
        f"    for _ in _it:\n"
        f"        _fn({', '.join(arg_text)})\n"
        f"    return _timer() - _t0\n"
    )
    namespace: dict = {}
    exec(compile(src, "<engram timing loop>", "exec"), dict(names), namespace)
    return namespace["inner"]


def calibrate(inner: Callable[[int], float], min_sample_time: float = MIN_SAMPLE_TIME) -> tuple[int, float]:
    """(calls per sample, seconds per sample) so that one sample lasts >= min_sample_time."""
    number = 1
    while True:
        t = inner(number)
        if t >= min_sample_time or number >= 1 << 30:
            return number, t
        # aim 20 % past the target from this measurement, growing at most 100x per step
        grow = min(100.0, 1.2 * min_sample_time / t) if t > 0 else 100.0
        number = max(number + 1, int(math.ceil(number * grow)))


def check(c: Call):
    """Run the call once; returns (result, None) or (None, exception)."""
    try:
        return c.fn(*c.args, **c.kwargs), None
    except Exception as exc:  # recorded, never timed
        return None, exc


def measure(
    contenders: dict,
    *,
    min_samples: int = MIN_SAMPLES,
    max_samples: int = 200,
    min_sample_time: float = MIN_SAMPLE_TIME,
    budget: float = 1.0,
    checked: bool = False,
) -> dict:
    """Time every ``name -> Call`` interleaved.

    Returns ``name -> Timing`` for the calls that ran, ``name -> Exception``
    for those that raised on their check call (or while timing).  At least
    ``min_samples`` rounds run; more, up to ``max_samples``, while the
    estimated time stays within ``budget`` seconds, and a few more if
    outlier removal left a contender with fewer than ``min_samples``.  ``checked=True`` skips
    the check call when the caller has run each call already.
    """
    results: dict = {}
    loops: dict = {}
    for name, c in contenders.items():
        if not checked:
            _, exc = check(c)
            if exc is not None:
                results[name] = exc
                continue
        try:
            loops[name] = compile_loop(c)
        except Exception as exc:
            results[name] = exc
    numbers: dict = {}
    sample_time = 0.0
    gc_was_enabled = gc.isenabled()
    gc.disable()
    try:
        for name, inner in list(loops.items()):
            try:
                numbers[name], t = calibrate(inner, min_sample_time)
                sample_time += t
            except Exception as exc:
                results[name] = exc
                del loops[name]
        rounds = min_samples
        if sample_time > 0:
            rounds = int(max(min_samples, min(max_samples, budget / sample_time)))
        samples: dict = {name: [] for name in loops}
        names = list(loops)

        def short() -> bool:  # a contender left with fewer than min_samples after outlier removal
            return any(len(drop_outliers(samples[n])[0]) < min_samples for n in names if n not in results)

        r = 0
        while r < rounds or (r < rounds + 2 * min_samples and short()):
            k = r % len(names) if names else 0
            for name in names[k:] + names[:k]:
                if name in results:
                    continue
                try:
                    samples[name].append(loops[name](numbers[name]) / numbers[name])
                except Exception as exc:
                    results[name] = exc
            r += 1
    finally:
        if gc_was_enabled:
            gc.enable()
    for name in loops:
        if name not in results:
            results[name] = summarize(samples[name], numbers[name])
    return {name: results[name] for name in contenders if name in results}
