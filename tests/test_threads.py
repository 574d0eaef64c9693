"""Many Python threads at once: same results as one thread, one arena each, exact totals,
and threads=2 inside many threads neither deadlocks nor oversubscribes the cores.

The kernels release the GIL, so Python threads really run them concurrently;
every kernel partitions its work by worker index, so results are
bit-identical whatever runs alongside.
"""
from __future__ import annotations

import threading

import numpy as np
import pytest

import engram
from helpers import run_python

N_THREADS = 8
ROUNDS = 6


def kernel_calls(seed: int = 0, threads=None) -> list:
    """(name, fn, args, kwargs) of every kernel, work large enough to run for a while and
    (with threads=2) to start worker threads; fresh arrays on every call of this function."""
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((96, 384)).astype(np.float32)
    corpus = rng.standard_normal((3000, 384)).astype(np.float32)
    x64 = rng.standard_normal((40, 130))
    n = 4000
    indptr = np.arange(0, 8 * n + 1, 8)
    graph = engram.Graph(indptr, rng.integers(0, n, 8 * n), rng.random(8 * n).astype(np.float32))
    seeds = np.where(rng.random((4, n)) < 0.01, rng.random((4, n)), 0.0).astype(np.float32)
    strength = rng.random(200_000).astype(np.float32)
    age = rng.uniform(0, 1e6, 200_000).astype(np.float32)
    t = {} if threads is None else {"threads": threads}
    return [
        ("cosine_similarity", engram.cosine_similarity, (x, corpus[:500]), dict(t)),
        ("cosine_similarity-f64-pair", engram.cosine_similarity, (x64[0], x64[1]), {}),
        ("cosine_similarity-strided", engram.cosine_similarity, (x64[:, ::2], x64[::-1, ::2]), dict(t)),
        ("normalize", engram.normalize, (corpus,), {}),
        ("top_k", engram.top_k, (x, corpus, 10), dict(t)),
        ("top_k-dot", engram.top_k, (x[0], corpus, 7), dict(t, metric="dot")),
        ("spread", engram.spread, (graph, seeds[0]), dict(t)),
        ("spread-batch", engram.spread, (graph, seeds), dict(t, normalize="out", combine="max")),
        ("decay", engram.decay, (strength, age), dict(t)),
        ("decay-power", engram.decay, (strength.astype(np.float64), age), dict(t, model="power")),
    ]


def run_all(calls) -> dict:
    return {name: fn(*args, **kwargs) for name, fn, args, kwargs in calls}


def same(a, b) -> bool:
    """Bit-identical results (NaN where NaN)."""
    if isinstance(a, tuple):
        return isinstance(b, tuple) and len(a) == len(b) and all(same(p, q) for p, q in zip(a, b))
    if isinstance(a, float):
        return isinstance(b, float) and np.float64(a).tobytes() == np.float64(b).tobytes()
    return a.dtype == b.dtype and a.shape == b.shape and a.tobytes() == b.tobytes()


