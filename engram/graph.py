"""Graph: a weighted directed graph, validated once, for :func:`engram.spread`.

The graph is kept as CSR arrays (out-edges by source node): its own copy,
or with ``copy=False`` the caller's arrays where their dtype and layout
allow, read-only either way.  What the C
kernel needs beyond them is derived lazily, once, and cached on the graph:
the out-weight normalisation for ``normalize="out"`` and, the first time a
hop is dense enough to pull rather than push, the pull layout (the
transpose in sliced-ELLPACK form, see ``csrc/engram.h``).
"""
from __future__ import annotations

import threading

import numpy as np

__all__ = ["Graph"]

_INT32_MAX = np.iinfo(np.int32).max
#: rows are sorted by in-degree within windows of this many nodes (a multiple of 8):
#: large enough that chunks of 8 rows have nearly equal lengths, small enough
#: that a row stays near its node (the windows' floats fit L1)
_PULL_WINDOW_ROWS = 4096
#: graphs with more nodes than this pull source block by block ...
_PULL_BLOCKED_FROM = 1 << 18
#: ... of this many rows: 1 MiB of float64 pulses, which stay in L2 (measured
#: best of 4, 8 and 16 blocks on a 1M-node graph; 1.7x the unblocked pull)
_PULL_BLOCK_ROWS = 1 << 17


def _core():
    try:
        from . import _core as core
    except Exception:  # the reference backend works without it
        return None
    return core


def _describe(a: np.ndarray) -> str:
    return f"{a.dtype} array of shape {a.shape} and strides {a.strides}"


def _fresh(a: np.ndarray, obj) -> bool:
    """Whether np.asarray(obj) made new memory (a list, say) rather than viewing the caller's."""
    return a is not obj and a.base is None


def _as_index_array(obj, name: str) -> tuple[np.ndarray, bool]:
    """(obj as a 1-d int32 or int64 array in either byte order, whether that is new memory);
    other integer types become int64."""
    a = np.asarray(obj)
    if a.ndim != 1:
        raise ValueError(f"Graph(): {name} must be 1-dimensional, got {_describe(a)}")
    if a.dtype.kind not in "iu" or a.dtype == np.bool_:
        raise TypeError(f"Graph(): {name} must be an int32 or int64 array, got {_describe(a)}")
    if a.dtype.kind == "i" and a.dtype.itemsize in (4, 8):
        return a, _fresh(a, obj)  # either byte order: made native by _settle
    if a.dtype.kind == "u" and a.dtype.itemsize == 8 and a.size and a.max() > np.iinfo(np.int64).max:
        raise ValueError(f"Graph(): {name} has values beyond the int64 range")
    return a.astype(np.int64), True


def _as_weight_array(obj, nnz: int) -> tuple[np.ndarray, bool]:
    """(obj as a 1-d float32 or float64 array, at least nnz long, whether that is new memory);
    integers become float64."""
    w = np.asarray(obj)
    fresh = _fresh(w, obj)
    if w.ndim != 1:
        raise ValueError(f"Graph(): weights must be 1-dimensional, got {_describe(w)}")
    if w.dtype.kind in "iu" and w.dtype != np.bool_:
        w, fresh = w.astype(np.float64), True
    elif w.dtype.kind != "f" or w.dtype.itemsize not in (4, 8):
        # float32/float64 in either byte order; bool, float16, complex, object are not weights
        raise TypeError(f"Graph(): weights must be a float32 or float64 array, got {_describe(w)}")
    if w.shape[0] < nnz:
        raise ValueError(
            f"Graph(): weights must have one entry per edge ({nnz}), got {_describe(w)}"
        )
    return w, fresh


def _check_weights(w: np.ndarray) -> None:
    bad = ~(w >= 0) | ~np.isfinite(w)
    if bad.any():
        i = int(np.argmax(bad))
        v = w[i]
        what = "NaN" if np.isnan(v) else "infinite" if np.isinf(v) else "negative"
        raise ValueError(f"Graph(): weights must be finite and >= 0, but weights[{i}] = {v} is {what}")


def _settle(a: np.ndarray, fresh: bool, copy: bool) -> np.ndarray:
    """a as the kernel reads it: native byte order, C-contiguous and aligned.

    With copy, the result is the graph's own memory (``a`` itself when it is
    ``fresh``, memory made here, else a copy); without, the caller's memory
    whenever it already has that form.  Either way a read-only view, so
    nothing writes the graph's arrays through it.
    """
    dtype = a.dtype.newbyteorder("=")
    if copy and not fresh:
        a = np.array(a, dtype=dtype, order="C", copy=True)
    else:
        a = np.require(a, dtype=dtype, requirements="CA")
    view = a.view()
    view.flags.writeable = False
    return view


