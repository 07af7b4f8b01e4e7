"""Build the Cython k-quant kernel (kernels/) as pocketquant._quants.

Flags: -O3, and -ffp-contract=off so that no multiply-add is fused: llama.cpp's reference
quantizers are built without contraction, and byte identity depends on the same rounding.
No -march=native unless POCKETQUANT_NATIVE=1 (a wheel must run on any x86-64). The kernel's
vector code uses SSE2 intrinsics only, which every x86-64 CPU has; on other CPUs (aarch64)
kernels/pq_simd.h supplies them in plain C with identical results. POCKETQUANT_PORTABLE_SIMD=1
builds that plain-C path on x86-64 too (tests/kernel/test_kernel_portable.py checks its bytes).
"""

import os
import platform
import sys
from glob import glob

import numpy as np
from Cython.Build import cythonize
from setuptools import Extension, setup

compile_args = ["-O3", "-ffp-contract=off", "-fno-math-errno"]
link_args: list[str] = []
if sys.platform.startswith("linux"):
    compile_args.append("-fopenmp")
    link_args.append("-fopenmp")
if os.environ.get("POCKETQUANT_NATIVE") == "1":
    compile_args.append("-march=native")
define_macros = [("NPY_NO_DEPRECATED_API", "NPY_1_7_API_VERSION")]
force_portable = os.environ.get("POCKETQUANT_PORTABLE_SIMD") == "1"
if force_portable:
    define_macros.append(("PQ_PORTABLE_SIMD", "1"))
if (
    (force_portable or platform.machine().lower() not in ("x86_64", "amd64"))
    and sys.platform != "win32"
    and os.environ.get("POCKETQUANT_FORCE_INLINE") != "0"
):
    # The plain-C lanes are only fast once the kernel's small `cdef inline` helpers (vsel,
    # vnearest_i, ...) are inlined into the loops; GCC declines for the larger plain-C bodies,
    # and a call per 4 lanes costs 5-10x. Cython reads CYTHON_INLINE from here when defined.
    # Same bytes either way (POCKETQUANT_FORCE_INLINE=0 turns it off).
    define_macros.append(("CYTHON_INLINE", "__inline__ __attribute__((always_inline, unused))"))

extensions = [
    Extension(
        "pocketquant._quants",
        sources=["kernels/quants.pyx"],
        # included into quants.pyx / its C: rebuild when they change
        depends=sorted(glob("kernels/*.pxi") + glob("kernels/*.h")),
        include_dirs=[np.get_include(), "kernels"],
        extra_compile_args=compile_args,
        extra_link_args=link_args,
        define_macros=define_macros,
    )
]

setup(
    ext_modules=cythonize(
        extensions,
        compiler_directives={
            "language_level": "3",
            "boundscheck": False,
            "wraparound": False,
            "cdivision": True,
            "initializedcheck": False,
        },
    )
)
