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
    for name, a in inputs:
        if a is not None and np.shares_memory(out, a):
            raise ValueError(f"{fname}(): out overlaps {name} in memory; pass a separate array")


def _check_threads(fname, threads):
    """None, or any integer (anything with __index__ but bool) in 1..256."""
    if threads is None:
        return
    try:
        n = None if isinstance(threads, bool) else operator.index(threads)
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

# ==== end spread ====

# ==== decay ====

# ==== end decay ====
