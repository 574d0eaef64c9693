"""``python -m engram report``: the files it writes, the timing harness, and the goal logic.

Most tests build the report from small made-up kernel and workload rows
(numpy functions standing in for kernels) whose outcome is known by
construction: a call doing ~100x the work of another is slower, a goal of
2x on it is met and one of 1000x is not.
"""
from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

import engram
from engram import _timing, report
from engram._kernels import Call, Case, Goal, Kernel, Workload, call, load, max_abs_error

ROOT = Path(__file__).resolve().parents[1]


# ---------------------------------------------------------------------------
# Made-up rows
# ---------------------------------------------------------------------------


def scale_reference(x, *, factor=2.0):
    x = np.asarray(x)
    if x.dtype.kind != "f":
        raise TypeError(f"x must be float, got {x.dtype}")
    return x.astype(np.float64) * factor


def scale_float32(x, *, factor=2.0):
    x = np.asarray(x)
    if x.dtype.kind != "f":
        raise TypeError(f"x must be float, got {x.dtype}")
    return x.astype(np.float32) * np.float32(factor)


def scale_wrong_for_negative_factors(x, *, factor=2.0):
    return scale_float32(x, factor=abs(factor))


def scale_case(rng):
    n = int(rng.integers(0, 40))
    x = rng.standard_normal(n).astype(np.float32)
    if n and rng.random() < 0.3:
        x[rng.integers(n)] = rng.choice([np.nan, np.inf, 1e-40, 0.0])
    return Case((x,), {"factor": float(rng.choice([-1.5, 0.5, 2.0]))}, f"n={n}")


def scale_edges():
    return [Case((np.array([np.nan, np.inf, -np.inf, 0.0, 1e-45], np.float32),), {}, "specials"),
            Case((np.zeros(0, np.float32),), {}, "empty"),
            Case((np.array([1, 2], np.int64),), {}, "int input")]


def scale_error(got, expected, case):
    return max_abs_error(got, expected)


def fake_kernel(name, function):
    return Kernel(name=name, reference=scale_reference, random_case=scale_case, error=scale_error,
                  tolerance=lambda case: 1e-5, unit="abs", edge_cases=scale_edges, function=function)


def total(x):
    return float(np.sum(x))


