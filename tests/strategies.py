"""Hypothesis strategies, one section per kernel (see engram/_kernels.py for the registry)."""
from __future__ import annotations

import numpy as np
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp  # noqa: F401

# ==== shared ====

#: dimensions straddling every vector width (4, 8, 16 lanes) and the embedding sizes
STRADDLING_DIMS = (
    list(range(1, 18)) + [31, 32, 33, 63, 64, 65, 127, 128, 129, 383, 384, 385,
                          767, 768, 769, 1535, 1536, 1537, 4096]
)


@st.composite
def layouts(draw, array: np.ndarray):
    """The same values as `array` in another memory layout: strided, reversed, Fortran."""
    kind = draw(st.sampled_from(["contiguous", "row_strided", "reversed", "fortran", "col_strided"]))
    if kind == "contiguous" or array.ndim == 0:
        return array
    if kind == "row_strided":
        pad = np.zeros((array.shape[0] * 2,) + array.shape[1:], dtype=array.dtype)
        pad[::2] = array
        return pad[::2]
    if kind == "reversed":
        return np.ascontiguousarray(array[::-1])[::-1]
    if kind == "fortran":
        return np.asfortranarray(array)
    wide = np.zeros(array.shape[:-1] + (array.shape[-1] * 2,), dtype=array.dtype)
    wide[..., ::2] = array
    return wide[..., ::2]

# ==== end shared ====

# ==== similarity ====

from engram._cases import ROW_INJECTIONS, inject_rows  # noqa: E402,F401  (one implementation)


@st.composite
def similarity_matrix(draw, rows, d, dtype, inject=True):
    """A (rows, d) array of unit-scale normals, some rows with edge values injected."""
    seed = draw(st.integers(0, 2**32 - 1))
    rng = np.random.default_rng(seed)
    a = rng.standard_normal((rows, d)).astype(dtype)
    if inject and rows and draw(st.booleans()):
        kinds = draw(st.lists(st.sampled_from(ROW_INJECTIONS), min_size=rows, max_size=rows))
        a = inject_rows(rng, a, kinds)
    return a


@st.composite
def similarity_shapes(draw, max_work=1 << 21, max_rows=300):
    """(m, n, d): d straddles the vector widths; m * n * d stays small enough for the scalar level."""
    d = draw(st.sampled_from(STRADDLING_DIMS))
    limit = max(1, min(max_rows, int((max_work / max(d, 1)) ** 0.5)))
    m = draw(st.integers(0, limit))
    n = draw(st.integers(0, limit))
    return m, n, d


@st.composite
def vector_layouts(draw, vector: np.ndarray):
    """A 1-D array in another layout: strided or reversed (same values)."""
    kind = draw(st.sampled_from(["contiguous", "strided", "reversed"]))
    if kind == "contiguous":
        return vector
    if kind == "strided":
        wide = np.zeros(vector.shape[0] * 2, dtype=vector.dtype)
        wide[::2] = vector
        return wide[::2]
    return np.ascontiguousarray(vector[::-1])[::-1]


OUT_LAYOUTS = ["c", "fortran", "col_strided", "reversed", "unaligned"]


def out_in_layout(kind, shape, dtype, fill=7.0):
    """(out, base): a writeable `out` of `shape` and `dtype` filled with `fill`, laid out as
    `kind`, and the whole buffer it is a view of (to check nothing else gets written)."""
    dtype = np.dtype(dtype)
    shape = tuple(shape)
    if kind == "c":
        base = np.full(shape, fill, dtype)
        return base, base
    if kind == "fortran":
        base = np.full(shape, fill, dtype, order="F")
        return base, base
    if kind == "col_strided":
        base = np.full(shape[:-1] + (2 * shape[-1],), fill, dtype)
        return base[..., ::2], base
    if kind == "reversed":
        base = np.full(shape, fill, dtype)
        return base[(slice(None, None, -1),) * len(shape)], base
    assert kind == "unaligned"
    raw = np.zeros(int(np.prod(shape)) * dtype.itemsize + 1, np.uint8)
    out = raw[1:].view(dtype).reshape(shape)
    out[...] = fill
    return out, raw


@st.composite
def out_layouts(draw, shape, dtype):
    """out_in_layout() for a drawn layout."""
    return out_in_layout(draw(st.sampled_from(OUT_LAYOUTS)), shape, dtype)

# ==== end similarity ====

# ==== spread ====

# ==== end spread ====

# ==== decay ====

# ==== end decay ====
