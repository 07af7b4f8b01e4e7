"""What the current process has cost so far: wall time since it started and its peak resident set.

Stages record it (in their metrics, or one log line) so a run on a bigger model shows where the time
and memory went; benchmarks/scale.py compares it with the targets (docs/pipeline.md).
"""

from __future__ import annotations

import resource
import sys
import time

import psutil


def process_usage() -> dict[str, float]:
    """{"wall_s": seconds since this process started, "peak_rss_mib": its maximum RSS so far}.

    Peak RSS is the kernel's high-water mark (ru_maxrss, KiB on Linux): exact, not sampled. It
    counts pages of memory-mapped files too (llama.cpp maps the GGUF it runs)."""
    wall = time.time() - psutil.Process().create_time()
    peak_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return {"wall_s": round(wall, 2), "peak_rss_mib": round(peak_kib / 1024.0, 1)}


def log_usage(what: str) -> dict[str, float]:
    """Print one line "pocketquant <what>: wall N s, peak RSS N MiB" to stderr and return the numbers."""
    u = process_usage()
    print(
        f"pocketquant {what}: wall {u['wall_s']:.1f} s, peak RSS {u['peak_rss_mib']:.0f} MiB", file=sys.stderr
    )
    return u
