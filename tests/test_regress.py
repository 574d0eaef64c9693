"""``python -m engram regress``: counts are deterministic and the gate fires.

A kernel adds its regress rows in its section of engram/_cases.py, exactly
like ROWS below does in a throwaway module::

    register_regress(RegressCase(
        "similarity/cosine-pair-768", "cosine_similarity",
        setup=lambda: {"a": aligned(rng_vector(768)), "b": aligned(rng_vector(768))},
        run=lambda s: call(engram.cosine_similarity, s["a"], s["b"]),
        repeat=20))

A kernel that is not built simply registers no rows.
"""
from __future__ import annotations

import io
import json
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from engram import _kernels, regress

ROOT = Path(__file__).resolve().parents[1]

pytestmark = [pytest.mark.skipif(shutil.which("valgrind") is None, reason="valgrind is not installed"),
              pytest.mark.plain_build]

ROWS = textwrap.dedent('''
    import numpy as np
    from engram import _core
    from engram._kernels import RegressCase, aligned, call, register_regress

    register_regress(RegressCase(
        "fake/dot-768", "fake_dot",
        setup=lambda: {"a": aligned(np.linspace(-1, 1, 768, dtype=np.float32))},
        run=lambda s: call(np.dot, s["a"], s["a"]), repeat=10))
    register_regress(RegressCase(
        "fake/dot-768-x3", "fake_dot",
        setup=lambda: {"a": aligned(np.linspace(-1, 1, 768, dtype=np.float32))},
        run=lambda s: call(np.dot, s["a"], s["a"]), repeat=30))
    register_regress(RegressCase(
        "fake/arena", "fake_arena", setup=lambda: {},
        run=lambda s: call(_core._arena_allocate, [1000, 2000, 64]), repeat=10))
    register_regress(RegressCase(
        "fake/raises", "fake_broken", setup=lambda: {},
        run=lambda s: call(np.dot, np.ones(3), np.ones(4))))
''')


@pytest.fixture(scope="module")
def rows_module(tmp_path_factory):
    d = tmp_path_factory.mktemp("regress_rows")
    (d / "fake_regress_rows.py").write_text(ROWS)
    return d


@pytest.fixture(scope="module")
def counted_twice(rows_module):
    kw = dict(modules=("fake_regress_rows",), extra_paths=(rows_module,))
    return regress.count_instructions(**kw), regress.count_instructions(**kw)


def test_counts_are_deterministic(counted_twice):
    first, second = counted_twice
    assert first["level"] == "avx2" and first["backend"] == "c"
    for cid in ("fake/dot-768", "fake/arena"):
        assert first["cases"][cid]["instructions"] == second["cases"][cid]["instructions"]
        assert first["cases"][cid]["per_call"] > 100  # real work was counted, not an empty region
    # the arena row does more than the dot row's call overhead alone would suggest: counts differ per row
    assert first["cases"]["fake/dot-768"]["instructions"] != first["cases"]["fake/arena"]["instructions"]
    assert "shapes" in first["cases"]["fake/raises"]["error"]


def test_per_call_count_does_not_depend_on_repeat(counted_twice):
    # 10 and 30 calls of the same row: about the same per-call count, so the fixed cost of the
    # counted region does not leak in (it is the difference of two regions).  Not exactly equal:
    # CPython's and NumPy's allocators do a little more or less work on some calls than others.
    cases = counted_twice[0]["cases"]
    assert cases["fake/dot-768"]["per_call"] == pytest.approx(cases["fake/dot-768-x3"]["per_call"], rel=0.01)


def baseline_from(counts, scale=None):
    doc = regress.baseline_document(counts)
    for cid, factor in (scale or {}).items():
        doc["cases"][cid]["per_call"] *= factor
    return doc


