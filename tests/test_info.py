"""`python -m engram info` prints the whole configuration."""
from __future__ import annotations

import subprocess
import sys

import numpy as np

import engram


def test_info_lists_configuration():
    out = subprocess.run([sys.executable, "-m", "engram", "info"], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    text = out.stdout
    for needle in [f"engram {engram.__version__}", "backend:  c", f"active {engram.simd_info()['active']}",
                   "arena:    2097152 bytes", "threads:", f"numpy:    {np.__version__}", "BLAS"]:
        assert needle in text, needle


def test_threads_setting_and_env():
    from helpers import run_python

    previous = engram.get_num_threads()
    try:
        engram.set_num_threads(3)
        assert engram.get_num_threads() == 3
    finally:
        engram.set_num_threads(previous)
    for bad in [0, -1, 1000, True]:
        try:
            engram.set_num_threads(bad)
        except (ValueError, TypeError) as e:
            assert "1..256" in str(e)
        else:
            raise AssertionError(f"set_num_threads({bad!r}) accepted")
    r = run_python("import engram; print(engram.get_num_threads())", {"ENGRAM_NUM_THREADS": "5"})
    assert r.stdout.strip() == "5"
    r = run_python("import engram; print(engram.get_num_threads())", {"ENGRAM_NUM_THREADS": "many"})
    assert "ENGRAM_NUM_THREADS" in r.stderr and r.stdout.strip() == str(engram._core._cpu_count())
