"""Best-of-N wall-clock timing shared by the benchmarks."""
from __future__ import annotations

import platform
import time
from typing import Callable, TypeVar

from codec.precision import cpuinfo

T = TypeVar("T")


def best_of(repeats: int, function: Callable[[], T], warm_up: bool = False) -> tuple[float, T]:
    """Fastest of `repeats` calls in seconds, and the last result (optionally after one untimed warm-up call)."""
    if warm_up:
        function()
    best, result = float("inf"), None
    for _ in range(repeats):
        started = time.perf_counter()
        result = function()
        best = min(best, time.perf_counter() - started)
    return best, result


def cpu_description() -> str:
    """The CPU model and whether it has AMX (bf16 speed differs a lot between AVX-512-bf16-only and AMX CPUs)."""
    info = cpuinfo()
    if not info:
        return platform.processor() or "unknown CPU"
    name = next((line.split(":", 1)[1].strip() for line in info.splitlines() if line.startswith("model name")), "CPU")
    return f"{name}, {'AMX' if 'amx_bf16' in info else 'no AMX'}"
