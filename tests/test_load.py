"""``python -m engram load``: short runs of the sustained multi-threaded recall test."""
from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import engram
from engram import load
from engram.recall import STAGES, MemoryStore

ROOT = Path(__file__).resolve().parent.parent
SMALL = ["--memories", "4000", "--dim", "128", "--warmup", "0.3"]


def run_cli(*args, env=None, timeout=120):
    full_env = {k: v for k, v in os.environ.items() if not k.startswith("ENGRAM_")}
    full_env["PYTHONPATH"] = str(ROOT) + os.pathsep + full_env.get("PYTHONPATH", "")
    full_env.update(env or {})
    return subprocess.run([sys.executable, "-m", "engram", "load", *args], capture_output=True, text=True,
                          env=full_env, timeout=timeout)


MS = r"([0-9.]+) ms"


def parse_table(text: str) -> dict:
    """The numbers of the printed table; fails the test if a line is missing or malformed."""
    out = {}
    m = re.search(r"^throughput: ([0-9,.]+) recalls/s \(([0-9,]+) recalls in ([0-9.]+) s; per thread ([0-9, ]+)\)$",
                  text, re.M)
    assert m, text
    out["throughput"] = float(m.group(1).replace(",", ""))
    out["recalls"] = int(m.group(2).replace(",", ""))
    out["elapsed"] = float(m.group(3))
    out["per_thread"] = [int(x.replace(",", "")) for x in m.group(4).split(", ")]
    assert re.search(r"^\| stage \| p50 \| p95 \| p99 \| mean \| max \|$", text, re.M), text
    out["stages"] = {}
    for name in STAGES + ("total",):
        m = re.search(rf"^\| {name} \| {MS} \| {MS} \| {MS} \| {MS} \| {MS} \|$", text, re.M)
        assert m, f"no row for {name}:\n{text}"
        out["stages"][name] = dict(zip(("p50", "p95", "p99", "mean", "max"), map(float, m.groups())))
    m = re.search(r"^answers: ([0-9,]+) of ([0-9,]+) equal to the single-thread answer", text, re.M)
    assert m, text
    out["right"], out["answers"] = (int(g.replace(",", "")) for g in m.groups())
    m = re.search(r"^arena: ([0-9,]+) kernel calls, ([0-9,]+) allocations, ([0-9,]+) overflows \(overflow rate "
                  r"([0-9.]+)% of allocations, ([0-9,]+) B from the heap\); high water ([0-9,]+) B of ([0-9,]+) B",
                  text, re.M)
    assert m, text
    out["arena"] = dict(zip(("calls", "allocations", "overflows", "rate", "heap", "high_water", "capacity"),
                            (float(g.replace(",", "")) for g in m.groups())))
    m = re.search(r"^RSS: start ([0-9,.]+) MiB, end ([0-9,.]+) MiB, peak ([0-9,.]+) MiB; growth ([-+0-9,.]+) MiB: "
                  r"(within noise|GROWTH BEYOND NOISE) \(allowance ([0-9,.]+) MiB\)$", text, re.M)
    assert m, text
    out["rss"] = {"start": float(m.group(1).replace(",", "")), "end": float(m.group(2).replace(",", "")),
                  "verdict": m.group(5)}
    return out


def test_cli_prints_a_table_that_parses():
    proc = run_cli("--threads", "2", "--seconds", "1.5", *SMALL)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    t = parse_table(proc.stdout)
    assert t["recalls"] > 0 and len(t["per_thread"]) == 2 and all(c > 0 for c in t["per_thread"])
    assert sum(t["per_thread"]) == t["recalls"]
    assert t["throughput"] == pytest.approx(t["recalls"] / t["elapsed"], rel=0.01)
    assert 1.5 <= t["elapsed"] < 5
    for name, s in t["stages"].items():
        assert 0 <= s["p50"] <= s["p95"] <= s["p99"] <= s["max"], name
    total = t["stages"]["total"]
    assert total["mean"] == pytest.approx(sum(t["stages"][s]["mean"] for s in STAGES), rel=0.01, abs=0.002)
    assert t["right"] == t["answers"] == t["recalls"]
    a = t["arena"]
    assert a["calls"] == 3 * t["recalls"]  # top_k, spread, decay: one arena reset each
    assert a["allocations"] >= a["calls"] and a["overflows"] == 0 and 0 < a["high_water"] <= a["capacity"]
    assert t["rss"]["verdict"] == "within noise"
    assert "building a store" in proc.stderr  # progress goes to stderr, the table alone to stdout


