"""Backends and rollback: switching between the C core and the reference at
run time, per thread, by env var, and the import fallback when the C core
cannot load."""
from __future__ import annotations

import json
import threading

import numpy as np
import pytest

import engram
from engram import _kernels
from helpers import run_python

KERNELS, _ = _kernels.load()
C_KERNELS = [name for name in engram.KERNEL_NAMES if hasattr(engram._core, name)]


@pytest.fixture(autouse=True)
def restore_backend():
    previous = engram.set_backend("c")
    yield
    engram.set_backend(previous)


def test_every_kernel_runs_in_c_and_has_a_registry_row():
    assert C_KERNELS == list(engram.KERNEL_NAMES)
    assert set(KERNELS) == set(engram.KERNEL_NAMES)
    for name in engram.KERNEL_NAMES:
        assert type(getattr(engram, name)).__name__ == "builtin_function_or_method", name


def test_default_is_c():
    assert engram.get_backend() == "c"
    info = engram.backend_info()
    assert info["active"] == "c" and info["default"] == "c"
    assert info["available"] == ["c", "reference"] and info["c_core_error"] is None


def test_set_backend_returns_previous_and_validates():
    assert engram.set_backend("reference") == "c"
    assert engram.get_backend() == "reference"
    assert engram.set_backend("c") == "reference"
    for bad in ["C", "numpy", ""]:
        with pytest.raises(ValueError, match="backend must be one of"):
            engram.set_backend(bad)
    for bad in [None, 1]:
        with pytest.raises(TypeError, match="backend must be one of"):
            engram.set_backend(bad)
    assert engram.get_backend() == "c"


def test_context_manager_restores_on_exit_and_on_error():
    with engram.backend("reference"):
        assert engram.get_backend() == "reference"
        with engram.backend("c"):
            assert engram.get_backend() == "c"
        assert engram.get_backend() == "reference"
    assert engram.get_backend() == "c"
    with pytest.raises(RuntimeError, match="boom"):
        with engram.backend("reference"):
            raise RuntimeError("boom")
    assert engram.get_backend() == "c"


def test_context_manager_is_per_thread():
    inside, outside = threading.Event(), threading.Event()
    seen = {}

    def other():
        inside.wait()
        seen["other"] = engram.get_backend()
        outside.set()

    t = threading.Thread(target=other)
    t.start()
    with engram.backend("reference"):
        inside.set()
        outside.wait()
        seen["self"] = engram.get_backend()
    t.join()
    assert seen == {"self": "reference", "other": "c"}


def test_global_switch_reaches_other_threads():
    engram.set_backend("reference")
    seen = []
    t = threading.Thread(target=lambda: seen.append(engram.get_backend()))
    t.start()
    t.join()
    assert seen == ["reference"]


@pytest.mark.parametrize("name", C_KERNELS)
def test_reference_backend_runs_the_reference(name):
    """The public function forwards to the registered reference when switched."""
    kernel = KERNELS[name]
    case = kernel.random_case(np.random.default_rng(7))
    calls = []

    def recorder(*args, **kwargs):
        calls.append(1)
        return kernel.reference(*args, **kwargs)

    fn = getattr(engram, name)
    engram._core._set_reference(name, recorder)
    try:
        fast = fn(*case.args, **case.kwargs)
        assert calls == []
        with engram.backend("reference"):
            slow = fn(*case.args, **case.kwargs)
        assert calls == [1]
    finally:
        engram._core._set_reference(name, kernel.reference)
    assert kernel.error(fast, slow, case) <= kernel.tolerance(case)


def test_env_selects_reference_backend():
    r = run_python("import engram; print(engram.get_backend(), engram.backend_info()['default'])",
                   {"ENGRAM_BACKEND": "reference"})
    assert r.returncode == 0, r.stderr
    assert r.stdout.split() == ["reference", "reference"] and r.stderr == ""


def test_bad_env_backend_warns_and_uses_c():
    r = run_python("""
        import warnings
        with warnings.catch_warnings(record=True) as w:
            warnings.simplefilter("always")
            import engram
        print(engram.get_backend(), len(w), w[0].message)
    """, {"ENGRAM_BACKEND": "fortran"})
    assert r.returncode == 0, r.stderr
    backend, count, message = r.stdout.split(" ", 2)
    assert backend == "c" and count == "1" and "ENGRAM_BACKEND" in message and "fortran" in message


HIDE_CORE = """
    import sys, warnings, json

    class BrokenCore:
        # makes importing engram._core fail the way a broken build does
        def find_spec(self, name, path=None, target=None):
            if name == "engram._core":
                raise ImportError("engram/_core.so: undefined symbol: engram_missing")

    sys.meta_path.insert(0, BrokenCore())
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        import engram
"""


def test_import_falls_back_to_reference_when_core_missing():
    r = run_python(HIDE_CORE + """
    info = engram.backend_info()
    print(json.dumps({
        "warnings": [str(w.message) for w in caught],
        "info": info,
        "backend": engram.get_backend(),
        "functions": {n: getattr(engram, n, None).__module__ for n in engram.KERNEL_NAMES if hasattr(engram, n)},
        "arena": engram.arena.config(),
        "simd": engram.simd_info(),
    }))
    try:
        engram.set_backend("c")
    except RuntimeError as e:
        print("RuntimeError:", e)
    with engram.backend("reference"):
        pass
    """)
    assert r.returncode == 0, r.stderr
    first, second = r.stdout.splitlines()
    out = json.loads(first)
    assert len(out["warnings"]) == 1 and "reference backend" in out["warnings"][0]
    assert out["backend"] == "reference"
    assert out["info"]["available"] == ["reference"]
    assert "ImportError" in out["info"]["c_core_error"]
    assert all(module == "engram._reference" for module in out["functions"].values())
    assert out["arena"]["size"] == 2 << 20
    assert out["simd"]["active"] == "reference"
    assert "undefined symbol" in out["info"]["c_core_error"]
    assert second.startswith("RuntimeError: the C backend is not available: ImportError")


def test_fallback_functions_compute_and_count():
    # Every kernel the reference implements gives the same answer as the C core would.
    r = run_python(HIDE_CORE + """
    import numpy as np
    from engram import _kernels
    kernels, _ = _kernels.load()
    engram.stats(enable=True)
    done = []
    for name, kernel in kernels.items():
        case = kernel.random_case(np.random.default_rng(1))
        got = getattr(engram, name)(*case.args, **case.kwargs)
        want = kernel.reference(*case.args, **case.kwargs)
        assert kernel.error(got, want, case) == 0, name
        assert engram.stats()["kernels"][name]["calls"] == 1, name
        done.append(name)
    print(json.dumps(done))
    """)
    assert r.returncode == 0, r.stderr
    assert set(json.loads(r.stdout)) == set(KERNELS)
