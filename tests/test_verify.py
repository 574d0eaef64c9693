"""Verify mode: a share of C calls re-run on the reference and compared."""
from __future__ import annotations

import numpy as np
import pytest

import engram
from engram import _kernels
from helpers import run_python

KERNELS, _ = _kernels.load()
C_KERNELS = [name for name in engram.KERNEL_NAMES if hasattr(engram._core, name) and name in KERNELS]


@pytest.fixture(autouse=True)
def verify_off():
    engram.verify(0.0, strict=False)
    engram.stats(reset=True)
    yield
    engram.verify(0.0, strict=False)
    engram.stats(reset=True)


def cases(name, count):
    rng = np.random.default_rng(11)
    return [KERNELS[name].random_case(rng) for _ in range(count)]


@pytest.mark.parametrize("name", C_KERNELS)
def test_every_call_checked_at_rate_one(name):
    engram.verify(1.0)
    fn = getattr(engram, name)
    for case in cases(name, 20):
        fn(*case.args, **case.kwargs)
    v = engram.stats()["verify"]["kernels"][name]
    assert v["checked"] == 20 and v["mismatches"] == 0, v
    assert v["max_error"] <= max(KERNELS[name].tolerance(c) for c in cases(name, 20))


@pytest.mark.parametrize("name", C_KERNELS)
def test_rate_zero_checks_nothing(name):
    fn = getattr(engram, name)
    for case in cases(name, 5):
        fn(*case.args, **case.kwargs)
    assert name not in engram.stats()["verify"]["kernels"]


@pytest.mark.parametrize("name", C_KERNELS)
def test_partial_rate_samples_a_share(name):
    engram.verify(0.25)
    fn = getattr(engram, name)
    case = cases(name, 1)[0]
    for _ in range(400):
        fn(*case.args, **case.kwargs)
    checked = engram.stats()["verify"]["kernels"][name]["checked"]
    assert 50 <= checked <= 150, checked


def perturb(result):
    """A visibly wrong copy of a kernel's result: what a broken build would return."""
    if isinstance(result, tuple):
        return (np.asarray(result[0]) + 0.5,) + result[1:]
    if isinstance(result, float):
        return result + 0.5
    return np.asarray(result) + 0.5


@pytest.fixture
def broken_kernel():
    """Make the C core return perturbed results for one kernel (through its private test hook)."""
    names = []

    def breaking(name):
        engram._core._set_result_hook(name, perturb)
        names.append(name)

    yield breaking
    for name in names:
        engram._core._set_result_hook(name, None)


def has_finite_value(result) -> bool:
    """Whether perturbing `result` changes it (NaN and inf stay what they are)."""
    first = result[0] if isinstance(result, tuple) else result
    return bool(np.isfinite(np.asarray(first, dtype=np.float64)).any())


@pytest.mark.parametrize("name", C_KERNELS)
def test_injected_mismatch_is_counted_and_described(name, broken_kernel):
    broken_kernel(name)
    engram.verify(1.0)
    fn = getattr(engram, name)
    drawn = [c for c in cases(name, 40) if has_finite_value(KERNELS[name].reference(*c.args, **c.kwargs))][:5]
    for case in drawn:
        fn(*case.args, **case.kwargs)  # not strict: returns the C result
    v = engram.stats()["verify"]["kernels"][name]
    assert v["mismatches"] == v["checked"] == len(drawn) > 0
    assert v["max_error"] > KERNELS[name].tolerance(drawn[0])
    assert len(v["examples"]) == min(len(drawn), 5) and "shapes" in v["examples"][0]


@pytest.mark.parametrize("name", C_KERNELS)
def test_strict_raises(name, broken_kernel):
    broken_kernel(name)
    engram.verify(1.0, strict=True)
    fn = getattr(engram, name)
    for case in cases(name, 40):
        if not has_finite_value(KERNELS[name].reference(*case.args, **case.kwargs)):
            continue
        with pytest.raises(engram.VerificationError, match=name):
            fn(*case.args, **case.kwargs)
        break
    else:
        pytest.fail("no non-empty case drawn")


def test_bad_rate():
    for bad in [-0.1, 1.5, "often", True, float("nan")]:
        with pytest.raises(ValueError, match="verify rate"):
            engram.verify(bad)
    assert engram.verify()["rate"] == 0.0


def test_env_turns_verify_on():
    r = run_python("import engram; print(engram.verify())", {"ENGRAM_VERIFY": "0.01", "ENGRAM_VERIFY_STRICT": "1"})
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "{'rate': 0.01, 'strict': True}"
    r = run_python("import engram; print(engram.verify()['rate'])", {"ENGRAM_VERIFY": "lots"})
    assert r.stdout.strip() == "0.0" and "ENGRAM_VERIFY" in r.stderr
