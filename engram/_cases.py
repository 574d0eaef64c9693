"""Rows of the registry (engram/_kernels.py): each kernel's random cases,
error measure and benchmark workloads, one section per kernel."""
from __future__ import annotations

import numpy as np

from ._kernels import Call, Case, Goal, Kernel, Workload, call, register_kernel, register_workload  # noqa: F401

# ==== similarity ====

# ==== end similarity ====

# ==== spread ====

#: a pulse this close (relative) to the threshold may go either way in float32/float64 sums
SPREAD_KNIFE_EDGE = 1e-7
#: positive pulses below this are near float64 underflow, where rounding can flip "> 0"
SPREAD_UNDERFLOW = 1e-280


def spread_graph_arrays(rng: np.random.Generator, n: int, m: int, *, self_loops=True,
                        multi_edges=True, cycle=False, components=1, dangling=0.0,
                        index_dtype=np.int64, weights="f64", edge_values=False):
    """Random CSR arrays (indptr, indices, weights or None) of a directed graph.

    Self-loops, repeated edges and a long cycle on demand; ``components`` >
    1 keeps edges inside disjoint blocks of nodes; a ``dangling`` share of
    the nodes has no out-edges.  ``edge_values`` puts zeros, float32
    subnormals, tiny and large values among the weights.
    """
    if n == 0:
        return np.zeros(1, index_dtype), np.zeros(0, index_dtype), (
            None if weights == "none" else np.zeros(0, np.float32 if weights == "f32" else np.float64))
    src = rng.integers(0, n, m)
    block = max(1, -(-n // max(1, components)))
    # keep each edge inside its source's block: disconnected parts
    lo = (src // block) * block
    dst = lo + rng.integers(0, block, m) % np.maximum(1, np.minimum(block, n - lo))
    if not self_loops and n > 1:
        clash = dst == src
        dst[clash] = lo[clash] + (dst[clash] - lo[clash] + 1) % np.maximum(1, np.minimum(block, n - lo[clash]))
    if multi_edges and m:
        k = rng.integers(0, max(1, m // 4) + 1)
        pick = rng.integers(0, m, k)
        src, dst = np.concatenate([src, src[pick]]), np.concatenate([dst, dst[pick]])
    if cycle and n > 1:
        nodes = rng.permutation(n)
        src = np.concatenate([src, nodes])
        dst = np.concatenate([dst, np.roll(nodes, -1)])
    if dangling > 0:
        gone = rng.random(n) < dangling
        keep = ~gone[src]
        src, dst = src[keep], dst[keep]
    order = np.argsort(src, kind="stable")
    src, dst = src[order], dst[order]
    indptr = np.zeros(n + 1, dtype=np.int64)
    np.cumsum(np.bincount(src, minlength=n), out=indptr[1:])
    nnz = src.shape[0]
    w = None
    if weights != "none":
        w = rng.uniform(0.1, 1.0, nnz)
        if edge_values and nnz:
            special = np.array([0.0, 1e-40, 1e-20, 1e-3, 1.0, 1e6])
            pick = rng.random(nnz) < 0.15
            w[pick] = rng.choice(special, int(pick.sum()))
        w = w.astype(np.float32 if weights == "f32" else np.float64)
    return indptr.astype(index_dtype), dst.astype(index_dtype), w


def spread_seed_values(rng: np.random.Generator, rows: int, n: int, density: float,
                       threshold: float, dtype, edge_values=False) -> np.ndarray:
    """Sparse non-negative seeds; ``edge_values`` adds zeros, subnormals, the threshold itself."""
    s = np.where(rng.random((rows, n)) < density, rng.uniform(0.0, 1.0, (rows, n)), 0.0)
    if edge_values and n:
        special = np.array([0.0, 1e-300, 1e-40, threshold, 1.0, 1e3])
        pick = rng.random((rows, n)) < 0.1
        s[pick] = rng.choice(special, int(pick.sum()))
    return s.astype(dtype)


def spread_knife_edge(graph, seeds, kwargs) -> bool:
    """Whether some pulse of the float64 reference run lands where rounding could flip it:
    within SPREAD_KNIFE_EDGE (relative) of a positive threshold, or near underflow."""
    from . import _reference as ref

    g, rows, _, decays, threshold, revisit = ref._spread_check(
        graph, seeds, kwargs.get("max_depth", 4), kwargs.get("decay", 0.85),
        kwargs.get("threshold", 1e-4), kwargs.get("normalize", "none"),
        kwargs.get("combine", "sum"), kwargs.get("revisit", False), None)
    src, dst, w = ref._spread_edges(g, kwargs.get("normalize", "none"))
    for row in rows:
        trace: list = []
        ref._spread_row(src, dst, w, row, decays, threshold, kwargs.get("combine", "sum"),
                        revisit, trace=trace)
        for pulses in trace:
            if pulses.size == 0:
                continue
            if threshold > 0 and np.any(np.abs(pulses - threshold) <= SPREAD_KNIFE_EDGE * threshold):
                return True
            # near underflow a product may round to 0 in one order and not in the other;
            # that matters only where such a pulse could fire
            if threshold < SPREAD_UNDERFLOW and np.any(pulses < SPREAD_UNDERFLOW):
                return True
    return False


def spread_clear_threshold(rng, graph, seeds, kwargs) -> dict:
    """kwargs with a threshold no pulse lands near: moved by a random factor until clear."""
    kwargs = dict(kwargs)
    for _ in range(20):
        if not spread_knife_edge(graph, seeds, kwargs):
            return kwargs
        t = kwargs.get("threshold", 1e-4)
        kwargs["threshold"] = float(t * rng.uniform(1.01, 3.0)) if t >= SPREAD_UNDERFLOW else 1e-250
    raise RuntimeError("no threshold clear of the pulses found")  # pragma: no cover


def spread_random_case(rng: np.random.Generator, max_nodes: int = 60) -> Case:
    """One random call: graph form, seeds form and every option drawn; no knife edges."""
    n = int(rng.integers(0, max_nodes + 1)) if rng.random() < 0.9 else int(rng.integers(0, 2))
    m = int(rng.integers(0, 4 * n + 1)) if n else 0
    weights = str(rng.choice(["none", "f32", "f64"]))
    indptr, indices, w = spread_graph_arrays(
        rng, n, m, self_loops=bool(rng.random() < 0.7), multi_edges=bool(rng.random() < 0.5),
        cycle=bool(rng.random() < 0.3), components=int(rng.integers(1, 4)),
        dangling=float(rng.choice([0.0, 0.2])),
        index_dtype=np.int32 if rng.random() < 0.5 else np.int64, weights=weights,
        edge_values=bool(rng.random() < 0.3))
    form = str(rng.choice(["graph", "tuple", "csr", "coo"]))
    from .graph import Graph

    graph = Graph(indptr, indices, w, n)
    if form == "tuple":
        graph = (indptr, indices) if w is None else (indptr, indices, w)
    elif form in ("csr", "coo"):
        try:
            import scipy.sparse as sp
        except ImportError:  # pragma: no cover
            pass
        else:
            data = np.ones(indices.shape[0]) if w is None else w
            mat = sp.csr_matrix((data, indices, indptr), shape=(n, n))
            graph = mat if form == "csr" else mat.tocoo()
    max_depth = int(rng.choice([0, 1, 2, 3, 4, 6, 12]))
    kwargs = {
        "max_depth": max_depth,
        "threshold": float(rng.choice([0.0, 1e-4, 1e-2, 0.1, float(rng.uniform(0, 0.3))])),
        "normalize": str(rng.choice(["none", "out"])),
        "combine": str(rng.choice(["sum", "max"])),
        "revisit": bool(rng.random() < 0.5),
    }
    if rng.random() < 0.3:
        kwargs["decay"] = rng.uniform(0.05, 1.0, max_depth)
        if max_depth and rng.random() < 0.3:
            kwargs["decay"][rng.integers(0, max_depth)] = 1.0
    else:
        kwargs["decay"] = float(rng.choice([0.85, 1.0, 0.5, float(rng.uniform(0.01, 1.0))]))
    shape = str(rng.choice(["dense", "dense", "dict", "batch"]))
    dtype = np.float32 if rng.random() < 0.5 else np.float64
    density = float(rng.choice([0.05, 0.3, 1.0]))
    if shape == "batch":
        seeds = spread_seed_values(rng, int(rng.integers(0, 5)), n, density, kwargs["threshold"], dtype,
                                   edge_values=bool(rng.random() < 0.3))
    else:
        seeds = spread_seed_values(rng, 1, n, density, kwargs["threshold"], dtype,
                                   edge_values=bool(rng.random() < 0.3))[0]
        if shape == "dict":
            seeds = {int(i): float(seeds[i]) for i in np.flatnonzero(seeds)}
    kwargs = spread_clear_threshold(rng, graph, seeds, kwargs)
    return Case((graph, seeds), kwargs, f"n={n} nnz={indices.shape[0]} {weights} {form} {shape}")


def spread_error(got, expected, case=None) -> float:
    """Largest |got - expected| / max(|expected|, 1e-2): 1e-5 means 1e-5 relative, 1e-7 absolute."""
    g = np.asarray(got, dtype=np.float64)
    e = np.asarray(expected, dtype=np.float64)
    if g.shape != e.shape:
        return float("inf")
    if g.size == 0:
        return 0.0
    if np.any(np.isnan(g) != np.isnan(e)) or np.any((np.isinf(g) | np.isinf(e)) & (g != e)):
        return float("inf")
    ok = np.isfinite(e)
    if not ok.any():
        return 0.0
    return float(np.max(np.abs(g[ok] - e[ok]) / np.maximum(np.abs(e[ok]), 1e-2)))


def _spread_kernel():
    from . import _reference

    return Kernel(
        name="spread",
        reference=_reference.spread,
        random_case=spread_random_case,
        error=spread_error,
        tolerance=lambda case: 1e-5,
        unit="rel",
        edge_cases=spread_edge_cases,
    )


def spread_edge_cases() -> list:
    """Fixed cases: empty graph, one node with a self-loop, zero seeds, zero weights, a hub."""
    from .graph import Graph

    cases = []
    empty = Graph(np.zeros(1, np.int64), np.zeros(0, np.int64))
    cases.append(Case((empty, np.zeros(0)), {}, "n=0"))
    cases.append(Case((empty, np.zeros((3, 0), np.float32)), {}, "n=0 batch"))
    loop = Graph(np.array([0, 1]), np.array([0]), np.array([0.5]))
    cases.append(Case((loop, np.array([1.0])), {"revisit": True, "threshold": 0.0, "max_depth": 30},
                      "self-loop revisited"))
    cases.append(Case((loop, {0: 1.0}), {"revisit": False}, "self-loop once"))
    zero_w = Graph(np.array([0, 2, 2]), np.array([1, 1]), np.zeros(2))
    cases.append(Case((zero_w, np.array([1.0, 0.0])), {"normalize": "out", "threshold": 0.0},
                      "zero out-weight"))
    hub_n = 300
    hub = Graph(np.concatenate([[0], np.full(hub_n, hub_n - 1)]).cumsum()[: hub_n + 1].astype(np.int64)
                if False else np.r_[0, np.full(hub_n, hub_n - 1)].cumsum(),
                np.concatenate([np.delete(np.arange(hub_n), i) for i in range(hub_n)]),
                np.linspace(0.1, 1.0, hub_n * (hub_n - 1)))
    cases.append(Case((hub, np.eye(hub_n)[:3]), {"normalize": "out", "threshold": 0.0, "revisit": True,
                                                  "max_depth": 5}, "complete graph, batch"))
    cases.append(Case((loop, np.array([0.0])), {"threshold": 0.0}, "zero seeds"))
    return cases


register_kernel(_spread_kernel())

# ==== end spread ====

# ==== decay ====

# ==== end decay ====
