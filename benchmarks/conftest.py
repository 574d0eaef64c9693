"""Shared pytest-benchmark glue: every benchmark is a registry workload × contender.

A kernel's bench file is two lines plus a filter::

    KERNELS = ("cosine_similarity", "top_k")      # or WORKLOADS = ("P1", "P2")

    def test_similarity(bench_case, benchmark):
        bench_case.run(benchmark)

``bench_case`` is parametrised over the selected workloads (engram/_cases.py)
and, for each, over its contenders: ``engram``, each baseline, and
``engram@1`` (one thread) where a workload has a scaling goal.  Contenders
of one workload run one after the other in the same session on the same
inputs (set up once), so their ratios mean something; the summary at the end
prints them against the workload's speedup goals.  For ratios timed
interleaved, and every other goal, run ``python -m engram report``.

Each benchmark runs at least 10 rounds (``benchmark.pedantic``), each round
calling the function enough times to last >= 1 ms; pytest-benchmark's own
statistics are kept, and ``extra_info["iqr"]`` holds them recomputed with
outliers removed by the IQR rule.  A baseline whose package is missing is
skipped with "not installed", never replaced.  BLAS/OpenMP pools are limited
to the threads engram uses.  ``--engram-quick`` uses the workloads' reduced
sizes.
"""
from __future__ import annotations

import os
import sys

# A BLAS pinned to an old kernel would make the baselines slower than they are:
# drop the overrides before NumPy (and its OpenBLAS) loads.
_BLAS_OVERRIDES = ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE")
_overrides_too_late = "numpy" in sys.modules and any(os.environ.get(k) for k in _BLAS_OVERRIDES)
for _k in _BLAS_OVERRIDES:
    os.environ.pop(_k, None)

import pytest  # noqa: E402

from engram import _timing, report  # noqa: E402
from engram._kernels import load  # noqa: E402

MIN_ROUNDS = 10
MAX_ROUNDS = 100
ROUND_BUDGET = 1.0  # seconds of rounds per benchmark beyond the minimum

_results: dict = {}  # workload id -> contender -> IQR-filtered mean seconds
_notes: list = []  # lines for the summary, from bench_note


@pytest.fixture
def bench_note():
    """Add a line to the summary printed after the benchmarks (ratios a test measured itself)."""
    return _notes.append


def pytest_addoption(parser):
    parser.addoption("--engram-quick", action="store_true",
                     help="benchmark the workloads at their reduced (--quick) sizes")


def pytest_report_header(config):
    lines = []
    try:
        from threadpoolctl import threadpool_info

        for pool in threadpool_info():
            if pool.get("user_api") == "blas":
                lines.append(f"BLAS: {pool.get('internal_api')} {pool.get('version')} "
                             f"kernel {pool.get('architecture')}, {pool.get('num_threads')} threads")
    except ImportError:
        lines.append("BLAS: threadpoolctl not installed, kernel unknown")
    if _overrides_too_late:
        lines.append(f"warning: {', '.join(_BLAS_OVERRIDES)} were set before NumPy loaded; "
                     "unset them in the command for baselines at their best")
    return lines


def pytest_benchmark_update_machine_info(config, machine_info):
    import engram

    machine_info["engram"] = {"version": engram.__version__, "simd": engram.simd_info(),
                              "blas": report.environment()["blas_pools"]}


def _matches(wid: str, w, selectors) -> bool:
    return any(wid == s or wid.startswith(s + "-") or w.kernel == s for s in selectors)


def contenders_of(w) -> list:
    names = ["engram", *w.baselines]
    if any(g.kind == "scaling" for g in w.goals):
        names.append("engram@1")
    return names


def pytest_generate_tests(metafunc):
    if "bench_case" not in metafunc.fixturenames:
        return
    _, workloads = load()
    selectors = getattr(metafunc.module, "WORKLOADS", None) or getattr(metafunc.module, "KERNELS", None)
    params = []
    for wid, w in workloads.items():
        if selectors is None or _matches(wid, w, selectors):
            params += [pytest.param((wid, name), id=f"{wid}-{name}") for name in contenders_of(w)]
    metafunc.parametrize("bench_case", params, indirect=True)


