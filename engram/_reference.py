"""Pure-NumPy reference versions of engram's kernels.

Same names, signatures and semantics as the C core, written to be
obviously correct rather than fast, computing in float64.  They are the
oracle of the differential tests and the ``reference`` backend
(``ENGRAM_BACKEND=reference``, ``engram.set_backend("reference")``).
"""
from __future__ import annotations

import numpy as np

__all__: list[str] = []

# ==== similarity ====

# ==== end similarity ====

# ==== spread ====

from .graph import Graph  # noqa: E402  (the same validated graph for both backends)

__all__ += ["spread", "Graph"]


def _spread_decays(decay, max_depth: int) -> np.ndarray:
    """decay as max_depth per-hop factors, each checked to be in (0, 1]."""
    if isinstance(decay, (bool, np.bool_)):
        raise TypeError("spread(): decay must be a real number, got bool")
    arr = np.asarray(decay)
    if arr.dtype.kind not in "iuf":
        raise TypeError(
            f"spread(): decay must be a real number or a real array, got {arr.dtype} array "
            f"of shape {arr.shape}"
        )
    if arr.ndim == 0:
        d = float(arr)
        if not 0 < d <= 1:
            raise ValueError(f"spread(): decay must be in (0, 1], got {d}")
        return np.full(max_depth, d)
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
    return arr


def _spread_seeds(seeds, n: int) -> tuple[np.ndarray, bool]:
    """Seeds as a float64 (b, n) array, and whether they came as a batch."""
    if isinstance(seeds, dict):
        dense = np.zeros((1, n))
        for node, value in seeds.items():
            if isinstance(node, (bool, np.bool_)) or not isinstance(node, (int, np.integer)):
                raise TypeError(
                    "spread(): seeds given as a dict must map int node ids to values, got a key "
                    f"of type {type(node).__name__}"
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
            value = float(value)
            if not (np.isfinite(value) and value >= 0):
                what = "NaN" if np.isnan(value) else "infinite" if np.isinf(value) else "negative"
                raise ValueError(
                    f"spread(): seeds must be finite and >= 0, but seeds[{node}] = {value} is {what}"
                )
            dense[0, node] = value
        return dense, False
    arr = np.asarray(seeds)
    if arr.dtype not in (np.dtype(np.float32), np.dtype(np.float64)):
        raise TypeError(
            f"spread(): seeds must be a float32 or float64 array, got {arr.dtype} array of shape "
            f"{arr.shape} and strides {arr.strides}"
        )
    if arr.ndim not in (1, 2):
        raise ValueError(
            f"spread(): seeds must be 1- to 2-dimensional, got {arr.dtype} array of shape "
            f"{arr.shape} and strides {arr.strides}"
        )
    if arr.shape[-1] != n:
        raise ValueError(
            f"spread(): seeds must be of shape ({n},) or (b, {n}) for a graph of {n} nodes, got "
            f"{arr.dtype} array of shape {arr.shape} and strides {arr.strides}"
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

    ``trace`` (a list) receives each hop's incoming pulses of the nodes that
    received any, for tests that keep clear of the threshold's knife edge.
    """
    n = seeds.shape[0]
    total = seeds.copy()
    pulse = seeds.copy()
    frontier = (pulse > 0) & (pulse >= threshold)
    fired = frontier.copy()
    for k in range(decays.shape[0]):
        if not frontier.any():
            break
        active = frontier[src]
        c = decays[k] * w[active] * pulse[src[active]]
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
    decays = _spread_decays(decay, int(max_depth))
    if isinstance(threshold, (bool, np.bool_)) or not isinstance(
        threshold, (int, float, np.integer, np.floating)
    ):
        raise TypeError(f"spread(): threshold must be a real number, got {type(threshold).__name__}")
    threshold = float(threshold)
    if not threshold >= 0:
        raise ValueError(f"spread(): threshold must be >= 0 and not NaN, got {threshold}")
    for name, value, choices in (("normalize", normalize, ("none", "out")),
                                 ("combine", combine, ("sum", "max"))):
        if value not in choices or not isinstance(value, str):
            exc = ValueError if isinstance(value, str) else TypeError
            raise exc(f"spread(): {name} must be one of {', '.join(map(repr, choices))}, got {value!r}")
    if not (isinstance(revisit, (bool, np.bool_)) or (isinstance(revisit, int) and revisit in (0, 1))):
        raise TypeError(f"spread(): revisit must be a bool, got {type(revisit).__name__}")
    if threads is not None and (
        isinstance(threads, bool) or not isinstance(threads, int) or not 1 <= threads <= 256
    ):
        raise ValueError(f"spread(): threads must be None or in 1..256, got {threads!r}")
    rows, batch = _spread_seeds(seeds, g.n)
    return g, rows, batch, decays, threshold, bool(revisit)


def spread(graph, seeds, *, max_depth=4, decay=0.85, threshold=1e-4, normalize="none",
           combine="sum", revisit=False, out=None, threads=None):
    """Spreading activation, hop by hop in float64 (see DESIGN.md); float32 totals."""
    g, rows, batch, decays, threshold, revisit = _spread_check(
        graph, seeds, max_depth, decay, threshold, normalize, combine, revisit, threads
    )
    src, dst, w = _spread_edges(g, normalize)
    totals = np.stack(
        [_spread_row(src, dst, w, row, decays, threshold, combine, revisit) for row in rows]
    ) if rows.shape[0] else np.zeros((0, g.n))
    with np.errstate(over="ignore"):  # totals beyond float32 become inf, as in the C core
        result = totals.astype(np.float32)
    if not batch:
        result = result.reshape(g.n)
    if out is not None:
        if not isinstance(out, np.ndarray):
            raise TypeError(f"spread(): out must be a numpy.ndarray, got {type(out).__name__}")
        if out.dtype != np.float32 or out.shape != result.shape:
            exc = TypeError if out.dtype != np.float32 else ValueError
            raise exc(
                f"spread(): out must be a writeable float32 array of shape {result.shape}, got "
                f"{out.dtype} array of shape {out.shape} and strides {out.strides}"
            )
        if not out.flags.writeable:
            raise ValueError("spread(): out must be writeable")
        if (isinstance(seeds, np.ndarray) and np.shares_memory(out, seeds)
                and not (out.dtype == seeds.dtype and out.shape == seeds.shape
                         and out.strides == seeds.strides
                         and out.__array_interface__["data"][0] == seeds.__array_interface__["data"][0])):
            raise ValueError("spread(): out overlaps seeds in memory; pass a separate array or "
                             "exactly the same array")
        out[...] = result
        return out
    return result


# ==== end spread ====

# ==== decay ====

# ==== end decay ====
