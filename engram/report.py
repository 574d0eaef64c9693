"""``python -m engram report``: the milestone report, every number measured in this run.

Sections: environment; differential validation of every registered kernel
at every SIMD level against its float64 reference; benchmarks of every
registered workload against its baselines (timed interleaved, see
``engram._timing``) with each goal checked on the ratios of this run;
memory-bound workloads as a share of a bandwidth probe run on buffers of
the workload's size; thread scaling; the arena's cost and sizing.  Writes
``report.md``, ``report.json`` (every number) and ``report.png`` (needs
matplotlib, the ``report`` extra), prints the tables and shows progress on
stderr.  ``--quick`` shrinks workloads, case counts and sample budgets so
the whole run takes well under 20 s, and the report says so.

A workload that fails, or whose kernel is not built, is recorded with its
error; the report itself does not stop.  The exit status is 1 when the
differential validation found a disagreement, else 0: a goal that is not
met is a finding, not a failure of the run.
"""
from __future__ import annotations

import contextlib
import datetime
import gc
import json
import math
import os
import platform
import re
import sys
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from . import _timing
from ._kernels import Call, Goal, Kernel, Workload, public_function

# ---------------------------------------------------------------------------
# Settings
# ---------------------------------------------------------------------------

#: BLAS overrides some machines set for old OpenBLAS builds: they pin a slower
#: kernel, so baselines would not run at their best (they must be unset before
#: NumPy loads, hence the re-exec in main()).
BLAS_OVERRIDES = ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE")

#: optional packages whose presence changes what the report can measure
PEERS = ("scipy", "numkong", "faiss", "threadpoolctl", "matplotlib")

#: the original report's claims, quoted where the report answers them
SEED_ARENA_HIGH_WATER_768 = 847 * 1000  # "847 KB for 768d embeddings"
SEED_ARENA_RECOMMENDED = {384: 1 << 20, 768: 2 << 20, 1536: 4 << 20}  # "1 MB / 2 MB / 4 MB"
SEED_OVERFLOW_RATE = 0.001  # "Overflow rate: <0.1% with proper sizing"
SEED_EPSILON = 1e-6
#: the original report's three headline targets (mean µs) and the workloads that answer them
SEED_TARGETS = {"P1": ("vector similarity, one 768-d pair", 1.73),
                "S1": ("activation spreading, 1,000 nodes, 100 hops", 95.8),
                "D1": ("memory decay, 10,000 memories", 66.7)}
ARENA_DIMS = (384, 768, 1536)

#: the workloads the report is meant to cover (the benchmark tables of each
#: kernel); one that is not registered is listed as missing, never skipped silently
EXPECTED_WORKLOADS = {
    "similarity": ("P1", "P2", "P3", "P4", "P5", "P6", "P7"),
    "spread": ("S1", "S2", "S3", "S4"),
    "decay": ("D1", "D2", "D3", "D4", "D5"),
}


@dataclass
class Settings:
    quick: bool = False
    out: Path = Path(".")
    simd: list | None = None  # validation levels; None = every level this machine runs
    cases: int = 10_000  # random cases per kernel per SIMD level
    validation_budget: float = 600.0  # seconds per kernel, all levels together
    validation_total: float | None = None  # seconds for all kernels together (split evenly)
    timing_budget: float = 2.0  # seconds of samples per workload
    min_samples: int = _timing.MIN_SAMPLES
    max_samples: int = 200
    min_sample_time: float = _timing.MIN_SAMPLE_TIME
    arena_calls: int = 120  # calls of the arena mix per dimension
    arena_corpus: int = 20_000
    seed: int = 20251025
    arena: bool = True  # measure the arena's cost and sizing
    load: bool = True  # run the recall pipeline under load (engram.load) for a while
    load_seconds: float = 5.0
    load_memories: int = 50_000
    scale_out: bool = True  # top_k on a 2-worker dask LocalCluster vs in memory (engram.dask)
    scale_out_rows: int = 1_000_000
    notes: list = field(default_factory=list)

    @classmethod
    def for_mode(cls, quick: bool, out, simd=None) -> "Settings":
        s = cls(out=Path(out), simd=simd, quick=quick)
        if quick:
            s.cases = 2_000
            s.validation_total = 3.0
            s.timing_budget = 0.15
            s.max_samples = 50
            s.arena_calls = 16
            s.arena_corpus = 2_000
            s.load_seconds = 1.0
            s.load_memories = 10_000
            s.scale_out = False
            s.notes.append(
                "--quick: workloads use their reduced sizes, validation stops after "
                f"{s.validation_total:g} s for all kernels together, each workload gets ~{s.timing_budget:g} s of "
                f"samples (at least {s.min_samples}), and the arena mix is {s.arena_calls} calls "
                f"on a {s.arena_corpus:,}-row corpus; the load run lasts {s.load_seconds:g} s on "
                f"{s.load_memories:,} memories. Seed-target and goal verdicts then describe "
                "the reduced sizes; run without --quick for the real ones."
            )
        return s


# ---------------------------------------------------------------------------
# Progress (stderr, plain text)
# ---------------------------------------------------------------------------


class Progress:
    def __init__(self, total: int, stream=None, width: int = 30):
        self.total = max(total, 1)
        self.done = 0
        self.stream = stream or sys.stderr
        self.width = width
        self.tty = hasattr(self.stream, "isatty") and self.stream.isatty()
        self.t0 = time.perf_counter()

    def step(self, label: str, advance: int = 1) -> None:
        self.done = min(self.total, self.done + advance)
        filled = int(self.width * self.done / self.total)
        bar = "#" * filled + "-" * (self.width - filled)
        line = f"[{bar}] {self.done}/{self.total} {time.perf_counter() - self.t0:5.1f}s {label}"
        if self.tty:
            self.stream.write("\r" + line[:120].ljust(120))
            if self.done == self.total:
                self.stream.write("\n")
        else:
            self.stream.write(line + "\n")
        self.stream.flush()

    def note(self, label: str) -> None:
        """Show what runs now without advancing."""
        if self.tty:
            self.stream.write("\r" + f"... {label}"[:120].ljust(120))
            self.stream.flush()


# ---------------------------------------------------------------------------
# Environment
# ---------------------------------------------------------------------------


def peer_versions() -> dict:
    import importlib

    found = {}
    for name in PEERS:
        try:
            mod = importlib.import_module(name)
            found[name] = str(getattr(mod, "__version__", "installed"))
        except Exception:
            found[name] = None
    return found


def environment() -> dict:
    import engram

    from . import info

    d = info.collect()
    cores_used = _cores_used()
    pools = []
    try:
        from threadpoolctl import threadpool_info

        pools = [
            {k: p.get(k) for k in ("user_api", "internal_api", "version", "architecture", "num_threads", "filepath")}
            for p in threadpool_info()
        ]
    except ImportError:
        pass
    d.update(
        cores_used=cores_used,
        blas_pools=pools,
        blas_overrides={k: os.environ.get(k) for k in BLAS_OVERRIDES},
        peers=peer_versions(),
        machine=platform.machine(),
        date=datetime.datetime.now().isoformat(timespec="seconds"),
    )
    d["simd"] = engram.simd_info()
    return d


def usable_levels() -> list:
    import engram

    info = engram.simd_info()
    return [lv for lv in info["compiled"] if lv in info["detected"]]


# ---------------------------------------------------------------------------
# Differential validation
# ---------------------------------------------------------------------------


def _safe_call(fn, case):
    try:
        return fn(*case.args, **case.kwargs), None
    except Exception as exc:
        return None, exc


