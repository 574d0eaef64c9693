"""Build engram._core: baseline flags everywhere, ISA flags only for csrc/simd/.

Each file in csrc/simd/ is compiled with the flags of its own instruction
set and nothing else is, so the extension imports on any CPU of its
architecture and picks the best level at run time.  Set ENGRAM_WERROR=1 to
turn warnings into errors (CI does).
"""
import os
import platform

import numpy
from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext

machine = platform.machine().lower()
X86_64 = machine in ("x86_64", "amd64")
ARM64 = machine in ("aarch64", "arm64")

BASE_SOURCES = [
    "csrc/module.c",
    "csrc/dispatch.c",
    "csrc/arena.c",
    "csrc/parallel.c",
    "csrc/stats.c",
    "csrc/probe.c",
    "csrc/similarity.c",
    "csrc/spread.c",
    "csrc/decay.c",
]
ISA_SOURCES = []
if X86_64:
    ISA_SOURCES += [
        ("csrc/simd/avx2.c", ["-mavx2", "-mfma"]),
        ("csrc/simd/avx512.c", ["-mavx512f", "-mavx512bw", "-mavx512dq", "-mavx512vl", "-mfma"]),
    ]
if ARM64:
    ISA_SOURCES += [("csrc/simd/neon.c", [])]  # Advanced SIMD is baseline on arm64

COMMON_FLAGS = ["-O3", "-std=gnu11", "-Wall", "-Wextra", "-fvisibility=hidden", "-fno-math-errno"]
if os.environ.get("ENGRAM_WERROR", "") not in ("", "0"):
    COMMON_FLAGS.append("-Werror")
EXTRA_FLAGS = os.environ.get("ENGRAM_EXTRA_CFLAGS", "").split()  # e.g. sanitizers
HEADERS = ["csrc/engram.h", "csrc/decay_internal.h"]


HERE = os.path.dirname(os.path.abspath(__file__))


class BuildExt(build_ext):
    """Compile csrc/simd/*.c with their own -m flags, then link everything.

    The built extension is also copied next to the sources: `python -m
    engram ...` and `python -m pytest` run from a checkout put the checkout
    first on sys.path, and without the copy they would import a package
    that has no C core.
    """

    def run(self):
        super().run()
        if self.inplace:
            return
        for ext in self.extensions:
            built = self.get_ext_fullpath(ext.name)
            target = os.path.join(HERE, *ext.name.split(".")[:-1], os.path.basename(built))
            if os.path.exists(built) and os.access(os.path.dirname(target), os.W_OK):
                self.copy_file(built, target)

    def build_extension(self, ext):
        objects = []
        for source, flags in ISA_SOURCES:
            objects += self.compiler.compile(
                [source],
                output_dir=self.build_temp,
                include_dirs=ext.include_dirs,
                extra_postargs=COMMON_FLAGS + EXTRA_FLAGS + flags,
                depends=HEADERS,
                debug=self.debug,
            )
        ext.extra_objects = objects
        super().build_extension(ext)


setup(
    ext_modules=[
        Extension(
            "engram._core",
            sources=BASE_SOURCES,
            # the per-ISA files are linked as objects: listing them makes a
            # change to one of them relink the extension
            depends=HEADERS + [source for source, _ in ISA_SOURCES],
            include_dirs=[numpy.get_include(), "csrc"],
            extra_compile_args=COMMON_FLAGS + EXTRA_FLAGS,
            extra_link_args=EXTRA_FLAGS + ["-lpthread", "-lm"],
        )
    ],
    cmdclass={"build_ext": BuildExt},
)
