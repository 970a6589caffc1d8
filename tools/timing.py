"""Best-of-N wall-clock timing shared by the benchmarks."""
from __future__ import annotations

import time
from typing import Callable, TypeVar

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
