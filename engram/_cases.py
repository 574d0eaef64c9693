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


# spread workloads (benchmarks/test_bench_spread.py, the report)


def _spread_random_graph(n: int, m: int, seed: int):
    """n nodes, m random edges (uniform ends, weights U[0.1, 1) float32) as canonical CSR."""
    import scipy.sparse as sp

    rng = np.random.default_rng(seed)
    src, dst = rng.integers(0, n, m), rng.integers(0, n, m)
    w = rng.uniform(0.1, 1.0, m).astype(np.float32)
    return sp.csr_matrix((w, (src, dst)), shape=(n, n))


def _spread_scipy_loop(state, hops: int):
    """The baseline: x = decay * (P.T @ x); total += x with P row-normalised CSR, float32."""
    import scipy.sparse as sp

    a = state["matrix"]
    sums = np.asarray(a.sum(axis=1)).ravel()
    inv = np.divide(1.0, sums, out=np.zeros_like(sums), where=sums > 0).astype(np.float32)
    pt = (sp.diags(inv) @ a).T.tocsr()  # CSR of P.T: SciPy's fastest matvec layout
    x0 = np.asarray(state["seeds"], dtype=np.float32)
    decay = np.float32(state["decay"])

    def loop():
        x = x0.copy()
        total = x0.copy()
        for _ in range(hops):
            x = decay * (pt @ x)
            total += x
        return total

    return Call(loop)


def _spread_edges_pushed(state) -> int:
    """Edges a push-only run visits: the out-degrees of the frontier of every hop."""
    from . import _reference as ref

    g, kw = state["graph"], state["kwargs"]
    deg = np.diff(g.indptr)
    src, dst, w = ref._spread_edges(g, kw.get("normalize", "none"))
    decays = ref._spread_decays(kw.get("decay", 0.85), kw["max_depth"])
    total = 0
    for row in np.asarray(state["seeds"], dtype=np.float64).reshape(-1, g.n):
        frontier = (row > 0) & (row >= kw["threshold"])
        fired = frontier.copy()
        pulse = np.where(frontier, row, 0.0)
        for k in range(kw["max_depth"]):
            total += int(deg[frontier].sum())  # hop k + 1 pushes these
            active = frontier[src]
            nxt = np.zeros(g.n)
            np.add.at(nxt, dst[active], decays[k] * w[active] * pulse[src[active]])
            frontier = (nxt > 0) & (nxt >= kw["threshold"]) & (kw.get("revisit", False) | ~fired)
            fired |= frontier
            pulse = np.where(frontier, nxt, 0.0)
    return total


def _spread_setup(n: int, m: int, seeds: str, kwargs: dict, batch: int = 0, graph_seed: int = 0):
    def setup(quick: bool) -> dict:
        from .graph import Graph

        scale = 10 if quick and n >= 100_000 else 1
        nn, mm = n // scale, m // scale
        a = _spread_random_graph(nn, mm, graph_seed)
        rng = np.random.default_rng(graph_seed + 1)
        if seeds == "dense":
            x = rng.random(nn).astype(np.float32)
        elif seeds == "cue":
            x = np.zeros(nn, np.float32)
            x[rng.choice(nn, 10, replace=False)] = 1.0
        else:  # one node
            x = np.zeros(nn, np.float32)
            x[int(rng.integers(nn))] = 1.0
        state = {"matrix": a, "graph": Graph(a), "seeds": x, "kwargs": dict(kwargs),
                 "decay": kwargs.get("decay", 0.85), "quick": quick}
        if batch:
            xs = np.zeros((batch, nn), np.float32)
            xs[np.arange(batch), rng.integers(0, nn, batch)] = 1.0
            state["batch"] = xs
        return state

    return setup


def _spread_bytes_dense(state) -> int:
    """Bytes a dense hop must move at least, times the hops: every edge's source and
    weight once (4 + 4 B), every node's pulse read and written and its total read
    and written once (4 x 8 B).  Random pulse reads move whole lines: more."""
    g, hops = state["graph"], state["kwargs"]["max_depth"]
    return hops * (g.nnz * 8 + g.n * 32)


def _spread_run(state, threads=1, batch=False):
    import engram

    seeds = state["batch"] if batch else state["seeds"]
    return Call(engram.spread, (state["graph"], seeds), dict(state["kwargs"], threads=threads))


_S1_KW = {"max_depth": 100, "normalize": "out", "threshold": 0.0, "revisit": True}
_S2_KW = {"max_depth": 4, "normalize": "out", "threshold": 1e-4}
_S3_KW = {"max_depth": 10, "normalize": "out", "threshold": 0.0, "revisit": True}

register_workload(Workload(
    id="S1", kernel="spread",
    title="1,000 nodes / 5,000 edges, 100 hops from a 10-node cue, normalize='out', threshold=0, revisit",
    setup=_spread_setup(1000, 5000, "cue", _S1_KW),
    run=lambda s: _spread_run(s),
    baselines={"scipy loop": lambda s: _spread_scipy_loop(s, 100)},
    goals=(Goal("speedup", 6.0, "scipy loop", ">= 6x a SciPy loop doing the same 100 hops"),),
    seed_target_us=95.8,
    elements=lambda s: s["graph"].nnz * s["kwargs"]["max_depth"],
))

register_workload(Workload(
    id="S2", kernel="spread",
    title="100,000 nodes / 1,000,000 edges, one seed, max_depth 4, threshold 1e-4, normalize='out'",
    setup=_spread_setup(100_000, 1_000_000, "one", _S2_KW),
    run=lambda s: _spread_run(s),
    baselines={"scipy loop": lambda s: _spread_scipy_loop(s, 4)},
    goals=(Goal("speedup", 20.0, "scipy loop", ">= 20x the SciPy loop doing 4 dense hops"),),
    elements=_spread_edges_pushed,
))

register_workload(Workload(
    id="S3", kernel="spread",
    title="1,000,000 nodes / 10,000,000 edges, 10 dense hops (dense seeds, threshold 0, revisit)",
    setup=_spread_setup(1_000_000, 10_000_000, "dense", _S3_KW),
    run=lambda s: _spread_run(s),
    baselines={
        "scipy loop": lambda s: _spread_scipy_loop(s, 10),
        "engram (2 threads)": lambda s: _spread_run(s, threads=2),
    },
    goals=(Goal("speedup", 3.0, "scipy loop", ">= 3x the SciPy loop"),
           Goal("bandwidth", 0.6, "", ">= 60% of the same-run read bandwidth for the bytes moved")),
    bytes_moved=_spread_bytes_dense,
    elements=lambda s: s["graph"].nnz * s["kwargs"]["max_depth"],
))

register_workload(Workload(
    id="S4", kernel="spread",
    title="S2 with a batch of 64 one-node seed vectors, 2 threads",
    setup=_spread_setup(100_000, 1_000_000, "one", _S2_KW, batch=64),
    run=lambda s: _spread_run(s, threads=2, batch=True),
    baselines={"engram (1 thread)": lambda s: _spread_run(s, threads=1, batch=True)},
    goals=(Goal("scaling", 1.6, "engram (1 thread)", ">= 1.6x one thread"),),
    elements=lambda s: s["batch"].size,
    threads=2,
))

# ==== end spread ====

# ==== decay ====

# ==== end decay ====