def _compare(kernel: Kernel, got, got_exc, expected, exp_exc, case) -> tuple[float, str | None]:
    """(error, failure description or None)."""
    if got_exc is not None or exp_exc is not None:
        if got_exc is not None and exp_exc is not None:
            if type(got_exc) is type(exp_exc):
                return 0.0, None  # both reject the input the same way
            return math.inf, f"C raised {type(got_exc).__name__}, reference {type(exp_exc).__name__}"
        if got_exc is not None:
            return math.inf, f"C raised {type(got_exc).__name__}: {got_exc}"[:300]
        return math.inf, f"reference raised {type(exp_exc).__name__}: {exp_exc}, C did not"[:300]
    try:
        err = float(kernel.error(got, expected, case))
        tol = float(kernel.tolerance(case))
    except Exception as exc:
        return math.inf, f"error measure raised {type(exc).__name__}: {exc}"[:300]
    if not err <= tol:  # NaN fails too
        return err, f"error {err:.3g} > tolerance {tol:.3g}"
    return err, None


def _clone_array(a: np.ndarray, memo: dict) -> np.ndarray:
    """A copy of ``a`` with the same strides and offset into a copy of its base.

    ``np.copy`` would make strided and reversed views contiguous, and copying
    each argument separately would break ``out=`` aliasing an input; this
    copies the owning array once and rebuilds every view of it.
    """
    root = a
    while isinstance(root.base, np.ndarray):
        root = root.base
    if not (root.flags.c_contiguous or root.flags.f_contiguous):
        return a.copy(order="K")
    new_root = memo.get(id(root))
    if new_root is None:
        new_root = memo[id(root)] = root.copy(order="K")
    offset = a.__array_interface__["data"][0] - root.__array_interface__["data"][0]
    base_bytes = new_root.reshape(-1, order="A").view(np.uint8)
    view = np.ndarray(a.shape, a.dtype, buffer=base_bytes, offset=offset, strides=a.strides)
    view.flags.writeable = a.flags.writeable
    return view


def clone_case(case, memo: dict | None = None):
    """The same call arguments with every array copied, layouts and aliasing kept; other objects shared."""
    memo = {} if memo is None else memo

    def c(obj):
        if isinstance(obj, np.ndarray):
            try:
                return _clone_array(obj, memo)
            except (ValueError, TypeError):
                return obj.copy(order="K")
        if isinstance(obj, tuple) and not hasattr(obj, "_fields"):
            return tuple(c(v) for v in obj)
        if isinstance(obj, list):
            return [c(v) for v in obj]
        if isinstance(obj, dict):
            return {k: c(v) for k, v in obj.items()}
        return obj

    return type(case)(c(case.args), c(case.kwargs), case.label)


def validate_kernel(kernel: Kernel, levels: list, settings: Settings, progress: Progress | None = None) -> dict:
    """Random and edge cases of one kernel through the C backend at each level vs the reference.

    Each random case is drawn once from its own seed; the reference and each
    level get a copy of it (``clone_case``: strides, offsets and ``out=``
    aliasing kept), so an in-place call cannot feed the next one.
    """
    import engram

    out = {"kernel": kernel.name, "unit": kernel.unit, "levels": {}, "status": "ok"}
    fn = public_function(kernel)
    if engram._core is None:
        out.update(status="C core not loaded", error=engram.backend_info()["c_core_error"])
        return out
    if fn is None:
        out.update(status="not built", error=f"engram has no function {kernel.name!r}")
        return out
    per = {lv: {"cases": 0, "failures": 0, "max_error": 0.0, "examples": [], "edge_cases": 0,
                "edge_failures": 0, "edge_max_error": 0.0} for lv in levels}
    previous = engram._core._set_simd(levels[0]) if levels else None
    t0 = time.perf_counter()
    deadline = t0 + settings.validation_budget
    try:
        with engram.backend("c"):
            # edge cases first: they are few and the most telling
            try:
                n_edge = len(kernel.edge_cases())
            except Exception as exc:
                n_edge = 0
                out["edge_error"] = f"{type(exc).__name__}: {exc}"
            for j, case in enumerate(kernel.edge_cases() if n_edge else []):
                expected, exp_exc = _safe_call(kernel.reference, clone_case(case))
                for lv in levels:
                    engram._core._set_simd(lv)
                    got, got_exc = _safe_call(fn, clone_case(case))
                    err, why = _compare(kernel, got, got_exc, expected, exp_exc, case)
                    p = per[lv]
                    p["edge_cases"] += 1
                    p["edge_max_error"] = max(p["edge_max_error"], err) if not math.isnan(err) else math.inf
                    if why:
                        p["edge_failures"] += 1
                        if len(p["examples"]) < 5:
                            p["examples"].append({"case": f"edge {j}", "label": case.label, "why": why})
            i = 0
            for i in range(settings.cases):
                if i and time.perf_counter() > deadline:
                    break
                seed = settings.seed + i
                case = kernel.random_case(np.random.default_rng(seed))
                expected, exp_exc = _safe_call(kernel.reference, clone_case(case))
                for lv in levels:
                    engram._core._set_simd(lv)
                    got, got_exc = _safe_call(fn, clone_case(case))
                    err, why = _compare(kernel, got, got_exc, expected, exp_exc, case)
                    p = per[lv]
                    p["cases"] += 1
                    p["max_error"] = max(p["max_error"], err) if not math.isnan(err) else math.inf
                    if why:
                        p["failures"] += 1
                        if len(p["examples"]) < 5:
                            p["examples"].append({"case": f"seed {seed}", "label": case.label, "why": why})
                if progress and i % 200 == 199:
                    progress.note(f"validate {kernel.name}: {i + 1} cases")
    except Exception as exc:  # a broken kernel row: say so, keep the report going
        out.update(status="error", error=f"{type(exc).__name__}: {exc}", traceback=traceback.format_exc())
    finally:
        if previous is not None:
            engram._core._set_simd(previous)
    out["levels"] = per
    out["seconds"] = time.perf_counter() - t0
    out["requested_cases"] = settings.cases
    cases_run = min((p["cases"] for p in per.values()), default=0)
    out["stopped_early"] = cases_run < settings.cases
    return out


# ---------------------------------------------------------------------------
# Benchmarks
# ---------------------------------------------------------------------------


def _cores_used() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:
        return os.cpu_count() or 1


def _engram_public_names() -> set:
    import engram

    return {getattr(engram, n) for n in engram.KERNEL_NAMES if hasattr(engram, n)}


def with_threads(c: Call, n: int) -> Call | None:
    """The same call with ``threads=n``; None when the call takes no threads argument."""
    if "threads" in c.kwargs:
        return Call(c.fn, c.args, {**c.kwargs, "threads": n})
    try:
        if c.fn in _engram_public_names():
            return Call(c.fn, c.args, {**c.kwargs, "threads": n})
    except TypeError:  # unhashable callable
        pass
    return None


@contextlib.contextmanager
def limit_library_threads(n: int):
    """BLAS/OpenMP pools limited to ``n`` threads, so baselines use what engram uses."""
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:
        yield False
        return
    with threadpool_limits(limits=n):
        yield True


