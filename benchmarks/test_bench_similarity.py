"""Benchmarks P1-P7 of the similarity kernels against their baselines, in one run.

Every workload row of engram/_cases.py whose kernel is cosine_similarity,
normalize or top_k is benchmarked with each of its contenders: ``engram``,
each baseline (numpy, numkong, faiss; a missing package is skipped as "not
installed", never replaced), ``engram@1`` (one thread) where a goal is about
thread scaling, ``read-probe`` (a STREAM-style pure read of the same
corpus, ``_core._probe_read``) where a goal is a share of the machine's read
bandwidth, and ``read-probe@N`` (N threads reading parts of it at once) where
a memory-bound workload has a scaling goal.  Contenders of a workload run one after another on the same
inputs, set up once, so their ratios mean something on a shared machine;
a summary after the last one prints every goal's measured ratio.

    python -m pytest benchmarks/test_bench_similarity.py --benchmark-only -s
    ENGRAM_BENCH_QUICK=1 ...   # the workloads' reduced sizes
"""
from __future__ import annotations

import os

# A BLAS pinned to an old kernel would make the baselines slower than they are.
for _name in ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE"):
    os.environ.pop(_name, None)

import contextlib  # noqa: E402
import gc  # noqa: E402
import math  # noqa: E402
import threading  # noqa: E402
import time  # noqa: E402

import numpy as np  # noqa: E402
import pytest  # noqa: E402

import engram  # noqa: E402
from engram import _core  # noqa: E402
from engram._kernels import Call, load  # noqa: E402

KERNELS = ("cosine_similarity", "normalize", "top_k")
MIN_ROUNDS = 10
MAX_ROUNDS = 60
ROUND_SECONDS = 1e-3  # a round repeats the call until it lasts this long
BUDGET_SECONDS = 1.5  # rounds beyond the minimum while under this budget

_, _WORKLOADS = load()
WORKLOADS = {wid: w for wid, w in _WORKLOADS.items() if w.kernel in KERNELS}


def _contenders(w) -> list[str]:
    names = ["engram", *w.baselines]
    scaling = any(g.kind == "scaling" for g in w.goals)
    if scaling:
        names.append("engram@1")
    if any(g.kind == "bandwidth" for g in w.goals) or (scaling and w.bytes_moved):
        names.append("read-probe")
    if scaling and w.bytes_moved:
        # what the memory system gives two cores: the bound of a memory-bound scaling goal
        names.append(f"read-probe@{w.threads}")
    return names


CASES = [(wid, name) for wid, w in WORKLOADS.items() for name in _contenders(w)]

_current: dict = {"id": None, "state": None}
_results: dict = {}  # (workload id, contender) -> IQR-filtered mean seconds
_best: dict = {}  # (workload id, contender) -> fastest round, seconds


def _quick(config) -> bool:
    if os.environ.get("ENGRAM_BENCH_QUICK", "") not in ("", "0"):
        return True
    try:
        return bool(config.getoption("--engram-quick"))
    except ValueError:
        return False


def _state(w, quick):
    """The workload's inputs, set up once for all its contenders (the previous ones are freed)."""
    if _current["id"] != w.id:
        _current["id"] = _current["state"] = None
        gc.collect()
        _current["state"] = w.setup(quick)
        _current["id"] = w.id
    return _current["state"]


def _with_threads(c: Call, n: int) -> Call:
    return Call(c.fn, c.args, dict(c.kwargs, threads=n))


def _probe_data(state) -> np.ndarray:
    """The corpus the workload streams, as the flat float32 array the read probe takes."""
    return state["corpus"].reshape(-1)


def _read_probe_call(state) -> Call:
    return Call(_core._probe_read, (_probe_data(state), 1), {})


def _parallel_read(parts):
    """Each part read by its own thread at once (the probe releases the GIL)."""
    threads = [threading.Thread(target=_core._probe_read, args=(p, 1)) for p in parts[1:]]
    for t in threads:
        t.start()
    _core._probe_read(parts[0], 1)
    for t in threads:
        t.join()


