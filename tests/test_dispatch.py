"""Run-time SIMD dispatch: detection, the ENGRAM_SIMD cap, switching levels."""
from __future__ import annotations

import json
import platform

import pytest

import engram
from conftest import usable_simd_levels
from helpers import run_python

LEVELS = ("scalar", "avx2", "avx512", "neon")


def cpu_flags() -> set[str]:
    with open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith(("flags", "Features")):
                return set(line.split(":", 1)[1].split())
    return set()


def test_simd_info_shape():
    info = engram.simd_info()
    assert set(info) == {"detected", "compiled", "active"}
    assert "scalar" in info["detected"] and "scalar" in info["compiled"]
    assert set(info["detected"]) <= set(LEVELS) and set(info["compiled"]) <= set(LEVELS)
    assert info["active"] in info["detected"] and info["active"] in info["compiled"]


@pytest.mark.skipif(platform.machine() != "x86_64", reason="x86-64 CPUID flags")
def test_detection_matches_the_kernel_view_of_the_cpu():
    # /proc/cpuinfo lists a flag only if the kernel enabled it (XSAVE state included)
    flags = cpu_flags()
    detected = engram.simd_info()["detected"]
    assert ("avx2" in detected) == ({"avx2", "fma"} <= flags)
    assert ("avx512" in detected) == ({"avx2", "fma", "avx512f", "avx512bw", "avx512dq", "avx512vl"} <= flags)
    assert "avx2" in engram.simd_info()["compiled"] and "avx512" in engram.simd_info()["compiled"]


def test_best_level_active_by_default():
    result = run_python("import engram, json; print(json.dumps(engram.simd_info()))")
    assert result.returncode == 0, result.stderr
    info = json.loads(result.stdout)
    usable = [lv for lv in info["compiled"] if lv in info["detected"]]
    order = [lv for lv in ("scalar", "neon", "avx2", "avx512") if lv in usable]
    assert info["active"] == order[-1]
    assert result.stderr == ""


@pytest.mark.parametrize("level", usable_simd_levels())
def test_env_caps_level(level):
    result = run_python("import engram; print(engram.simd_info()['active'])", {"ENGRAM_SIMD": level})
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == level
    assert "Warning" not in result.stderr


@pytest.mark.parametrize("value", ["bogus", "AVX512 ", "sse9", "neon" if platform.machine() == "x86_64" else "avx2"])
def test_bad_env_value_warns_once_and_uses_best(value):
    code = """
        import warnings, json
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            import engram
        msgs = [str(w.message) for w in caught if issubclass(w.category, RuntimeWarning)]
        print(json.dumps({"active": engram.simd_info()["active"], "warnings": msgs}))
    """
    result = run_python(code, {"ENGRAM_SIMD": value})
    assert result.returncode == 0, result.stderr
    out = json.loads(result.stdout)
    assert out["active"] == usable_simd_levels()[-1]
    assert len(out["warnings"]) == 1, out["warnings"]
    assert "ENGRAM_SIMD" in out["warnings"][0] and value.strip() in out["warnings"][0]


def test_empty_env_value_means_no_cap():
    result = run_python("import engram; print(engram.simd_info()['active'])", {"ENGRAM_SIMD": ""})
    assert result.stdout.strip() == usable_simd_levels()[-1] and result.stderr == ""


def test_switch_every_level_and_back():
    start = engram.simd_info()["active"]
    for level in usable_simd_levels():
        previous = engram._core._set_simd(level)
        assert engram.simd_info()["active"] == level
        engram._core._set_simd(previous)
    assert engram.simd_info()["active"] == start


def test_switch_to_unavailable_level_raises():
    start = engram.simd_info()["active"]
    with pytest.raises(ValueError, match="not available"):
        engram._core._set_simd("nonexistent")
    if platform.machine() == "x86_64":
        with pytest.raises(ValueError, match="neon"):
            engram._core._set_simd("neon")
    assert engram.simd_info()["active"] == start


def test_simd_level_fixture_covers_this_machine(simd_level):
    assert engram.simd_info()["active"] == simd_level
