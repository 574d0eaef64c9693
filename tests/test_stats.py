"""engram.stats(): off by default, per-kernel counters when on, totals that add up across threads."""
from __future__ import annotations

import threading

import numpy as np
import pytest

import engram
from engram import _kernels
from helpers import run_python

KERNELS, _ = _kernels.load()
C_KERNELS = [name for name in engram.KERNEL_NAMES if hasattr(engram._core, name)]


@pytest.fixture(autouse=True)
def stats_off():
    engram.stats(enable=False, reset=True)
    yield
    engram.stats(enable=False, reset=True)


def test_shape_and_default_off():
    s = engram.stats()
    assert s["enabled"] is False
    assert set(s["kernels"]) == set(engram.KERNEL_NAMES)
    for k in s["kernels"].values():
        assert set(k) == {"calls", "total_seconds", "last_seconds", "elements"}
    assert {"overflows", "high_water"} <= set(s["arena"])


def test_env_turns_stats_on():
    r = run_python("import engram; print(engram.stats()['enabled'])", {"ENGRAM_STATS": "1"})
    assert r.stdout.strip() == "True"
    r = run_python("import engram; print(engram.stats()['enabled'])", {"ENGRAM_STATS": "maybe"})
    assert r.stdout.strip() == "False" and "ENGRAM_STATS" in r.stderr


@pytest.mark.parametrize("name", C_KERNELS)
def test_counts_only_when_enabled(name):
    kernel = KERNELS[name]
    case = kernel.random_case(np.random.default_rng(3))
    fn = getattr(engram, name)
    fn(*case.args, **case.kwargs)
    assert engram.stats()["kernels"][name]["calls"] == 0
    engram.stats(enable=True)
    for _ in range(3):
        fn(*case.args, **case.kwargs)
    k = engram.stats()["kernels"][name]
    assert k["calls"] == 3
    assert k["total_seconds"] >= k["last_seconds"] > 0
    assert k["elements"] > 0
    with engram.backend("reference"):
        fn(*case.args, **case.kwargs)
    assert engram.stats()["kernels"][name]["calls"] == 4


@pytest.mark.parametrize("name", C_KERNELS)
def test_totals_add_up_across_threads(name):
    kernel = KERNELS[name]
    case = kernel.random_case(np.random.default_rng(4))
    fn = getattr(engram, name)
    engram.stats(enable=True)

    def work():
        for _ in range(25):
            fn(*case.args, **case.kwargs)

    threads = [threading.Thread(target=work) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert engram.stats()["kernels"][name]["calls"] == 200


def test_reset_clears_counters():
    engram.stats(enable=True)
    engram.stats(reset=True)
    assert all(k["calls"] == 0 for k in engram.stats()["kernels"].values())