def probe_bandwidth(bytes_moved: int, kind: str = "read", repeats: int = 3) -> dict:
    """Best GB/s of a probe moving ``bytes_moved`` bytes (capped at 1 GiB)."""
    from . import _core

    cap = 1 << 30
    size = int(min(max(bytes_moved, 4096), cap))
    if kind == "triad":
        n = max(size // 16, 16)
        a = np.full(n, 0.5, np.float32)
        b = np.full(n, 0.25, np.float32)
        o = np.ones(n, np.float32)
        best = _core._probe_triad(o, a, b, repeats)
        moved = 16 * n
    else:
        n = max(size // 4, 16)
        buf = np.ones(n, np.float32)
        best, _ = _core._probe_read(buf, repeats)
        moved = 4 * n
    return {"kind": kind, "bytes": moved, "capped": bytes_moved > cap, "gbps": float(best)}


def _timing_dict(t) -> dict:
    if isinstance(t, _timing.Timing):
        return {"status": "ok", **t.as_dict()}
    if isinstance(t, ImportError):
        return {"status": "not installed", "error": str(t)}
    return {"status": "error", "error": f"{type(t).__name__}: {t}"[:500]}


def _contenders(w: Workload, state: dict, errors: dict) -> dict:
    contenders = {}
    try:
        contenders["engram"] = w.run(state)
    except Exception as exc:
        errors["engram"] = exc
    for name, factory in w.baselines.items():
        try:
            contenders[name] = factory(state)
        except ImportError as exc:  # an optional peer that is missing: never faked
            errors[name] = exc
        except Exception as exc:
            errors[name] = exc
    return contenders


def run_workload(w: Workload, settings: Settings, workloads: dict) -> dict:
    """Set up, time engram and its baselines interleaved, measure what the goals need."""
    import engram

    res: dict = {
        "id": w.id, "kernel": w.kernel, "title": w.title, "quick": settings.quick,
        "threads": w.threads, "seed_target_us": w.seed_target_us, "status": "ok",
        "simd": engram.simd_info()["active"],
    }
    t0 = time.perf_counter()
    state = other_state = None
    try:
        state = w.setup(settings.quick)
        res["setup_seconds"] = time.perf_counter() - t0
        errors: dict = {}
        contenders = _contenders(w, state, errors)
        # another workload's engram call that a ratio_to goal compares with: timed in the same rounds
        for g in w.goals:
            if g.kind == "ratio_to" and g.against in workloads and g.against != w.id:
                other = workloads[g.against]
                try:
                    other_state = other.setup(settings.quick)
                    contenders[f"engram:{other.id}"] = other.run(other_state)
                except Exception as exc:
                    errors[f"engram:{other.id}"] = exc
        # one thread against many for scaling goals and multi-threaded workloads
        n_threads = w.threads if w.threads and w.threads > 1 else None
        wants_scaling = any(g.kind == "scaling" for g in w.goals) or n_threads
        if wants_scaling and "engram" in contenders:
            n = n_threads or _cores_used()
            many = with_threads(contenders["engram"], n)
            one = with_threads(contenders["engram"], 1)
            res["scaling_threads"] = n
            if many is None or one is None:
                res["scaling_error"] = "the engram call takes no threads argument"
            else:
                contenders["engram"] = many
                contenders["engram@1"] = one
        # threads=None is engram's automatic choice: all cores for large work, so the same for BLAS
        limit = w.threads if w.threads else _cores_used()
        with limit_library_threads(limit) as limited:
            timings = _timing.measure(
                contenders, min_samples=settings.min_samples, max_samples=settings.max_samples,
                min_sample_time=settings.min_sample_time, budget=settings.timing_budget,
            )
        res["library_threads"] = limit if limited else "unlimited (threadpoolctl not installed)"
        timings.update(errors)
        res["contenders"] = {name: _timing_dict(t) for name, t in timings.items()}
        eng = timings.get("engram")
        if not isinstance(eng, _timing.Timing):
            res["status"] = "error"
            res["error"] = res["contenders"].get("engram", {}).get("error", "engram was not timed")
        else:
            for name, t in timings.items():
                if name != "engram" and isinstance(t, _timing.Timing):
                    res["contenders"][name]["speedup"] = t.mean / eng.mean
                    res["contenders"][name]["speedup_p50"] = t.p50 / eng.p50
            if w.bytes_moved is not None:
                nbytes = int(w.bytes_moved(state))
                kinds = sorted({g.against or "read" for g in w.goals if g.kind == "bandwidth"}) or ["read"]
                engram_gbps = nbytes / (eng.mean * 1e9)
                probes = {}
                for kind in kinds:
                    try:
                        probe = probe_bandwidth(nbytes, kind)
                        probe["fraction"] = engram_gbps / probe["gbps"] if probe["gbps"] else None
                    except Exception as exc:  # no C core, or no memory for the buffers
                        probe = {"kind": kind, "gbps": None, "fraction": None, "capped": False,
                                 "error": f"{type(exc).__name__}: {exc}"}
                    probes[kind] = probe
                res["bandwidth"] = {"bytes": nbytes, "engram_gbps": engram_gbps, "probes": probes}
            if w.elements is not None:
                n_el = int(w.elements(state))
                res["elements"] = n_el
                res["elements_per_ns"] = n_el / (eng.mean * 1e9)
            one = timings.get("engram@1")
            if isinstance(one, _timing.Timing):
                res["scaling"] = one.mean / eng.mean
    except Exception as exc:
        res["status"] = "error"
        res["error"] = f"{type(exc).__name__}: {exc}"[:500]
        res["traceback"] = traceback.format_exc()
    finally:
        del state, other_state
        gc.collect()
    res["seconds"] = time.perf_counter() - t0
    return res


def _goal_text(g: Goal) -> str:
    if g.text:
        return g.text
    return {
        "speedup": f">= {g.value:g}x {g.against}",
        "bandwidth": f">= {g.value * 100:.3g} % of the {g.against or 'read'} probe's bandwidth",
        "ratio_to": f"<= {g.value:g}x the time of {g.against}",
        "scaling": f">= {g.value:g}x from 1 thread to N",
        "rate": f">= {g.value:g} elements/ns",
    }.get(g.kind, f"{g.kind} {g.value:g} {g.against}")


def check_goal(g: Goal, res: dict) -> dict:
    """A goal's measured value and verdict (met True/False, None if it could not be measured)."""
    out = {"kind": g.kind, "value": g.value, "against": g.against, "text": _goal_text(g),
           "measured": None, "met": None, "note": ""}
    if res.get("status") != "ok":
        out["note"] = f"workload failed: {res.get('error', res.get('status'))}"
        return out
    eng = res["contenders"]["engram"]
    if g.kind == "speedup":
        base = res["contenders"].get(g.against)
        if base is None:
            out["note"] = f"no baseline named {g.against!r}"
        elif base["status"] != "ok":
            out["note"] = f"{g.against}: {base['status']}" + (f" ({base['error']})" if base.get("error") else "")
        else:
            out["measured"] = base["mean"] / eng["mean"]
    elif g.kind == "bandwidth":
        bw = res.get("bandwidth")
        probe = bw["probes"].get(g.against or "read") if bw else None
        if probe and probe.get("fraction") is not None:
            out["measured"] = probe["fraction"]
        else:
            out["note"] = "the workload states no bytes_moved" if not bw else "bandwidth probe failed"
    elif g.kind == "ratio_to":
        other = res["contenders"].get(f"engram:{g.against}")
        if other is None:
            out["note"] = f"workload {g.against!r} is not registered"
        elif other["status"] != "ok":
            out["note"] = f"{g.against}: {other.get('error', other['status'])}"
        else:
            out["measured"] = eng["mean"] / other["mean"]
            out["met"] = out["measured"] <= g.value
            return out
    elif g.kind == "scaling":
        if res.get("scaling") is not None:
            out["measured"] = res["scaling"]
        else:
            out["note"] = res.get("scaling_error", "not measured")
    elif g.kind == "rate":
        if res.get("elements_per_ns") is not None:
            out["measured"] = res["elements_per_ns"]
        else:
            out["note"] = "the workload states no element count"
    else:
        out["note"] = f"unknown goal kind {g.kind!r}"
    if out["measured"] is not None:
        out["met"] = out["measured"] >= g.value
    return out


def check_seed_target(res: dict) -> dict | None:
    target = res.get("seed_target_us")
    if target is None:
        return None
    if res.get("status") != "ok":
        return {"target_us": target, "measured_us": None, "met": None}
    mean_us = res["contenders"]["engram"]["mean"] * 1e6
    return {"target_us": target, "measured_us": mean_us, "met": mean_us <= target}


# ---------------------------------------------------------------------------
# Arena: cost next to malloc, and sizing for 384/768/1536-d similarity work
# ---------------------------------------------------------------------------


def arena_cost(quick: bool) -> list:
    from . import _core

    rows = []
    rounds = 300 if quick else 3000
    for size, count in ((64, 64), (4096, 64), (65536, 16)):
        before = _core._arena_stats()["total"]["overflows"]
        r = _core._arena_bench(size, count, rounds, 3 if quick else 7)
        overflowed = _core._arena_stats()["total"]["overflows"] > before
        r.update(size=size, count=count, rounds=rounds, overflowed=overflowed,
                 speedup_vs_malloc=r["malloc_free_ns"] / r["arena_per_alloc_ns"])
        rows.append(r)
    return rows


def arena_mix(d: int, n_calls: int, corpus_rows: int, seed: int) -> list:
    """A seeded stream of similarity calls at dimension d, as a memory engine issues them.

    The sequence of shapes is the same at every d, so the dimensions compare.

    top_k batches of 1-256 queries (k 10 or 100) and many-vs-many cosine
    blocks, half of them with inputs whose last axis is strided (every other
    column of a wider array), which the kernels must copy once into the
    arena: that copy, the top-k heaps and the score blocks are what fills it.
    """
    import engram

    data = np.random.default_rng(seed + d)
    corpus = data.standard_normal((corpus_rows, d), dtype=np.float32)
    wide = data.standard_normal((1024, 2 * d), dtype=np.float32)
    rng = np.random.default_rng(seed)  # the same sequence of call shapes at every d
    calls = []
    for _ in range(n_calls):
        strided = rng.random() < 0.5
        if rng.random() < 0.6:
            q = int(rng.choice([1, 8, 64, 256]))
            k = int(rng.choice([10, 100]))
            queries = wide[:q, ::2] if strided else np.ascontiguousarray(wide[:q, ::2])
            calls.append((f"top_k q={q} k={k}{' strided' if strided else ''}",
                          Call(engram.top_k, (queries, corpus, k), {})))
        else:
            m = int(rng.choice([16, 128, 512]))
            n = int(rng.choice([256, 1024, 4096]))
            x = wide[:m, ::2] if strided else np.ascontiguousarray(wide[:m, ::2])
            calls.append((f"cosine {m}x{n}{' strided' if strided else ''}",
                          Call(engram.cosine_similarity, (x, corpus[:n]), {})))
    return calls


def run_arena_mix(calls: list) -> dict:
    """Per call: arena bytes needed (its high water, heap overflow included), overflows; totals and time."""
    import engram

    needs, overflowed, allocations = [], 0, 0
    t_total = 0.0
    for label, c in calls:
        engram.arena.reset_stats()
        t0 = time.perf_counter()
        c.fn(*c.args, **c.kwargs)
        t_total += time.perf_counter() - t0
        st = engram.arena.stats()
        # high water counts heap-overflow bytes too: it is what the call needed in one block;
        # the total's high water is the largest of any thread, exited workers included
        need = max([t["high_water"] for t in st["threads"]] + [st["total"]["high_water"]])
        needs.append(need)
        over = st["total"]["overflows"]
        overflowed += over > 0
        allocations += st["total"]["allocations"]
    return {
        "calls": len(calls),
        "calls_overflowed": overflowed,
        "overflow_rate": overflowed / len(calls) if calls else 0.0,
        "max_need": max(needs, default=0),
        "allocations": allocations,
        "seconds": t_total,
        "needs": needs,
    }


def smallest_size(calls: list, first_guess: int, rate: float = SEED_OVERFLOW_RATE) -> dict:
    """Smallest arena size (64 KiB steps) whose overflow rate on ``calls`` is below ``rate``.

    Each probe sets the size with engram.arena.configure and reruns the whole
    mix.  A call's need does not depend on the arena size, so the size just
    above the largest need seen (``first_guess``) is tried first and one step
    below it second; a bisection covers whatever those two do not settle.
    """
    import engram

    step = 64 << 10
    floor = engram.arena.MIN_SIZE // step
    ceiling = engram.arena.MAX_SIZE // step
    tried = {}

    def ok(steps: int) -> bool:
        size = steps * step
        engram.arena.configure(size=size)
        r = run_arena_mix(calls)
        tried[str(size)] = r["overflow_rate"]
        return r["overflow_rate"] < rate

    hi = min(ceiling, max(floor, -(-first_guess // step)))
    lo = floor  # the answer lies in [lo, hi] once ok(hi)
    while not ok(hi):  # alignment or per-thread effects: grow
        if hi == ceiling:
            return {"size": None, "tried": tried}
        lo, hi = hi + 1, min(ceiling, 2 * hi)
    if hi > lo:
        if not ok(hi - 1):
            lo = hi
        else:
            hi -= 1
    while lo < hi:
        mid = (lo + hi) // 2
        if ok(mid):
            hi = mid
        else:
            lo = mid + 1
    return {"size": hi * step, "tried": tried}


def arena_sizing(settings: Settings, progress: Progress | None = None) -> dict:
    import engram

    missing = [n for n in ("top_k", "cosine_similarity") if engram._core is None or not hasattr(engram._core, n)]
    if missing:
        return {"status": "not built", "error": f"the C core has no {', '.join(missing)}: the similarity "
                                                "kernel is not built into this engram, nothing to size"}
    original = engram.arena.config()
    out = {"status": "ok", "default_size": original["size"], "dims": {}}
    try:
        for d in ARENA_DIMS:
            if progress:
                progress.note(f"arena mix d={d}")
            calls = arena_mix(d, settings.arena_calls, settings.arena_corpus, settings.seed)
            engram.arena.configure(size=engram.arena.DEFAULT_SIZE, overflow="heap")
            at_default = run_arena_mix(calls)
            found = smallest_size(calls, at_default["max_need"])
            at_default.pop("needs")
            out["dims"][d] = {"at_default": at_default, "smallest_size": found["size"], "tried": found["tried"],
                              "seed_recommended": SEED_ARENA_RECOMMENDED[d]}
            if progress:
                progress.step(f"arena d={d}")
    except Exception as exc:
        out.update(status="error", error=f"{type(exc).__name__}: {exc}", traceback=traceback.format_exc())
    finally:
        engram.arena.configure(size=original["size"], overflow=original["overflow"],
                               zero_on_reset=original["zero_on_reset"])
    return out


# ---------------------------------------------------------------------------
# Under load: the recall pipeline from every core for a while (engram.load)
# ---------------------------------------------------------------------------

LOAD_KERNELS = ("top_k", "spread", "decay")


def under_load(settings: Settings, kernels: dict) -> dict:
    """A short run of ``python -m engram load`` on the C backend, one recall thread per core."""
    import engram

    from . import load

    missing = [n for n in LOAD_KERNELS if n not in kernels or engram._core is None
               or not hasattr(engram._core, n)]
    if missing:
        return {"status": "not measured", "error": f"the recall pipeline needs {', '.join(missing)}, which "
                                                   "this run does not validate or the C core does not have"}
    try:
        result = load.run(threads=_cores_used(), seconds=settings.load_seconds, memories=settings.load_memories,
                          dim=768, warmup=min(1.0, settings.load_seconds / 4), backend="c", seed=settings.seed)
    except Exception as exc:
        return {"status": "error", "error": f"{type(exc).__name__}: {exc}", "traceback": traceback.format_exc()}
    return {"status": "ok", **result}


# ---------------------------------------------------------------------------
# Scaling out: engram.dask on a LocalCluster vs in-memory engram (engram.dask)
# ---------------------------------------------------------------------------

SCALE_OUT_GOAL = 1.3  # cluster time / in-memory time at 1,000,000 x 768


def scale_out(settings: Settings) -> dict:
    try:
        from . import dask as engram_dask
        import distributed  # noqa: F401
    except ImportError as exc:
        return {"status": "not installed", "error": f"{exc} (pip install '.[dask]')"}
    try:
        result = engram_dask.benchmark_top_k(n=settings.scale_out_rows, n_chunks=64, n_queries=16, k=10,
                                             workers=2, repeats=5, seed=settings.seed)
    except Exception as exc:
        return {"status": "error", "error": f"{type(exc).__name__}: {exc}", "traceback": traceback.format_exc()}
    result["goal"] = SCALE_OUT_GOAL
    result["met"] = bool(result["equal"] and result["overhead"] <= SCALE_OUT_GOAL)
    return {"status": "ok", **result}


def missing_workloads(workloads: dict) -> dict:
    """Expected workload ids with no registered row (an id matches ``P1`` or ``P1-...``)."""
    have = {re.split(r"[-_ .:]", wid, maxsplit=1)[0] for wid in workloads}
    missing = {k: [i for i in ids if i not in have] for k, ids in EXPECTED_WORKLOADS.items()}
    return {k: v for k, v in missing.items() if v}


def function_backends() -> dict:
    """Each public kernel function: in the C core, reference only, or absent."""
    import engram

    out = {}
    for name in engram.KERNEL_NAMES:
        if engram._core is not None and hasattr(engram._core, name):
            out[name] = "C"
        elif hasattr(engram, name):
            out[name] = "reference only"
        else:
            out[name] = "not built"
    return out


# ---------------------------------------------------------------------------
# Running everything
# ---------------------------------------------------------------------------


def build_report(settings: Settings, kernels: dict, workloads: dict, progress_stream=None) -> dict:
    import engram

    from . import _version

    t0 = time.perf_counter()
    levels = usable_levels()
    if settings.simd:
        unknown = [lv for lv in settings.simd if lv not in levels]
        if unknown:
            settings.notes.append(f"--simd: {', '.join(unknown)} not available here (usable: {', '.join(levels)})")
        levels = [lv for lv in settings.simd if lv in levels]
    have_arena = engram._core is not None and settings.arena
    steps = (len(kernels) + len(workloads) + (1 + len(ARENA_DIMS) if have_arena else 0) + 1 + settings.load
             + settings.scale_out)
    progress = Progress(steps, progress_stream)
    report: dict = {"engram": _version.__version__, "quick": settings.quick, "settings": {
        "cases": settings.cases, "validation_budget_s": settings.validation_budget,
        "timing_budget_s": settings.timing_budget, "min_samples": settings.min_samples,
        "min_sample_time_s": settings.min_sample_time, "levels": levels,
        "arena_calls": settings.arena_calls, "arena_corpus": settings.arena_corpus,
        "load_seconds": settings.load_seconds, "load_memories": settings.load_memories}, "notes": settings.notes}
    report["environment"] = environment()
    pinned = {k: v for k, v in report["environment"]["blas_overrides"].items() if v}
    if pinned:
        settings.notes.append(f"{', '.join(f'{k}={v}' for k, v in pinned.items())} was set when NumPy loaded: "
                              "BLAS baselines ran on the kernel it pins, which may not be their best")
    progress.step("environment")

    report["validation"] = {}
    if settings.validation_total is not None and kernels:
        settings.validation_budget = settings.validation_total / len(kernels)
    for name, k in kernels.items():
        progress.note(f"validate {name}")
        try:
            report["validation"][name] = validate_kernel(k, levels, settings, progress)
        except Exception as exc:
            report["validation"][name] = {"kernel": name, "status": "error", "error": f"{type(exc).__name__}: {exc}"}
        progress.step(f"validated {name}")

    results = {}
    # benchmarks measure the plain C path: the C backend, stats counting off
    restore_backend = restore_stats = None
    if engram._core is not None:
        if engram.backend_info()["default"] != "c":
            restore_backend = engram.set_backend("c")
            settings.notes.append(f"the default backend was {restore_backend!r}: benchmarks ran on 'c'")
        if engram.stats()["enabled"]:
            restore_stats = True
            engram.stats(enable=False)
            settings.notes.append("engram.stats() counting was on: it was turned off for the benchmarks")
    for wid, w in workloads.items():
        if settings.quick and time.perf_counter() - t0 > 13.0 and settings.min_sample_time > 2e-4:
            # running late: keep >= min_samples samples per contender, but shorter ones
            settings.min_sample_time, settings.timing_budget = 2e-4, 0.02
            settings.notes.append(f"--quick ran late: from {wid} on, samples last >= 0.2 ms and each "
                                  "workload gets ~0.02 s of them")
        progress.note(f"workload {wid}: {w.title}")
        results[wid] = run_workload(w, settings, workloads)
        progress.step(f"{wid} {results[wid]['status']}")
    for wid, w in workloads.items():
        res = results[wid]
        res["goals"] = [check_goal(g, res) for g in w.goals]
        res["seed"] = check_seed_target(res)
    report["workloads"] = results
    report["registered"] = {"kernels": list(kernels), "workloads": list(workloads),
                            "missing_workloads": missing_workloads(workloads),
                            "functions": function_backends()}

    if have_arena:
        progress.note("arena cost")
        try:
            report["arena_cost"] = arena_cost(settings.quick)
        except Exception as exc:
            report["arena_cost"] = {"status": "error", "error": f"{type(exc).__name__}: {exc}"}
        progress.step("arena cost")
        report["arena"] = arena_sizing(settings, progress)
        if report["arena"]["status"] != "ok":
            progress.step("arena sizing skipped", advance=len(ARENA_DIMS))
    else:
        report["arena"] = {"status": "not measured" if settings.arena else "skipped (Settings.arena=False)"}
    if settings.load:
        progress.note(f"recall under load for {settings.load_seconds:g} s")
        report["load"] = under_load(settings, kernels)
        progress.step(f"under load {report['load']['status']}")
    else:
        report["load"] = {"status": "skipped (Settings.load=False)"}
    if settings.scale_out:
        progress.note(f"scaling out: top_k over {settings.scale_out_rows:,} x 768 on a 2-worker LocalCluster")
        report["scale_out"] = scale_out(settings)
        progress.step(f"scaling out {report['scale_out']['status']}")
    else:
        report["scale_out"] = {"status": "not run in --quick (a 3 GB corpus on a cluster takes a minute)"
                               if settings.quick else "skipped (Settings.scale_out=False)"}
    # every measurement above ran on the plain C path; the caller's settings come back now
    if restore_backend is not None:
        engram.set_backend(restore_backend)
    if restore_stats:
        engram.stats(enable=True)
    try:
        report["claims"] = claims(report)
    except Exception as exc:  # a malformed section must not cost the measurements
        report["claims"] = [{"claim": "summary of claims", "measured": f"failed: {type(exc).__name__}: {exc}",
                             "met": None, "verdict": "not measured"}]
    report["seconds"] = time.perf_counter() - t0
    return report


# ---------------------------------------------------------------------------
# The original report's claims, answered
# ---------------------------------------------------------------------------


def _verdict(met) -> str:
    return {True: "met", False: "NOT met", None: "not measured"}[met]


def claims(report: dict) -> list:
    rows = []
    quick = " (quick sizes)" if report["quick"] else ""
    for wid, res in report["workloads"].items():
        seed = res.get("seed")
        if seed:
            measured = f"{seed['measured_us']:.3g} µs mean" if seed["measured_us"] is not None else res.get("error", "failed")
            rows.append({"claim": f"{wid} {res['title']}: target {seed['target_us']:g} µs mean",
                         "measured": measured + quick, "met": seed["met"]})
    answered = {re.split(r"[-_ .:]", wid, maxsplit=1)[0] for wid, r in report["workloads"].items() if r.get("seed")}
    for wid, (what, target) in SEED_TARGETS.items():
        if wid not in answered:
            rows.append({"claim": f"{what}: target {target:g} µs mean",
                         "measured": f"workload {wid} is not registered (or states no seed target)", "met": None})
    if not report["validation"]:
        rows.append({"claim": "10,000 differential cases per kernel, 100 % pass",
                     "measured": "no kernel row is registered", "met": None})
    for name, v in report["validation"].items():
        levels = v.get("levels", {})
        if v.get("status") != "ok" or not levels:
            rows.append({"claim": f"{name}: differential tests 100 % pass", "measured": v.get("error", v.get("status")),
                         "met": None})
            continue
        cases = min(p["cases"] for p in levels.values())
        fails = sum(p["failures"] + p["edge_failures"] for p in levels.values())
        worst = max(max(p["max_error"], p["edge_max_error"]) for p in levels.values())
        rows.append({"claim": f"{name}: 10,000 differential cases per kernel, 100 % pass",
                     "measured": f"{cases:,} cases x {len(levels)} levels, {fails} failures, max error "
                                 f"{worst:.3g} {v['unit']}",
                     # fewer cases than the claim (--quick) cannot confirm it, only refute it
                     "met": False if fails else (True if cases >= 10_000 else None),
                     "verdict": None if fails or cases >= 10_000 else "not confirmed (fewer cases)"})
    arena = report.get("arena", {})
    if arena.get("status") == "ok":
        d768 = arena["dims"].get(768) or arena["dims"].get("768")
        if d768:
            hw = d768["at_default"]["max_need"]
            rows.append({"claim": "arena high water 847 KB at 768-d",
                         "measured": f"{hw / 1000:,.0f} KB for this run's 768-d mix{quick}",
                         "met": hw <= SEED_ARENA_HIGH_WATER_768})
        for d, r in arena["dims"].items():
            size = r["smallest_size"]
            rec = SEED_ARENA_RECOMMENDED[int(d)]
            rows.append({"claim": f"{d}-d: {rec >> 20} MB keeps overflows < 0.1 %",
                         "measured": (f"overflow rate {r['at_default']['overflow_rate']:.1%} at the default "
                                      f"{arena['default_size'] >> 20} MiB; smallest size under 0.1 %: "
                                      f"{size / 2**20:.2f} MiB" if size else "no size up to 1 GiB") + quick,
                         "met": size is not None and size <= rec})
    else:
        rows.append({"claim": "arena: 847 KB high water at 768-d, < 0.1 % overflow with proper sizing",
                     "measured": arena.get("error", arena.get("status")), "met": None})
    cost = report.get("arena_cost")
    if isinstance(cost, list) and cost:
        worst_reset = max(r["arena_reset_ns"] for r in cost)
        rows.append({"claim": "arena reset: sub-microsecond",
                     "measured": f"{worst_reset:.3g} ns per reset", "met": worst_reset < 1000})
        ar = arena.get("dims", {}) if arena.get("status") == "ok" else {}
        per_alloc = max(r["arena_per_alloc_ns"] for r in cost if not r["overflowed"])
        fractions = [r["at_default"]["allocations"] * per_alloc * 1e-9 / r["at_default"]["seconds"]
                     for r in ar.values() if r["at_default"]["seconds"] > 0]
        if fractions:
            rows.append({"claim": "arena overhead < 1 % of kernel runtime",
                         "measured": f"{max(fractions):.3%} (allocations x {per_alloc:.3g} ns / call time, mix)",
                         "met": max(fractions) < 0.01})
    rows.append({"claim": "improvement of 15-35 % over the Rust kernels",
                 "measured": "no Rust baseline exists here; each workload's goals compare with NumPy/SciPy/"
                             "numkong/faiss in the same run instead", "met": None})
    for row in rows:
        row["verdict"] = row.get("verdict") or _verdict(row["met"])
    return rows


# ---------------------------------------------------------------------------
# Output: markdown, JSON, plots
# ---------------------------------------------------------------------------


def fmt_time(seconds) -> str:
    if seconds is None or (isinstance(seconds, float) and not math.isfinite(seconds)):
        return "-"
    for unit, scale in (("s", 1.0), ("ms", 1e-3), ("µs", 1e-6), ("ns", 1e-9)):
        if seconds >= scale or unit == "ns":
            return f"{seconds / scale:.3g} {unit}"
    return str(seconds)


def _table(header: list, rows: list) -> list:
    out = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    out += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return out


def render_markdown(report: dict) -> str:
    env = report["environment"]
    L = [f"# engram performance report{' (--quick)' if report['quick'] else ''}", ""]
    L.append(f"Generated {env['date']} by `python -m engram report{' --quick' if report['quick'] else ''}` "
             f"in {report['seconds']:.1f} s. Every number below was measured in this run on this machine; "
             "a target counts as met only on a ratio or time measured here.")
    L.append("")
    for note in report["notes"]:
        L += [f"> {note}", ""]

    L += ["## Claims of the original report, measured", ""]
    L += _table(["claim", "measured here", "verdict"],
                [[c["claim"], c["measured"], c["verdict"]] for c in report["claims"]])

    L += ["", "## Environment", ""]
    simd = env["simd"]
    blas = "; ".join(f"{p['internal_api']} {p['version']} ({p['architecture']}, {p['num_threads']} threads)"
                     for p in env.get("blas_pools", []) if p.get("user_api") == "blas") or env["blas"]
    overrides = ", ".join(f"{k}={v}" for k, v in env["blas_overrides"].items() if v) or "none"
    peers = ", ".join(f"{k} {v}" if v else f"{k} not installed" for k, v in env["peers"].items())
    L += _table(["", ""], [
        ["CPU", env["cpu"]], ["platform", f"{env['platform']}, Python {env['python']}"],
        ["cores used", f"{env['cores_used']} of {env['cores']}"],
        ["SIMD", f"detected {', '.join(simd['detected'])}; compiled {', '.join(simd['compiled'])}; "
                 f"active {simd['active']}"],
        ["engram", f"{env['engram']} (backend {env['backend']['active']})"],
        ["NumPy", env["numpy"]], ["BLAS", blas], ["BLAS overrides", overrides],
        ["arena", f"{env['arena']['size'] / 2**20:g} MiB per thread, overflow={env['arena']['overflow']}"],
        ["optional peers", peers],
    ])

    reg = report["registered"]
    L += ["", "## What this engram has", ""]
    L += _table(["function", "backend"], [[k, v] for k, v in reg["functions"].items()])
    L.append("")
    L.append(f"Registered kernel rows: {', '.join(reg['kernels']) or 'none'}; workload rows: "
             f"{', '.join(reg['workloads']) or 'none'}.")
    L.append("")
    for k, ids in reg["missing_workloads"].items():
        L.append(f"- Not registered, so not measured: {k} {', '.join(ids)}.")
    L += ["", "## Differential validation (C backend vs float64 reference)", ""]
    rows = []
    for name, v in report["validation"].items():
        if v.get("status") != "ok":
            rows.append([name, "-", "-", "-", "-", "-", v.get("error", v.get("status"))])
            continue
        for lv, p in v["levels"].items():
            note = "stopped at the time budget" if v["stopped_early"] else ""
            if p["examples"]:
                note = "; ".join(f"{e['case']}: {e['why']}" for e in p["examples"][:2])
            rows.append([name, lv, f"{p['cases']:,}", p["failures"], f"{p['max_error']:.3g} {v['unit']}",
                         f"{p['edge_cases']} / {p['edge_failures']} failed", note])
    L += _table(["kernel", "SIMD", "random cases", "failures", "max error", "edge cases", "notes"], rows or [["(no kernel registered)"] + [""] * 6])

    L += ["", "## Benchmarks", ""]
    L.append("Mean, p50, p95 and p99 are per call, over samples of consecutive calls lasting >= 1 ms each "
             "(a long call is one sample), outliers dropped by IQR; contenders of a workload are timed "
             "interleaved and BLAS/OpenMP pools are limited to the threads engram uses. "
             "Speedup = contender's mean / engram's mean.")
    L.append("")
    if not report["workloads"]:
        L.append("(no workload registered)")
    by_kernel: dict = {}
    for wid, res in report["workloads"].items():
        by_kernel.setdefault(res["kernel"], []).append(res)
    for kname, group in by_kernel.items():
        L += [f"### {kname}", ""]
        for res in group:
            L.append(f"**{res['id']}** {res['title']}" + (f" — threads={res['threads']}" if res.get("threads") else ""))
            L.append("")
            if res["status"] != "ok":
                L += [f"Failed: `{res.get('error')}`", ""]
            rows = []
            for name, t in res.get("contenders", {}).items():
                if t["status"] == "ok":
                    sp = f"{t['speedup']:.2f}x" if "speedup" in t else ""
                    rows.append([name, fmt_time(t["mean"]), fmt_time(t["p50"]), fmt_time(t["p95"]),
                                 fmt_time(t["p99"]), sp,
                                 f"{t['samples']}" + (f" (+{t['rejected']} outliers)" if t["rejected"] else "")
                                 + f" x {t['number']}"])
                else:
                    rows.append([name, t["status"], "", "", "", "", t.get("error", "")[:80]])
            if rows:
                L += _table(["contender", "mean", "p50", "p95", "p99", "its time / engram's", "samples x calls"], rows)
                L.append("")
            seed = res.get("seed")
            goal_rows = []
            if seed:
                goal_rows.append([f"original report: {seed['target_us']:g} µs mean",
                                  f"{seed['measured_us']:.3g} µs" if seed["measured_us"] is not None else "-",
                                  _verdict(seed["met"]), ""])
            for g in res.get("goals", []):
                m = g["measured"]
                ms = "-" if m is None else (f"{m:.1%}" if g["kind"] == "bandwidth" else f"{m:.3g}")
                goal_rows.append([g["text"], ms, _verdict(g["met"]), g["note"]])
            if goal_rows:
                L += _table(["goal", "measured", "verdict", "note"], goal_rows)
                L.append("")

    bw_rows = [[wid, f"{r['bandwidth']['bytes'] / 1e6:,.1f} MB", f"{r['bandwidth']['engram_gbps']:.1f}",
                f"{p['gbps']:.1f} ({kind}{', capped at 1 GiB' if p['capped'] else ''})" if p["gbps"] else
                f"probe failed: {p.get('error')}",
                f"{p['fraction']:.0%}" if p["fraction"] is not None else "-"]
               for wid, r in report["workloads"].items() if r.get("bandwidth")
               for kind, p in r["bandwidth"]["probes"].items()]
    if bw_rows:
        L += ["## Memory-bound workloads vs this machine's bandwidth", ""]
        L.append("The probe (engram._core._probe_read / _probe_triad, single thread, at the active SIMD level) "
                 "runs on buffers of the workload's size right after the workload is timed.")
        L.append("")
        L += _table(["workload", "bytes per call", "engram GB/s", "probe GB/s", "engram / probe"], bw_rows)
        L.append("")

    sc_rows = [[wid, r["title"], r.get("scaling_threads"), fmt_time(r["contenders"]["engram@1"]["mean"]),
                fmt_time(r["contenders"]["engram"]["mean"]), f"{r['scaling']:.2f}x"]
               for wid, r in report["workloads"].items() if r.get("scaling") is not None]
    L += ["## Thread scaling", ""]
    if sc_rows:
        L += _table(["workload", "title", "N threads", "1 thread", "N threads", "speedup"], sc_rows)
    else:
        L.append("No multi-threaded workload was measured.")
    L.append("")

    L += ["## Arena", ""]
    cost = report.get("arena_cost")
    if isinstance(cost, list):
        L.append("Allocation cost next to malloc/free of the same sizes, same run (`engram._core._arena_bench`: "
                 "whole loops timed, best of several trials).")
        L.append("")
        L += _table(["block", "blocks per reset", "arena alloc", "arena reset", "arena per block (with reset)",
                     "malloc + free", "arena vs malloc"],
                    [[f"{r['size']:,} B", r["count"], f"{r['arena_alloc_ns']:.3g} ns", f"{r['arena_reset_ns']:.3g} ns",
                      f"{r['arena_per_alloc_ns']:.3g} ns", f"{r['malloc_free_ns']:.3g} ns",
                      f"{r['speedup_vs_malloc']:.1f}x faster" + (" (overflowed)" if r["overflowed"] else "")]
                     for r in cost])
        L.append("")
    arena = report.get("arena", {})
    if arena.get("status") == "ok":
        L.append("Sizing: a seeded mix of top_k batches (1-256 queries, k 10/100) and many-vs-many cosine "
                 "blocks, half with strided inputs the kernels copy into the arena; per-call need = the arena's "
                 "high water in the call, heap overflow included (largest of any thread). The smallest size is found by binary "
                 "search with engram.arena.configure, rerunning the mix at each size.")
        L.append("")
        rows = []
        for d, r in arena["dims"].items():
            a = r["at_default"]
            rows.append([f"{d}", a["calls"], f"{a['max_need'] / 1000:,.0f} KB",
                         f"{a['calls_overflowed']} ({a['overflow_rate']:.1%})",
                         f"{r['smallest_size'] / 2**20:.2f} MiB" if r["smallest_size"] else "> 1 GiB",
                         f"{r['seed_recommended'] >> 20} MB"])
        L += _table(["d", "calls", "largest need per call", f"calls overflowing at {arena['default_size'] >> 20} MiB",
                     "smallest size with < 0.1 % overflow", "original recommendation"], rows)
    else:
        L.append(f"Sizing not measured: {arena.get('error', arena.get('status'))}")
    L.append("")

    L += ["## Under load", ""]
    load_result = report.get("load", {})
    if load_result.get("status") == "ok":
        from . import load

        L.append(f"`python -m engram load --threads {load_result['threads']} --seconds {load_result['seconds']:g} "
                 f"--memories {load_result['store']['memories']}`: the recall pipeline of `engram.recall` "
                 f"(top_k of {load_result['params']['candidates']} candidates, spread, decay, best "
                 f"{load_result['params']['k']}) from {load_result['threads']} Python threads at once on "
                 f"{load_result['store']['description']}, after {load_result['warmup']:g} s of warm-up. "
                 "Every answer is compared with the single-thread answer to the same query; the arena counts "
                 "are the recall threads' own over the timed run.")
        L.append("")
        lines = load.summary_lines(load_result)
        L += [f"- {lines[0]}", ""]
        L += load.stage_table(load_result)
        L.append("")
        L += [f"- {line}" for line in lines[1:]]
    else:
        L.append(f"Not measured: {load_result.get('error', load_result.get('status', 'not run'))}")
    L.append("")

    L += ["## Scaling out", ""]
    so = report.get("scale_out", {})
    if so.get("status") == "ok":
        L.append(f"`engram.dask.top_k` of {so['queries']} queries (k={so['k']}) over a {so['n']:,} x {so['d']} float32 "
                 f"corpus ({so['corpus_bytes'] / 1e9:.1f} GB) in {so['chunks']} row chunks persisted on a "
                 f"{so['workers']}-worker `dask.distributed.LocalCluster` (one thread per worker, the kernel at "
                 f"threads=1 per task), against `engram.top_k(..., threads={so['workers']})` on the same rows in "
                 "memory; same machine, same run. The answers are compared.")
        L.append("")
        L += _table(["side", "best", "median"], [
            ["cluster", fmt_time(so["cluster_seconds"]["best"]), fmt_time(so["cluster_seconds"]["median"])],
            ["in memory", fmt_time(so["in_memory_seconds"]["best"]), fmt_time(so["in_memory_seconds"]["median"])]])
        L.append("")
        L.append(f"- Overhead (median cluster / median in memory): {so['overhead']:.2f}x; goal <= {so['goal']:g}x: "
                 f"{_verdict(so['met'])}. Answers equal: {'yes' if so['equal'] else 'NO'}.")
    else:
        L.append(f"Not measured: {so.get('error', so.get('status', 'not run'))}")
    L.append("")

    L += ["## Method", ""]
    L.append("- Validation: each kernel row's random cases (seeded, NaN/inf/denormal/zero injected by the row) "
             "and edge cases run through the C backend at each SIMD level and through the float64 reference; "
             "errors are in the kernel's own unit; both raising the same exception counts as agreement.")
    L.append("- Timing: see `engram/_timing.py`; goals are checked on means of the same run. A missing optional "
             "peer is reported as not installed, never replaced.")
    L.append("- Instruction counts (deterministic, for the regression gate) come from `python -m engram regress`, "
             "not from this report.")
    L.append("")
    return "\n".join(L)


def _clean(obj):
    """JSON-safe copy: non-finite floats become null, NumPy scalars plain numbers."""
    if isinstance(obj, dict):
        return {str(k): _clean(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_clean(v) for v in obj]
    if isinstance(obj, (np.floating, float)):
        f = float(obj)
        return f if math.isfinite(f) else None
    if isinstance(obj, np.integer):
        return int(obj)
    if isinstance(obj, (str, int, bool)) or obj is None:
        return obj
    return str(obj)


def write_plots(report: dict, path: Path) -> str | None:
    """report.png: speedups against their goals, and latency distributions. Returns why it was skipped."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return "matplotlib is not installed (pip install 'engram[report]'): report.png skipped"
    bars, labels, goals = [], [], []
    for wid, r in report["workloads"].items():
        for g in r.get("goals", []):
            if g["measured"] is not None and g["kind"] in ("speedup", "scaling", "bandwidth"):
                bars.append(g["measured"])
                labels.append(f"{wid} {g['kind']}{(' ' + g['against']) if g['against'] and g['kind'] == 'speedup' else ''}")
                goals.append(g["value"])
    dist = [(wid, name, t["seconds"]) for wid, r in report["workloads"].items()
            for name, t in r.get("contenders", {}).items() if t.get("status") == "ok"]
    fig, axes = plt.subplots(2, 1, figsize=(12, 9))
    ax = axes[0]
    if bars:
        xs = np.arange(len(bars))
        colors = ["tab:green" if b >= g else "tab:red" for b, g in zip(bars, goals)]
        ax.bar(xs, bars, color=colors)
        ax.scatter(xs, goals, marker="_", s=400, color="black", zorder=3, label="goal")
        ax.set_xticks(xs)
        ax.set_xticklabels(labels, rotation=45, ha="right", fontsize=7)
        ax.set_yscale("log")
        ax.set_ylabel("measured (x or fraction)")
        ax.legend()
    else:
        ax.text(0.5, 0.5, "no goal measured", ha="center", va="center")
    ax.set_title("Goals: measured (green met, red not met) vs goal (black)")
    ax = axes[1]
    if dist:
        data = [np.asarray(s) * 1e6 for _, _, s in dist]
        ax.boxplot(data, whis=(1, 99), showfliers=False)
        ax.set_xticks(np.arange(1, len(dist) + 1))
        ax.set_xticklabels([f"{w} {n}" for w, n, _ in dist], rotation=45, ha="right", fontsize=7)
        ax.set_yscale("log")
        ax.set_ylabel("µs per call")
    else:
        ax.text(0.5, 0.5, "no workload timed", ha="center", va="center")
    ax.set_title("Latency distributions (box: p25-p75, whiskers p1-p99)")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return None


def write_outputs(report: dict, out: Path) -> dict:
    out.mkdir(parents=True, exist_ok=True)
    paths = {"md": out / "report.md", "json": out / "report.json", "png": out / "report.png"}
    try:
        skipped = write_plots(report, paths["png"])
    except Exception as exc:  # a plotting problem must not lose the measurements
        skipped = f"plotting failed: {type(exc).__name__}: {exc}"
    if skipped:
        report["notes"].append(skipped)
        paths.pop("png")
    report["plots"] = skipped or "report.png"
    # the JSON first: it holds every number even if rendering the tables fails
    paths["json"].write_text(json.dumps(_clean(report), indent=1, allow_nan=False), encoding="utf-8")
    paths["md"].write_text(render_markdown(report), encoding="utf-8")
    return paths


# ---------------------------------------------------------------------------
# Entry point
# ---------------------------------------------------------------------------


def _reexec_without_blas_overrides(args) -> None:
    """Run again without OPENBLAS_CORETYPE/L2_SIZE, which pin a slower BLAS kernel for the baselines."""
    if not any(os.environ.get(k) for k in BLAS_OVERRIDES) or os.environ.get("ENGRAM_REPORT_REEXEC"):
        return
    if not sys.argv or Path(sys.argv[0]).resolve() != Path(__file__).with_name("__main__.py").resolve():
        return  # called from Python, not as `python -m engram report`: never replace the caller's process
    env = {k: v for k, v in os.environ.items() if k not in BLAS_OVERRIDES}
    env["ENGRAM_REPORT_REEXEC"] = "1"
    argv = [sys.executable, "-m", "engram", "report", "--out", str(args.out)]
    if args.quick:
        argv.append("--quick")
    if args.simd:
        argv += ["--simd", args.simd]
    sys.stdout.flush()
    sys.stderr.flush()
    os.execve(sys.executable, argv, env)


def main(args) -> int:
    _reexec_without_blas_overrides(args)
    from ._kernels import load

    simd = [s.strip() for s in args.simd.split(",") if s.strip()] if args.simd else None
    settings = Settings.for_mode(bool(args.quick), args.out, simd)
    if os.environ.get("ENGRAM_REPORT_REEXEC"):
        settings.notes.append(f"{' and '.join(BLAS_OVERRIDES)} were unset for this run so that the BLAS "
                              "baselines use their best kernel.")
    kernels, workloads = load()
    report = build_report(settings, dict(kernels), dict(workloads))
    paths = write_outputs(report, Path(args.out))
    print(render_markdown(report))
    print(f"wrote {', '.join(str(p) for p in paths.values())}", file=sys.stderr)
    failures = sum(p["failures"] + p["edge_failures"] for v in report["validation"].values()
                   for p in v.get("levels", {}).values())
    return 1 if failures else 0
