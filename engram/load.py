"""``python -m engram load``: the recall pipeline under sustained multi-threaded load.

N Python threads run :func:`engram.recall.recall` back to back for S
seconds on one shared store, after a short warm-up.  Reported: throughput;
p50/p95/p99 latency of each stage and of the whole recall; whether every
answer equals the single-thread answer to the same query; the arena's
allocations, heap overflows (overflow rate = overflowing allocations /
allocations) and high water of the threads' arenas; and the process's
resident set size at the start and end of the timed run, with a verdict on
growth.

Growth is "beyond noise" when the RSS at the end exceeds the RSS at the
start by more than ``max(RSS_NOISE_FLOOR, RSS_NOISE_SHARE x start)``: a
recall's temporary arrays (the (n,) activation, index and score arrays)
come and go from the allocator, which may keep some of them mapped, so a
few MiB of movement is expected; a leak of one temporary per recall would
exceed it within seconds.
"""
from __future__ import annotations

import json
import math
import os
import sys
import threading
import time

import numpy as np

#: RSS growth allowed before the load test calls it growth (bytes, and share of the start)
RSS_NOISE_FLOOR = 8 << 20
RSS_NOISE_SHARE = 0.02
#: queries the threads cycle through; each one's single-thread answer is computed first
QUERIES = 32
RSS_SAMPLE_SECONDS = 0.1


def rss_bytes() -> int | None:
    """Resident set size of this process now (Linux /proc), or None where unavailable."""
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        return None


def usable_cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:
        return os.cpu_count() or 1


def _own_arena(stats: dict) -> dict | None:
    me = threading.get_ident()
    for entry in stats["threads"]:
        if entry["thread_id"] == me:
            return entry
    return None


