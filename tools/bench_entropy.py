#!/usr/bin/env python
"""Entropy-core benchmark: actual bytes vs the ideal -log2 p, and throughput next to CompressAI's rANS.

    python tools/bench_entropy.py [--symbols 1000000] [--model ms-hyperprior]

Both coders get the same symbols, the same table indices and the same integer tables (CompressAI's CDF is the
cumulative sum of our counts), in the same run. Two workloads: synthetic Gaussian symbols over the 64-scale table,
and the real y latents of Kodak images under a shipped model (skipped when the data or model is missing).
"""
from __future__ import annotations

import argparse
from typing import Iterator
import sys
import warnings
from pathlib import Path

import numpy as np

warnings.filterwarnings("ignore", category=FutureWarning)
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from codec.entropy import TableSet, decode_symbols, encode_symbols, ideal_bits  # noqa: E402
from codec.entropy.gaussian import build_gaussian_tables, default_scale_table  # noqa: E402
from timing import best_of  # noqa: E402


def synthetic_workload(count: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray, TableSet]:
    rng = np.random.default_rng(seed)
    scales = default_scale_table()
    indices = rng.choice(len(scales), count, p=np.linspace(2, 0.1, len(scales)) / np.linspace(2, 0.1, len(scales)).sum())
    symbols = np.round(rng.normal(0, scales[indices] * 1.02)).astype(np.int64)  # mild model mismatch, some escapes
    return symbols, indices, build_gaussian_tables(scales)


def hyperprior_latents(model_name: str, images: int) -> Iterator[tuple[object, "torch.Tensor", "torch.Tensor"]]:
    """(model, y, z_hat) of the first `images` Kodak images at the model's default quality, as its encoder makes
    them (z rounded around the factorized prior's medians)."""
    import torch

    from codec.imageio import load_image
    from codec.zoo import load_model
    from photos import kodak_photos

    model, card = load_model(model_name)
    medians = model.table_tensors["z_medians"].view(1, -1, 1, 1)
    with torch.no_grad():
        for path in kodak_photos()[:images]:
            x = load_image(path, 1 << 26).pixels
            gain, _ = model.gains(model.quality_tensor(card.default_quality))
            y = model.analysis(model.pad(x)) * gain
            prior = model.latent_codec
            z = prior.h_a(prior.hyper_input(y))
            yield model, y, torch.round(z - medians) + medians


def kodak_workload(model_name: str, images: int) -> tuple[np.ndarray, np.ndarray, TableSet]:
    import torch

    all_symbols, all_indices = [], []
    with torch.no_grad():
        for model, y, z_hat in hyperprior_latents(model_name, images):
            indices, means = model.latent_codec.entropy_parameters(z_hat)
            all_symbols.append(torch.round(y.double() - means).long().numpy().ravel())
            all_indices.append(indices.numpy().ravel())
    return np.concatenate(all_symbols), np.concatenate(all_indices), model.tables["y"]


def boundary_report(model_name: str, images: int) -> None:
    """How close predicted scales come to scale-table boundaries, and how many indices a plain float32 h_s
    would pick differently from the exact integer-valued h_s the codec uses (each such element would decode
    wrongly if encoder and decoder disagreed in float rounding)."""
    import torch

    from codec.entropy.gaussian import scale_indices

    near = {1e-6: 0, 1e-4: 0, 1e-2: 0}
    differ = total = clamped = 0
    with torch.no_grad():
        for model, _, z_hat in hyperprior_latents(model_name, images):
            table = model.table_tensors["scale_table"].double()
            log_bounds = torch.log(table)
            prior = model.latent_codec
            exact_scales, _ = prior.split_parameters(prior._exact_h_s(z_hat))
            float_scales, _ = prior.split_parameters(prior.h_s(z_hat).double())
            inside = exact_scales[(exact_scales > table[0]) & (exact_scales < table[-1])].log()
            distance = (inside.unsqueeze(-1) - log_bounds).abs().min(-1).values
            for threshold in near:
                near[threshold] += int((distance < threshold).sum())
            clamped += exact_scales.numel() - inside.numel()
            differ += int((scale_indices(exact_scales, table) != scale_indices(float_scales, table)).sum())
            total += exact_scales.numel()
    print(f"\n== scale-table boundaries, {model_name}, {images} Kodak images, {total} y elements "
          f"({clamped} outside the table range, clamped to its ends)")
    for threshold, count in near.items():
        print(f"within {threshold:g} (log-scale) of a table boundary: {count} ({count / total * 100:.4f} %)")
    print(f"indices where float32 h_s and exact h_s disagree: {differ} ({differ / total * 100:.4f} %)"
          " (the codec always uses the exact one on both sides)")


