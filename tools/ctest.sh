#!/usr/bin/env bash
# Build the kernels into a plain C program (tests/c/) and run it: every SIMD
# level the CPU runs is compared with the scalar spec.
#   tools/ctest.sh                 native (x86-64: scalar, AVX2, AVX-512)
#   tools/ctest.sh --arch aarch64  cross-compile with aarch64-linux-gnu-gcc, run under qemu-aarch64
set -euo pipefail
cd "$(dirname "$0")/.."
arch=native
[ "${1:-}" = "--arch" ] && arch="${2:?--arch needs a value}"
out=tests/c/build/$arch
mkdir -p "$out"
flags=(-O2 -std=gnu11 -Wall -Wextra -Werror -g -Icsrc)
common=(csrc/dispatch.c csrc/arena.c csrc/parallel.c csrc/stats.c csrc/probe.c
        csrc/similarity.c csrc/spread.c csrc/decay.c tests/c/main.c
        tests/c/test_similarity.c tests/c/test_spread.c tests/c/test_decay.c)
objs=()
compile() {  # compile <cc> <src> [flags...]
    local cc=$1 src=$2; shift 2
    local obj="$out/$(echo "$src" | tr / _).o"
    "$cc" "${flags[@]}" "$@" -c "$src" -o "$obj"
    objs+=("$obj")
}
case "$arch" in
  native)
    cc=${CC:-gcc}
    for s in "${common[@]}"; do compile "$cc" "$s"; done
    if [ "$(uname -m)" = x86_64 ]; then
        compile "$cc" csrc/simd/avx2.c -mavx2 -mfma
        compile "$cc" csrc/simd/avx512.c -mavx512f -mavx512bw -mavx512dq -mavx512vl -mfma
    elif [ "$(uname -m)" = aarch64 ]; then
        compile "$cc" csrc/simd/neon.c
    fi
    "$cc" "${objs[@]}" -o "$out/ctest" -lm -lpthread
    run=("$out/ctest")
    ;;
  aarch64)
    cc=${CC:-aarch64-linux-gnu-gcc}
    command -v "$cc" >/dev/null || { echo "ctest.sh: $cc not found (apt-get install gcc-aarch64-linux-gnu)" >&2; exit 2; }
    command -v qemu-aarch64 >/dev/null || { echo "ctest.sh: qemu-aarch64 not found (apt-get install qemu-user)" >&2; exit 2; }
    for s in "${common[@]}"; do compile "$cc" "$s"; done
    compile "$cc" csrc/simd/neon.c
    "$cc" "${objs[@]}" -o "$out/ctest" -lm -lpthread
    run=(qemu-aarch64 -L /usr/aarch64-linux-gnu "$out/ctest")
    ;;
  *) echo "ctest.sh: unknown arch $arch" >&2; exit 2 ;;
esac
echo "ctest ($arch):"
"${run[@]}"