class Graph:
    """A weighted directed graph: entry [u, v] is the weight of the edge u -> v.

    ``Graph(matrix)`` takes a scipy.sparse matrix or array (CSR, CSC, COO or
    any format with ``tocsr``); it must be square.  ``Graph(indptr, indices,
    weights=None, n=None)`` takes CSR arrays: node u's out-edges go to
    ``indices[indptr[u]:indptr[u+1]]`` with the same slice of ``weights``
    (None: every edge weighs 1).  Indices are int32 or int64, weights float32
    or float64 (either byte order; other integer types are widened),
    finite and >= 0.  Self-loops, repeated edges (a multigraph: each counts
    separately) and nodes without edges are all allowed.

    A Graph is an immutable snapshot.  The arrays are validated once, and
    what the kernel derives from them (the out-weight normalisation, the
    transposed pull layout) is built lazily and cached on the graph, so they
    must not change afterwards.  By default (``copy=True``) the graph keeps
    its own copy: the caller's arrays stay theirs to modify, and no later
    change can make the cached data disagree with the edges or send an index
    out of range.  Copying costs up to as much again as the validation
    (measured with int32 indices and float32 weights: 1M edges, 1.0 ms to
    validate and 0.6 ms more to copy; 10M edges, 31 ms and 33 ms more) and
    the memory of the CSR arrays.  ``copy=False`` shares the caller's arrays instead whenever
    they are already native, contiguous and aligned int32/int64 and
    float32/float64 (others are converted once either way); the caller then
    promises not to modify them while the graph is in use: results are
    unspecified if they change, and out-of-range indices written after the
    validation can crash the process (as with scipy's ``check_finite=False``).

    ``indptr``, ``indices`` and ``weights`` are read-only views of what the
    graph holds.

    ``spread`` also accepts a raw scipy matrix or a tuple of CSR arrays, but
    then builds, validates and copies a new Graph (and any normalisation or
    pull layout it needs) on every call: reuse a Graph for repeated calls.
    """

    def __init__(self, indptr, indices=None, weights=None, n=None, *, copy=True):
        self._lock = threading.RLock()
        self._cache: dict = {}
        if not isinstance(copy, (bool, np.bool_)):
            raise TypeError(f"Graph(): copy must be a bool, got {type(copy).__name__}")
        copy = bool(copy)
        if indices is None:
            if isinstance(indptr, Graph):
                self._share(indptr)
                return
            if isinstance(indptr, tuple):
                raise TypeError(
                    "Graph(): pass CSR arrays as Graph(indptr, indices, weights=None, n=None), "
                    "not as one tuple"
                )
            if weights is not None or n is not None:
                raise TypeError("Graph(matrix) takes no weights or n: they come from the matrix")
            indptr, indices, weights, n, converted = self._from_scipy(indptr)
            # arrays scipy made for this call (tocsr, the COO ordering) are the graph's already
            copy = copy and not converted
        ptr, ptr_fresh = _as_index_array(indptr, "indptr")
        if ptr.shape[0] < 1:
            raise ValueError("Graph(): indptr must have n + 1 >= 1 entries, got an empty array")
        if n is None:
            n = ptr.shape[0] - 1
        else:
            if isinstance(n, (bool, np.bool_)) or not isinstance(n, (int, np.integer)):
                raise TypeError(f"Graph(): n must be an int, got {type(n).__name__}")
            n = int(n)
            if n < 0:
                raise ValueError(f"Graph(): n must be >= 0, got {n}")
            if ptr.shape[0] != n + 1:
                raise ValueError(
                    f"Graph(): indptr must have n + 1 = {n + 1} entries, got {_describe(ptr)}"
                )
        # everything is validated on the arrays the graph keeps (copied first when copying)
        ptr = _settle(ptr, ptr_fresh, copy)
        if ptr[0] != 0:
            raise ValueError(f"Graph(): indptr[0] must be 0, got {ptr[0]}")
        step = np.diff(ptr)
        if step.size and step.min() < 0:
            i = int(np.argmax(step < 0)) + 1
            raise ValueError(
                f"Graph(): indptr must be non-decreasing, but indptr[{i}] = {ptr[i]} < "
                f"indptr[{i - 1}] = {ptr[i - 1]}"
            )
        nnz = int(ptr[-1])
        idx, idx_fresh = _as_index_array(indices, "indices")
        if nnz > idx.shape[0]:
            raise ValueError(
                f"Graph(): indptr[-1] = {nnz} edges, but indices has only {idx.shape[0]} entries"
            )
        n_indices = idx.shape[0]
        w = None
        if weights is not None:
            w, w_fresh = _as_weight_array(weights, nnz)
            if w.shape[0] != n_indices:
                raise ValueError(
                    f"Graph(): weights and indices must have the same length, got "
                    f"{w.shape[0]} and {n_indices}"
                )
        idx = _settle(idx[:nnz], idx_fresh, copy)
        if nnz:
            low, high = idx.min(), idx.max()
            if low < 0 or high >= n:
                i = int(np.argmax((idx < 0) | (idx >= n)))
                raise ValueError(
                    f"Graph(): indices must be in [0, {n}), but indices[{i}] = {idx[i]} is out of "
                    f"range for a graph of {n} nodes"
                )
        if w is not None:
            w = _settle(w[:nnz], w_fresh, copy)
            _check_weights(w)
        # one index dtype for indptr and indices (the kernel reads both the same way)
        if ptr.dtype != idx.dtype:
            if idx.dtype == np.int32 and nnz <= _INT32_MAX:
                ptr = _settle(ptr.astype(np.int32), True, False)
            else:
                ptr = _settle(ptr.astype(np.int64), True, False)
                idx = _settle(idx.astype(np.int64), True, False)
        self._n = n
        self._nnz = nnz
        self._indptr = ptr
        self._indices = idx
        self._weights = w

    def _share(self, other: "Graph") -> None:
        self._n, self._nnz = other._n, other._nnz
        self._indptr, self._indices, self._weights = other._indptr, other._indices, other._weights

    @staticmethod
    def _from_scipy(matrix):
        """(indptr, indices, data, n, whether the arrays were made here rather than the matrix's)."""
        fmt = getattr(matrix, "format", None)
        shape = getattr(matrix, "shape", None)
        if fmt is None or shape is None or not hasattr(matrix, "tocsr"):
            raise TypeError(
                "Graph() takes a scipy.sparse matrix or CSR arrays (indptr, indices, weights=None, "
                f"n=None), got {type(matrix).__name__}"
            )
        if len(shape) != 2 or shape[0] != shape[1]:
            raise ValueError(f"Graph(): the matrix must be square (n x n), got shape {shape}")
        n = int(shape[0])
        if fmt == "coo":
            # keep repeated entries as separate edges (tocsr would sum them)
            row = np.asarray(matrix.row)
            order = np.argsort(row, kind="stable")
            indptr = np.zeros(n + 1, dtype=np.int64)
            np.cumsum(np.bincount(row, minlength=n), out=indptr[1:])
            return indptr, np.asarray(matrix.col)[order], np.asarray(matrix.data)[order], n, True
        if fmt != "csr":
            return (*Graph._csr_arrays(matrix.tocsr()), n, True)
        return (*Graph._csr_arrays(matrix), n, False)

    @staticmethod
    def _csr_arrays(matrix):
        return matrix.indptr, matrix.indices, matrix.data

    @classmethod
    def _coerce(cls, obj) -> "Graph":
        """A Graph from what spread() accepts: a Graph, a scipy matrix or a tuple of CSR arrays."""
        if isinstance(obj, Graph):
            return obj
        if isinstance(obj, tuple):
            if not 2 <= len(obj) <= 4:
                raise TypeError(
                    "spread(): a graph given as a tuple must be (indptr, indices[, weights[, n]]), "
                    f"got a tuple of {len(obj)}"
                )
            return cls(*obj)
        return cls(obj)

    # ---- what the graph is ------------------------------------------------

    @property
    def n(self) -> int:
        """Number of nodes."""
        return self._n

    @property
    def nnz(self) -> int:
        """Number of edges."""
        return self._nnz

    @property
    def indptr(self) -> np.ndarray:
        """CSR row pointers, n + 1 of them (read-only)."""
        return self._indptr

    @property
    def indices(self) -> np.ndarray:
        """Target node of each edge in CSR order (read-only)."""
        return self._indices

    @property
    def weights(self) -> np.ndarray | None:
        """Edge weights in CSR order (read-only), or None when every edge weighs 1."""
        return self._weights

    def __repr__(self) -> str:
        w = "unweighted" if self._weights is None else f"{self._weights.dtype} weights"
        return f"Graph(n={self._n}, nnz={self._nnz}, {self._indices.dtype} indices, {w})"

    def out_degree(self) -> np.ndarray:
        """Number of out-edges of each node (int64)."""
        return np.diff(self._indptr).astype(np.int64)

    def out_weight(self) -> np.ndarray:
        """Sum of each node's out-edge weights (float64; the out-degree if unweighted)."""
        return self._cached("out_weight", self._compute_out_weight)

    def _compute_out_weight(self) -> np.ndarray:
        if self._weights is None:
            return self.out_degree().astype(np.float64)
        sums = np.zeros(self._n, dtype=np.float64)
        deg = np.diff(self._indptr)
        rows = deg > 0
        if rows.any():
            sums[rows] = np.add.reduceat(self._weights.astype(np.float64), self._indptr[:-1][rows])
        return sums

    # ---- what the C kernel reads (lazy, cached) ----------------------------

    def _cached(self, key, build):
        value = self._cache.get(key)
        if value is None:
            with self._lock:
                value = self._cache.get(key)
                if value is None:
                    value = build()
                    self._cache[key] = value
        return value

    def _normalized(self):
        """(weights, per-node scale) that give w / out_weight(u) for normalize="out".

        Unweighted and float32 graphs keep their weights and scale what each
        node sends by 1 / out-weight in float64 (for float32 weights the
        reciprocal cannot overflow: a non-zero sum is >= 2**-149).  float64
        weights could sum to a subnormal whose reciprocal overflows, so they
        are divided edge by edge, once, in float64.
        """

        def build():
            sums = self.out_weight()
            nonzero = sums > 0
            if self._weights is None or self._weights.dtype == np.float32:
                scale = np.zeros(self._n, dtype=np.float64)
                np.divide(1.0, sums, out=scale, where=nonzero)
                return self._weights, scale
            per_edge = np.repeat(sums, np.diff(self._indptr))
            w = np.zeros(self._nnz, dtype=np.float64)
            np.divide(self._weights, per_edge, out=w, where=per_edge > 0)
            return w, None

        return self._cached("normalized", build)

    def _pull_sizes(self):
        """(window_rows, block_rows) of this graph's pull layout (block_rows 0: unblocked)."""
        blocked = self._n > _PULL_BLOCKED_FROM
        return _PULL_WINDOW_ROWS, (_PULL_BLOCK_ROWS if blocked else 0)

    def _pull_plan(self):
        core = _core()
        window_rows, block_rows = self._pull_sizes()

        def build():
            return core._spread_pull_plan(self._indptr, self._indices, self._n, window_rows, block_rows)

        return self._cached("pull_plan", build)

    def _pull_weights(self, key, weights):
        """The pull layout's chunks and sources (key "pull_raw") and weights laid out for it."""
        core = _core()
        row_node, node_row, row_degree, n_chunks, n_slots = self._pull_plan()
        window_rows, block_rows = self._pull_sizes()

        def build():
            return core._spread_pull_build(self._indptr, self._indices, weights, row_node, node_row,
                                           window_rows, block_rows, n_chunks, n_slots,
                                           key == "pull_raw")

        return self._cached(key, build)

    def _pull_possible(self) -> bool:
        core = _core()
        return core is not None and self._n <= core._spread_pull_max_nodes()

    def _spread_arrays(self, normalize: bool, pull: bool):
        """The tuple the C kernel reads:

        (n, nnz, indptr, indices, weights, source_scale, pull, pull_possible)
        with pull = None or (row_node, node_row, chunk_offset, chunk_length,
        sources, pull_weights, row_scale, row_degree, chunk_rows, block_chunks,
        window_slots, (window_rows, block_rows)).  The pull layout is built
        when asked for, and included whenever it exists.
        """
        key = ("arrays", bool(normalize))
        cached = self._cache.get(key)
        if cached is not None and (cached[6] is not None or not pull):
            return cached
        if normalize:
            weights, scale = self._normalized()
        else:
            weights, scale = self._weights, None
        possible = self._pull_possible()
        layout = None
        if possible and (pull or "pull_plan" in self._cache):
            row_node, node_row, row_degree, n_chunks, n_slots = self._pull_plan()
            raw = self._pull_weights("pull_raw", self._weights)
            chunk_length, chunk_offset, chunk_rows, block_chunks, window_slots, sources = raw[:6]
            if weights is self._weights:
                laid = raw[6]
            else:
                laid = self._pull_weights("pull_normalized", weights)[6]
            row_scale = None
            if scale is not None:
                row_scale = np.zeros(row_degree.shape[0], dtype=np.float64)
                row_scale[: self._n] = scale[row_node]
            layout = (row_node, node_row, chunk_offset, chunk_length, sources, laid, row_scale,
                      row_degree, chunk_rows, block_chunks, window_slots, self._pull_sizes())
        result = (self._n, self._nnz, self._indptr, self._indices, weights, scale, layout, possible)
        with self._lock:
            self._cache[key] = result
        return result
