"""Use after fork: a child made by os.fork() or by multiprocessing's "fork" start method (as
PyTorch data loaders make theirs) runs every kernel correctly with threads=2.

The parent has run every kernel with threads=2 first, so whatever a kernel
call leaves behind (arenas, the busy-core count, cached pull layouts) exists
when the child is made; one case forks while other threads are inside
kernels.  Children report through their exit status and a pipe; the parent
waits with a timeout, so a child that deadlocks fails the test.
"""
from __future__ import annotations

import multiprocessing
import os
import pickle
import select
import signal
import threading
import time

import numpy as np
import pytest

import engram
from test_threads import kernel_calls, run_all, same

pytestmark = pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")

TIMEOUT = 120


def _os_threads() -> int:
    with open("/proc/self/status") as f:
        return int(next(line for line in f if line.startswith("Threads:")).split()[1])


def _child_check(expected: dict) -> dict:
    """In the child: every kernel with threads=2, compared with the parent's results; also
    whether a threads=2 call started a worker thread (the busy-core count was reset)."""
    calls = kernel_calls(threads=2)
    got = run_all(calls)
    wrong = sorted(name for name in expected if not same(got[name], expected[name]))
    peak, stop = [0], threading.Event()

    def sample():
        while not stop.is_set():
            peak[0] = max(peak[0], _os_threads())
            time.sleep(0.0002)

    base = _os_threads() + 1
    sampler = threading.Thread(target=sample)
    sampler.start()
    x, corpus = calls[0][2][0], calls[4][2][1]
    deadline = time.time() + 5  # a busy machine may keep the sampler off the cores for a while
    while peak[0] <= base and time.time() < deadline:
        engram.top_k(x, corpus, 10, threads=2)
    stop.set()
    sampler.join()
    return {"wrong": wrong, "worker_started": peak[0] > base, "cores": engram._core._cpu_count(),
            "arenas": len(engram.arena.stats()["threads"])}


def _fork_and_check(expected: dict) -> dict:
    """os.fork(); the child runs _child_check and sends its report through a pipe."""
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: never return into pytest
        status = 1
        try:
            os.close(read_end)
            report = _child_check(expected)
            os.write(write_end, pickle.dumps(report))
            status = 0
        finally:
            os._exit(status)
    os.close(write_end)
    data = b""
    deadline = time.time() + TIMEOUT
    try:
        while time.time() < deadline:
            ready, _, _ = select.select([read_end], [], [], max(0.0, deadline - time.time()))
            if not ready:
                break
            chunk = os.read(read_end, 1 << 16)
            if not chunk:
                break
            data += chunk
        done, status = os.waitpid(pid, os.WNOHANG)
        while done == 0 and time.time() < deadline:
            time.sleep(0.01)
            done, status = os.waitpid(pid, os.WNOHANG)
        if done == 0:
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
            pytest.fail(f"the forked child did not finish in {TIMEOUT} s (deadlock?)")
    finally:
        os.close(read_end)
    assert os.WIFEXITED(status) and os.WEXITSTATUS(status) == 0, f"child failed: status {status}"
    return pickle.loads(data)


@pytest.fixture
def parent_results(c_backend):
    """Every kernel run with threads=2 in the parent; the results the children must give."""
    return run_all(kernel_calls(threads=2))


def _check_report(report):
    assert not report["wrong"], f"the child's results differ: {report['wrong']}"
    if report["cores"] > 1:
        assert report["worker_started"], "threads=2 started no worker thread in the child"
    assert report["arenas"] == 1, "the child kept the arenas of threads that do not exist in it"


def test_os_fork_child_runs_every_kernel(parent_results):
    _check_report(_fork_and_check(parent_results))


def test_os_fork_while_threads_are_inside_kernels(parent_results):
    """Forks while 4 threads run kernels with threads=2: whatever they hold at that moment
    (worker threads, busy cores, an arena registry update) must not break the child."""
    stop = threading.Event()
    calls = kernel_calls(seed=1, threads=2)

    def busy():
        while not stop.is_set():
            run_all(calls)

    threads = [threading.Thread(target=busy) for _ in range(4)]
    for t in threads:
        t.start()
    try:
        time.sleep(0.05)
        for _ in range(6):
            _check_report(_fork_and_check(parent_results))
            time.sleep(0.01)
    finally:
        stop.set()
        for t in threads:
            t.join(timeout=60)


def _pool_task(expected):
    return _child_check(expected)


def test_multiprocessing_fork_children_run_every_kernel(parent_results):
    """multiprocessing's "fork" start method, two children at once, as a data loader makes them."""
    ctx = multiprocessing.get_context("fork")
    with ctx.Pool(2) as pool:
        pending = pool.map_async(_pool_task, [parent_results] * 4)
        try:
            reports = pending.get(timeout=TIMEOUT)
        except multiprocessing.TimeoutError:
            pool.terminate()
            pytest.fail(f"the pool's children did not finish in {TIMEOUT} s (deadlock?)")
    for report in reports:
        assert not report["wrong"], f"a child's results differ: {report['wrong']}"
        if report["cores"] > 1:
            assert report["worker_started"], "threads=2 started no worker thread in the child"
