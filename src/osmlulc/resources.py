"""Cluster resources of a job that grow with its attempt, so that a retry after an out-of-memory or
time-limit kill asks for more (Snakemake's ``attempt``: 1 for the first try, 2 for the first retry).

The rules (rules/common.smk: ``scaled_mem_mb``, ``scaled_runtime``) call these with the job's attempt
and the size of its input files; the cluster profile's ``set-resources`` use the same form
(``<base> * attempt``). Local runs ignore ``runtime`` and only use ``mem_mb`` to schedule jobs.
"""

from __future__ import annotations

import math
import os
from typing import Iterable


def input_size_mb(paths: Iterable[str | os.PathLike]) -> float:
    """Total size (MB) of the files among ``paths`` that exist (in a dry run, inputs that later jobs make do not)."""
    total = 0
    for path in paths:
        try:
            total += os.path.getsize(path)
        except OSError:
            continue
    return total / 1e6


def memory_mb(base_mb: float, attempt: int, *, input_mb: float = 0.0, per_input_mb: float = 0.0,
              threads: int = 1, per_thread_mb: float = 0.0) -> int:
    """Memory of a job: (base + per_input_mb * input size + per_thread_mb * threads) * attempt, in MB."""
    if attempt < 1:
        raise ValueError(f"attempt must be >= 1, got {attempt}")
    return int(math.ceil((base_mb + per_input_mb * input_mb + per_thread_mb * threads) * attempt))


def runtime_min(base_min: float, attempt: int, *, input_mb: float = 0.0, per_input_min: float = 0.0) -> int:
    """Wall-clock limit of a job: (base + per_input_min * input size in MB) * attempt, in minutes."""
    if attempt < 1:
        raise ValueError(f"attempt must be >= 1, got {attempt}")
    return int(math.ceil((base_min + per_input_min * input_mb) * attempt))