def run(threads: int | None = None, seconds: float = 10.0, *, memories: int = 50_000, dim: int = 768,
        k: int = 10, warmup: float = 1.0, kernel_threads: int | None = None, backend: str | None = None,
        seed: int = 0, store=None, log=None) -> dict:
    """Run the load test and return every number as a dict (see :func:`format_table`).

    ``threads`` Python threads (default: the usable cores) recall for
    ``seconds`` after ``warmup`` seconds; ``kernel_threads`` is each kernel
    call's ``threads=`` (None: engram decides by size); ``backend`` ("c" or
    "reference", None: the process default) is what every recall runs on.  ``store`` reuses a
    :class:`engram.recall.MemoryStore` instead of building one.  ``log`` is
    called with progress messages.
    """
    import contextlib

    import engram

    from .recall import STAGES, MemoryStore, RecallParams, recall

    def on_backend():
        return engram.backend(backend) if backend else contextlib.nullcontext()

    say = log or (lambda message: None)
    threads = usable_cores() if threads is None else int(threads)
    if threads < 1:
        raise ValueError(f"threads must be >= 1, got {threads}")
    if not seconds > 0:
        raise ValueError(f"seconds must be > 0, got {seconds}")
    params = RecallParams(threads=kernel_threads)

    t0 = time.perf_counter()
    if store is None:
        say(f"building a store of {memories:,} memories x {dim}-d")
        store = MemoryStore.synthetic(memories, dim, seed=seed)
    build_seconds = time.perf_counter() - t0
    queries, _ = store.cues(QUERIES, seed=seed + 1)
    say(f"single-thread answers to {QUERIES} queries")
    with on_backend():
        expected = [recall(store, q, k, params) for q in queries]

    barrier = threading.Barrier(threads + 1)
    stop_at = [0.0]  # set by the main thread after the barrier
    per_thread: list = [None] * threads

    def worker(index: int) -> None:
        with on_backend():  # a backend choice is per thread
            work(index)

    def work(index: int) -> None:
        timings, wrong, error = [], 0, None
        arena_before = arena_after = None
        first = last = 0.0
        try:
            i = index
            warm_until = time.perf_counter() + warmup
            while True:  # at least one recall, so the arena exists before the counters are read
                recall(store, queries[i % QUERIES], k, params)
                i += 1
                if time.perf_counter() >= warm_until:
                    break
        except Exception as exc:
            error = f"{type(exc).__name__}: {exc}"
        arena_before = _own_arena(engram.arena.stats())
        barrier.wait()
        barrier.wait()  # the main thread has read the starting RSS and set the deadline
        deadline = stop_at[0]
        first = time.perf_counter()
        try:
            while error is None and time.perf_counter() < deadline:
                j = i % QUERIES
                got = recall(store, queries[j], k, params)
                timings.append(got.timings)
                ref = expected[j]
                if not (np.array_equal(got.ids, ref.ids) and np.array_equal(got.scores, ref.scores)):
                    wrong += 1
                i += 1
        except Exception as exc:
            error = f"{type(exc).__name__}: {exc}"
        last = time.perf_counter()
        arena_after = _own_arena(engram.arena.stats())
        per_thread[index] = {"timings": timings, "wrong": wrong, "error": error, "first": first,
                             "last": last, "arena_before": arena_before, "arena_after": arena_after}

    pool = [threading.Thread(target=worker, args=(i,), name=f"engram-load-{i}", daemon=True)
            for i in range(threads)]
    say(f"warming up for {warmup:g} s")
    for t in pool:
        t.start()
    barrier.wait()
    rss_start = rss_bytes()
    stop_at[0] = time.perf_counter() + seconds
    say(f"{threads} threads recalling for {seconds:g} s")
    barrier.wait()
    samples = [(0.0, rss_start)]
    start = time.perf_counter()
    while True:
        now = time.perf_counter()
        if now >= stop_at[0]:
            break
        time.sleep(min(RSS_SAMPLE_SECONDS, stop_at[0] - now))
        samples.append((time.perf_counter() - start, rss_bytes()))
    for t in pool:
        t.join()
    rss_end = rss_bytes()
    samples.append((time.perf_counter() - start, rss_end))

    errors = [p["error"] for p in per_thread if p["error"]]
    all_timings = [t for p in per_thread for t in p["timings"]]
    n = len(all_timings)
    elapsed = max(p["last"] for p in per_thread) - min(p["first"] for p in per_thread)
    stages = {}
    if n:
        table = np.array(all_timings)
        table = np.column_stack([table, table.sum(axis=1)])
        for j, name in enumerate(STAGES + ("total",)):
            col = table[:, j]
            p50, p95, p99 = np.percentile(col, [50, 95, 99])
            stages[name] = {"p50": p50, "p95": p95, "p99": p99, "mean": float(col.mean()),
                            "max": float(col.max())}

    arena = {"allocations": 0, "overflows": 0, "overflow_bytes": 0, "calls": 0, "high_water": 0,
             "capacity": engram.arena.config()["size"], "in_use_after": 0}
    for p in per_thread:
        a, b = p["arena_before"], p["arena_after"]
        if a is None or b is None:
            continue
        arena["allocations"] += b["allocations"] - a["allocations"]
        arena["overflows"] += b["overflows"] - a["overflows"]
        arena["overflow_bytes"] += b["overflow_bytes"] - a["overflow_bytes"]
        arena["calls"] += b["resets"] - a["resets"]
        arena["high_water"] = max(arena["high_water"], b["high_water"])
        arena["in_use_after"] += b["in_use"]
    arena["overflow_rate"] = arena["overflows"] / arena["allocations"] if arena["allocations"] else 0.0

    rss = {"start": rss_start, "end": rss_end, "peak": None, "growth": None, "allowance": None,
           "beyond_noise": None, "samples": samples}
    if rss_start is not None and rss_end is not None:
        rss["peak"] = max(v for _, v in samples if v is not None)
        rss["growth"] = rss_end - rss_start
        rss["allowance"] = max(RSS_NOISE_FLOOR, int(RSS_NOISE_SHARE * rss_start))
        rss["beyond_noise"] = rss["growth"] > rss["allowance"]
        rss["bytes_per_recall"] = rss["growth"] / n if n else None

    info = engram.simd_info()
    return {
        "threads": threads,
        "kernel_threads": kernel_threads,
        "seconds": seconds,
        "warmup": warmup,
        "elapsed": elapsed,
        "recalls": n,
        "throughput": n / elapsed if elapsed > 0 else 0.0,
        "per_thread_recalls": [len(p["timings"]) for p in per_thread],
        "wrong_answers": sum(p["wrong"] for p in per_thread),
        "errors": errors,
        "stages": stages,
        "arena": arena,
        "rss": rss,
        "store": {"memories": store.n, "dim": store.d, "associations": store.graph.nnz,
                  "topics": store.info.get("topics"), "description": store.describe(),
                  "build_seconds": build_seconds},
        "params": {"k": k, "candidates": params.candidates, "max_depth": params.max_depth,
                   "hop_decay": params.hop_decay, "threshold": params.threshold,
                   "normalize": params.normalize, "model": params.model},
        "engine": {"engram": engram.__version__, "backend": backend or engram.get_backend(),
                   "simd": info["active"]},
    }


def ok(result: dict) -> bool:
    """No errors, every answer equal to the single-thread one, no RSS growth beyond noise."""
    return (not result["errors"] and result["wrong_answers"] == 0 and result["recalls"] > 0
            and not result["rss"]["beyond_noise"])


def _ms(seconds) -> str:
    return "-" if seconds is None or not math.isfinite(seconds) else f"{seconds * 1e3:.3f} ms"


def _mib(b) -> str:
    return "-" if b is None else f"{b / 2**20:,.1f} MiB"