class _States:
    """The inputs of the workload being benchmarked; the previous one is dropped (they can be large)."""

    def __init__(self, quick: bool):
        self.quick = quick
        self.wid = None
        self.state = None
        self.error = None

    def get(self, wid, w):
        if wid != self.wid:
            self.wid, self.state, self.error = wid, None, None
            import gc

            gc.collect()
            try:
                self.state = w.setup(self.quick)
            except Exception as exc:
                self.error = exc
        if self.error is not None:
            raise self.error
        return self.state


@pytest.fixture(scope="session")
def _workload_states(request):
    return _States(request.config.getoption("--engram-quick"))


class BenchCase:
    def __init__(self, wid, w, contender, state):
        self.wid, self.workload, self.contender, self.state = wid, w, contender, state

    def call(self):
        w = self.workload
        if self.contender == "engram":
            return w.run(self.state)
        if self.contender == "engram@1":
            c = report.with_threads(w.run(self.state), 1)
            if c is None:
                pytest.skip("the engram call takes no threads argument")
            return c
        try:
            return w.baselines[self.contender](self.state)
        except ImportError as exc:
            pytest.skip(f"{self.contender} not installed ({exc})")

    def run(self, benchmark):
        w = self.workload
        c = self.call()
        _, exc = _timing.check(c)
        if exc is not None:
            pytest.fail(f"{self.wid} {self.contender} raised {type(exc).__name__}: {exc}")
        threads = w.threads or 1
        with report.limit_library_threads(threads):
            number, t = _timing.calibrate(_timing.compile_loop(c))
            rounds = int(max(MIN_ROUNDS, min(MAX_ROUNDS, ROUND_BUDGET / max(t, 1e-9))))
            benchmark.pedantic(c.fn, args=c.args, kwargs=c.kwargs, rounds=rounds, iterations=number,
                               warmup_rounds=1)
        data = list(benchmark.stats.stats.data)
        filtered = _timing.summarize(data, number)
        benchmark.extra_info.update(
            workload=self.wid, title=w.title, contender=self.contender, threads=threads,
            seed_target_us=w.seed_target_us,
            goals=[{"kind": g.kind, "value": g.value, "against": g.against} for g in w.goals],
            iqr={k: v for k, v in filtered.as_dict().items() if k != "seconds"},
        )
        _results.setdefault(self.wid, {})[self.contender] = filtered.mean


@pytest.fixture
def bench_case(request, _workload_states):
    wid, contender = request.param
    _, workloads = load()
    w = workloads[wid]
    try:
        state = _workload_states.get(wid, w)
    except Exception as exc:
        pytest.fail(f"{wid} setup failed: {type(exc).__name__}: {exc}")
    return BenchCase(wid, w, contender, state)


def pytest_terminal_summary(terminalreporter):
    if not (_results or _notes):
        return
    _, workloads = load()
    tr = terminalreporter
    tr.section("engram: ratios in this run (IQR-filtered means)")
    for line in _notes:
        tr.write_line(line)
    for wid, by_name in _results.items():
        eng = by_name.get("engram")
        if eng is None:
            continue
        w = workloads.get(wid)
        parts = []
        for name, t in by_name.items():
            if name == "engram":
                continue
            ratio = t / eng
            goal = next((g for g in (w.goals if w else ()) if g.kind == "speedup" and g.against == name), None)
            if name == "engram@1":
                goal = next((g for g in (w.goals if w else ()) if g.kind == "scaling"), None)
            verdict = "" if goal is None else (" met" if ratio >= goal.value else f" NOT met (goal {goal.value:g}x)")
            parts.append(f"{name} {ratio:.2f}x{verdict}")
        tr.write_line(f"{wid}: engram {_timing_fmt(eng)}; " + ("; ".join(parts) or "no baseline timed"))


def _timing_fmt(seconds: float) -> str:
    return report.fmt_time(seconds)
