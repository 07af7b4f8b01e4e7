"""What the current process has cost so far: wall time since it started and its peak resident set.

Stages record it (in their metrics, or one log line) so a run on a bigger model shows where the time
and memory went; benchmarks/scale.py compares it with the targets (docs/pipeline.md).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
import resource
import sys
import time

import psutil


def peak_rss_bytes() -> int:
    """This process's own peak RSS: the kernel's high-water mark of its address space (VmHWM).

    Not ru_maxrss: Linux carries that across fork + exec, so a child started by a 2 GB process
    reports at least 2 GB even if it never uses them. Both count pages of memory-mapped files
    (llama.cpp maps the GGUF it runs)."""
    try:
        with open("/proc/self/status", encoding="ascii", errors="replace") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # KiB on Linux, elsewhere bytes/1024


def process_usage() -> dict[str, float]:
    """{"wall_s": seconds since this process started, "peak_rss_mib": its peak RSS so far}."""
    wall = time.time() - psutil.Process().create_time()
    return {"wall_s": round(wall, 2), "peak_rss_mib": round(peak_rss_bytes() / 2**20, 1)}


def log_usage(what: str) -> dict[str, float]:
    """Print one line "pocketquant <what>: wall N s, peak RSS N MiB" to stderr and return the numbers."""
    u = process_usage()
    line = f"pocketquant {what}: wall {u['wall_s']:.1f} s, peak RSS {u['peak_rss_mib']:.0f} MiB"
    print(line, file=sys.stderr)
    return u


_M_MMAP_THRESHOLD = -3  # glibc mallopt parameter


def return_freed_memory(threshold: int = 2**20) -> bool:
    """Make glibc hand large freed blocks back to the OS at once (True if it could be set).

    glibc raises its mmap threshold to the size of the last large block freed (up to 32 MB), after
    which such blocks come from its heap and stay resident when freed: scoring one 128k-vocabulary
    block after another kept ~400 MB more RSS than it used (a 3B evaluation peaked at 3.2 GB
    instead of 2.9 GB). A fixed threshold keeps every block above it an mmap of its own."""
    libc = _libc()
    try:
        return bool(libc is not None and libc.mallopt(_M_MMAP_THRESHOLD, threshold))
    except AttributeError:  # not glibc (musl, macOS): nothing to tune
        return False


def trim_freed_memory() -> None:
    """Hand memory glibc holds freed (in every arena) back to the OS now; a no-op elsewhere."""
    libc = _libc()
    if libc is not None and hasattr(libc, "malloc_trim"):
        libc.malloc_trim(0)


@functools.cache
def _libc() -> ctypes.CDLL | None:
    # find_library runs `ldconfig -p` in a child process: once per process, not once per call
    name = ctypes.util.find_library("c")
    try:
        return ctypes.CDLL(name) if name else None
    except OSError:
        return None