def compressai_cdfs(tables: TableSet) -> tuple[list[list[int]], list[int], list[int]]:
    cdfs = [[0] + np.cumsum(tables.counts[t, : tables.lengths[t]]).tolist() for t in range(tables.num_tables)]
    return cdfs, [len(cdf) for cdf in cdfs], tables.offsets.tolist()


def run(name: str, symbols: np.ndarray, indices: np.ndarray, tables: TableSet, repeats: int) -> None:
    from compressai.ans import RansDecoder, RansEncoder

    count = len(symbols)
    ideal = ideal_bits(symbols, indices, tables) / 8
    encode_s, (stream, escapes) = best_of(repeats, lambda: encode_symbols(symbols, indices, tables))
    decode_s, decoded = best_of(repeats, lambda: decode_symbols(stream, escapes, indices, tables))
    assert np.array_equal(decoded, symbols), "round trip failed"
    actual = len(stream) + len(escapes)

    cdfs, sizes, offsets = compressai_cdfs(tables)
    symbol_list, index_list = symbols.astype(np.int32).tolist(), indices.astype(np.int32).tolist()
    ca_encode_s, ca_bytes = best_of(
        repeats, lambda: RansEncoder().encode_with_indexes(symbol_list, index_list, cdfs, sizes, offsets))
    ca_decode_s, ca_decoded = best_of(
        repeats, lambda: RansDecoder().decode_with_indexes(ca_bytes, index_list, cdfs, sizes, offsets))
    assert np.array_equal(np.asarray(ca_decoded), symbols), "compressai round trip failed"

    print(f"\n== {name}: {count} symbols, {tables.num_tables} tables, {int((symbols != decoded).sum())} mismatches")
    print(f"{'coder':<26}{'bytes':>12}{'vs ideal':>11}{'encode Msym/s':>15}{'decode Msym/s':>15}")
    print(f"{'ideal -log2 p':<26}{ideal:>12.1f}{'':>11}")
    print(f"{'codec (constriction ANS)':<26}{actual:>12d}{(actual / ideal - 1) * 100:>10.3f}%"
          f"{count / encode_s / 1e6:>15.2f}{count / decode_s / 1e6:>15.2f}")
    print(f"{'compressai rANS':<26}{len(ca_bytes):>12d}{(len(ca_bytes) / ideal - 1) * 100:>10.3f}%"
          f"{count / ca_encode_s / 1e6:>15.2f}{count / ca_decode_s / 1e6:>15.2f}")
    print(f"speed ratio codec / compressai: encode {ca_encode_s / encode_s:.2f}x, decode {ca_decode_s / decode_s:.2f}x")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--symbols", type=int, default=1_000_000)
    parser.add_argument("--model", default="ms-hyperprior")
    parser.add_argument("--kodak-images", type=int, default=4)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    run("synthetic Gaussian symbols", *synthetic_workload(args.symbols), repeats=args.repeats)
    from photos import kodak_photos

    if not kodak_photos():
        print("\n(skipping Kodak latents: no Kodak images in ../shared/data/kodak)")
    elif args.kodak_images > 0:
        workload = kodak_workload(args.model, args.kodak_images)
        run(f"{args.model} y latents of {args.kodak_images} Kodak images", *workload, repeats=args.repeats)
        boundary_report(args.model, args.kodak_images)


if __name__ == "__main__":
    main()
