"""CPU threads by model size: training's rule, which sampling shares (this module imports torch alone)."""

from __future__ import annotations

import os

# Below this many parameters a step is too small to split across threads profitably. Measured
# on this 2-core machine: v6 (42k) 5.8 ms/step on 1 or 2 threads; nanoGPT's CPU recipe (0.8M)
# 82 ms on 1 thread, 58 ms on 2.
SINGLE_THREAD_MAX_PARAMS = 100_000


def pick_threads(requested: int | None, n_params: int, parallel_jobs: int = 1) -> int:
    """Threads per process: as asked, else 1 for tiny models, else the cores this job may use
    when parallel_jobs share the machine (the joblib launcher)."""
    if requested is not None:
        return requested
    if n_params < SINGLE_THREAD_MAX_PARAMS:
        return 1
    return max(1, (os.cpu_count() or 1) // parallel_jobs)
