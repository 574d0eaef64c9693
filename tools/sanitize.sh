#!/usr/bin/env bash
# Build the extension with AddressSanitizer + UndefinedBehaviorSanitizer in a
# scratch copy of the tree and run the test suite under it.  Any sanitizer
# report fails the run (UBSan does not recover; ASan aborts on the first error).
#   tools/sanitize.sh [pytest args...]      e.g. tools/sanitize.sh -x -q tests/test_arena.py
#   tools/sanitize.sh --run SCRIPT [args...]  a Python script instead of pytest, run from the
#                                             scratch copy, e.g. --run tools/fuzz.py --seconds 600
# Uses the current python (with the test extras installed).  The quarantine of
# freed blocks is kept small so tests that watch RSS still see freed memory go.
set -euo pipefail
src="$(cd "$(dirname "$0")/.." && pwd)"
py=${PYTHON:-python}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
# the tracked files plus the working tree's changes, without build products
(cd "$src" && git ls-files -co --exclude-standard -z | xargs -0 cp --parents -t "$work")
cd "$work"
flags="-fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=undefined -g -O1"
ENGRAM_EXTRA_CFLAGS="$flags" ENGRAM_WERROR=1 "$py" setup.py -q build_ext --inplace >build.log 2>&1 || { cat build.log; exit 1; }
libasan=$(gcc -print-file-name=libasan.so)
libubsan=$(gcc -print-file-name=libubsan.so)
cat > lsan.supp <<'SUPP'
# The interpreter and NumPy keep objects alive until exit by design.
leak:libpython
leak:_PyObject_
leak:PyObject_Malloc
leak:_multiarray_umath
leak:_umath
leak:python3
SUPP
export LD_PRELOAD="$libasan $libubsan"
export PYTHONMALLOC=malloc
# allocator_may_return_null: an impossible allocation (an out= of 2**40 rows) must come
# back as NULL, so the test sees the MemoryError users get, not an ASan abort.
# detect_stack_use_after_return=0: ASan's fake stack frames are only 32-byte aligned,
# and GCC keeps the AVX-512 kernels' 64-byte register spills there with aligned
# stores, which fault (a crash of the instrumentation, not of the code).
export ASAN_OPTIONS="detect_leaks=${ENGRAM_SANITIZE_LEAKS:-0}:abort_on_error=1:strict_string_checks=1:detect_stack_use_after_return=0:check_initialization_order=1:quarantine_size_mb=16:allocator_may_return_null=1"
export LSAN_OPTIONS="suppressions=$work/lsan.supp:print_suppressions=0"
export UBSAN_OPTIONS="print_stacktrace=1:halt_on_error=1"
if [ "${1:-}" = "--run" ]; then
    shift
    echo "sanitize: running $* under ASan+UBSan in $work"
    "$py" "$@"
else
    echo "sanitize: running pytest under ASan+UBSan in $work"
    # --sanitized skips the tests that measure RSS or run valgrind (marked plain_build)
    "$py" -m pytest -p no:cacheprovider --sanitized "${@:--q}"
fi