def test_cli_json_and_no_rss_growth_over_a_few_seconds():
    """A few seconds of recalls on a store big enough that a leak per recall would show."""
    proc = run_cli("--threads", "2", "--seconds", "3", "--memories", "20000", "--dim", "256", "--warmup", "0.5",
                   "--json")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    r = json.loads(proc.stdout)
    assert r["threads"] == 2 and r["recalls"] == sum(r["per_thread_recalls"]) > 0
    assert r["wrong_answers"] == 0 and r["errors"] == []
    assert set(r["stages"]) == set(STAGES) | {"total"}
    rss = r["rss"]
    # an (n,)-float32 activation array kept per recall would add > 80 KB x recalls
    assert r["recalls"] * r["store"]["memories"] * 4 > rss["allowance"]
    assert rss["beyond_noise"] is False, rss
    assert rss["growth"] <= rss["allowance"] and rss["start"] > r["store"]["memories"] * 256 * 4
    assert rss["peak"] >= max(rss["start"], rss["end"])
    assert len(rss["samples"]) >= 20  # sampled every 0.1 s


def test_cli_rejects_bad_arguments():
    proc = run_cli("--threads", "0", "--seconds", "0.2", *SMALL)
    assert proc.returncode != 0 and "threads must be >= 1" in proc.stderr
    proc = run_cli("--seconds", "abc")
    assert proc.returncode == 2 and "--seconds" in proc.stderr


@pytest.fixture(scope="module")
def store():
    return MemoryStore.synthetic(2_000, 64, seed=3)


def test_run_counts_add_up(store):
    r = load.run(threads=3, seconds=0.5, warmup=0.1, store=store, k=5, kernel_threads=1)
    assert r["threads"] == 3 and len(r["per_thread_recalls"]) == 3 and r["recalls"] == sum(r["per_thread_recalls"])
    assert r["wrong_answers"] == 0 and not r["errors"] and load.ok(r)
    assert r["arena"]["calls"] == 3 * r["recalls"] and r["arena"]["in_use_after"] == 0
    assert r["params"]["k"] == 5 and r["store"]["memories"] == 2_000
    assert r["elapsed"] >= 0.5 and r["throughput"] == pytest.approx(r["recalls"] / r["elapsed"])
    text = load.format_table(r)
    assert parse_table(text)["recalls"] == r["recalls"]
    json.loads(load.to_json(r))


def test_wrong_answers_under_load_are_counted(store):
    """The load test checks answers: a kernel that goes wrong once the threads start is caught."""
    def log(message):
        if message.startswith("warming up"):  # after the single-thread answers were computed
            engram._core._set_result_hook("decay", lambda a: np.asarray(a) * 0.5)

    try:
        r = load.run(threads=2, seconds=0.3, warmup=0.05, store=store, log=log)
    finally:
        engram._core._set_result_hook("decay", None)
    assert r["recalls"] > 0 and r["wrong_answers"] == r["recalls"]
    assert not load.ok(r)
    assert f"0 of {r['recalls']:,} equal" in load.format_table(r)


def test_reference_backend_under_load(store):
    r = load.run(threads=2, seconds=0.3, warmup=0.05, store=store, backend="reference")
    assert r["engine"]["backend"] == "reference" and r["recalls"] > 0 and r["wrong_answers"] == 0
    assert r["arena"]["allocations"] == 0  # the reference does not touch the arenas


def test_overflows_are_counted(store):
    """A store whose spread needs more scratch than the arena holds: every spread overflows, still right."""
    previous = engram.arena.config()
    engram.arena.configure(size="64K")
    try:
        r = load.run(threads=2, seconds=0.3, warmup=0.05, store=MemoryStore.synthetic(5_000, 32, seed=4))
    finally:
        engram.arena.configure(size=previous["size"], overflow=previous["overflow"])
    a = r["arena"]
    assert r["wrong_answers"] == 0 and a["overflows"] >= r["recalls"] > 0
    assert a["overflow_rate"] == pytest.approx(a["overflows"] / a["allocations"])
    assert a["high_water"] > a["capacity"] == 64 << 10
    needed = -(-a["high_water"] // 2**20)
    assert f"ENGRAM_ARENA_SIZE={needed}M would hold it" in load.format_table(r)
    assert parse_table(load.format_table(r))["arena"]["overflows"] == a["overflows"]


def test_report_section_runs_the_load_test():
    from engram import report
    from engram._kernels import load as load_registry

    kernels, _ = load_registry()
    settings = report.Settings(load_seconds=0.3, load_memories=2_000)
    r = report.under_load(settings, dict(kernels))
    assert r["status"] == "ok", r
    assert r["engine"]["backend"] == "c" and r["store"]["memories"] == 2_000 and r["store"]["dim"] == 768
    assert r["recalls"] > 0 and r["wrong_answers"] == 0 and r["rss"]["growth"] is not None
    # without the pipeline's kernels in the registry the section says so instead of failing
    r = report.under_load(settings, {k: v for k, v in kernels.items() if k != "spread"})
    assert r["status"] == "not measured" and "spread" in r["error"]
