"""Integer probability tables: the one deterministic PMF quantizer both encoder and decoder use."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

PRECISION = 16  # every table's counts sum to 2**PRECISION
MAX_TABLE_LENGTH = 8192
MAX_TABLES = 1 << 16  # table indices are sorted as uint16


def quantize_pmf(pmf: np.ndarray, tail_mass: float = 0.0) -> np.ndarray:
    """Integer counts summing to 2**PRECISION for `pmf` plus one trailing escape bin holding `tail_mass`.

    Every bin gets at least one count so any symbol (and the escape) stays codable. Deterministic: only float64
    elementwise operations and integer arithmetic, ties broken by the lowest index.
    """
    probabilities = np.append(np.asarray(pmf, dtype=np.float64), float(tail_mass))
    probabilities = np.where(np.isfinite(probabilities), np.maximum(probabilities, 0.0), 0.0)
    if len(probabilities) > MAX_TABLE_LENGTH:
        raise ValueError(f"a probability table may hold at most {MAX_TABLE_LENGTH} entries")
    total = 1 << PRECISION
    free = total - len(probabilities)
    mass = probabilities.sum()
    probabilities = probabilities / mass if mass > 0 else np.full_like(probabilities, 1.0 / len(probabilities))
    counts = 1 + np.floor(probabilities * free).astype(np.int64)
    counts[int(np.argmax(counts))] += total - int(counts.sum())
    return counts.astype(np.int32)


@dataclass
class TableSet:
    """T integer PMFs padded into one array; table t codes symbols offsets[t] .. offsets[t] + lengths[t] - 2,
    and its last entry (index lengths[t] - 1) is the escape symbol."""

    counts: np.ndarray  # [T, max_length] int32, zero padded
    lengths: np.ndarray  # [T] int32, entries used including the escape bin
    offsets: np.ndarray  # [T] int32, the smallest symbol value each table covers

    @classmethod
    def from_pmfs(cls, pmfs: list[np.ndarray], offsets: list[int], tail_masses: list[float]) -> "TableSet":
        if not 0 < len(pmfs) <= MAX_TABLES:
            raise ValueError(f"a table set holds 1..{MAX_TABLES} tables")
        rows = [quantize_pmf(pmf, tail) for pmf, tail in zip(pmfs, tail_masses)]
        width = max(len(row) for row in rows)
        counts = np.zeros((len(rows), width), dtype=np.int32)
        for index, row in enumerate(rows):
            counts[index, : len(row)] = row
        lengths = np.array([len(row) for row in rows], dtype=np.int32)
        return cls(counts, lengths, np.asarray(offsets, dtype=np.int32))

    @property
    def num_tables(self) -> int:
        return len(self.lengths)

    def to_tensors(self, prefix: str) -> dict[str, torch.Tensor]:
        """Buffers to keep in a model's state dict, so decoding never recomputes a table."""
        return {
            f"{prefix}_counts": torch.from_numpy(self.counts.copy()),
            f"{prefix}_lengths": torch.from_numpy(self.lengths.copy()),
            f"{prefix}_offsets": torch.from_numpy(self.offsets.copy()),
        }

    @classmethod
    def from_tensors(cls, tensors: dict[str, torch.Tensor], prefix: str) -> "TableSet":
        return cls(
            tensors[f"{prefix}_counts"].cpu().numpy().astype(np.int32),
            tensors[f"{prefix}_lengths"].cpu().numpy().astype(np.int32),
            tensors[f"{prefix}_offsets"].cpu().numpy().astype(np.int32),
        )