def threaded_sum(x, *, threads=None):
    """Stands in for a kernel that splits work over threads: with n threads it does 1/n of the work."""
    n = threads or 1
    return float(np.sum(x[: len(x) // n]))


def small_setup(quick):
    return {"x": np.ones(2_000, np.float32), "big": np.ones(400_000, np.float32)}


def missing_peer(state):
    raise ImportError("No module named 'not_a_real_peer'")


def broken_setup(quick):
    raise RuntimeError("setup exploded")


FAST = Workload(
    id="F1", kernel="fake_scale", title="sum of 2,000 floats", setup=small_setup,
    run=lambda s: call(total, s["x"]),
    baselines={"big_sum": lambda s: call(total, s["big"]), "peer": missing_peer},
    goals=(Goal("speedup", 2.0, "big_sum"), Goal("speedup", 1e4, "big_sum"), Goal("speedup", 1.0, "peer"),
           Goal("rate", 1e-9), Goal("rate", 1e9), Goal("ratio_to", 1.1, "F2")),
    seed_target_us=1e6, elements=lambda s: s["x"].size,
)
SLOW = Workload(
    id="F2", kernel="fake_scale", title="sum of 400,000 floats", setup=small_setup,
    run=lambda s: call(total, s["big"]),
    goals=(Goal("ratio_to", 1.1, "F1"), Goal("bandwidth", 1e-4), Goal("bandwidth", 100.0, "triad")),
    seed_target_us=1e-3, bytes_moved=lambda s: s["big"].nbytes,
)
THREADED = Workload(
    id="F3", kernel="fake_scale", title="threaded sum", setup=small_setup,
    run=lambda s: call(threaded_sum, s["big"], threads=2), threads=2,
    goals=(Goal("scaling", 1.3), Goal("scaling", 50.0)),
)
BROKEN = Workload(id="F4", kernel="fake_scale", title="fails in setup", setup=broken_setup,
                  run=lambda s: call(total, s["x"]), goals=(Goal("speedup", 1.0, "x"),), seed_target_us=1.0)
ERRORS = Workload(id="F5", kernel="fake_scale", title="engram call raises", setup=small_setup,
                  run=lambda s: call(total, "not an array"), baselines={"big_sum": lambda s: call(total, s["big"])})


def fast_settings(tmp_path, **kw):
    s = report.Settings(out=tmp_path, cases=60, validation_budget=5.0, timing_budget=0.03, max_samples=20,
                        min_sample_time=2e-4, arena=False, load=False, scale_out=False)
    for k, v in kw.items():
        setattr(s, k, v)
    return s


@pytest.fixture(scope="module")
def fake_report(tmp_path_factory):
    kernels = {"fake_scale": fake_kernel("fake_scale", scale_float32),
               "fake_buggy": fake_kernel("fake_buggy", scale_wrong_for_negative_factors),
               "fake_missing": Kernel(name="fake_missing", reference=scale_reference, random_case=scale_case,
                                      error=scale_error, tolerance=lambda c: 0.0, unit="abs")}
    workloads = {w.id: w for w in (FAST, SLOW, THREADED, BROKEN, ERRORS)}
    out = tmp_path_factory.mktemp("fake_report")
    rep = report.build_report(fast_settings(out), kernels, workloads, progress_stream=open(os.devnull, "w"))
    paths = report.write_outputs(rep, out)
    return rep, paths


def goals_of(rep, wid):
    return [(g["kind"], g["value"], g["met"]) for g in rep["workloads"][wid]["goals"]]


# ---------------------------------------------------------------------------
# Goal logic on made-up rows
# ---------------------------------------------------------------------------


def test_speedup_rate_and_missing_peer_goals(fake_report):
    rep, _ = fake_report
    res = rep["workloads"]["F1"]
    assert res["status"] == "ok"
    assert res["contenders"]["big_sum"]["speedup"] > 2.0  # 200x the data to sum
    assert res["contenders"]["peer"]["status"] == "not installed"
    assert "not_a_real_peer" in res["contenders"]["peer"]["error"]
    assert goals_of(rep, "F1") == [
        ("speedup", 2.0, True), ("speedup", 1e4, False), ("speedup", 1.0, None),
        ("rate", 1e-9, True), ("rate", 1e9, False), ("ratio_to", 1.1, True)]
    peer_goal = res["goals"][2]
    assert peer_goal["measured"] is None and "not installed" in peer_goal["note"]
    assert res["goals"][0]["measured"] == pytest.approx(
        res["contenders"]["big_sum"]["mean"] / res["contenders"]["engram"]["mean"])


def test_ratio_to_bandwidth_and_seed_target(fake_report):
    rep, _ = fake_report
    res = rep["workloads"]["F2"]
    assert goals_of(rep, "F2") == [("ratio_to", 1.1, False), ("bandwidth", 1e-4, True),
                                  ("bandwidth", 100.0, False)]
    # the other workload's engram call was timed in the same rounds, and is the faster one
    assert res["contenders"]["engram:F1"]["mean"] < res["contenders"]["engram"]["mean"]
    bw = res["bandwidth"]
    assert bw["bytes"] == 1_600_000 and set(bw["probes"]) == {"read", "triad"}
    for kind, probe in bw["probes"].items():
        assert probe["kind"] == kind and probe["gbps"] > 0 and probe["bytes"] >= 1_600_000 - 16
        assert probe["fraction"] == pytest.approx(bw["engram_gbps"] / probe["gbps"])
    assert rep["workloads"]["F1"]["seed"]["met"] is True  # 1 s target
    assert res["seed"]["met"] is False  # 1 ns target
    assert res["seed"]["measured_us"] == pytest.approx(res["contenders"]["engram"]["mean"] * 1e6)


def test_scaling_compares_one_thread_with_n(fake_report):
    rep, _ = fake_report
    res = rep["workloads"]["F3"]
    assert res["scaling_threads"] == 2
    assert res["scaling"] == pytest.approx(res["contenders"]["engram@1"]["mean"] / res["contenders"]["engram"]["mean"])
    assert goals_of(rep, "F3") == [("scaling", 1.3, True), ("scaling", 50.0, False)]


def test_failing_workloads_are_recorded_not_fatal(fake_report):
    rep, _ = fake_report
    broken = rep["workloads"]["F4"]
    assert broken["status"] == "error" and "setup exploded" in broken["error"]
    assert broken["goals"][0]["met"] is None and "setup exploded" in broken["goals"][0]["note"]
    assert broken["seed"] == {"target_us": 1.0, "measured_us": None, "met": None}
    raising = rep["workloads"]["F5"]
    assert raising["status"] == "error"
    assert raising["contenders"]["engram"]["status"] == "error"
    assert raising["contenders"]["big_sum"]["status"] == "ok"  # the baseline still ran


def test_validation_counts_cases_failures_and_errors(fake_report):
    rep, _ = fake_report
    good, buggy = rep["validation"]["fake_scale"], rep["validation"]["fake_buggy"]
    levels = report.usable_levels()
    assert list(good["levels"]) == levels
    for p in good["levels"].values():
        assert p["cases"] == 60 and p["failures"] == 0 and p["edge_cases"] == 3 and p["edge_failures"] == 0
        assert 0 < p["max_error"] <= 1e-5  # float32 vs float64: small, not zero
    for p in buggy["levels"].values():
        assert 0 < p["failures"] < p["cases"]  # only negative factors are wrong
        assert p["examples"] and "tolerance" in p["examples"][0]["why"]
    assert rep["validation"]["fake_missing"]["status"] == "not built"


def test_claims_and_markdown_say_what_was_met(fake_report):
    rep, paths = fake_report
    text = paths["md"].read_text()
    claims = {c["claim"]: c for c in rep["claims"]}
    assert claims["F1 sum of 2,000 floats: target 1e+06 µs mean"]["met"] is True
    assert claims["F2 sum of 400,000 floats: target 0.001 µs mean"]["met"] is False
    assert claims["fake_buggy: 10,000 differential cases per kernel, 100 % pass"]["met"] is False
    # 60 cases cannot confirm a 10,000-case claim
    assert claims["fake_scale: 10,000 differential cases per kernel, 100 % pass"]["met"] is None
    assert "NOT met" in text and "not installed" in text and "setup exploded" in text
    data = json.loads(paths["json"].read_text())
    assert set(data["workloads"]) == {"F1", "F2", "F3", "F4", "F5"}
    assert data["workloads"]["F1"]["contenders"]["engram"]["samples"] >= 10


def test_validation_restores_the_simd_level(tmp_path):
    before = engram.simd_info()["active"]
    report.validate_kernel(fake_kernel("fake_scale", scale_float32), report.usable_levels()[:1],
                           fast_settings(tmp_path, cases=3))
    assert engram.simd_info()["active"] == before


def test_simd_option_limits_validation_levels(tmp_path):
    rep = report.build_report(fast_settings(tmp_path, cases=5, simd=["scalar", "neon-not-here"]),
                              {"fake_scale": fake_kernel("fake_scale", scale_float32)}, {},
                              progress_stream=open(os.devnull, "w"))
    assert list(rep["validation"]["fake_scale"]["levels"]) == ["scalar"]
    assert any("neon-not-here" in n for n in rep["notes"])


def test_quick_settings_shrink_and_say_so():
    s = report.Settings.for_mode(True, ".")
    assert s.cases < 10_000 and s.timing_budget < 1 and s.notes and "--quick" in s.notes[0]
    assert report.Settings.for_mode(False, ".").cases == 10_000


# ---------------------------------------------------------------------------
# Timing harness
# ---------------------------------------------------------------------------


def test_compiled_loop_passes_positional_and_keyword_arguments():
    seen = []
    loop = _timing.compile_loop(call(lambda a, b, *, c: seen.append((a, b, c)), 1, "two", c=3.0))
    assert loop(3) >= 0
    assert seen == [(1, "two", 3.0)] * 3


def test_measure_times_good_calls_and_never_an_erroring_one():
    runs = {"bad": 0}

    def bad():
        runs["bad"] += 1
        raise ValueError("no")

    x = np.ones(1000)
    r = _timing.measure({"sum": call(np.sum, x), "bad": Call(bad)}, min_samples=12, budget=0.01,
                        min_sample_time=1e-4)
    assert isinstance(r["bad"], ValueError) and runs["bad"] == 1  # the check call only
    t = r["sum"]
    assert len(t.samples) + t.rejected >= 12
    assert t.number * t.mean >= 1e-4 * 0.5  # a sample lasted about min_sample_time
    assert t.min <= t.p50 <= t.p95 <= t.p99 <= t.max


def test_contenders_are_interleaved():
    order = []
    r = _timing.measure({n: Call(order.append, (n,)) for n in "ab"}, min_samples=10, budget=0.0,
                        min_sample_time=1e-6, checked=True)
    assert set(r) == {"a", "b"}
    # after calibration, rounds alternate which contender goes first
    timed = [order[i] for i in range(1, len(order)) if order[i] != order[i - 1]]
    assert len(timed) >= 10


def test_iqr_outlier_removal():
    values = [1.0] * 20 + [1.1] * 20 + [50.0]
    kept, rejected = _timing.drop_outliers(values)
    assert rejected == 1 and 50.0 not in kept
    t = _timing.summarize(values, 1)
    assert t.max == 1.1 and t.mean == pytest.approx(1.05)


# ---------------------------------------------------------------------------
# Arena sizing search, on the arena test hook (no similarity kernel needed)
# ---------------------------------------------------------------------------


def test_smallest_arena_size_is_the_first_without_overflow():
    alloc = engram._core._arena_allocate
    calls = [("small", Call(alloc, ([100_000, 200_000],), {}))] * 5 + [("large", Call(alloc, ([700_000, 400_000],), {}))]
    original = engram.arena.config()
    try:
        engram.arena.configure(size="2M")
        at_default = report.run_arena_mix(calls)
        assert at_default["calls_overflowed"] == 0 and at_default["max_need"] >= 1_100_000
        found = report.smallest_size(calls, at_default["max_need"])
        size = found["size"]
        assert size >= at_default["max_need"] and size % (64 << 10) == 0
        engram.arena.configure(size=size - (64 << 10))
        assert report.run_arena_mix(calls)["calls_overflowed"] == 1  # the large call
    finally:
        engram.arena.configure(size=original["size"])


# ---------------------------------------------------------------------------
# The command itself
# ---------------------------------------------------------------------------


def test_quick_report_writes_every_registered_row(tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith("ENGRAM_")}
    env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    env["OPENBLAS_CORETYPE"] = "Haswell"  # pins a slower BLAS kernel: the report must run without it
    t0 = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "engram", "report", "--quick", "--out", str(tmp_path)],
                          capture_output=True, text=True, env=env, timeout=120)
    elapsed = time.perf_counter() - t0
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert (tmp_path / "report.md").is_file() and (tmp_path / "report.json").is_file()
    has_mpl = importlib.util.find_spec("matplotlib") is not None
    assert (tmp_path / "report.png").is_file() == has_mpl
    data = json.loads((tmp_path / "report.json").read_text())
    kernels, workloads = load()
    assert set(data["validation"]) == set(kernels)
    assert set(data["workloads"]) == set(workloads)
    assert data["quick"] is True and data["environment"]["numpy"] == np.__version__
    assert data["environment"]["blas_overrides"]["OPENBLAS_CORETYPE"] is None
    assert any("OPENBLAS_CORETYPE" in note for note in data["notes"])
    assert "# engram performance report" in proc.stdout
    assert "[" in proc.stderr and "/" in proc.stderr  # the progress bar
    assert elapsed < 40, f"--quick took {elapsed:.1f} s"


def test_clone_case_keeps_layouts_and_aliasing():
    a = np.arange(40, dtype=np.float32).reshape(5, 8)
    fortran = np.asfortranarray(a)[:, 2:]
    reversed_strided = a[::-2, 1::3]
    case = Case((reversed_strided, fortran, {"x": a}), {"out": a[1]}, "label")
    copy = report.clone_case(case)
    for got, original in ((copy.args[0], reversed_strided), (copy.args[1], fortran), (copy.args[2]["x"], a),
                          (copy.kwargs["out"], a[1])):
        assert got.strides == original.strides and np.array_equal(got, original)
        assert not np.shares_memory(got, original)
    assert np.shares_memory(copy.kwargs["out"], copy.args[2]["x"])  # out= still aliases its input
    copy.kwargs["out"][:] = -1
    assert a[1, 0] == 8  # the original is untouched
    frozen = a.copy()
    frozen.flags.writeable = False
    assert not report.clone_case(Case((frozen,), {}))[0][0].flags.writeable


def test_arena_sizing_end_to_end_with_stand_in_kernels(tmp_path, monkeypatch):
    """top_k/cosine stand-ins that take what a real kernel would from the arena: a copy of a
    strided input, k (score, id) pairs per query, one block of scores."""
    alloc = engram._core._arena_allocate

    def scratch(x, extra):
        copy = 0 if x.strides[-1] == x.itemsize else x.size * 4
        alloc([b for b in (copy, extra) if b])

    def top_k(queries, corpus, k, **kw):
        scratch(queries, (queries.shape[0] if queries.ndim == 2 else 1) * k * 12 + 4096 * 4)
        return None

    def cosine_similarity(x, y, **kw):
        scratch(x, 256 * 256 * 4)
        return None

    for name, fn in (("top_k", top_k), ("cosine_similarity", cosine_similarity)):
        monkeypatch.setattr(engram._core, name, fn, raising=False)
        monkeypatch.setattr(engram, name, fn, raising=False)
    before = engram.arena.config()
    out = report.arena_sizing(fast_settings(tmp_path, arena_calls=12, arena_corpus=300))
    assert engram.arena.config() == before  # restored
    assert out["status"] == "ok", out.get("error")
    needs = [out["dims"][d]["at_default"]["max_need"] for d in report.ARENA_DIMS]
    assert needs == sorted(needs) and needs[0] > 0  # a wider d copies more
    for d in report.ARENA_DIMS:
        r = out["dims"][d]
        assert r["smallest_size"] >= r["at_default"]["max_need"]
        assert r["smallest_size"] - (64 << 10) < r["at_default"]["max_need"] or r["tried"]
        assert min(rate for size, rate in r["tried"].items() if int(size) >= r["smallest_size"]) == 0.0
    rep = {"quick": True, "workloads": {}, "validation": {}, "arena": out, "arena_cost": report.arena_cost(True)}
    claims = {c["claim"]: c for c in report.claims(rep)}
    high_water = claims["arena high water 847 KB at 768-d"]
    assert high_water["met"] == (out["dims"][768]["at_default"]["max_need"] <= 847_000)
    assert claims["1536-d: 4 MB keeps overflows < 0.1 %"]["met"] == (out["dims"][1536]["smallest_size"] <= 4 << 20)
    assert claims["arena reset: sub-microsecond"]["met"] is True


def test_load_and_scale_out_sections_run_on_the_plain_c_path(tmp_path):
    """Small versions of the under-load and scaling-out sections, in a report started on the
    reference backend with stats on: both measure the C core, and both render."""
    pytest.importorskip("distributed")
    previous = engram.set_backend("reference")
    engram.stats(enable=True)
    try:
        settings = fast_settings(tmp_path, load=True, load_seconds=0.5, load_memories=2_000,
                                 scale_out=True, scale_out_rows=20_000)
        rep = report.build_report(settings, {k: v for k, v in load()[0].items()}, {},
                                  progress_stream=open(os.devnull, "w"))
        assert engram.get_backend() == "reference" and engram.stats()["enabled"]  # restored
    finally:
        engram.set_backend(previous)
        engram.stats(enable=False)
    assert rep["load"]["status"] == "ok", rep["load"]
    assert rep["load"]["engine"]["backend"] == "c"
    out = rep["scale_out"]
    assert out["status"] == "ok", out
    assert out["equal"] and out["overhead"] > 0 and out["n"] == 20_000 and out["backend"] == "c"
    md = report.render_markdown(rep)
    assert "Under load" in md and "Scaling out" in md


def test_benchmarks_run_on_the_plain_c_path(tmp_path):
    seen = set()
    w = Workload(id="B1", kernel="fake", title="records the backend", setup=lambda q: {},
                 run=lambda s: call(lambda: seen.add((engram.get_backend(), engram.stats()["enabled"]))))
    previous = engram.set_backend("reference")
    engram.stats(enable=True)
    try:
        rep = report.build_report(fast_settings(tmp_path), {}, {"B1": w}, progress_stream=open(os.devnull, "w"))
        assert seen == {("c", False)}
        assert engram.get_backend() == "reference" and engram.stats()["enabled"]  # restored
        assert any("benchmarks ran on 'c'" in n for n in rep["notes"])
    finally:
        engram.set_backend(previous)
        engram.stats(enable=False)
