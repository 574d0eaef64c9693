"""The thread-local bump arena: alignment, O(1) allocation, reset, high water,
overflow to heap or MemoryError, configuration, per-thread isolation and
cleanup when threads exit."""
from __future__ import annotations

import statistics
import threading

import pytest

import engram
from engram import arena
from helpers import rss_bytes, run_python

core = engram._core
KiB, MiB = 1 << 10, 1 << 20


@pytest.fixture(autouse=True)
def default_arena():
    """Every test starts and ends with the default configuration and fresh counters."""
    arena.configure(size=2 * MiB, overflow="heap", zero_on_reset=False)
    core._arena_reset()
    arena.reset_stats()
    yield
    arena.configure(size=2 * MiB, overflow="heap", zero_on_reset=False)
    core._arena_reset()


def this_thread():
    ident = threading.get_ident()
    [mine] = [t for t in arena.stats()["threads"] if t["thread_id"] == ident]
    return mine


@pytest.mark.parametrize("sizes", [[0], [1], [63, 64, 65], [1, 3, 5, 7, 1000, 4096, 17], [100_000] * 5])
def test_allocations_are_64_byte_aligned_and_disjoint(sizes):
    addresses, _ = core._arena_allocate(sizes)
    assert all(a % 64 == 0 for a in addresses)
    spans = sorted(zip(addresses, sizes))
    for (a, n), (b, _) in zip(spans, spans[1:]):
        assert a + n <= b, "blocks overlap"


def test_reset_returns_everything_and_counts():
    core._arena_allocate([1000, 2000], False)
    s = this_thread()
    assert s["in_use"] == 1024 + 2048
    assert s["allocations"] == 2
    core._arena_reset()
    s = this_thread()
    assert s["in_use"] == 0 and s["resets"] == 1
    # the next allocation reuses the start of the block
    a1, _ = core._arena_allocate([64])
    a2, _ = core._arena_allocate([64])
    assert a1 == a2


def test_high_water_tracks_largest_use():
    core._arena_allocate([300 * KiB, 200 * KiB])
    core._arena_allocate([100 * KiB])
    s = this_thread()
    assert s["high_water"] == 500 * KiB
    assert arena.stats()["total"]["high_water"] >= 500 * KiB
    arena.reset_stats()
    assert this_thread()["high_water"] == 0