def stage_table(result: dict) -> list:
    """The latency table as markdown lines: stage | p50 | p95 | p99 | mean | max."""
    rows = ["| stage | p50 | p95 | p99 | mean | max |", "|---|---|---|---|---|---|"]
    for name, s in result["stages"].items():
        rows.append(f"| {name} | {_ms(s['p50'])} | {_ms(s['p95'])} | {_ms(s['p99'])} | {_ms(s['mean'])} "
                    f"| {_ms(s['max'])} |")
    return rows


def summary_lines(result: dict) -> list:
    """Throughput, answers, arena and RSS, one line each."""
    a, r = result["arena"], result["rss"]
    lines = [
        f"throughput: {result['throughput']:,.1f} recalls/s ({result['recalls']:,} recalls in "
        f"{result['elapsed']:.2f} s; per thread {', '.join(f'{c:,}' for c in result['per_thread_recalls'])})",
        f"answers: {result['recalls'] - result['wrong_answers']:,} of {result['recalls']:,} equal to the "
        "single-thread answer to the same query",
        f"arena: {a['calls']:,} kernel calls, {a['allocations']:,} allocations, {a['overflows']:,} overflows "
        f"(overflow rate {a['overflow_rate']:.3%} of allocations, {a['overflow_bytes']:,} B from the heap); "
        f"high water {a['high_water']:,} B of {a['capacity']:,} B per thread"
        + (f"; ENGRAM_ARENA_SIZE={-(-a['high_water'] // 2**20)}M would hold it" if a["overflows"] else ""),
    ]
    if r["growth"] is None:
        lines.append("RSS: not measurable on this platform")
    else:
        verdict = "GROWTH BEYOND NOISE" if r["beyond_noise"] else "within noise"
        lines.append(f"RSS: start {_mib(r['start'])}, end {_mib(r['end'])}, peak {_mib(r['peak'])}; growth "
                     f"{r['growth'] / 2**20:+,.1f} MiB: {verdict} (allowance {_mib(r['allowance'])})")
    for e in result["errors"]:
        lines.append(f"ERROR in a recall thread: {e}")
    return lines


def format_table(result: dict) -> str:
    head = [
        f"engram load: recall from {result['threads']} thread{'s' if result['threads'] != 1 else ''} for "
        f"{result['seconds']:g} s "
        f"(after {result['warmup']:g} s of warm-up)",
        f"store: {result['store']['description']} (built in {result['store']['build_seconds']:.2f} s)",
        f"engine: engram {result['engine']['engram']}, backend {result['engine']['backend']}, SIMD "
        f"{result['engine']['simd']}; k={result['params']['k']}, {result['params']['candidates']} candidates, "
        f"kernel threads {result['kernel_threads'] or 'auto'}",
        "",
    ]
    return "\n".join(head + summary_lines(result)[:1] + [""] + stage_table(result) + [""]
                     + summary_lines(result)[1:])


def _clean(obj):
    if isinstance(obj, dict):
        return {str(k): _clean(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_clean(v) for v in obj]
    if isinstance(obj, (np.floating, float)):
        return float(obj) if math.isfinite(obj) else None
    if isinstance(obj, (np.integer, np.bool_)):
        return obj.item()
    return obj


def to_json(result: dict) -> str:
    return json.dumps(_clean(result), indent=1, allow_nan=False)


def main(args) -> int:
    log = (lambda message: print(f"... {message}", file=sys.stderr, flush=True))
    kwargs = dict(threads=args.threads, seconds=args.seconds, memories=args.memories, dim=args.dim, k=args.k,
                  warmup=args.warmup, kernel_threads=args.kernel_threads, backend=args.backend, seed=args.seed,
                  log=log)
    try:
        result = run(**kwargs)
    except ValueError as exc:
        print(f"python -m engram load: {exc}", file=sys.stderr)
        return 2
    print(to_json(result) if args.json else format_table(result))
    return 0 if ok(result) else 1


def add_arguments(p) -> None:
    p.add_argument("--threads", type=int, default=None, help="Python threads recalling (default: usable cores)")
    p.add_argument("--seconds", type=float, default=10.0, help="length of the timed run (default 10)")
    p.add_argument("--warmup", type=float, default=1.0, help="seconds of recalls before timing (default 1)")
    p.add_argument("--memories", type=int, default=50_000, help="memories in the store (default 50,000)")
    p.add_argument("--dim", type=int, default=768, help="embedding dimension (default 768)")
    p.add_argument("--k", type=int, default=10, help="memories per recall (default 10)")
    p.add_argument("--kernel-threads", type=int, default=None,
                   help="threads= of each kernel call (default: engram decides by size)")
    p.add_argument("--backend", choices=("c", "reference"), default=None, help="backend of the recall threads")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--json", action="store_true", help="print every number as JSON instead of the table")