def _parallel_read_call(state, n) -> Call:
    data = _probe_data(state)
    step = -(-data.size // n)
    return Call(_parallel_read, ([data[i:i + step] for i in range(0, data.size, step)],), {})


@contextlib.contextmanager
def _library_threads(n):
    """BLAS and OpenMP pools limited to the threads engram uses (None: all cores for both)."""
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:
        yield
        return
    with threadpool_limits(limits=n or engram._core._cpu_count()):
        yield


def _iqr_mean(data) -> float:
    data = np.sort(np.asarray(data, dtype=np.float64))
    q1, q3 = np.percentile(data, [25, 75])
    keep = data[(data >= q1 - 1.5 * (q3 - q1)) & (data <= q3 + 1.5 * (q3 - q1))]
    return float(keep.mean() if keep.size else data.mean())


@pytest.mark.parametrize("workload_id, contender", CASES, ids=[f"{w}-{c}" for w, c in CASES])
def test_similarity(workload_id, contender, benchmark, request):
    w = WORKLOADS[workload_id]
    quick = _quick(request.config)
    state = _state(w, quick)
    if contender == "engram":
        c = w.run(state)
    elif contender == "engram@1":
        c = _with_threads(w.run(state), 1)
    elif contender == "read-probe":
        c = _read_probe_call(state)
    elif contender.startswith("read-probe@"):
        c = _parallel_read_call(state, int(contender.split("@")[1]))
    else:
        try:
            c = w.baselines[contender](state)
        except ImportError as exc:
            pytest.skip(f"{contender} not installed ({exc})")
    benchmark.group = f"{workload_id}: {w.title}"
    benchmark.extra_info.update(workload=workload_id, contender=contender, quick=quick)
    with _library_threads(w.threads):
        c.fn(*c.args, **c.kwargs)  # warm-up: page faults, lazy initialisation
        t0 = time.perf_counter()
        c.fn(*c.args, **c.kwargs)
        once = max(time.perf_counter() - t0, 1e-9)
        iterations = max(1, math.ceil(ROUND_SECONDS / once))
        rounds = int(min(MAX_ROUNDS, max(MIN_ROUNDS, BUDGET_SECONDS / (once * iterations))))
        benchmark.pedantic(c.fn, args=c.args, kwargs=c.kwargs, rounds=rounds, iterations=iterations,
                           warmup_rounds=1)
    if benchmark.stats is not None:  # None under --benchmark-disable
        mean = _iqr_mean(benchmark.stats.stats.data)
        benchmark.extra_info["iqr_mean"] = mean
        _results[(workload_id, contender)] = mean
        _best[(workload_id, contender)] = float(min(benchmark.stats.stats.data))
        if contender == "read-probe":
            nbytes = w.bytes_moved(state)
            _results[(workload_id, "bytes")] = nbytes
            _results[(workload_id, "probe-best")] = nbytes / (_core._probe_read(_probe_data(state), 5)[0] * 1e9)


def _ratio(g, wid, w, times):
    """The goal's ratio from `times` ((workload, contender) -> seconds), or None."""
    eng = times.get((wid, "engram"))
    if eng is None:
        return None
    if g.kind == "speedup":
        base = times.get((wid, g.against))
        return None if base is None else base / eng
    if g.kind == "bandwidth":
        probe = times.get((wid, "read-probe"))  # the probe reads the same bytes
        return None if probe is None else probe / eng
    if g.kind == "ratio_to":
        other = times.get((g.against, "engram"))
        return None if other is None else eng / other
    if g.kind == "scaling":
        one = times.get((wid, "engram@1"))
        return None if one is None else one / eng
    return None


def _goal_lines() -> list[str]:
    lines = []
    for wid, w in WORKLOADS.items():
        eng = _results.get((wid, "engram"))
        if eng is None:
            continue
        lines.append(f"{wid} {w.title}: engram {eng * 1e6:.3f} us")
        for g in w.goals:
            if g.kind == "bandwidth":
                probe = _results.get((wid, "read-probe"))
                nbytes, best = _results.get((wid, "bytes")), _results.get((wid, "probe-best"))
                if nbytes and probe:
                    lines.append(f"    engram {nbytes / eng / 1e9:.1f} GB/s; probe mean {nbytes / probe / 1e9:.1f} "
                                 f"GB/s, best {nbytes / best / 1e9:.1f} GB/s (engram / best probe "
                                 f"{best / eng:.3f})")
            if g.kind == "scaling":
                probe1, probe_n = _results.get((wid, "read-probe")), _results.get((wid, f"read-probe@{w.threads}"))
                if probe1 and probe_n:
                    lines.append(f"    the read probe itself scales {probe1 / probe_n:.3f}x from 1 to "
                                 f"{w.threads} threads (the bound for a memory-bound kernel)")
            got, fastest = _ratio(g, wid, w, _results), _ratio(g, wid, w, _best)
            if got is None:
                lines.append(f"    {g.kind} {g.against}: not measured")
                continue
            met = got <= g.value if g.kind == "ratio_to" else got >= g.value
            want = f"<= {g.value:g}" if g.kind == "ratio_to" else f">= {g.value:g}"
            lines.append(f"    {g.kind:9s} {g.against or '':8s} {got:8.3f}  (goal {want}) "
                         f"{'met' if met else 'NOT met'}; fastest rounds {fastest:.3f}  {g.text}")
    return lines


@pytest.fixture(scope="module", autouse=True)
def goals_summary(request):
    """After the last benchmark: every goal's ratio from the timings of this run."""
    yield
    lines = _goal_lines()
    reporter = request.config.pluginmanager.get_plugin("terminalreporter")
    capture = request.config.pluginmanager.get_plugin("capturemanager")
    if not lines or reporter is None:
        return
    with capture.global_and_fixture_disabled() if capture else contextlib.nullcontext():
        reporter.write_line("")
        reporter.write_line("similarity goals: ratios of IQR-filtered means measured in this run "
                            "(and of the fastest rounds, less sensitive to other load on the machine):")
        for line in lines:
            reporter.write_line(line)