def test_allocation_is_constant_time():
    # per-allocation cost must not grow with the number of live allocations
    def per_op(count):
        return min(core._arena_bench(64, count, max(1, 200_000 // count))["arena_alloc_ns"] for _ in range(5))

    few, many = per_op(16), per_op(4096)
    assert many < 4 * few + 5, (few, many)


def test_overflow_goes_to_heap_counted_and_freed():
    arena.configure(size=64 * KiB)
    addresses, _ = core._arena_allocate([32 * KiB, 48 * KiB, 1 * MiB])
    assert all(a % 64 == 0 for a in addresses)
    s = this_thread()
    assert s["capacity"] == 64 * KiB
    assert s["overflows"] == 2 and s["overflow_bytes"] == 48 * KiB + MiB
    assert s["in_use"] == 0  # reset freed the heap blocks too
    # if overflow blocks leaked, 300 x 8 MiB would show up in RSS
    start = rss_bytes()
    for _ in range(300):
        core._arena_allocate([8 * MiB])
    assert rss_bytes() - start < 64 * MiB
    assert this_thread()["overflows"] == 302


def test_overflow_raise_is_a_memory_error_with_sizes():
    arena.configure(size=64 * KiB, overflow="raise")
    with pytest.raises(MemoryError) as info:
        core._arena_allocate([40 * KiB, 40 * KiB])
    msg = str(info.value)
    assert "40960 bytes requested" in msg and "65536" in msg and "overflow='heap'" in msg
    assert this_thread()["overflows"] == 0
    # the arena stays usable after the error
    addresses, _ = core._arena_allocate([60 * KiB])
    assert addresses[0] % 64 == 0


def test_zero_on_reset():
    arena.configure(zero_on_reset=True)
    core._arena_allocate([4096])  # fills with 0xA5, then reset zeroes it
    _, was_zero = core._arena_allocate([4096])
    assert was_zero
    arena.configure(zero_on_reset=False)
    core._arena_allocate([4096])
    _, was_zero = core._arena_allocate([4096])
    assert not was_zero


def test_resize_takes_effect_at_next_use():
    core._arena_allocate([64])
    assert this_thread()["capacity"] == 2 * MiB
    arena.configure(size="256KiB")
    core._arena_allocate([64])
    assert this_thread()["capacity"] == 256 * KiB
    assert arena.config() == {"size": 256 * KiB, "overflow": "heap", "zero_on_reset": False}


@pytest.mark.parametrize(
    "text, expected",
    [("2M", 2 * MiB), ("4MiB", 4 * MiB), ("1048576", MiB), ("512k", 512 * KiB), ("512 KB", 512 * KiB),
     ("1G", 1 << 30), ("1.5M", 3 * MiB // 2), (" 64k ", 64 * KiB), ("65536b", 64 * KiB)],
)
def test_parse_size(text, expected):
    assert arena.parse_size(text) == expected


@pytest.mark.parametrize("text", ["", "abc", "2X", "-1M", "2 M B", "1k", "63k", "2G", "nan", "1e400"])
def test_parse_size_rejects(text):
    with pytest.raises(ValueError, match=r"^arena size .*(is not a size|outside 64 KiB to 1 GiB)"):
        arena.parse_size(text)


@pytest.mark.parametrize(
    "kwargs, exc, words",
    [
        ({"size": 1000}, ValueError, "64 KiB"),
        ({"size": 2 << 30}, ValueError, "1 GiB"),
        ({"size": 1.5}, TypeError, "float"),
        ({"size": "lots"}, ValueError, "not a size"),
        ({"overflow": "ignore"}, ValueError, "'heap' or 'raise'"),
    ],
)
def test_configure_rejects(kwargs, exc, words):
    before = arena.config()
    with pytest.raises(exc, match=words):
        arena.configure(**kwargs)
    assert arena.config() == before


def test_env_size_is_applied():
    r = run_python("import engram; print(engram.arena.config()['size'])", {"ENGRAM_ARENA_SIZE": "4MiB"})
    assert r.returncode == 0 and r.stdout.strip() == str(4 * MiB) and r.stderr == ""


@pytest.mark.parametrize("value", ["huge", "1k", "5G", "-3"])
def test_bad_env_size_warns_and_uses_default(value):
    code = """
        import warnings
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            import engram
        print(engram.arena.config()['size'], len([w for w in caught if w.category is RuntimeWarning]))
        print(caught[0].message)
    """
    r = run_python(code, {"ENGRAM_ARENA_SIZE": value})
    assert r.returncode == 0, r.stderr
    size, count, message = r.stdout.strip().split(" ", 2)[0], r.stdout.split()[1], r.stdout.splitlines()[1]
    assert size == str(2 * MiB) and count == "1"
    assert "ENGRAM_ARENA_SIZE" in message


def test_each_thread_has_its_own_arena():
    results = {}
    barrier = threading.Barrier(4)

    def work(i):
        barrier.wait()
        addresses, _ = core._arena_allocate([1000 * (i + 1)], False)
        barrier.wait()  # all four hold their blocks at the same time
        results[i] = (threading.get_ident(), addresses[0], {t["thread_id"]: t for t in arena.stats()["threads"]})
        core._arena_reset()

    threads = [threading.Thread(target=work, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    blocks = {addr for _, addr, _ in results.values()}
    assert len(blocks) == 4, "threads shared an arena block"
    for i, (ident, _, table) in results.items():
        assert table[ident]["in_use"] == (1000 * (i + 1) + 63) // 64 * 64


def settled_live_count(at_most=None, timeout=10.0):
    """Arenas still allocated, once exiting threads have finished.

    Thread.join() returns when the Python thread is done, slightly before the
    OS thread runs its exit destructors (which free the arena), so poll.
    """
    import time

    deadline = time.monotonic() + timeout
    last = core._arena_live_count()
    while time.monotonic() < deadline:
        time.sleep(0.02)
        now = core._arena_live_count()
        if now == last and (at_most is None or now <= at_most):
            return now
        last = now
    return last


def test_thread_exit_frees_its_arena():
    baseline_live = settled_live_count()
    start_rss = rss_bytes()

    def work():
        core._arena_allocate([1 * MiB])  # touches 1 MiB of a 2 MiB block

    for batch in range(10):
        threads = [threading.Thread(target=work) for _ in range(100)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    # 1,000 threads came and went: none of their blocks may remain
    assert settled_live_count(at_most=baseline_live) == baseline_live
    assert rss_bytes() - start_rss < 32 * MiB
    total = arena.stats()["total"]
    assert total["allocations"] >= 1000 and total["resets"] >= 1000


def test_stats_totals_add_up_across_threads():
    def work():
        for _ in range(50):
            core._arena_allocate([128, 256])

    threads = [threading.Thread(target=work) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    total = arena.stats()["total"]
    assert total["allocations"] == 8 * 50 * 2
    assert total["resets"] == 8 * 50


def test_bench_reports_arena_cheaper_than_malloc():
    samples = [core._arena_bench(256, 1000, 200) for _ in range(5)]
    arena_ns = statistics.median(s["arena_alloc_ns"] for s in samples)
    malloc_ns = statistics.median(s["malloc_free_ns"] for s in samples)
    assert arena_ns > 0 and malloc_ns > 0
    assert arena_ns < malloc_ns
