#!/usr/bin/env python3
"""Fuzz every public function of engram: random dtypes, shapes, strides, keywords and values.

Hypothesis draws a *spec*, a JSON document that describes one call (which
function, every argument as an array recipe or a Python value, the SIMD
level, stats/verify mode and arena policy to run it under); ``build(spec)``
turns it into arrays and ``check(spec)`` runs it.  A call passes when it

  - returns, or raises TypeError, ValueError or MemoryError (nothing else);
  - after an error, left every array it was given byte-identical (out= and
    in-place inputs included); after a success, left its inputs (everything
    but out) byte-identical;
  - on success with plain floating inputs, agrees with the pure-NumPy
    reference within the kernel's own tolerance (engram/_kernels.py).

A call that kills the interpreter (a crash, an ASan or UBSan report) is
caught by the supervising process, which keeps the spec that was running.
Every failing spec is written to tests/fuzz_corpus/ (tests/test_fuzz_corpus.py
replays them).

    python tools/fuzz.py --seconds 600                # ten minutes on the normal build
    python tools/fuzz.py --seconds 600 --sanitized    # the same under ASan+UBSan
    python tools/fuzz.py --replay tests/fuzz_corpus   # re-run saved specs

``--sanitized`` re-runs this script through ``tools/sanitize.sh --run``,
which builds the extension with -fsanitize=address,undefined in a scratch
copy of the tree and preloads the sanitizer runtimes.
"""
from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import math
import os
import subprocess
import sys
import tempfile
import time
import warnings

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)

import numpy as np  # noqa: E402

ALLOWED = (TypeError, ValueError, MemoryError)
KERNELS = ("cosine_similarity", "normalize", "top_k", "spread", "decay")
CORPUS = os.path.join(ROOT, "tests", "fuzz_corpus")
#: a case that runs this long is a hang (every case the fuzzer makes takes milliseconds)
HANG_SECONDS = 120

# --------------------------------------------------------------------------
# Specs -> Python objects
# --------------------------------------------------------------------------

#: dtypes the kernels accept somewhere, and the ones they must refuse cleanly
GOOD_FLOATS = ["<f4", "<f8"]
OTHER_DTYPES = ["<f2", ">f4", ">f8", "<i1", "<i2", "<i4", "<i8", "<u1", "<u4", "<u8", "|b1", "<c8",
                "<c16", "O", "<U3", "|S3", "<M8[s]", "<m8[s]", "<g", ">i8"]
SPECIAL_VALUES = [float("nan"), float("inf"), float("-inf"), 0.0, -0.0, 1e-40, 5e-324, 1e-310,
                  3e38, 1e300, -1.0, 1e-20]


def _prod(shape) -> int:
    return int(math.prod(shape)) if shape else 1


def _fill(fill: dict, shape, rng: np.random.Generator) -> np.ndarray:
    """float64 (or int64 for kind 'int') values of the requested kind."""
    size = _prod(shape)
    kind = fill.get("kind", "normal")
    if kind == "int":
        return rng.integers(fill.get("lo", 0), fill.get("hi", 10), size, endpoint=False).reshape(shape)
    if kind == "uniform":
        v = rng.uniform(fill.get("lo", 0.0), fill.get("hi", 1.0), size)
    elif kind == "const":
        v = np.full(size, fill.get("value", 0.0), dtype=np.float64)
    else:
        v = rng.standard_normal(size) * fill.get("scale", 1.0)
    specials = fill.get("specials") or []
    if specials and size:
        hit = rng.random(size) < fill.get("rate", 0.1)
        v[hit] = rng.choice(np.array(specials, dtype=np.float64), int(hit.sum()))
    return v.reshape(shape)


