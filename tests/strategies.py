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

# ==== end similarity ====

# ==== spread ====

# ==== end spread ====

# ==== decay ====

# ==== end decay ====
