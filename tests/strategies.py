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

from engram import _cases as _spread_rows  # noqa: E402  (graph and seed generators, knife-edge check)

#: node counts straddling the 8-row chunks of the pull layout
SPREAD_NODE_COUNTS = [0, 1, 2, 3, 7, 8, 9, 15, 16, 17, 31, 33, 64, 100]


@st.composite
def spread_graphs(draw, max_nodes: int = 100):
    """(indptr, indices, weights): self-loops, multi-edges, cycles, dangling nodes, parts."""
    n = draw(st.sampled_from(SPREAD_NODE_COUNTS) | st.integers(0, max_nodes))
    m = draw(st.integers(0, 4 * n)) if n else 0
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    return _spread_rows.spread_graph_arrays(
        rng, n, m,
        self_loops=draw(st.booleans()),
        multi_edges=draw(st.booleans()),
        cycle=draw(st.booleans()),
        components=draw(st.integers(1, 3)),
        dangling=draw(st.sampled_from([0.0, 0.25])),
        index_dtype=draw(st.sampled_from([np.int32, np.int64])),
        weights=draw(st.sampled_from(["none", "f32", "f64"])),
        edge_values=draw(st.booleans()),
    )


@st.composite
def spread_options(draw, max_depth: int = 8):
    """Keyword arguments of spread(): every option, decay as a number or per hop."""
    depth = draw(st.integers(0, max_depth))
    kwargs = {
        "max_depth": depth,
        "threshold": draw(st.sampled_from([0.0, 1e-4, 1e-2, 0.1]) | st.floats(0, 0.5)),
        "normalize": draw(st.sampled_from(["none", "out"])),
        "combine": draw(st.sampled_from(["sum", "max"])),
        "revisit": draw(st.booleans()),
    }
    if draw(st.booleans()):
        kwargs["decay"] = np.array(draw(st.lists(st.floats(0.01, 1.0), min_size=depth, max_size=depth)))
    else:
        kwargs["decay"] = draw(st.sampled_from([0.85, 1.0, 0.5]) | st.floats(0.01, 1.0))
    return kwargs


@st.composite
def spread_cases(draw, max_nodes: int = 100, max_depth: int = 8, batch: bool = True):
    """(graph, seeds, kwargs) clear of the threshold's knife edge.

    The graph comes as a Graph, a tuple or a scipy matrix; seeds dense
    float32/float64, a dict or a batch.  A threshold that some pulse of
    the reference run lands within 1e-7 (relative) of is moved by a random
    factor until none does: the case avoids the knife edge by construction.
    """
    indptr, indices, weights = draw(spread_graphs(max_nodes))
    n = indptr.shape[0] - 1
    kwargs = draw(spread_options(max_depth))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    form = draw(st.sampled_from(["graph", "tuple", "csr", "csc", "coo"]))
    import engram

    graph = engram.Graph(indptr, indices, weights)
    if form == "tuple":
        graph = (indptr, indices) if weights is None else (indptr, indices, weights)
    elif form in ("csr", "csc", "coo"):
        import scipy.sparse as sp

        data = np.ones(indices.shape[0]) if weights is None else weights
        mat = sp.csr_matrix((data, indices, indptr), shape=(n, n))
        graph = {"csr": mat, "csc": mat.tocsc(), "coo": mat.tocoo()}[form]
    shape = draw(st.sampled_from(["dense", "dict", "batch"] if batch else ["dense", "dict"]))
    dtype = draw(st.sampled_from([np.float32, np.float64]))
    density = draw(st.sampled_from([0.05, 0.3, 1.0]))
    rows = draw(st.integers(0, 4)) if shape == "batch" else 1
    seeds = _spread_rows.spread_seed_values(rng, rows, n, density, kwargs["threshold"], dtype,
                                            edge_values=draw(st.booleans()))
    if shape != "batch":
        seeds = seeds[0]
        if shape == "dict":
            seeds = {int(i): float(seeds[i]) for i in np.flatnonzero(seeds)}
    kwargs = _spread_rows.spread_clear_threshold(rng, graph, seeds, kwargs)
    return graph, seeds, kwargs

# ==== end spread ====

# ==== decay ====

# ==== end decay ====