def run_in_threads(target, n=N_THREADS):
    """Run target(i) in n threads started together; re-raise the first failure."""
    barrier = threading.Barrier(n)
    errors: list = []

    def body(i):
        try:
            barrier.wait(timeout=60)
            target(i)
        except BaseException as exc:  # noqa: BLE001  (reported below)
            errors.append(exc)
            barrier.abort()

    threads = [threading.Thread(target=body, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=300)
        assert not t.is_alive(), "a thread did not finish in 300 s"
    if errors:
        raise errors[0]


@pytest.mark.parametrize("threads", [None, 1, 2])
def test_threads_give_the_results_of_one_thread(threads, c_backend):
    calls = kernel_calls(threads=threads)
    expected = run_all(calls)
    mismatches: list = []

    def work(i):
        order = np.random.default_rng(i).permutation(len(calls))
        for _ in range(ROUNDS):
            for j in order:
                name, fn, args, kwargs = calls[j]
                if not same(fn(*args, **kwargs), expected[name]):
                    mismatches.append((i, name))

    run_in_threads(work)
    assert not mismatches, f"results differ from one thread's: {sorted(set(mismatches))}"


def test_each_thread_gets_its_own_arena(c_backend):
    calls = kernel_calls()
    live_before = engram._core._arena_live_count()
    seen: dict = {}
    gate = threading.Barrier(N_THREADS + 1)

    def work(i):
        run_all(calls)
        ident = threading.get_ident()
        mine = [t for t in engram.arena.stats()["threads"] if t["thread_id"] == ident]
        seen[i] = (ident, mine)
        gate.wait(timeout=60)  # stay alive until the main thread has looked
        gate.wait(timeout=60)

    runner = threading.Thread(target=run_in_threads, args=(work,))
    runner.start()
    gate.wait(timeout=120)
    try:
        stats = engram.arena.stats()
        by_thread = {t["thread_id"]: t for t in stats["threads"]}
        idents = {ident for ident, _ in seen.values()}
        assert len(idents) == N_THREADS
        for i, (ident, mine) in seen.items():
            assert len(mine) == 1, f"thread {i} has {len(mine)} arenas"
            assert mine[0]["capacity"] > 0 and mine[0]["allocations"] > 0 and mine[0]["resets"] > 0
            assert ident in by_thread
        assert engram._core._arena_live_count() >= live_before + N_THREADS
    finally:
        gate.wait(timeout=60)
        runner.join(timeout=120)
    # exited threads give their blocks back (the destructor runs just after join returns)
    import time

    deadline = time.time() + 10
    while engram._core._arena_live_count() > live_before and time.time() < deadline:
        time.sleep(0.01)
    assert engram._core._arena_live_count() <= live_before
    assert not idents & {t["thread_id"] for t in engram.arena.stats()["threads"]}


def test_stats_totals_add_up_exactly(c_backend):
    """Counters bumped from 8 threads at once lose nothing: calls and elements are exact, and
    the arena totals are the sum of the threads' (and stay so after the threads exit)."""
    calls = kernel_calls(threads=2)
    enabled = engram.stats()["enabled"]
    engram.stats(enable=True, reset=True)
    try:
        run_all(calls)  # one call each: the elements a call counts
        one = engram.stats()["kernels"]
        engram.stats(reset=True)
        engram.arena.reset_stats()
        gate = threading.Barrier(N_THREADS + 1)
        failures: list = []

        def work(i):
            for _ in range(ROUNDS):
                run_all(calls)
                for fn, args in ((engram.top_k, (calls[0][2][0], calls[0][2][1], 0)),
                                 (engram.decay, (calls[-2][2][0], -1.0))):
                    try:  # failed calls are not counted
                        fn(*args)
                    except ValueError:
                        failures.append(i)
            gate.wait(timeout=120)
            gate.wait(timeout=120)

        runner = threading.Thread(target=run_in_threads, args=(work,))
        runner.start()
        gate.wait(timeout=300)
        try:
            got = engram.stats()
            arena = engram.arena.stats()
        finally:
            gate.wait(timeout=60)
            runner.join(timeout=120)
        assert len(failures) == 2 * ROUNDS * N_THREADS
        for name in engram.KERNEL_NAMES:
            k, base = got["kernels"][name], one[name]
            assert k["calls"] == base["calls"] * ROUNDS * N_THREADS, name
            assert k["elements"] == base["elements"] * ROUNDS * N_THREADS, name
            assert k["total_seconds"] > 0 and k["last_seconds"] > 0
        per_thread, total = arena["threads"], arena["total"]
        for key in ("allocations", "resets", "overflows", "overflow_bytes"):
            assert total[key] == sum(t[key] for t in per_thread), key
        assert total["high_water"] == max(t["high_water"] for t in per_thread)
        assert total["resets"] >= ROUNDS * N_THREADS * (len(calls) - 1)
        # after the threads exit, what their arenas counted stays in the total
        import time

        deadline = time.time() + 10
        while len(engram.arena.stats()["threads"]) > len(per_thread) - N_THREADS and time.time() < deadline:
            time.sleep(0.01)
        after = engram.arena.stats()["total"]
        for key in ("allocations", "resets", "overflows", "overflow_bytes"):
            assert after[key] == total[key], key
        assert got["arena"]["resets"] == total["resets"]
    finally:
        engram.stats(enable=enabled, reset=True)


_OVERSUBSCRIPTION_SCRIPT = r"""
import os, threading, time
import numpy as np
import engram

cores = engram._core._cpu_count()
rng = np.random.default_rng(0)
x = rng.standard_normal((400, 256)).astype(np.float32)
corpus = rng.standard_normal((4000, 256)).astype(np.float32)
n = 20000
indptr = np.arange(0, 8 * n + 1, 8)
graph = engram.Graph(indptr, rng.integers(0, n, 8 * n), rng.random(8 * n))
seeds = np.where(rng.random((8, n)) < 0.01, 1.0, 0.0).astype(np.float32)
strength = rng.random(2_000_000).astype(np.float32)
age = rng.uniform(0, 1e6, 2_000_000).astype(np.float32)
calls = [
    (engram.cosine_similarity, (x, corpus), {"threads": 2}),
    (engram.top_k, (x, corpus, 10), {"threads": 2}),
    (engram.spread, (graph, seeds), {"threads": 2}),
    (engram.decay, (strength, age), {"threads": 2}),
]
expected = [fn(*a, **k) for fn, a, k in calls]

def os_threads():
    with open("/proc/self/status") as f:
        return int(next(line for line in f if line.startswith("Threads:")).split()[1])

# workers only exist inside a call: one call alone does start them
peak_alone = 0
stop = threading.Event()
def sample():
    global peak_alone
    while not stop.is_set():
        peak_alone = max(peak_alone, os_threads())
        time.sleep(0.0002)
base = os_threads() + 1
sampler = threading.Thread(target=sample)
sampler.start()
deadline = time.time() + 5  # a busy machine may keep the sampler off the cores for a while
while peak_alone <= base and time.time() < deadline:
    engram.cosine_similarity(x, corpus, threads=2)
stop.set()
sampler.join()

PY_THREADS = 16
peak = 0
done = threading.Event()
bad = []
def monitor():
    global peak
    while not done.is_set():
        peak = max(peak, os_threads())
        time.sleep(0.0005)

def work(i):
    for r in range(3):
        for j in np.random.default_rng(i * 10 + r).permutation(len(calls)):
            fn, a, k = calls[j]
            got = fn(*a, **k)
            want = expected[j]
            if isinstance(got, tuple):
                ok = all(np.array_equal(g, w) for g, w in zip(got, want))
            else:
                ok = np.array_equal(got, want)
            if not ok:
                bad.append(j)

before = os_threads()
mon = threading.Thread(target=monitor)
mon.start()
workers = [threading.Thread(target=work, args=(i,)) for i in range(PY_THREADS)]
for t in workers:
    t.start()
for t in workers:
    t.join()
done.set()
mon.join()
# the Python threads, the monitor, and at most one worker per core on top
limit = before + PY_THREADS + 1 + cores
print(f"cores={cores} alone={peak_alone - base + 1} before={before} peak={peak} limit={limit} bad={len(bad)}")
assert cores == 1 or peak_alone > base, "threads=2 never started a worker thread"
assert not bad, f"calls {sorted(set(bad))} differ from one thread's results"
assert peak <= limit, f"{peak} OS threads at once: oversubscribed (limit {limit})"
print("OK")
"""


def test_threads_2_in_many_python_threads_neither_deadlocks_nor_oversubscribes():
    """16 Python threads each asking for threads=2, in a subprocess: a deadlock fails the test
    by its timeout instead of hanging the run."""
    try:
        proc = run_python(_OVERSUBSCRIPTION_SCRIPT, timeout=240)
    except Exception as exc:  # subprocess.TimeoutExpired
        pytest.fail(f"no answer in 240 s, a deadlock: {exc}")
    assert proc.returncode == 0 and "OK" in proc.stdout, proc.stdout + proc.stderr
