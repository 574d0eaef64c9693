"""Pure-NumPy reference versions of engram's kernels.

Same names, signatures and semantics as the C core, written to be
obviously correct rather than fast, computing in float64.  They are the
oracle of the differential tests and the ``reference`` backend
(``ENGRAM_BACKEND=reference``, ``engram.set_backend("reference")``).
"""
from __future__ import annotations

import operator

import numpy as np

__all__: list[str] = []

#: what the C core says of an out= whose elements share memory
_OUT_DISTINCT = "an array whose elements do not overlap (no zero stride, rows at least a row apart)"


def _real(fname: str, name: str, value) -> float:
    """float(value), where an int beyond the float range is a ValueError, as in the C core."""
    try:
        return float(value)
    except OverflowError:
        raise ValueError(f"{fname}(): {name} is too large for a float, got {value!r}") from None


def _overlaps_itself(a: np.ndarray) -> bool:
    """Whether two elements of ``a`` share memory (a zero stride, rows closer than a row):
    results written there would overwrite each other."""
    if a.size <= 1:
        return False
    extent = a.itemsize
    for n, s in sorted(((n, abs(s)) for n, s in zip(a.shape, a.strides) if n > 1), key=lambda t: t[1]):
        if s < extent:
            return True
        extent += s * (n - 1)
    return False

# ==== similarity ====

__all__ += ["cosine_similarity", "normalize", "top_k"]


def _describe(a: np.ndarray) -> str:
    return f"{a.dtype} array of shape {a.shape} and strides {a.strides}"


def _float_array(fname: str, name: str, value, ndims: tuple) -> np.ndarray:
    """``value`` as a float32/float64 array with an allowed ndim, or the C core's error."""
    try:
        a = np.asarray(value)
    except Exception as exc:  # e.g. ragged sequences
        raise TypeError(f"{fname}(): {name} must be a float32 or float64 array, got "
                        f"{type(value).__name__} ({exc})") from None
    # float32/float64 in either byte order, like the C core (which converts once)
    if a.dtype.kind != "f" or a.dtype.itemsize not in (4, 8):
        raise TypeError(f"{fname}(): {name} must be a float32 or float64 array, got {_describe(a)}")
    if a.ndim not in ndims:
        expected = f"{ndims[0]}-dimensional" if len(ndims) == 1 else f"{ndims[0]}- to {ndims[-1]}-dimensional"
        raise ValueError(f"{fname}(): {name} must be {expected}, got {_describe(a)}")
    return a


def _same_dim(fname, a_name, a, b_name, b):
    if a.shape[-1] != b.shape[-1]:
        raise ValueError(
            f"{fname}(): {a_name} and {b_name} must have the same last dimension (vector length), "
            f"got {a_name} as {_describe(a)} and {b_name} as {_describe(b)}")


def _result_dtype(*arrays) -> np.dtype:
    """Native float32 if every input is float32 (any byte order), else native float64."""
    return np.dtype(np.float32) if all(a.dtype.itemsize == 4 for a in arrays) else np.dtype(np.float64)


def _row_exponents(a: np.ndarray):
    """Per row of ``a`` (float64, 2-D): e with the largest finite |element| in [2**(e-1), 2**e)
    (0 for a zero row), which rows are finite, and which are nonzero."""
    finite = np.isfinite(a).all(axis=1)
    largest = np.abs(np.where(np.isfinite(a), a, 0.0)).max(axis=1, initial=0.0)
    nonzero = largest > 0
    _, exponent = np.frexp(np.where(nonzero, largest, 1.0))
    return exponent, finite, nonzero


def _scaled_rows(a: np.ndarray):
    """Rows of ``a`` (float64, 2-D) scaled by powers of two so the largest |element| is in
    [0.5, 1) (exact), plus which rows are finite and which are nonzero."""
    exponent, finite, nonzero = _row_exponents(a)
    return np.ldexp(a, -exponent[:, None]), finite, nonzero