def _cast(values: np.ndarray, dtype: np.dtype) -> np.ndarray:
    kind = dtype.kind
    with np.errstate(all="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if kind in "iuMm" and values.dtype.kind == "f":
            lo = 0.0 if kind == "u" else -9e18
            values = np.clip(np.nan_to_num(values, nan=0.0, posinf=9e18, neginf=lo), lo, 9e18)
            values = values.astype(np.int64)
        if kind in "iu":
            return values.astype(dtype)  # wraps around: any bits will do
        if kind in "Mm":
            return np.clip(values, -10**12, 10**12).astype(np.int64).view(dtype)
        if kind == "b":
            return values > 0
        return values.astype(dtype)


def _layout(a: np.ndarray, op: str) -> np.ndarray:
    """The array with the same shape in another memory layout (values may repeat)."""
    name, _, arg = op.partition(":")
    k = int(arg) if arg else 0
    if a.ndim and k >= a.ndim:
        k = a.ndim - 1
    if name == "F":
        return np.asfortranarray(a)
    if name == "T" and a.ndim >= 2:
        return np.ascontiguousarray(np.swapaxes(a, -1, -2)).swapaxes(-1, -2)
    if name == "rev" and a.ndim:
        return np.flip(a, k)
    if name == "step" and a.ndim:
        return np.repeat(a, 2, axis=k)[(slice(None),) * k + (slice(None, None, 2),)]
    if name == "bcast" and a.ndim and a.shape[k] > 0:
        return np.broadcast_to(a.take([0], axis=k), a.shape)
    if name == "wbcast" and a.ndim and a.shape[k] > 0:  # writeable, zero stride: rows alias
        base = np.ascontiguousarray(a.take([0], axis=k))
        strides = list(base.strides)
        strides[k] = 0
        return np.lib.stride_tricks.as_strided(base, shape=a.shape, strides=strides)
    if name == "misalign" and a.dtype.itemsize > 1 and a.dtype.kind not in "OV":
        buf = np.zeros(a.nbytes + a.dtype.itemsize, dtype=np.uint8)
        out = buf[1:1 + a.nbytes].view(a.dtype).reshape(a.shape)
        out[...] = a
        return out
    if name == "swap" and a.dtype.kind not in "OV":
        return a.astype(a.dtype.newbyteorder())
    if name == "ro":
        a = a.view()
        a.flags.writeable = False
        return a
    return a


class _Lazy:
    """An argument made by a public call (Graph(...)) inside the fuzzed call."""

    def __init__(self, fn, *args):
        self.fn, self.args = fn, args

    def __call__(self):
        return self.fn(*self.args)


def _build(spec, ctx: dict):
    """A spec of one argument -> the object (arrays are recorded in ctx["arrays"])."""
    if not isinstance(spec, dict):
        return spec
    t = spec["t"]
    if t == "py":
        return spec["v"]
    if t == "float":
        return float(spec["v"])
    if t == "complex":
        return complex(spec["re"], spec["im"])
    if t == "bytes":
        return spec["v"].encode()
    if t == "np":
        return np.dtype(spec["dtype"]).type(spec["v"])
    if t == "object":
        return object()
    if t in ("tuple", "list"):
        items = [_build(s, ctx) for s in spec["items"]]
        return tuple(items) if t == "tuple" else items
    if t == "dict":
        items = [(_build(k, ctx), _build(v, ctx)) for k, v in spec["items"]]
        return {k: v for k, v in items if getattr(type(k), "__hash__", None) is not None}
    if t == "array":
        return _build_array(spec, ctx)
    if t == "huge":
        dt = np.dtype(spec["dtype"])
        a = np.lib.stride_tricks.as_strided(np.ones(1, dt), shape=tuple(spec["shape"]),
                                            strides=(0,) * len(spec["shape"]), writeable=False)
        ctx["huge"].append(a)
        return a
    if t == "alias":
        target = ctx["named"].get(spec["of"])
        if target is None:  # what it would alias did not come out as an array
            return None
        op = spec["op"]
        if op == "view":
            a = target.view()
        elif op == "rev" and target.ndim:
            a = target[::-1]
        elif op == "flat" and target.ndim == 2:
            a = target.reshape(-1) if target.flags.c_contiguous else target
        else:
            a = target
        ctx["arrays"].append(a)
        return a
    if t == "graph":
        return _build_graph(spec, ctx)
    raise ValueError(f"unknown spec type {t!r}")


#: arrays the fuzzer materialises stay small (huge ones are zero-stride views)
MAX_ELEMENTS = 1 << 22


def _build_array(spec: dict, ctx: dict) -> np.ndarray:
    shape = tuple(spec["shape"])
    if _prod(shape) > MAX_ELEMENTS or spec.get("buffer_size", 0) > MAX_ELEMENTS:
        raise ValueError(f"array spec of shape {shape} is too large to materialise")
    dtype = np.dtype(spec["dtype"])
    rng = np.random.default_rng(spec.get("seed", 0))
    values = _fill(spec.get("fill", {}), shape, rng)
    if "buffer" in spec:  # a contiguous view at an offset into a buffer other arrays share
        buf = ctx["buffers"].setdefault(spec["buffer"], np.zeros(spec["buffer_size"], dtype=dtype))
        start = spec.get("offset", 0)
        a = buf[start:start + _prod(shape)].reshape(shape)
        a[...] = _cast(values, dtype)
        for op in spec.get("layout", []):
            if op.startswith("rev") and a.ndim:
                a = np.flip(a, 0)
        if spec.get("name"):
            ctx["named"][spec["name"]] = a
        ctx["arrays"].append(buf)
        return a
    a = np.asarray(_cast(values, dtype))
    for op in spec.get("layout", []):
        a = _layout(a, op)
    if spec.get("name"):
        ctx["named"][spec["name"]] = a
    ctx["arrays"].append(a)
    return a


def _graph_arrays(spec: dict):
    rng = np.random.default_rng(spec.get("seed", 0))
    n, m = spec["n"], spec["m"] if spec["n"] else 0
    src = np.sort(rng.integers(0, max(n, 1), m))
    indptr = np.zeros(n + 1, dtype=np.int64)
    if n:
        np.cumsum(np.bincount(src, minlength=n), out=indptr[1:])
    indices = rng.integers(0, max(n, 1), m)
    weights = None
    if spec.get("w"):
        weights = rng.uniform(0, 2, m)
        if spec.get("wspecial") and m:
            hit = rng.random(m) < 0.2
            weights[hit] = rng.choice([0.0, 1e-40, 1e-300, 1e30], int(hit.sum()))
    corrupt = spec.get("corrupt")
    if corrupt == "indptr_dec" and n >= 2 and m:
        indptr[1], indptr[2] = indptr[2] + 1, indptr[1]
    elif corrupt == "idx_range" and m:
        indices[rng.integers(0, m)] = rng.choice([n, n + 5, -1, 2**40])
    elif corrupt == "ptr0":
        indptr[0] = 1
    elif corrupt == "ptr_end":
        indptr[-1] += 3
    elif corrupt in ("w_neg", "w_nan", "w_inf") and weights is not None and m:
        weights[rng.integers(0, m)] = {"w_neg": -0.5, "w_nan": np.nan, "w_inf": np.inf}[corrupt]
    elif corrupt == "short_w" and weights is not None and m:
        weights = weights[:-1]
    idx = np.dtype(spec.get("idx", "<i8"))
    indptr, indices = _cast(indptr, idx), _cast(indices, idx)
    if weights is not None:
        weights = _cast(weights, np.dtype(spec["w"]))
    return n, indptr, indices, weights


def _build_graph(spec: dict, ctx: dict):
    import engram

    n, indptr, indices, weights = _graph_arrays(spec)
    ctx["arrays"] += [a for a in (indptr, indices, weights) if a is not None]
    form = spec.get("form", "Graph")
    if form == "tuple":
        return (indptr, indices) if weights is None else (indptr, indices, weights)
    if form == "tuple_n":
        return (indptr, indices, weights, n)
    if form in ("csr", "csc", "coo", "dense") and not spec.get("corrupt"):  # scipy trusts its arrays
        import scipy.sparse as sp

        data = np.ones(indices.shape[0]) if weights is None else weights
        try:
            mat = sp.csr_matrix((data, indices, indptr), shape=(n, n + spec.get("extra_cols", 0)))
            mat.check_format(full_check=True)  # scipy's own conversions crash on bad indices
            return mat.toarray() if form == "dense" else mat.asformat(form)
        except Exception:  # scipy refused the dtype or the arrays: hand over the tuple
            return (indptr, indices, weights)
    return _Lazy(engram.Graph, indptr, indices, weights, n if spec.get("pass_n") else None)


def build(spec: dict):
    """(fn, args, kwargs, ctx) for a kernel or Graph spec; lazy Graph arguments unresolved."""
    import engram

    ctx = {"arrays": [], "huge": [], "named": {}, "buffers": {}}
    args = [_build(a, ctx) for a in spec.get("args", [])]
    kwargs = {k: _build(v, ctx) for k, v in spec.get("kwargs", {}).items()}
    name = spec["fn"]
    if name == "Graph":
        fn = engram.Graph
    elif name.startswith("arena."):
        fn = getattr(engram.arena, name.split(".", 1)[1])
    else:
        fn = getattr(engram, name)
    return fn, args, kwargs, ctx


# --------------------------------------------------------------------------
# Running one spec
# --------------------------------------------------------------------------


class HarnessError(RuntimeError):
    """A spec this script cannot build: a bug of the fuzzer, not of engram."""


class Failure(AssertionError):
    """A call broke the contract; .kind is 'exception', 'mutation' or 'mismatch'."""

    def __init__(self, kind: str, message: str):
        super().__init__(f"{kind}: {message}")
        self.kind = kind


def _snapshot(arrays):
    seen, out = set(), []
    for a in arrays:
        if id(a) in seen or a.dtype.kind == "O":
            continue
        seen.add(id(a))
        out.append((a, a.tobytes(order="A")))
    return out


@contextlib.contextmanager
def _mode(mode: dict):
    """SIMD level, stats, verify mode and arena policy for one call, restored afterwards."""
    import engram

    core = engram._core
    previous_level = core._set_simd(mode["simd"]) if mode.get("simd") else None
    arena_before = engram.arena.config()
    stats_before = core._stats_enabled()
    verify_before = engram._verify.configure(None)
    try:
        if mode.get("arena"):
            engram.arena.configure(**mode["arena"])
        if mode.get("stats"):
            engram.stats(enable=True)
        if mode.get("verify"):
            engram.verify(1.0, strict=False)
        yield
    finally:
        if previous_level is not None:
            core._set_simd(previous_level)
        engram.arena.configure(**arena_before)
        engram.stats(enable=stats_before)
        engram.verify(verify_before["rate"], strict=verify_before["strict"])


_STATE_FUNCTIONS = {"set_num_threads", "set_backend", "verify", "stats", "arena.configure"}


@contextlib.contextmanager
def _restored_state():
    import engram

    threads, backend = engram.get_num_threads(), engram.backend_info()["default"]
    arena = engram.arena.config()
    verify = engram._verify.configure(None)
    stats = engram._core._stats_enabled()
    try:
        yield
    finally:
        engram.set_num_threads(threads)
        engram.set_backend(backend)
        engram.arena.configure(**arena)
        engram.verify(verify["rate"], strict=verify["strict"])
        engram.stats(enable=stats)


def _plain_float(obj) -> bool:
    """Whether a differential comparison with the reference is meaningful for this argument."""
    if isinstance(obj, np.ndarray):
        return obj.dtype.kind in "fiu" and obj.dtype.isnative and obj.size < 200_000
    return True


def _compare_with_reference(name, args, kwargs, result):
    import engram
    from engram import _kernels

    if name not in KERNELS or not all(_plain_float(a) for a in list(args) + list(kwargs.values())):
        return
    kernel = _kernels.load()[0][name]
    ref_kwargs = {k: v for k, v in kwargs.items() if k != "out"}
    if name == "spread":
        from engram._cases import spread_knife_edge

        try:
            if spread_knife_edge(args[0], args[1], ref_kwargs):
                return
        except ALLOWED:
            pass
    case = _kernels.Case(tuple(args), ref_kwargs, "fuzz")
    try:
        with engram.backend("reference"), np.errstate(all="ignore"), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            expected = kernel.reference(*args, **ref_kwargs)
    except ALLOWED as exc:
        if not str(exc).startswith(f"{name}()"):
            return  # not one of the reference's checks: a limit of NumPy (sizes, memory)
        raise Failure("mismatch", f"the C core accepted what the reference refuses "
                                  f"({type(exc).__name__}: {exc})") from None
    with np.errstate(all="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        error = float(kernel.error(result, expected, case))
        tolerance = float(kernel.tolerance(case))
    if not error <= tolerance:
        raise Failure("mismatch", f"differs from the reference by {error:g} {kernel.unit} "
                                  f"(tolerance {tolerance:g})")


def check(spec: dict, differential: bool = True) -> str:
    """Run one spec; raise Failure if it broke the contract.  Returns 'ok' or the exception name."""
    name = spec["fn"]
    try:
        fn, args, kwargs, ctx = build(spec)
    except Exception as exc:
        raise HarnessError(f"cannot build {json.dumps(spec)[:300]}: {type(exc).__name__}: {exc}") from exc
    before = _snapshot(ctx["arrays"])
    state = _restored_state() if name in _STATE_FUNCTIONS else contextlib.nullcontext()
    outcome, result = "ok", None
    with _mode(spec.get("mode", {})), state, np.errstate(all="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            call_args = [a() if isinstance(a, _Lazy) else a for a in args]
            result = fn(*call_args, **kwargs)
            if name == "backend":  # a context manager: enter and leave it
                with result:
                    pass
        except ALLOWED as exc:
            outcome = type(exc).__name__
            str(exc)  # the message must be printable
        except BaseException as exc:  # noqa: BLE001  (anything else is the finding)
            if isinstance(exc, KeyboardInterrupt):
                raise
            raise Failure("exception", f"{name} raised {type(exc).__name__}: {exc}") from exc
    out = kwargs.get("out")
    for a, data in before:
        if outcome == "ok" and out is not None and isinstance(out, np.ndarray) and np.shares_memory(a, out):
            continue  # out and what it aliases are the result
        if a.tobytes(order="A") != data:
            when = "after raising " + outcome if outcome != "ok" else "by a successful call"
            raise Failure("mutation", f"{name}: an argument of shape {a.shape} was changed {when}")
    if outcome == "ok" and differential and not spec.get("mode", {}).get("arena") and name in KERNELS:
        call_args = [a() if isinstance(a, _Lazy) else a for a in args]
        inputs_alias_out = isinstance(out, np.ndarray) and any(
            isinstance(a, np.ndarray) and np.shares_memory(a, out) for a in call_args)
        if not inputs_alias_out:
            _compare_with_reference(name, call_args, kwargs, result)
    return outcome


# --------------------------------------------------------------------------
# Hypothesis strategies: specs
# --------------------------------------------------------------------------


def _strategies():
    """The Hypothesis strategy of a spec.

    Every strategy object is built once, here: the spec is assembled by plain
    functions that draw from them (building strategies inside a draw makes
    Hypothesis validate them again on every example, which dominated the time).
    """
    from hypothesis import strategies as st

    def choice(options):
        return st.sampled_from(tuple(options))

    dims = choice([0, 1, 1, 2, 3, 4, 5, 7, 8, 9, 15, 16, 17, 31, 33])
    seeds = st.integers(0, 2**32 - 1)
    percent = st.integers(0, 99)
    coin = st.booleans()
    special_lists = st.lists(choice(SPECIAL_VALUES), min_size=1, max_size=4).map(tuple)
    fills = st.one_of(
        st.just({"kind": "normal"}),
        special_lists.map(lambda s: {"kind": "normal", "specials": list(s), "rate": 0.2}),
        choice([1e-30, 1e-20, 1e20, 1e36, 1e200]).map(lambda s: {"kind": "normal", "scale": s}),
        st.just({"kind": "uniform"}),
        st.just({"kind": "const", "value": 0.0}),
    )
    nonneg_fills = st.one_of(
        st.just({"kind": "uniform"}),
        st.just({"kind": "uniform", "specials": [0.0, 1e-40, 1e-300], "rate": 0.3}),
        special_lists.map(lambda s: {"kind": "uniform", "specials": list(s), "rate": 0.1}),
        st.just({"kind": "const", "value": 0.0}),
    )
    const7 = st.just({"kind": "const", "value": 7.0})
    layout_ops = st.lists(choice(["F", "T", "rev:0", "rev:1", "step:0", "step:1", "bcast:0", "bcast:1",
                                  "wbcast:0", "misalign", "swap", "ro"]), max_size=3)
    other_dtypes = choice(OTHER_DTYPES)
    huge_dims = choice([2**31, 2**32, 2**33, 2**40, 2**20, 1, 4])
    junk = st.one_of(
        st.one_of(
            st.none(), st.booleans(), st.integers(-3, 3), st.integers(),
            choice([2**63, 2**64, 10**400, -2**70]),
            st.floats(allow_nan=True, allow_infinity=True), st.text(max_size=4),
            st.lists(st.floats(allow_nan=True), max_size=3),
        ).map(lambda v: {"t": "py", "v": v}),
        st.tuples(st.floats(-2, 2), st.floats(-2, 2)).map(lambda c: {"t": "complex", "re": c[0], "im": c[1]}),
        st.just({"t": "object"}),
        choice(["cosine", "dot", "x"]).map(lambda v: {"t": "bytes", "v": v}),
        st.tuples(choice(["<f4", "<f8", "<i8", "|b1", "<f2", "<u8"]), st.integers(0, 3)).map(
            lambda c: {"t": "np", "dtype": c[0], "v": c[1]}),
    )
    threads = st.one_of(
        st.none(), choice([1, 2, 3, 8]),
        choice([0, -1, 257, 2**70, -2**70, "2", 2.0, True]).map(lambda v: {"t": "py", "v": v}),
        choice([1, 2]).map(lambda v: {"t": "np", "dtype": "<i8", "v": v}),
        junk)
    reals = st.one_of(st.floats(0.01, 5), choice([0.0, -0.5, float("nan"), float("inf"), 1e300, 10**400]),
                      st.integers(0, 4))
    small_reals = st.one_of(choice([0.0, 1e-4, 1e-2, 0.5, -1e-3, float("nan"), float("inf")]), st.floats(0, 0.3))
    ints_0_6 = st.integers(0, 6)
    depths = st.one_of(ints_0_6, choice([12, 40, -1, 2**62, 2**70, 2.5, True]))
    decays = st.one_of(st.floats(0.01, 1.0), choice([1.0, 0.0, 1.5, float("nan"), -0.5, 10**400]))
    per_hop = st.just({"kind": "uniform", "lo": 0.05, "hi": 1.0})
    per_hop_bad = st.just({"kind": "uniform", "lo": 0.0, "hi": 1.1})
    ages_fill = st.one_of(
        st.just({"kind": "uniform", "lo": 0.0, "hi": 1e6}),
        st.just({"kind": "uniform", "lo": 1.0, "hi": 1e6,
                 "specials": [0.0, 1e-40, float("inf"), 1e30, float("nan"), -1.0], "rate": 0.05}))
    operand_numbers = st.one_of(st.floats(0, 1e7), st.integers(0, 10**7))
    k_values = st.one_of(
        choice([0, -1, 2**40, 2**62, 2**64, 10**30, 2.0, True, "3", None]).map(lambda v: {"t": "py", "v": v}),
        st.integers(1, 4).map(lambda v: {"t": "np", "dtype": "<i4", "v": v}))
    models = choice(["exponential", "power"])
    normalizes = choice(["none", "out"])
    combines = choice(["sum", "max"])
    metrics = choice(["cosine", "dot"])
    graph_idx = choice(["<i4", "<i8", "<i4", "<i8", "<u4", "<i2", "<f8", "|b1", "<u8", ">i8"])
    graph_w = choice([None, "<f4", "<f8", None, "<f4", "<f8", "<i4", "<f2", "<c16", "|b1", ">f8"])
    graph_forms = choice(["Graph", "Graph", "tuple", "tuple_n", "csr", "csc", "coo", "dense"])
    graph_n = choice([0, 1, 2, 3, 5, 8, 9, 16, 17, 40])
    corruptions = choice(["indptr_dec", "idx_range", "ptr0", "ptr_end", "w_neg", "w_nan", "w_inf", "short_w"])
    alias_ops = choice(["same", "view", "rev", "flat"])
    sizes = st.one_of(choice(["2M", "4MiB", "64k", "1G", "2G", "1k", "", "abc", "2M\x00x", "-1M", "1e400",
                              " 3 m ", "\ud800"]), st.integers(0, 2**31), junk)

    def pick(draw, options):
        return options[draw(st.integers(0, len(options) - 1))]

    def maybe_junk(draw, strategy, p_junk=10):
        """A draw of `strategy`, or junk p_junk percent of the time."""
        return draw(junk) if draw(percent) < p_junk else draw(strategy)

    def maybe_kw(kwargs, draw, key, strategy, p_absent=50, p_junk=10):
        if draw(percent) >= p_absent:
            value = maybe_junk(draw, strategy, p_junk)
            if value is not None or draw(coin):
                kwargs[key] = value

    def array(draw, shape, good=GOOD_FLOATS, fill=None, name=None, layout=True):
        dtype = pick(draw, good) if draw(percent) < 75 else draw(other_dtypes)
        spec = {"t": "array", "dtype": dtype, "shape": list(shape), "seed": draw(seeds),
                "fill": draw(fill if fill is not None else fills)}
        if layout:
            spec["layout"] = draw(layout_ops)
        if name:
            spec["name"] = name
        return spec

    def huge(draw, ndim):
        dtype = "<f4" if draw(coin) else "<f8"
        size = np.dtype(dtype).itemsize
        shape = [draw(huge_dims) for _ in range(ndim)]
        while _prod(shape) * size >= 2**63:
            shape[shape.index(max(shape))] //= 2**8
        if _prod(shape) * size < 2**40:  # far beyond any allocation
            shape[0] = 2**41 // max(1, _prod(shape[1:]))
        return {"t": "huge", "dtype": dtype, "shape": shape}

    def rows(draw, n_dims, d, good=GOOD_FLOATS, name=None):
        """An array of ndim n_dims (1: (d,), 2: (n, d)); sometimes 0-d, 3-d, huge or junk."""
        r = draw(percent)
        if r < 3:
            return huge(draw, n_dims)
        if r < 6:
            return array(draw, [], good, name=name)
        if r < 9:
            return array(draw, [draw(dims), draw(dims), d], good, name=name)
        if r < 13:
            return draw(junk)
        return array(draw, [d] if n_dims == 1 else [draw(dims), d], good, name=name)

    def out_for(draw, shape, dtype, alias_names=()):
        r = draw(percent)
        if r < 45:
            return None
        if r < 70:
            return array(draw, shape, [dtype], fill=const7, layout=draw(coin))
        if r < 80 and alias_names:
            return {"t": "alias", "of": pick(draw, list(alias_names)), "op": draw(alias_ops)}
        if r < 90:
            wrong = list(shape) if shape else [1]
            wrong[draw(st.integers(0, len(wrong) - 1))] += pick(draw, [-1, 1, 2])
            wrong = [max(0, w) for w in wrong]
            other = "<f8" if dtype == "<f4" else "<f4"
            return array(draw, pick(draw, [wrong, list(shape) + [1], list(shape[1:]) if shape else [2]]),
                         [dtype, other])
        return draw(junk)

    def dtype_of(a):
        return a.get("dtype", "<f4") if isinstance(a, dict) and a.get("t") == "array" else "<f4"

    def is_array(a):
        return isinstance(a, dict) and a.get("t") == "array"

    def mode(draw):
        import engram

        m = {}
        if draw(percent) < 70:
            info = engram.simd_info()
            m["simd"] = pick(draw, [lv for lv in info["compiled"] if lv in info["detected"]])
        if draw(percent) < 10:
            m["stats"] = True
        if draw(percent) < 5:
            m["verify"] = True
        if draw(percent) < 7:
            m["arena"] = {"size": 65536, "overflow": pick(draw, ["raise", "heap"]), "zero_on_reset": draw(coin)}
        return m

    def cosine(draw):
        d = draw(dims)
        x = rows(draw, pick(draw, [1, 2]), d, name="x")
        y = rows(draw, pick(draw, [1, 2]), d if draw(percent) < 90 else draw(dims), name="y")
        kwargs = {}
        if is_array(x) and is_array(y) and len(x["shape"]) + len(y["shape"]) > 2:
            xs, ys = x["shape"], y["shape"]
            shape = ([xs[0]] if len(xs) == 2 else []) + ([ys[0]] if len(ys) == 2 else [])
            dt = "<f4" if dtype_of(x) == dtype_of(y) == "<f4" else "<f8"
            out = out_for(draw, shape, dt, ["x", "y"])
            if out is not None:
                kwargs["out"] = out
        maybe_kw(kwargs, draw, "threads", threads, p_junk=0)
        if draw(percent) < 3:
            kwargs[pick(draw, ["axis", "k", "metric", "outx"])] = draw(junk)
        return {"fn": "cosine_similarity", "args": [x, y], "kwargs": kwargs}

    def normalize(draw):
        x = rows(draw, pick(draw, [1, 2]), draw(dims), name="x")
        kwargs = {}
        if is_array(x):
            out = out_for(draw, x["shape"], dtype_of(x), ["x"])
            if out is not None:
                kwargs["out"] = out
        if draw(percent) < 5:
            kwargs["threads"] = draw(threads)
        return {"fn": "normalize", "args": [x], "kwargs": kwargs}

    def top_k(draw):
        d = draw(dims)
        q = rows(draw, pick(draw, [1, 2]), d)
        c = rows(draw, 2, d)
        if c.get("t") == "huge":  # a valid corpus of 2**41 rows is work, not an error
            c = draw(junk)
        n = c["shape"][0] if is_array(c) and len(c["shape"]) == 2 else 4
        r = draw(percent)
        k = draw(st.integers(1, n + 3)) if r < 70 else draw(st.integers(1, 3)) if r < 80 else draw(k_values)
        kwargs = {}
        maybe_kw(kwargs, draw, "metric", metrics)
        maybe_kw(kwargs, draw, "threads", threads, p_junk=0)
        return {"fn": "top_k", "args": [q, c, k], "kwargs": kwargs}

    def decay_operand(draw, n, name):
        good = ["<f4", "<f8", "<i8", "<u8"]
        r = draw(percent)
        if r < 45:
            return array(draw, [n], good, fill=ages_fill, name=name)
        if r < 75:
            return draw(operand_numbers)
        if r < 80:
            return huge(draw, 1)
        if r < 85:
            return array(draw, pick(draw, [[], [n + 1], [n, 1], [max(n - 1, 0)]]), good)
        return draw(junk)

    def decay(draw):
        n = pick(draw, [0, 1, 2, 3, 7, 15, 16, 17, 31, 33, 100, 257])
        r = draw(percent)
        if r < 85:
            strength = array(draw, [n], name="strength")
        elif r < 90:
            strength = huge(draw, 1)
        elif r < 95:
            strength = array(draw, pick(draw, [[], [n, 2], [2, n]]))
        else:
            strength = draw(junk)
        age = decay_operand(draw, n, "age")
        kwargs = {}
        if draw(percent) < 50:
            kwargs["stability"] = decay_operand(draw, n, "stability")
        maybe_kw(kwargs, draw, "model", models)
        maybe_kw(kwargs, draw, "power", reals)
        maybe_kw(kwargs, draw, "factor", reals)
        maybe_kw(kwargs, draw, "validate", coin, 60)
        maybe_kw(kwargs, draw, "threads", threads, p_junk=0)
        if is_array(strength):
            names = ["strength"] + [nm for nm in ("age", "stability")
                                    if is_array(age if nm == "age" else kwargs.get(nm))]
            out = out_for(draw, strength["shape"], dtype_of(strength), names)
            if out is not None:
                kwargs["out"] = out
        return {"fn": "decay", "args": [strength, age], "kwargs": kwargs}

    def graph(draw):
        n = draw(graph_n)
        spec = {"t": "graph", "n": n, "m": draw(st.integers(0, 4 * n + 2)), "seed": draw(seeds),
                "idx": draw(graph_idx), "w": draw(graph_w), "wspecial": draw(coin),
                "form": draw(graph_forms), "pass_n": draw(coin)}
        if draw(percent) < 20:
            spec["corrupt"] = draw(corruptions)
        if draw(percent) < 5:
            spec["extra_cols"] = 1
        return spec

    def spread(draw):
        g = graph(draw)
        n = g["n"]
        r = draw(percent)
        if r < 55:
            seeds_ = array(draw, [n], fill=nonneg_fills, name="seeds")
        elif r < 70:
            seeds_ = array(draw, [draw(st.integers(0, 4)), n], fill=nonneg_fills, name="seeds")
        elif r < 80:
            items = []
            for _ in range(draw(st.integers(0, 5))):
                key = draw(st.integers(-1, n + 1)) if draw(percent) < 90 else draw(junk)
                value = draw(st.floats(0, 2)) if draw(percent) < 80 else draw(junk)
                items.append([key, value])
            seeds_ = {"t": "dict", "items": items}
        elif r < 85:
            seeds_ = array(draw, pick(draw, [[max(n - 1, 0)], [n + 1], [], [1, 1, n]]), fill=nonneg_fills)
        elif r < 88:
            seeds_ = huge(draw, 2)
        else:
            seeds_ = draw(junk)
        kwargs = {}
        maybe_kw(kwargs, draw, "max_depth", depths)
        depth = kwargs.get("max_depth", 4)
        depth = depth if isinstance(depth, int) and not isinstance(depth, bool) and 0 <= depth <= 40 else 4
        r = draw(percent)
        if r < 30:
            maybe_kw(kwargs, draw, "decay", decays, p_absent=0)
        elif r < 40:
            kwargs["decay"] = array(draw, [depth], fill=per_hop, layout=False)
        elif r < 45:
            kwargs["decay"] = array(draw, [draw(ints_0_6)], fill=per_hop_bad)
        maybe_kw(kwargs, draw, "threshold", small_reals)
        maybe_kw(kwargs, draw, "normalize", normalizes)
        maybe_kw(kwargs, draw, "combine", combines)
        maybe_kw(kwargs, draw, "revisit", coin)
        maybe_kw(kwargs, draw, "threads", threads, 70, p_junk=0)
        if is_array(seeds_) and len(seeds_["shape"]) in (1, 2) and seeds_["shape"][-1] == n:
            out = out_for(draw, seeds_["shape"], "<f4", ["seeds"])
        else:
            out = out_for(draw, [n], "<f4")
        if out is not None:
            kwargs["out"] = out
        if draw(percent) < 3:
            kwargs["direction"] = draw(junk)
        depth = kwargs.get("max_depth")
        if isinstance(depth, dict) and depth.get("t") == "py":
            depth = depth.get("v")
        if (kwargs.get("revisit") and isinstance(depth, int) and not isinstance(depth, bool)
                and 1000 < depth < 2**64):
            # with revisit the work is max_depth hops wherever activity does not die out
            # (a growing or non-decaying cycle): 2**40 hops are hours of legitimate work
            kwargs["max_depth"] = 1000
        return {"fn": "spread", "args": [g, seeds_], "kwargs": kwargs}

    def graph_ctor(draw):
        n = pick(draw, [0, 1, 3, 6])
        if draw(percent) < 60:
            g = graph(draw)
            g["form"] = "Graph"
            return {"fn": "spread", "args": [g, array(draw, [g["n"]], fill=nonneg_fills)], "kwargs": {}}
        indptr = array(draw, [n + 1], ["<i4", "<i8"], fill=st.just({"kind": "int", "lo": 0, "hi": 4}))
        indices = array(draw, [draw(ints_0_6)], ["<i4", "<i8"], fill=st.just({"kind": "int", "lo": -1, "hi": n + 1}))
        args = [indptr, indices]
        if draw(coin):
            args.append(array(draw, [draw(ints_0_6)], fill=nonneg_fills))
            if draw(coin):
                args.append(maybe_junk(draw, st.integers(-1, 8), 30))
        return {"fn": "Graph", "args": args, "kwargs": {}}

    def state_call(draw):
        which = pick(draw, ["set_num_threads", "set_backend", "verify", "stats", "arena.configure",
                            "arena.parse_size", "simd_info", "get_backend", "backend", "backend_info"])
        args, kwargs = [], {}
        if which == "set_num_threads":
            args = [maybe_junk(draw, st.integers(-2, 300), 30)]
        elif which in ("set_backend", "backend"):
            args = [maybe_junk(draw, choice(["c", "reference", "C", "fast"]), 30)]
        elif which == "verify":
            maybe_kw(kwargs, draw, "rate", choice([0.0, 0.5, 1.0, 1.5, -0.1, float("nan")]), p_junk=30)
            maybe_kw(kwargs, draw, "strict", coin, p_junk=30)
        elif which == "stats":
            maybe_kw(kwargs, draw, "enable", coin, p_junk=30)
            maybe_kw(kwargs, draw, "reset", coin, p_junk=30)
        elif which == "arena.configure":
            maybe_kw(kwargs, draw, "size", sizes)
            maybe_kw(kwargs, draw, "overflow", choice(["heap", "raise", "crash"]), p_junk=30)
            maybe_kw(kwargs, draw, "zero_on_reset", coin, p_junk=30)
        elif which == "arena.parse_size":
            args = [draw(sizes)]
        return {"fn": which, "args": args, "kwargs": kwargs}

    def share_buffer(draw, s):
        """Make out and one array input views into one buffer, overlapping or side by side."""
        out = s["kwargs"].get("out")
        inputs = [a for a in s["args"] if is_array(a) and a["shape"]]
        if not (is_array(out) and out["shape"] and inputs):
            return
        a = pick(draw, inputs)
        size_a, size_o = _prod(a["shape"]), _prod(out["shape"])
        shift = draw(st.integers(-size_o, size_a))
        off_a, off_o = max(0, -shift), max(0, shift)
        size = max(off_a + size_a, off_o + size_o)
        for part, offset in ((a, off_a), (out, off_o)):
            part.update(buffer="shared", buffer_size=size, offset=offset, dtype=out["dtype"])

    makers = [cosine, normalize, top_k, decay, spread, spread, graph_ctor, state_call]

    @st.composite
    def spec(draw):
        s = pick(draw, makers)(draw)
        if s["fn"] in KERNELS:
            s["mode"] = mode(draw)
        if s["fn"] in ("cosine_similarity", "normalize", "decay", "spread") and draw(percent) < 10:
            share_buffer(draw, s)
        return s

    return spec()


# --------------------------------------------------------------------------
# Driving Hypothesis, saving what fails
# --------------------------------------------------------------------------


def spec_id(spec: dict) -> str:
    return hashlib.sha1(json.dumps(spec, sort_keys=True).encode()).hexdigest()[:12]


def save(spec: dict, kind: str, message: str, corpus: str) -> str:
    os.makedirs(corpus, exist_ok=True)
    path = os.path.join(corpus, f"{kind}-{spec_id(spec)}.json")
    with open(path, "w") as f:
        json.dump({"found": kind, "message": message[:500], "spec": spec}, f, indent=1, sort_keys=True)
        f.write("\n")
    return path


def _write_current(path: str, spec: dict) -> None:
    with open(path + ".tmp", "w") as f:
        json.dump(spec, f)
    os.replace(path + ".tmp", path)


def worker(until: float, seed: int, current: str, report: str, corpus: str, differential: bool) -> int:
    """Fuzz until the deadline; writes {"cases", "failures"} to `report`."""
    from hypothesis import HealthCheck, Phase, given, settings
    from hypothesis import seed as hseed

    import engram  # noqa: F401  (the build under test, loaded before timing starts)

    engram.set_backend("c")
    strategy = _strategies()
    stats = {"cases": 0, "outcomes": {}, "failures": []}
    seen_failures: set = set()
    last_failure: dict = {}

    def one(spec):
        if time.time() > until:
            return
        _write_current(current, spec)
        stats["cases"] += 1
        try:
            outcome = check(spec, differential)
        except Failure as f:
            last_failure["spec"], last_failure["kind"], last_failure["message"] = spec, f.kind, str(f)
            raise
        stats["outcomes"][outcome] = stats["outcomes"].get(outcome, 0) + 1

    batch = 0
    while time.time() < until:
        test = settings(max_examples=500, deadline=None, database=None, derandomize=False,
                        report_multiple_bugs=False,
                        suppress_health_check=list(HealthCheck),
                        phases=[Phase.generate, Phase.shrink])(given(strategy)(one))
        try:
            hseed(seed * 100_003 + batch)(test)()
        except HarnessError as exc:
            print(f"fuzz: harness error (not a finding): {exc}", flush=True)
        except KeyboardInterrupt:
            raise
        except BaseException as exc:  # Failure, or Hypothesis's Flaky group around one
            if "spec" not in last_failure:
                raise
            if not isinstance(exc, Failure):
                print(f"fuzz: {type(exc).__name__} (the failure did not reproduce exactly)", flush=True)
            key = (last_failure["kind"], last_failure["message"].split("\n")[0][:120])
            if key not in seen_failures:
                seen_failures.add(key)
                path = save(last_failure["spec"], last_failure["kind"], last_failure["message"], corpus)
                stats["failures"].append({"kind": last_failure["kind"], "message": last_failure["message"],
                                          "path": path})
                print(f"fuzz: FAILURE {last_failure['message']}\n      saved to {path}", flush=True)
            last_failure.clear()
        batch += 1
        with open(report, "w") as f:
            json.dump(stats, f)
    with open(report, "w") as f:
        json.dump(stats, f)
    return 0


def supervise(seconds: float, seed: int, corpus: str, differential: bool) -> int:
    """Run workers until the time is up; a worker that dies leaves its last spec as a crash."""
    start = time.time()
    until = start + seconds
    total_cases, outcomes, failures, crashes = 0, {}, [], []
    tmp = tempfile.mkdtemp(prefix="engram-fuzz-")
    current, report = os.path.join(tmp, "current.json"), os.path.join(tmp, "report.json")
    run = 0
    while time.time() < until:
        for p in (current, report):
            if os.path.exists(p):
                os.remove(p)
        cmd = [sys.executable, os.path.abspath(__file__), "--worker", "--until", repr(until),
               "--seed", str(seed + run), "--current", current, "--report", report, "--corpus", corpus]
        if not differential:
            cmd.append("--no-differential")
        proc = subprocess.Popen(cmd)
        hung = False
        while proc.poll() is None:
            time.sleep(1.0)
            try:
                idle = time.time() - os.path.getmtime(current)
            except OSError:
                idle = 0.0
            if idle > HANG_SECONDS:
                hung = True
                proc.kill()
                proc.wait()
        code = proc.returncode
        run += 1
        if os.path.exists(report):
            with open(report) as f:
                stats = json.load(f)
            total_cases += stats["cases"]
            for k, v in stats["outcomes"].items():
                outcomes[k] = outcomes.get(k, 0) + v
            failures += stats["failures"]
        if code != 0:
            spec = None
            if os.path.exists(current):
                with open(current) as f:
                    spec = json.load(f)
            kind = "hang" if hung else "crash"
            message = (f"no answer after {HANG_SECONDS} s" if hung else
                       f"the interpreter died (exit status {code}) running this spec")
            if spec is not None:
                path = save(spec, kind, message, corpus)
                crashes.append(path)
                print(f"fuzz: {kind.upper()} ({message}); spec saved to {path}", flush=True)
            else:
                print(f"fuzz: worker exited with status {code} before its first case", flush=True)
                break
    elapsed = time.time() - start
    print(f"fuzz: {total_cases} cases in {elapsed:.0f} s ({total_cases / max(elapsed, 1e-9):.0f}/s), "
          f"{run} worker run(s); outcomes {json.dumps(outcomes, sort_keys=True)}")
    print(f"fuzz: {len(failures)} contract failure(s), {len(crashes)} crash(es) or hang(s)")
    for f in failures:
        print(f"  {f['kind']}: {f['message'][:200]}  -> {f['path']}")
    for c in crashes:
        print(f"  crash -> {c}")
    return 1 if failures or crashes else 0


def replay(paths) -> int:
    """Re-run saved specs (files or directories); returns the number that still fail."""
    files = []
    for p in paths:
        if os.path.isdir(p):
            files += sorted(os.path.join(p, f) for f in os.listdir(p) if f.endswith(".json"))
        else:
            files.append(p)
    bad = 0
    for path in files:
        with open(path) as f:
            entry = json.load(f)
        try:
            outcome = check(entry["spec"])
            print(f"ok    {os.path.basename(path)}: {outcome}")
        except (Failure, HarnessError) as exc:
            bad += 1
            print(f"FAIL  {os.path.basename(path)}: {exc}")
    print(f"replay: {len(files)} spec(s), {bad} failing")
    return bad


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=60.0, help="how long to fuzz (default 60)")
    parser.add_argument("--seed", type=int, default=None, help="first Hypothesis seed (default: random)")
    parser.add_argument("--sanitized", action="store_true",
                        help="run under ASan+UBSan: rebuild in a scratch copy via tools/sanitize.sh")
    parser.add_argument("--corpus", default=CORPUS, help="where failing specs are saved")
    parser.add_argument("--no-differential", action="store_true",
                        help="do not compare successful calls with the reference")
    parser.add_argument("--replay", nargs="+", metavar="PATH", help="re-run saved specs and exit")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--until", type=float, help=argparse.SUPPRESS)
    parser.add_argument("--current", help=argparse.SUPPRESS)
    parser.add_argument("--report", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    corpus = os.path.abspath(args.corpus)
    if args.replay:
        return 1 if replay(args.replay) else 0
    if args.worker:
        return worker(args.until, args.seed, args.current, args.report, corpus, not args.no_differential)
    seed = args.seed if args.seed is not None else int.from_bytes(os.urandom(3), "little")
    if args.sanitized and not os.environ.get("ENGRAM_FUZZ_SANITIZED"):
        cmd = [os.path.join(HERE, "sanitize.sh"), "--run", "tools/fuzz.py", "--seconds", str(args.seconds),
               "--seed", str(seed), "--corpus", corpus]
        if args.no_differential:
            cmd.append("--no-differential")
        return subprocess.call(cmd, env=dict(os.environ, ENGRAM_FUZZ_SANITIZED="1"))
    print(f"fuzz: {args.seconds:.0f} s from seed {seed}"
          f"{' under ASan+UBSan' if os.environ.get('ENGRAM_FUZZ_SANITIZED') else ''}; failures go to {corpus}",
          flush=True)
    return supervise(args.seconds, seed, corpus, not args.no_differential)


if __name__ == "__main__":
    sys.exit(main())