def test_gate_passes_on_an_equal_baseline_and_fails_on_a_lowered_one(counted_twice):
    counts = {**counted_twice[0], "cases": {k: v for k, v in counted_twice[0]["cases"].items() if "error" not in v}}
    rows, failed = regress.compare(counts, baseline_from(counts), 0.05)
    assert not failed and {r["status"] for r in rows} == {"ok"}
    assert all(r["delta"] == 0 for r in rows)

    # a baseline 10 % lower is the same as the code getting ~11 % slower
    rows, failed = regress.compare(counts, baseline_from(counts, {"fake/dot-768": 0.9}), 0.05)
    assert failed
    bad = [r for r in rows if r["status"] == "REGRESSED"]
    assert [r["id"] for r in bad] == ["fake/dot-768"]
    assert "fake_dot" in bad[0]["message"] and "+11.11%" in bad[0]["message"]

    # 4 % is within the 5 % tolerance; 10 % higher is an improvement, not a failure
    _, failed = regress.compare(counts, baseline_from(counts, {"fake/dot-768": 1 / 1.04}), 0.05)
    assert not failed
    rows, failed = regress.compare(counts, baseline_from(counts, {"fake/dot-768": 1.1}), 0.05)
    assert not failed and "improved" in {r["status"] for r in rows}


def test_errors_fail_and_missing_rows_are_reported(counted_twice):
    counts = counted_twice[0]
    base = baseline_from(counts)
    base["cases"]["gone/row"] = {"kernel": "gone", "per_call": 10.0}
    rows, failed = regress.compare(counts, base, 0.05)
    status = {r["id"]: r["status"] for r in rows}
    assert failed and status["fake/raises"] == "ERROR"
    assert status["gone/row"] == "absent"
    del counts["cases"]["fake/raises"]  # without the broken row, a new row alone does not fail
    del base["cases"]["fake/arena"]
    rows, failed = regress.compare(counts, base, 0.05)
    assert not failed and {r["id"]: r["status"] for r in rows}["fake/arena"] == "new"


def test_update_then_gate(tmp_path, counted_twice, monkeypatch):
    """--update writes the baseline; the gate then fails on a row whose baseline is 10 % lower.

    The counts are the fixture's real callgrind counts (one valgrind run fewer)."""
    good = {**counted_twice[1], "cases": {k: v for k, v in counted_twice[1]["cases"].items() if "error" not in v}}
    monkeypatch.setattr(regress, "count_instructions", lambda **kw: good)
    monkeypatch.setattr(_kernels, "REGRESS", {"stand-in": object()})  # the gate has rows to count
    path = tmp_path / "baseline.json"
    out = io.StringIO()
    assert regress.run_gate(path, update=True, modules=(), out=out) == 0
    doc = json.loads(path.read_text())
    assert set(doc["cases"]) == {"fake/dot-768", "fake/dot-768-x3", "fake/arena"} and doc["level"] == "avx2"
    out = io.StringIO()
    assert regress.run_gate(path, tolerance=0.05, modules=(), out=out) == 0
    assert "passed" in out.getvalue()
    doc["cases"]["fake/arena"]["per_call"] *= 0.9
    path.write_text(json.dumps(doc))
    out = io.StringIO()
    assert regress.run_gate(path, tolerance=0.05, modules=(), out=out) == 1
    text = out.getvalue()
    assert "FAIL fake_arena fake/arena: +11.11%" in text and "FAILED" in text
    doc["level"] = "avx512"
    path.write_text(json.dumps(doc))
    with pytest.raises(regress.RegressError, match="recorded at SIMD level avx512"):
        regress.run_gate(path, modules=(), out=io.StringIO())


def test_missing_valgrind_is_a_clear_error(monkeypatch):
    monkeypatch.setattr(regress.shutil, "which", lambda name: None)
    with pytest.raises(regress.RegressError, match="valgrind is not installed.*apt-get install valgrind"):
        regress.count_instructions(ids=[], modules=())


def test_command_line_without_rows_or_baseline(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "engram", "regress", "--baseline", str(tmp_path / "none.json")],
                          capture_output=True, text=True, cwd=ROOT, timeout=600)
    if _kernels.load_regress():
        assert proc.returncode == 2 and "no baseline" in proc.stderr
    else:
        assert proc.returncode == 0 and "nothing to count" in proc.stdout