def _dot_matrix(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """float64 dot products of the rows of x and y.  Pairs of finite rows are computed on rows
    scaled by powers of two (exact) and scaled back, so products beyond the float64 range give
    the true finite or infinite dot instead of inf - inf = NaN; a row holding NaN or inf keeps
    the plain IEEE sum."""
    x = np.asarray(x, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    x_exp, x_finite, _ = _row_exponents(x)
    y_exp, y_finite, _ = _row_exponents(y)
    with np.errstate(invalid="ignore", over="ignore"):
        plain = x @ y.T
        xs = np.ldexp(np.where(x_finite[:, None], x, 0.0), -x_exp[:, None])
        ys = np.ldexp(np.where(y_finite[:, None], y, 0.0), -y_exp[:, None])
        scaled = np.ldexp(xs @ ys.T, x_exp[:, None] + y_exp[None, :])
    return np.where(x_finite[:, None] & y_finite[None, :], scaled, plain)


def _cosine_matrix(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """float64 cosines of the rows of x and y: scaled, so denormal and huge rows are exact;
    NaN/inf in a row -> NaN, a zero row -> 0, clamped to [-1, 1]."""
    xs, x_finite, x_nonzero = _scaled_rows(np.asarray(x, dtype=np.float64))
    ys, y_finite, y_nonzero = _scaled_rows(np.asarray(y, dtype=np.float64))
    xs = np.where(x_finite[:, None], xs, 0.0)
    ys = np.where(y_finite[:, None], ys, 0.0)
    x_norm = np.sqrt(np.einsum("ij,ij->i", xs, xs))
    y_norm = np.sqrt(np.einsum("ij,ij->i", ys, ys))
    with np.errstate(invalid="ignore", divide="ignore"):
        cos = (xs @ ys.T) / np.outer(x_norm, y_norm)
    cos = np.clip(cos, -1.0, 1.0)
    cos[~(x_nonzero[:, None] & y_nonzero[None, :])] = 0.0
    cos[~(x_finite[:, None] & y_finite[None, :])] = np.nan
    return cos


def _check_out(fname, out, dtype, shape, inputs):
    if not isinstance(out, np.ndarray):
        raise TypeError(f"{fname}(): out must be a numpy.ndarray, got {type(out).__name__}")
    expected = f"a writeable {dtype} array of shape {shape}"
    if out.dtype != dtype:
        raise TypeError(f"{fname}(): out must be {expected}, got {_describe(out)}")
    if out.shape != shape:
        raise ValueError(f"{fname}(): out must be {expected}, got {_describe(out)}")
    if not out.flags.writeable:
        raise ValueError(f"{fname}(): out must be writeable, got {_describe(out)}")
    if _overlaps_itself(out):
        raise ValueError(f"{fname}(): out must be {_OUT_DISTINCT}, got {_describe(out)}")
    for name, a in inputs:
        if a is not None and np.shares_memory(out, a):
            raise ValueError(f"{fname}(): out overlaps {name} in memory; pass a separate array")


def _check_threads(fname, threads):
    """None, or any integer (anything with __index__ but bool) in 1..256."""
    if threads is None:
        return
    try:
        n = None if isinstance(threads, (bool, np.bool_)) else operator.index(threads)
    except TypeError:
        n = None
    if n is None:
        raise TypeError(f"{fname}(): threads must be None or a positive int, got {type(threads).__name__}")
    if not 1 <= n <= 256:
        raise ValueError(f"{fname}(): threads must be None or in 1..256, got {n}")


def cosine_similarity(x, y, *, out=None, threads=None):
    """Cosine similarity: (d,),(d,) -> float; (d,),(n,d) -> (n,); (m,d),(d,) -> (m,);
    (m,d),(n,d) -> (m,n).  Zero vector -> 0.0, NaN/inf -> NaN, clamped to [-1, 1]."""
    fname = "cosine_similarity"
    _check_threads(fname, threads)
    xa = _float_array(fname, "x", x, (1, 2))
    ya = _float_array(fname, "y", y, (1, 2))
    _same_dim(fname, "x", xa, "y", ya)
    dtype = _result_dtype(xa, ya)
    cos = _cosine_matrix(np.atleast_2d(xa), np.atleast_2d(ya))
    if xa.ndim == 1 and ya.ndim == 1:
        if out is not None:
            raise TypeError(f"{fname}(): out must be None when x and y are both 1-D "
                            f"(the result is a float), got {type(out).__name__}")
        return float(cos[0, 0])
    shape = tuple(s for a, s in ((xa, xa.shape[0]), (ya, ya.shape[0])) if a.ndim == 2)
    result = cos.reshape(shape).astype(dtype)
    if out is None:
        return result
    _check_out(fname, out, dtype, shape, [("x", xa), ("y", ya)])
    out[...] = result
    return out


def normalize(x, *, out=None):
    """Rows (or the vector) scaled to unit L2 norm; zero rows unchanged; NaN/inf rows -> NaN."""
    fname = "normalize"
    xa = _float_array(fname, "x", x, (1, 2))
    rows = np.atleast_2d(xa).astype(np.float64)
    scaled, finite, nonzero = _scaled_rows(rows)
    norm = np.sqrt(np.einsum("ij,ij->i", scaled, scaled))
    with np.errstate(invalid="ignore", divide="ignore"):
        result = np.where(nonzero[:, None], scaled / norm[:, None], rows)
    result[~finite] = np.nan
    dtype = _result_dtype(xa)
    result = result.reshape(xa.shape).astype(dtype)
    if out is None:
        return result
    # in place only into exactly x: same memory, layout and dtype (byte order included)
    if isinstance(out, np.ndarray) and out is not xa and np.shares_memory(out, xa) and not (
        out.__array_interface__["data"][0] == xa.__array_interface__["data"][0]
        and out.strides == xa.strides
        and out.dtype == xa.dtype
    ):
        raise ValueError(f"{fname}(): out overlaps x in memory; pass a separate array or exactly the same array")
    _check_out(fname, out, dtype, xa.shape, [])
    out[...] = result
    return out


def top_k(queries, corpus, k, *, metric="cosine", threads=None):
    """(scores, ids) of the k best corpus rows per query, best first, ties to the smaller id;
    NaN scores never returned; padded with id -1 / score -inf.  Scores are compared as the
    result dtype rounds them."""
    fname = "top_k"
    _check_threads(fname, threads)
    if not isinstance(metric, str):
        raise TypeError(f"{fname}(): metric must be one of 'cosine', 'dot', got {metric!r}")
    if metric not in ("cosine", "dot"):
        raise ValueError(f"{fname}(): metric must be one of 'cosine', 'dot', got {metric!r}")
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)):
        raise TypeError(f"{fname}(): k must be a positive int, got {type(k).__name__}")
    k = int(k)
    if k <= 0:
        raise ValueError(f"{fname}(): k must be a positive int, got {k}")
    qa = _float_array(fname, "queries", queries, (1, 2))
    ca = _float_array(fname, "corpus", corpus, (2,))
    _same_dim(fname, "queries", qa, "corpus", ca)
    dtype = _result_dtype(qa, ca)
    q = np.atleast_2d(qa)
    m, n = q.shape[0], ca.shape[0]
    scores = np.full((m, k), -np.inf, dtype=dtype)
    ids = np.full((m, k), -1, dtype=np.int64)
    c64 = ca.astype(np.float64)
    block = max(1, (1 << 22) // max(n, 1))
    for q0 in range(0, m, block):
        qb = q[q0:q0 + block]
        if metric == "cosine":
            s = _cosine_matrix(qb, c64)
        else:
            s = _dot_matrix(qb, c64)
        s = s.astype(dtype).astype(np.float64)  # compare what the caller sees
        for i, row in enumerate(s):
            valid = np.flatnonzero(~np.isnan(row))
            order = valid[np.lexsort((valid, -row[valid]))][:k]
            scores[q0 + i, :order.size] = row[order]
            ids[q0 + i, :order.size] = order
    if qa.ndim == 1:
        return scores[0], ids[0]
    return scores, ids

# ==== end similarity ====

# ==== spread ====

from .graph import Graph  # noqa: E402  (the same validated graph for both backends)

__all__ += ["spread", "Graph"]


def _spread_real(name: str, value) -> float:
    """A real-number parameter as the C core takes it: a Python int or float, a NumPy integer or
    floating scalar, or a 0-d array of one (not bool); out of the float64 range is a ValueError."""
    if isinstance(value, np.ndarray):
        if value.ndim != 0 or value.dtype.kind not in "iuf":
            raise TypeError(f"spread(): {name} must be a real number, got {_describe(value)}")
        value = value[()]
    if isinstance(value, (bool, np.bool_)) or not isinstance(
        value, (int, float, np.integer, np.floating)
    ):
        raise TypeError(f"spread(): {name} must be a real number, got {type(value).__name__}")
    try:
        return float(value)
    except OverflowError:
        raise ValueError(
            f"spread(): {name} must be a real number in the float64 range, got an int too large "
            "for it"
        ) from None


class _SpreadDecays:
    """The factor of each hop k = 0 .. hops - 1 (``decays[k]``): one factor for every hop, or an
    array of them.  One factor is never expanded into an array: max_depth may be huge while the
    frontier empties after a few hops."""

    def __init__(self, factor: float, per_hop, hops: int):
        self.factor, self.per_hop, self.hops = factor, per_hop, hops

    def __getitem__(self, k: int) -> float:
        return self.factor if self.per_hop is None else self.per_hop[k]


def _spread_decays(decay, max_depth: int) -> _SpreadDecays:
    """decay as per-hop factors, each checked to be in (0, 1]."""
    if not isinstance(decay, np.ndarray) and (
        isinstance(decay, (bool, np.bool_, int, float, np.integer, np.floating))
    ):
        arr = None
    else:
        arr = np.asarray(decay)
        if arr.dtype.kind not in "iuf":
            raise TypeError(
                f"spread(): decay must be a real number or a real array, got {arr.dtype} array "
                f"of shape {arr.shape}"
            )
    if arr is None or arr.ndim == 0:
        d = _spread_real("decay", decay)
        if not 0 < d <= 1:
            raise ValueError(f"spread(): decay must be in (0, 1], got {d}")
        return _SpreadDecays(d, None, max_depth)
    if arr.ndim != 1 or arr.shape[0] != max_depth:
        raise ValueError(
            f"spread(): decay must be a number or an array of max_depth = {max_depth} per-hop "
            f"factors, got {arr.dtype} array of shape {arr.shape}"
        )
    arr = arr.astype(np.float64)
    bad = ~((arr > 0) & (arr <= 1))
    if bad.any():
        k = int(np.argmax(bad))
        raise ValueError(f"spread(): decay must be in (0, 1], but decay[{k}] = {arr[k]}")
    return _SpreadDecays(1.0, arr, max_depth)


def _spread_seeds(seeds, n: int) -> tuple[np.ndarray, bool]:
    """Seeds as a float64 (b, n) array, and whether they came as a batch.

    A dict maps node ids (ints, or anything with __index__ but bool) to values; when two keys
    name the same node, the later one counts, as when the dict is written into a dense array.
    """
    if isinstance(seeds, dict):
        dense = np.zeros((1, n))
        for key, value in list(seeds.items()):
            try:
                node = None if isinstance(key, (bool, np.bool_)) else operator.index(key)
            except TypeError:
                node = None
            if node is None:
                raise TypeError(
                    "spread(): seeds given as a dict must map int node ids to values, got a key "
                    f"of type {type(key).__name__}"
                )
            if not 0 <= node < n:
                raise ValueError(
                    f"spread(): seeds has node {node}, out of range for a graph of {n} nodes"
                )
            if isinstance(value, (bool, np.bool_)) or not isinstance(
                value, (int, float, np.integer, np.floating)
            ):
                raise TypeError(
                    f"spread(): seeds[{node}] must be a real number, got {type(value).__name__}"
                )
            try:
                value = float(value)
            except OverflowError:
                value = float("inf") if value > 0 else float("-inf")
            if not (np.isfinite(value) and value >= 0):
                what = "NaN" if np.isnan(value) else "infinite" if np.isinf(value) else "negative"
                raise ValueError(
                    f"spread(): seeds must be finite and >= 0, but seeds[{node}] = {value} is {what}"
                )
            dense[0, node] = value
        return dense, False
    # float32/float64 in either byte order, like the C core
    arr = _float_array("spread", "seeds", seeds, (1, 2))
    if arr.shape[-1] != n:
        raise ValueError(
            f"spread(): seeds must be of shape ({n},) or (b, {n}) for a graph of {n} nodes, got "
            f"{_describe(arr)}"
        )
    batch = arr.ndim == 2
    rows = (arr if batch else arr[None, :]).astype(np.float64)
    bad = ~(np.isfinite(rows) & (rows >= 0))
    if bad.any():
        r, i = np.unravel_index(int(np.argmax(bad)), rows.shape)
        v = rows[r, i]
        what = "NaN" if np.isnan(v) else "infinite" if np.isinf(v) else "negative"
        where = f"{r}, {i}" if batch else f"{i}"
        raise ValueError(f"spread(): seeds must be finite and >= 0, but seeds[{where}] = {v} is {what}")
    return rows, batch


def _spread_edges(g: Graph, normalize: str):
    """(source, target, w~) of every edge in float64; w~ = w / out-weight of the source."""
    src = np.repeat(np.arange(g.n), np.diff(g.indptr))
    dst = g.indices.astype(np.int64)
    w = np.ones(g.nnz) if g.weights is None else g.weights.astype(np.float64)
    if normalize == "out":
        out_weight = np.bincount(src, weights=w, minlength=g.n)
        # a node whose out-weights sum to 0 sends nothing
        w = np.divide(w, out_weight[src], out=np.zeros_like(w), where=out_weight[src] > 0)
    return src, dst, w


def _spread_row(src, dst, w, seeds, decays, threshold, combine, revisit, trace=None):
    """One row of seeds, exactly as DESIGN.md writes it; float64 totals.

    ``decays`` gives the factor of each hop (_spread_decays).
    Every product and sum is IEEE float64: a pulse that overflowed to inf sends
    inf along an edge of weight > 0 and NaN (0 * inf) along an edge of weight 0;
    NaN wins under both combines (np.maximum, like the sum, propagates it), and
    a NaN pulse is not > 0, so that node does not fire this hop.

    ``trace`` (a list) receives each hop's incoming pulses of the nodes that
    received any, for tests that keep clear of the threshold's knife edge.
    """
    n = seeds.shape[0]
    total = seeds.copy()
    pulse = seeds.copy()
    frontier = (pulse > 0) & (pulse >= threshold)
    fired = frontier.copy()
    k = 0
    while k < decays.hops and frontier.any():
        decay_k = decays[k]
        k += 1
        active = frontier[src]
        with np.errstate(over="ignore", invalid="ignore"):
            c = decay_k * w[active] * pulse[src[active]]
            nxt = np.zeros(n)
            if combine == "sum":
                np.add.at(nxt, dst[active], c)
            else:
                np.maximum.at(nxt, dst[active], c)
        if trace is not None:
            reached = np.zeros(n, dtype=bool)
            reached[dst[active]] = True
            trace.append(nxt[reached])
        frontier = (nxt > 0) & (nxt >= threshold) & (revisit | ~fired)
        with np.errstate(over="ignore"):
            if combine == "sum":
                total[frontier] = total[frontier] + nxt[frontier]
            else:
                total[frontier] = np.maximum(total[frontier], nxt[frontier])
        fired |= frontier
        pulse = np.where(frontier, nxt, 0.0)
    return total


def _spread_check(graph, seeds, max_depth, decay, threshold, normalize, combine, revisit, threads):
    g = Graph._coerce(graph)
    if isinstance(max_depth, (bool, np.bool_)) or not isinstance(max_depth, (int, np.integer)):
        raise TypeError(f"spread(): max_depth must be an int >= 0, got {type(max_depth).__name__}")
    if max_depth < 0:
        raise ValueError(f"spread(): max_depth must be >= 0, got {max_depth}")
    max_depth = int(max_depth)
    if max_depth >= 2**64:
        raise ValueError("spread(): max_depth is too large")
    decays = _spread_decays(decay, max_depth)
    threshold = _spread_real("threshold", threshold)
    if not threshold >= 0:
        raise ValueError(f"spread(): threshold must be >= 0 and not NaN, got {threshold}")
    for name, value, choices in (("normalize", normalize, ("none", "out")),
                                 ("combine", combine, ("sum", "max"))):
        if not isinstance(value, str) or value not in choices:
            exc = ValueError if isinstance(value, str) else TypeError
            raise exc(f"spread(): {name} must be one of {', '.join(map(repr, choices))}, got {value!r}")
    if not (isinstance(revisit, (bool, np.bool_)) or (isinstance(revisit, int) and revisit in (0, 1))):
        raise TypeError(f"spread(): revisit must be a bool, got {type(revisit).__name__}")
    _check_threads("spread", threads)
    rows, batch = _spread_seeds(seeds, g.n)
    return g, rows, batch, decays, threshold, bool(revisit)


def _spread_check_out(out, shape, g: Graph, seeds) -> None:
    """out as the C core checks it: type, dtype, shape, writeable, no overlap with the seeds
    (unless exactly the same array) or with the graph's arrays."""
    _check_out("spread", out, np.dtype(np.float32), shape, [])
    if isinstance(seeds, np.ndarray) and np.shares_memory(out, seeds) and not (
        out.dtype == seeds.dtype and out.shape == seeds.shape
        and all(s == t for s, t, d in zip(out.strides, seeds.strides, out.shape) if d > 1)
        and out.__array_interface__["data"][0] == seeds.__array_interface__["data"][0]
    ):
        raise ValueError("spread(): out overlaps seeds in memory; pass a separate array or "
                         "exactly the same array")
    for name in ("indptr", "indices", "weights"):
        a = getattr(g, name)
        if a is not None and np.shares_memory(out, a):
            raise ValueError(f"spread(): out overlaps the graph's {name} in memory; pass a "
                             "separate array")


def spread(graph, seeds, *, max_depth=4, decay=0.85, threshold=1e-4, normalize="none",
           combine="sum", revisit=False, out=None, threads=None):
    """Spreading activation, hop by hop in float64 (see DESIGN.md); float32 totals."""
    g, rows, batch, decays, threshold, revisit = _spread_check(
        graph, seeds, max_depth, decay, threshold, normalize, combine, revisit, threads
    )
    shape = (rows.shape[0], g.n) if batch else (g.n,)
    if out is not None:
        _spread_check_out(out, shape, g, seeds)
    src, dst, w = _spread_edges(g, normalize)
    totals = np.stack(
        [_spread_row(src, dst, w, row, decays, threshold, combine, revisit) for row in rows]
    ) if rows.shape[0] else np.zeros((0, g.n))
    with np.errstate(over="ignore"):  # totals beyond float32 become inf, as in the C core
        result = totals.astype(np.float32).reshape(shape)
    if out is not None:
        out[...] = result
        return out
    return result


# ==== end spread ====

# ==== decay ====

_DECAY_MODELS = ("exponential", "power")
_DECAY_OPERAND_TYPES = "a number or a 1-dimensional float32, float64, int64 or uint64 array"


def _describe(arr) -> str:
    return f"{arr.dtype} array of shape {arr.shape} and strides {arr.strides}"


def _decay_operand(name: str, value, n: int) -> np.ndarray:
    """age or stability as a 0-d or (n,) array of an accepted dtype."""
    if isinstance(value, int) and not isinstance(value, bool) and not -(2**63) <= value < 2**64:
        raise ValueError(f"decay(): {name} must be {_DECAY_OPERAND_TYPES}, got the int {value!r} (out of range)")
    try:
        arr = np.asarray(value)
    except (TypeError, ValueError) as exc:
        raise TypeError(f"decay(): {name} must be {_DECAY_OPERAND_TYPES}, got {type(value).__name__}") from exc
    ok = (arr.dtype.kind == "f" and arr.dtype.itemsize in (4, 8)) or (
        arr.dtype.kind in "iu" and arr.dtype.itemsize == 8
    )
    if not ok:
        raise TypeError(f"decay(): {name} must be {_DECAY_OPERAND_TYPES}, got {_describe(arr)}")
    if arr.ndim > 1 or (arr.ndim == 1 and arr.shape[0] != n):
        raise ValueError(
            f"decay(): {name} must be a number or an array of shape ({n},) like strength, got {_describe(arr)}"
        )
    return arr


def _decay_real(name: str, value) -> float:
    """As the C core takes a real number: int, float, a NumPy integer or floating scalar, or a 0-d
    array of one (not bool); an int beyond the float64 range is a ValueError."""
    if isinstance(value, np.ndarray):
        if value.ndim != 0 or value.dtype.kind not in "iuf":
            raise TypeError(f"decay(): {name} must be a real number, got {_describe(value)}")
        value = value[()]
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise TypeError(f"decay(): {name} must be a real number, got {type(value).__name__}")
    try:
        return float(value)
    except OverflowError:
        raise ValueError(
            f"decay(): {name} must be a real number in the float64 range, got an int too large for it"
        ) from None


def _decay_check(strength, age, stability, model, power, factor, out, validate, threads):
    """Every argument checked as the C core checks it; returns the arrays to compute with."""
    s = np.asarray(strength)
    if s.dtype.kind != "f" or s.dtype.itemsize not in (4, 8):
        raise TypeError(f"decay(): strength must be a float32 or float64 array, got {_describe(s)}")
    if s.ndim != 1:
        raise ValueError(f"decay(): strength must be 1-dimensional, got {_describe(s)}")
    n = s.shape[0]
    native = s.dtype.newbyteorder("=")  # any byte order in, the native dtype out
    if not isinstance(model, str):
        raise TypeError(f"decay(): model must be one of 'exponential', 'power', got {model!r}")
    if model not in _DECAY_MODELS:
        raise ValueError(f"decay(): model must be one of 'exponential', 'power', got {model!r}")
    power = _decay_real("power", power)
    factor = _decay_real("factor", factor)
    if threads is not None:
        if not isinstance(threads, (int, np.integer)) or isinstance(threads, (bool, np.bool_)):
            raise TypeError(f"decay(): threads must be None or a positive int, got {type(threads).__name__}")
        if not 1 <= threads <= 256:
            raise ValueError(f"decay(): threads must be None or in 1..256, got {threads}")
    a = _decay_operand("age", age, n)
    S = _decay_operand("stability", stability, n)
    if out is not None:
        expected = f"a writeable {native} array of shape ({n},)"
        if not isinstance(out, np.ndarray):
            raise TypeError(f"decay(): out must be a numpy.ndarray, got {type(out).__name__}")
        if out.dtype != native or not out.dtype.isnative:
            raise TypeError(f"decay(): out must be {expected}, got {_describe(out)}")
        if out.shape != (n,):
            raise ValueError(f"decay(): out must be {expected}, got {_describe(out)}")
        if not out.flags.writeable:
            raise ValueError(f"decay(): out must be writeable, got a read-only {_describe(out)}")
        if _overlaps_itself(out):
            raise ValueError(f"decay(): out must be {_OUT_DISTINCT}, got {_describe(out)}")
        for other, name in ((a, "age"), (S, "stability")):
            if np.may_share_memory(out, other):
                raise ValueError(f"decay(): out overlaps {name} in memory; pass a separate array")
        if np.may_share_memory(out, s) and not (
            out.__array_interface__["data"][0] == s.__array_interface__["data"][0]
            and (n <= 1 or out.strides == s.strides)
        ):
            raise ValueError(
                "decay(): out overlaps strength in memory; pass a separate array or exactly the same array"
            )
    if model == "power":
        if not (power > 0 and np.isfinite(power)):
            raise ValueError(f"decay(): power must be a finite number > 0, got {power!r}")
        if not (factor >= 0 and np.isfinite(factor)):
            raise ValueError(f"decay(): factor must be a finite number >= 0, got {factor!r}")
    if validate:
        with np.errstate(invalid="ignore"):
            bad_age = ~(a >= 0)
            bad_stab = ~(S > 0)
        if a.ndim == 0 and bad_age:
            raise ValueError(f"decay(): age is {a}; ages must be >= 0 seconds and not NaN")
        if S.ndim == 0 and bad_stab:
            raise ValueError(f"decay(): stability is {S}; stabilities must be > 0 and not NaN")
        i_age = int(np.argmax(bad_age)) if a.ndim and bad_age.any() else n
        i_stab = int(np.argmax(bad_stab)) if S.ndim and bad_stab.any() else n
        if i_age < n and i_age <= i_stab:
            raise ValueError(f"decay(): age[{i_age}] is {a[i_age]}; ages must be >= 0 seconds and not NaN")
        if i_stab < n:
            raise ValueError(
                f"decay(): stability[{i_stab}] is {S[i_stab]}; stabilities must be > 0 and not NaN"
            )
    return s.astype(native, copy=False), a, S, power, factor


def _decay_float64(s, a, S, model, power, factor) -> np.ndarray:
    """The float64 evaluation before the final rounding to strength's dtype.

    Ages and stabilities of every dtype are converted to float64 (as a C
    cast converts them: exact up to 2^53) and divided in float64; nothing is
    rounded to float32 first.  For float32 strength the exponential's
    argument is then that quotient rounded to float32,
    ``y = float32(float64(age) / float64(stability))``, which for float32
    operands is the IEEE float32 quotient.  The power model uses the float64
    ``u = 1 + factor * age / stability`` as it stands.
    """
    s64 = s.astype(np.float64)
    with np.errstate(all="ignore"):
        a64, S64 = a.astype(np.float64), S.astype(np.float64)
        if model == "exponential":
            y = a64 / S64
            if s.dtype == np.float32:
                y = y.astype(np.float32).astype(np.float64)
            return s64 * np.exp(-y)
        u = 1.0 + factor * a64 / S64
        return s64 * u ** -power


def decay(strength, age, *, stability=86400.0, model="exponential", power=0.5, factor=19 / 81,
          out=None, validate=True, threads=None):
    """Decayed memory strengths (reference: float64 NumPy).

    exponential: ``strength * exp(-age / stability)``;
    power: ``strength * (1 + factor * age / stability) ** -power``.
    Computed in float64 from the inputs converted to float64 and rounded
    once to strength's dtype; for float32 strength the exponential's
    argument is the float32 ``y = float32(float64(age) / float64(stability))``
    (the IEEE float32 quotient when both are float32).  ``validate=True`` rejects negative or NaN
    ages and stabilities <= 0 or NaN, naming the first bad index, before
    anything is written; ``validate=False`` lets IEEE arithmetic decide.
    """
    s, a, S, power, factor = _decay_check(strength, age, stability, model, power, factor, out,
                                          validate, threads)
    with np.errstate(over="ignore"):
        result = _decay_float64(s, a, S, model, power, factor).astype(s.dtype)
    if out is None:
        return result
    out[...] = result
    return out


__all__.append("decay")

# ==== end decay ====
