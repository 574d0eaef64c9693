"""``python -m engram regress``: the deterministic performance regression gate.

Wall-clock time on a shared machine moves by tens of percent from run to
run; the number of instructions a call executes does not.  This gate counts
them with valgrind's callgrind for every row of the registry's ``REGRESS``
table (``engram/_kernels.py``; each kernel's rows live in its section of
``engram/_cases.py``) and compares instructions per call with
``benchmarks/baseline.json``: a row more than ``--tolerance`` (5 %) above its
baseline fails the gate, naming the kernel, the row and the delta.
``--update`` rewrites the baseline with this build's counts.

How the counting works, and why it is deterministic:

- One child Python runs under ``valgrind --tool=callgrind`` with
  ``ENGRAM_SIMD=avx2`` (valgrind 3.19 cannot execute AVX-512, and the AVX2
  code is what most machines run), ``PYTHONHASHSEED=0``, one thread
  everywhere (``ENGRAM_NUM_THREADS``, ``OPENBLAS_NUM_THREADS``,
  ``OMP_NUM_THREADS``; callgrind serialises threads, and a worker thread's
  instructions would be outside the counted function anyway), and
  ``ENGRAM_BACKEND``/``ENGRAM_STATS`` removed so every call takes the plain C path.
- Collection is off at start (``--collect-atstart=no``) and toggled on only
  inside ``engram_counted_calls`` (csrc/module.c), which makes the calls of
  one row ``repeat`` times; ``--dump-after`` writes one profile per row.  So
  the count is argument parsing + validation + kernel + arena + building and
  freeing the result, and nothing of the interpreter, imports or setup.
- Each row's call runs once uncounted first (first-call caches, lazily built
  graph data); then ``repeat`` and ``2 * repeat`` calls are counted in two
  regions and instructions per call is their difference over ``repeat``, so
  the fixed cost of entering and leaving the counted region (a few hundred
  instructions) is not spread over the calls.  Inputs are small, fixed and
  seeded, and rows should use
  64-byte-aligned arrays (``engram._kernels.aligned``) so that a SIMD loop's
  alignment peeling cannot depend on where malloc put the data.

Counts depend on the compiler, CPython and NumPy builds: the baseline
records them, and a mismatch is reported (not failed) so a toolchain change
is not mistaken for a regression.
"""
from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

#: the function of csrc/module.c inside which instructions are counted
MARKER = "engram_counted_calls"
LEVEL = "avx2"
DEFAULT_MODULES = ("engram._cases",)
BASELINE_NAME = Path("benchmarks") / "baseline.json"


class RegressError(RuntimeError):
    """The gate could not count (no valgrind, a row failed, a bad baseline)."""


# The child: imports the registry modules, then counts each row in order.
# Rows that fail print their error and are not counted (no dump is written).
CHILD = r"""
import importlib, json, sys, traceback
modules, ids, results_path = json.loads(sys.argv[1]), json.loads(sys.argv[2]), sys.argv[3]
import engram
from engram import _core, _kernels
for m in modules:
    importlib.import_module(m)
rows = _kernels.REGRESS
out = {"level": engram.simd_info()["active"], "backend": engram.get_backend(), "cases": []}
for case_id in (ids if ids is not None else sorted(rows)):
    entry = {"id": case_id}
    out["cases"].append(entry)
    row = rows.get(case_id)
    if row is None:
        entry["error"] = "not registered"
        continue
    entry.update(kernel=row.kernel, repeat=row.repeat, title=row.title)
    try:
        c = row.run(row.setup())
        c.fn(*c.args, **c.kwargs)
    except Exception as exc:
        entry["error"] = f"{type(exc).__name__}: {exc}"
        continue
    entry["counted"] = 0
    try:
        for n in (row.repeat, 2 * row.repeat):
            entry["counted"] += 1  # a region that raises still ends, and still dumps
            _core._count_calls(c.fn, tuple(c.args), dict(c.kwargs), n)
    except Exception as exc:
        entry["error"] = f"{type(exc).__name__}: {exc}"
with open(results_path, "w") as f:
    json.dump(out, f)
"""


def valgrind_version() -> str:
    exe = shutil.which("valgrind")
    if exe is None:
        raise RegressError(
            "valgrind is not installed, and the regression gate counts instructions with its "
            "callgrind tool: install it (Debian/Ubuntu: apt-get install valgrind; Fedora: dnf install "
            "valgrind; macOS: not supported) and run `python -m engram regress` again"
        )
    try:
        return subprocess.run([exe, "--version"], capture_output=True, text=True, timeout=60).stdout.strip()
    except (OSError, subprocess.SubprocessError) as exc:
        raise RegressError(f"valgrind is installed at {exe} but does not run: {exc}") from exc


