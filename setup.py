"""Build the Cython k-quant kernel (kernels/) as pocketquant._quants.

Flags: -O3, and -ffp-contract=off so that no multiply-add is fused: llama.cpp's reference
quantizers are built without contraction, and byte identity depends on the same rounding.
No -march=native unless POCKETQUANT_NATIVE=1 (a wheel must run on any x86-64). The kernel's
vector code uses SSE2 intrinsics only, which every x86-64 CPU has.
"""

import os
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

extensions = [
    Extension(
        "pocketquant._quants",
        sources=["kernels/quants.pyx"],
        depends=sorted(glob("kernels/*.pxi")),  # included into quants.pyx: rebuild when they change
        include_dirs=[np.get_include(), "kernels"],
        extra_compile_args=compile_args,
        extra_link_args=link_args,
        define_macros=[("NPY_NO_DEPRECATED_API", "NPY_1_7_API_VERSION")],
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
