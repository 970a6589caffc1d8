"""Which precision path the conv transforms take on this machine.

bf16 autocast with channels_last runs the analysis/synthesis transforms 3-4x faster than fp32 on CPUs with
AVX-512 bf16 or AMX. Everything that feeds the entropy coder stays in fp32 / exact integer arithmetic.
"""
from __future__ import annotations

import contextlib
import functools
import os
from typing import Iterator

import torch


@functools.lru_cache(maxsize=None)
def cpuinfo() -> str:
    """/proc/cpuinfo ("" where there is none)."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as handle:
            return handle.read()
    except OSError:
        return ""


@functools.lru_cache(maxsize=None)
def cpu_has_bf16() -> bool:
    """True when the CPU advertises native bf16 (AVX-512 BF16 or AMX); env CODEC_BF16=0/1 overrides."""
    forced = os.environ.get("CODEC_BF16")
    if forced is not None:
        return forced not in ("0", "", "false", "no")
    flags = cpuinfo()
    return "avx512_bf16" in flags or "amx_bf16" in flags


def use_bf16(device: torch.device | str = "cpu") -> bool:
    """Whether the transforms should run under bf16 autocast on this device."""
    device = torch.device(device)
    if device.type == "cuda":
        return torch.cuda.is_bf16_supported()
    return cpu_has_bf16()


@contextlib.contextmanager
def transform_autocast(enabled: bool, device: torch.device | str = "cpu") -> Iterator[None]:
    """Autocast context for g_a / g_s only (never around entropy parameters)."""
    device_type = torch.device(device).type
    with torch.autocast(device_type, dtype=torch.bfloat16, enabled=enabled):
        yield