def child_environment(extra_paths=()) -> dict:
    import engram

    env = {k: v for k, v in os.environ.items()
           if not k.startswith("ENGRAM_") and k not in ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE")}
    package_root = str(Path(engram.__file__).resolve().parents[1])
    env["PYTHONPATH"] = os.pathsep.join([package_root, *map(str, extra_paths), env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    env.update(ENGRAM_SIMD=LEVEL, ENGRAM_NUM_THREADS="1", PYTHONHASHSEED="0", OPENBLAS_NUM_THREADS="1",
               OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", PYTHONDONTWRITEBYTECODE="1")
    return env


def _dump_totals(directory: Path) -> list:
    """Instruction totals of the --dump-after profiles, in dump order."""
    dumps = []
    for path in directory.glob("callgrind.out.*"):
        text = path.read_text(errors="replace")
        if f"Dump after {MARKER}" not in text and f"--dump-after={MARKER}" not in text:
            continue
        part = re.search(r"^part:\s*(\d+)", text, re.M)
        totals = re.search(r"^totals:\s*(\d+)", text, re.M) or re.search(r"^summary:\s*(\d+)", text, re.M)
        if part is None or totals is None:
            raise RegressError(f"cannot read callgrind output {path.name}")
        dumps.append((int(part.group(1)), int(totals.group(1))))
    return [total for _, total in sorted(dumps)]


def count_instructions(ids=None, modules=DEFAULT_MODULES, extra_paths=(), timeout: float = 1800) -> dict:
    """Run the rows under callgrind; returns ``{"level", "valgrind", "cases": {id: {...}}}``.

    Each case has kernel, repeat, instructions (the totals of the ``repeat``
    and ``2 * repeat`` regions) and per_call, or an ``error``.
    """
    version = valgrind_version()
    with tempfile.TemporaryDirectory(prefix="engram-regress-") as tmp:
        tmpdir = Path(tmp)
        results = tmpdir / "results.json"
        cmd = [
            shutil.which("valgrind"), "--tool=callgrind", "--collect-atstart=no",
            f"--toggle-collect={MARKER}", f"--dump-after={MARKER}",
            f"--callgrind-out-file={tmpdir / 'callgrind.out.%p'}", "--quiet",
            sys.executable, "-c", CHILD, json.dumps(list(modules)), json.dumps(ids), str(results),
        ]
        proc = subprocess.run(cmd, capture_output=True, text=True, env=child_environment(extra_paths),
                              timeout=timeout, cwd=tmp)
        if proc.returncode != 0 or not results.exists():
            raise RegressError(f"the counting run failed (exit {proc.returncode}):\n{proc.stderr[-3000:]}")
        child = json.loads(results.read_text())
        totals = _dump_totals(tmpdir)
    expected = sum(c.get("counted", 0) for c in child["cases"])
    if len(totals) != expected:
        raise RegressError(f"callgrind wrote {len(totals)} profiles for {expected} counted regions")
    cases, i = {}, 0
    for c in child["cases"]:
        entry = {k: c[k] for k in ("kernel", "repeat", "title", "error") if k in c}
        regions = totals[i:i + c.get("counted", 0)]
        i += len(regions)
        if "error" not in c:
            entry["instructions"] = regions  # [repeat calls, 2 * repeat calls]
            entry["per_call"] = (regions[1] - regions[0]) / c["repeat"]
        cases[c["id"]] = entry
    return {"level": child["level"], "backend": child["backend"], "valgrind": version, "cases": cases}


def toolchain() -> dict:
    import platform

    import numpy

    import engram

    return {"python": platform.python_version(), "numpy": numpy.__version__, "engram": engram.__version__,
            "machine": platform.machine()}


def compare(counts: dict, baseline: dict, tolerance: float) -> tuple[list, bool]:
    """Rows ``{id, kernel, baseline, now, delta, status, message}`` and whether the gate fails.

    Fails on: a row more than ``tolerance`` above its baseline, a row that
    raised.  Reported without failing: rows with no baseline yet, baseline
    rows not registered in this build (their kernel is absent), rows that
    got cheaper by more than the tolerance.
    """
    rows, failed = [], False
    base_cases = baseline.get("cases", {})
    for cid, now in sorted(counts["cases"].items()):
        row = {"id": cid, "kernel": now.get("kernel", "?"), "baseline": None, "now": now.get("per_call"),
               "delta": None}
        base = base_cases.get(cid)
        if "error" in now:
            row.update(status="ERROR", message=f"{row['kernel']} {cid}: {now['error']}")
            failed = True
        elif base is None:
            row.update(status="new", message=f"{row['kernel']} {cid}: no baseline yet (run with --update)")
        else:
            row["baseline"] = base["per_call"]
            row["delta"] = delta = now["per_call"] / base["per_call"] - 1.0
            text = (f"{row['kernel']} {cid}: {delta:+.2%} instructions per call "
                    f"({base['per_call']:,.0f} -> {now['per_call']:,.0f})")
            if delta > tolerance:
                row.update(status="REGRESSED", message=text + f", over the {tolerance:.0%} tolerance")
                failed = True
            elif delta < -tolerance:
                row.update(status="improved", message=text + "; --update to keep the gain")
            else:
                row.update(status="ok", message=text)
        rows.append(row)
    for cid, base in sorted(base_cases.items()):
        if cid not in counts["cases"]:
            rows.append({"id": cid, "kernel": base.get("kernel", "?"), "baseline": base["per_call"], "now": None,
                         "delta": None, "status": "absent",
                         "message": f"{base.get('kernel', '?')} {cid}: in the baseline, not registered in this build"})
    return rows, failed


def baseline_document(counts: dict) -> dict:
    return {
        "about": "Instructions per call under callgrind (python -m engram regress); "
                 "rewrite with python -m engram regress --update.",
        "level": counts["level"],
        "valgrind": counts["valgrind"],
        "toolchain": toolchain(),
        "cases": {cid: {k: c[k] for k in ("kernel", "title", "repeat", "instructions", "per_call") if k in c}
                  for cid, c in sorted(counts["cases"].items()) if "per_call" in c},
    }


def find_baseline(path) -> Path:
    if path:
        return Path(path)
    here = Path.cwd() / BASELINE_NAME
    if here.exists():
        return here
    import engram

    source_tree = Path(engram.__file__).resolve().parents[1] / BASELINE_NAME
    return source_tree if source_tree.exists() else here


def run_gate(baseline_path, tolerance: float = 0.05, update: bool = False, modules=DEFAULT_MODULES,
             extra_paths=(), out=None) -> int:
    out = out or sys.stdout
    import importlib

    from . import _kernels

    for m in modules:
        importlib.import_module(m)
    path = find_baseline(baseline_path)
    if not _kernels.REGRESS:
        print("regress: no rows in the registry's REGRESS table; nothing to count", file=out)
        if update:
            empty = {"level": LEVEL, "valgrind": valgrind_version(), "cases": {}}
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(json.dumps(baseline_document(empty), indent=1, sort_keys=True) + "\n")
            print(f"regress: wrote {path} (no rows)", file=out)
        return 0
    baseline = None
    if not update:
        if not path.exists():
            raise RegressError(f"no baseline at {path}: record one with `python -m engram regress --update`")
        try:
            baseline = json.loads(path.read_text())
        except ValueError as exc:
            raise RegressError(f"{path} is not valid JSON: {exc}") from exc
    counts = count_instructions(modules=modules, extra_paths=extra_paths)
    if counts["level"] != LEVEL:
        print(f"regress: warning: counted at SIMD level {counts['level']}, not {LEVEL} (this CPU lacks it)", file=out)
    if update:
        errors = {cid: c["error"] for cid, c in counts["cases"].items() if "error" in c}
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(baseline_document(counts), indent=1, sort_keys=True) + "\n")
        print(f"regress: wrote {path} ({len(counts['cases']) - len(errors)} rows at {counts['level']})", file=out)
        for cid, err in errors.items():
            print(f"regress: ERROR {cid}: {err} (not in the baseline)", file=out)
        return 1 if errors else 0
    if baseline.get("level") != counts["level"]:
        raise RegressError(f"{path} was recorded at SIMD level {baseline.get('level')}, this run counts at "
                           f"{counts['level']}: record a baseline for this level with --update")
    now_tools = toolchain()
    changed = {k: (baseline.get("toolchain", {}).get(k), v) for k, v in now_tools.items()
               if baseline.get("toolchain", {}).get(k) != v}
    if changed:
        print("regress: note: the baseline was recorded with " + ", ".join(
            f"{k} {a} (now {b})" for k, (a, b) in changed.items()) + "; counts include their code", file=out)
    rows, failed = compare(counts, baseline, tolerance)
    width = max((len(r["id"]) for r in rows), default=4)
    print(f"{'row':<{width}}  {'kernel':<18} {'baseline/call':>14} {'now/call':>14} {'delta':>8}  status", file=out)
    for r in rows:
        b = f"{r['baseline']:,.0f}" if r["baseline"] is not None else "-"
        n = f"{r['now']:,.0f}" if r["now"] is not None else "-"
        d = f"{r['delta']:+.2%}" if r["delta"] is not None else "-"
        print(f"{r['id']:<{width}}  {r['kernel']:<18} {b:>14} {n:>14} {d:>8}  {r['status']}", file=out)
    for r in rows:
        if r["status"] in ("REGRESSED", "ERROR"):
            print(f"regress: FAIL {r['message']}", file=out)
        elif r["status"] in ("new", "absent", "improved"):
            print(f"regress: note: {r['message']}", file=out)
    print(f"regress: {'FAILED' if failed else 'passed'} ({len(rows)} rows, tolerance {tolerance:.0%}, "
          f"{counts['valgrind']} at {counts['level']})", file=out)
    return 1 if failed else 0


def main(args) -> int:
    try:
        return run_gate(args.baseline, args.tolerance, args.update)
    except RegressError as exc:
        print(f"regress: error: {exc}", file=sys.stderr)
        return 2
