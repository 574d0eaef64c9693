"""Shared fixtures: Hypothesis profiles and the SIMD level every kernel test runs at.

Profiles: ``ci`` (default, fast) and ``full`` (10,000 examples per test),
chosen with ``--hypothesis-profile=full`` or ``HYPOTHESIS_PROFILE=full``.
Long tests are marked ``slow`` and run with ``--run-slow``.
"""
from __future__ import annotations

import os

import numpy as np
import pytest
from hypothesis import HealthCheck, settings

import engram

if engram._core is None:  # never test the fallback by accident: say how to build
    pytest.exit(
        f"engram's C core is not loaded ({engram.backend_info()['c_core_error']}); "
        'build it with `pip install ".[test]"` (or `python setup.py build_ext --inplace`)',
        returncode=3,
    )

settings.register_profile(
    "ci",
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    print_blob=True,
)
settings.register_profile(
    "full",
    max_examples=10_000,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    print_blob=True,
)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))


def pytest_addoption(parser):
    parser.addoption("--run-slow", action="store_true", help="also run tests marked slow")
    parser.addoption("--sanitized", action="store_true",
                     help="the extension is built with ASan+UBSan (tools/sanitize.sh passes this): "
                          "skip the tests marked plain_build")


def pytest_collection_modifyitems(config, items):
    skips = []
    if not config.getoption("--run-slow"):
        skips.append(("slow", pytest.mark.skip(
            reason="slow: run with --run-slow (the full sweep runs outside CI's budget)")))
    if config.getoption("--sanitized"):
        skips.append(("plain_build", pytest.mark.skip(
            reason="under ASan the quarantine and shadow memory grow RSS, and valgrind cannot run it")))
    for item in items:
        for keyword, marker in skips:
            if keyword in item.keywords:
                item.add_marker(marker)


def usable_simd_levels() -> list[str]:
    """Every SIMD level this build has and this CPU runs."""
    info = engram.simd_info()
    return [lv for lv in info["compiled"] if lv in info["detected"]]


@pytest.fixture(params=usable_simd_levels())
def simd_level(request):
    """Run the test once per SIMD level; restores the active level afterwards."""
    previous = engram._core._set_simd(request.param)
    try:
        yield request.param
    finally:
        engram._core._set_simd(previous)


@pytest.fixture
def rng(request):
    """A generator seeded from the test's name, so failures reproduce."""
    import zlib

    return np.random.default_rng(zlib.crc32(request.node.nodeid.encode()))


@pytest.fixture
def c_backend():
    """The C backend, whatever ENGRAM_BACKEND says, for tests that compare C with the reference."""
    with engram.backend("c"):
        yield
