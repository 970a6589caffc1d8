"""Best-of-N wall-clock timing shared by the benchmarks."""
from __future__ import annotations

import platform
import subprocess
import sys
import time
from pathlib import Path
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


def speed_report(model_name: str, reference: str, image: Path, repeats: int) -> list[dict]:
    """Every level of `model_name` on `image` next to `reference` at the quality whose bpp is closest (0.25 steps):
    encode and decode seconds, best of `repeats`, whole API calls (container included), in one process."""
    import numpy as np

    from codec.api import decode_image, encode_image, prepared_model
    from codec.imageio import load_image

    loaded = load_image(image, 1 << 26)
    pixels = loaded.pixels.shape[-1] * loaded.pixels.shape[-2]
    model, _ = prepared_model(model_name)
    ref, _ = prepared_model(reference)
    reference_points = []
    for quality in np.arange(0, ref.max_quality + 1e-9, 0.25):
        reference_points.append((len(encode_image(loaded, reference, float(quality))) * 8 / pixels, float(quality)))
    rows = []
    for level in range(int(model.max_quality) + 1):
        encode_s, data = best_of(repeats, lambda: encode_image(loaded, model_name, float(level)), warm_up=True)
        decode_s, _ = best_of(repeats, lambda: decode_image(data), warm_up=True)
        bpp = len(data) * 8 / pixels
        quality = min(reference_points, key=lambda point: abs(point[0] - bpp))[1]
        ref_encode_s, ref_data = best_of(repeats, lambda: encode_image(loaded, reference, quality), warm_up=True)
        ref_decode_s, _ = best_of(repeats, lambda: decode_image(ref_data), warm_up=True)
        rows.append({"level": level, "bpp": bpp, "encode_s": encode_s, "decode_s": decode_s,
                     "reference_quality": quality, "reference_bpp": len(ref_data) * 8 / pixels,
                     "reference_encode_s": ref_encode_s, "reference_decode_s": ref_decode_s,
                     "decode_speedup": ref_decode_s / decode_s, "encode_speedup": ref_encode_s / encode_s})
    return rows


# Runs argv[1:] and writes "exit maxrss_kib" to stderr's last line. A small launcher, because Linux keeps a process's
# peak RSS across fork and execve: measured straight from a benchmark that has loaded torch, every child would
# report at least the benchmark's own size.
_LAUNCHER = ("import os, subprocess, sys\n"
             "child = subprocess.Popen(sys.argv[1:], stdout=subprocess.DEVNULL)\n"
             "_, status, usage = os.wait4(child.pid, 0)\n"
             "print('\\nmeasured', os.waitstatus_to_exitcode(status), usage.ru_maxrss, file=sys.stderr)\n")


def run_measured(command: list[str], env: dict | None = None) -> dict:
    """One command in its own process: exit status, wall seconds, peak RSS in MiB and its last stderr line."""
    started = time.perf_counter()
    finished = subprocess.run([sys.executable, "-c", _LAUNCHER, *command], stderr=subprocess.PIPE, text=True, env=env)
    seconds = time.perf_counter() - started
    lines = finished.stderr.strip().splitlines()
    if not lines or not lines[-1].startswith("measured "):
        raise RuntimeError(f"could not run {' '.join(command)}: {finished.stderr.strip()[-2000:]}")
    _, exit_code, peak_kib = lines[-1].split()
    errors = [line for line in lines[:-1] if line.strip()]
    return {"exit": int(exit_code), "seconds": round(seconds, 2), "peak_rss_mib": round(int(peak_kib) / 1024),
            "error": errors[-1] if errors else None}
