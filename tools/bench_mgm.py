#!/usr/bin/env python
"""The multi-codebook model next to the mean-scale hyperprior: speed side by side, codebook use, coded vs fixed rate.

    python tools/bench_mgm.py [--model mgm] [--reference ms-hyperprior]     # -> tools/results/mgm_bench.{json,md}

- Speed: encode and decode (best of N, same process, same precision path) on a 768x512 Kodak image, every mgm
  level next to the reference model at the quality whose bpp is closest.
- Codebooks on all 24 Kodak images, per level and codebook: share of codewords used and perplexity (2^entropy of
  the empirical index distribution, K = all codewords used equally), for the fine and the coarse level (each coarse
  codebook counted at the levels that code it).
- What the cascade buys: the fine indices' ideal bits under the tables conditioned on the coarse code, against the
  same tables with the coarse code ignored (each codebook's rows summed over parent codes).
- Rate: entropy-coded indices vs the fixed-length code (log2 K bits per index) of the same indices (a residual
  model's Gaussian-coded residual sections are left out of both).
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from codec.api import prepared_model  # noqa: E402
from codec.entropy.cascade import INDEX_SECTIONS, parent_codes  # noqa: E402
from codec.imageio import load_image  # noqa: E402
from photos import kodak_photos  # noqa: E402
from timing import best_of, cpu_description, speed_report  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results"


def usage_stats(counts: np.ndarray) -> dict:
    """counts [codebooks, K] -> worst / mean share of codewords used and perplexity per codebook."""
    probabilities = counts / counts.sum(1, keepdims=True)
    with np.errstate(divide="ignore", invalid="ignore"):
        entropy = -np.nansum(np.where(probabilities > 0, probabilities * np.log2(probabilities), 0.0), axis=1)
    used = (counts > 0).mean(1)
    return {"codewords": int(counts.shape[1]), "min_share_used": float(used.min()), "mean_share_used": float(used.mean()),
            "min_perplexity": float((2 ** entropy).min()), "mean_perplexity": float((2 ** entropy).mean())}


@torch.no_grad()
def codebook_report(model, paths: list[Path]) -> dict:
    levels = {}
    prior = model.latent_codec
    coded_coarse = max(prior.coarse_used(level) for level in range(len(model.groups)))
    coarse_counts = np.zeros((coded_coarse, prior.hyper_codewords))
    for level in range(len(model.groups)):
        fine_counts = np.zeros((model.groups[level], prior.codewords))
        coded_bits = fixed_bits = conditional_bits = marginal_bits = 0.0
        counts = prior.transition_counts(level).double()  # [m, K_z, K]
        conditional = counts / counts.sum(-1, keepdim=True)
        marginal = counts.sum(1) / counts.sum(dim=(1, 2))[:, None]  # [m, K]
        for path in tqdm(paths, desc=f"codebooks level {level}", leave=False):
            pixels = load_image(path, 1 << 26).pixels
            gain, _ = model.gains(torch.tensor([float(level)]))
            y = model.analysis(model.pad(pixels)) * gain
            coarse = prior.coarse.quantize(prior.h_a(y))[:, : prior.coarse_used(level)]  # the codebooks coded
            fine = prior.fine_indices(level, y, coarse)  # the indices the encoder writes
            for group in range(model.groups[level]):
                fine_counts[group] += np.bincount(fine[0, group].flatten().numpy(), minlength=prior.codewords)
            for group in range(coarse.shape[1]):
                coarse_counts[group] += np.bincount(coarse[0, group].flatten().numpy(), minlength=prior.hyper_codewords)
            parents = parent_codes(coarse, model.groups[level], *fine.shape[-2:])[0]  # [m, H, W]
            codebook = torch.arange(model.groups[level]).view(-1, 1, 1)
            conditional_bits -= float(conditional[codebook, parents, fine[0]].log2().sum())
            marginal_bits -= float(marginal[codebook, fine[0]].log2().sum())
            streams = model.compress(pixels, float(level))
            coded_bits += 8 * sum(len(section) for section in streams.sections[-INDEX_SECTIONS:])
            fixed_bits += fine.numel() * np.log2(prior.codewords) + coarse.numel() * np.log2(prior.hyper_codewords)
        levels[level] = {"codebooks": model.groups[level], **usage_stats(fine_counts),
                         "coded_bits_over_fixed_length": coded_bits / fixed_bits,
                         "conditioning_saves": 1 - conditional_bits / marginal_bits}
    return {"fine": levels, "coarse": {"codebooks": coded_coarse, **usage_stats(coarse_counts)}}


@torch.no_grad()
def synthesis_seconds(model_name: str, image: Path, repeats: int) -> float:
    """g_s alone on this image's latent: the floor of the model's decoder."""
    model, _ = prepared_model(model_name)
    height, width = load_image(image, 1 << 26).pixels.shape[-2:]
    latent = torch.zeros(1, model.m, -(-height // 16), -(-width // 16))
    return best_of(repeats, lambda: model.synthesis(latent), warm_up=True)[0]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="mgm")
    parser.add_argument("--reference", default="ms-hyperprior")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--images", type=int, default=24, help="Kodak images for the codebook statistics")
    parser.add_argument("--out", type=Path, default=RESULTS / "mgm_bench")
    args = parser.parse_args()
    photos = kodak_photos()
    model, _ = prepared_model(args.model)
    report = {"speed": speed_report(args.model, args.reference, photos[22], args.repeats),
              "synthesis_s": synthesis_seconds(args.model, photos[22], args.repeats),
              "reference_synthesis_s": synthesis_seconds(args.reference, photos[22], args.repeats),
              "codebooks": codebook_report(model, photos[: args.images])}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.with_suffix(".json").write_text(json.dumps(report, indent=1))
    lines = [f"# {args.model} vs {args.reference}", "", f"Produced by `python tools/bench_mgm.py` ({photos[22].name}, "
             f"768x512, best of {args.repeats}, {torch.get_num_threads()} threads, {cpu_description()}).", "",
             f"| level | bpp | encode s | decode s | {args.reference} quality | its bpp | its encode s | its decode s | "
             "decode speed-up |", "|---|---|---|---|---|---|---|---|---|"]
    for row in report["speed"]:
        lines.append(f"| {row['level']} | {row['bpp']:.3f} | {row['encode_s']:.3f} | {row['decode_s']:.3f} | "
                     f"{row['reference_quality']:g} | {row['reference_bpp']:.3f} | {row['reference_encode_s']:.3f} | "
                     f"{row['reference_decode_s']:.3f} | {row['decode_speedup']:.2f}x |")
    floor = report["synthesis_s"]
    slowest_reference = max(row["reference_decode_s"] for row in report["speed"])
    lines += ["", f"g_s alone: {floor:.3f} s in {args.model}, {report['reference_synthesis_s']:.3f} s in "
              f"{args.reference}; so no decoder with {args.model}'s g_s can beat {args.reference}'s slowest decode "
              f"above by more than {slowest_reference / floor:.2f}x."]
    lines += ["", f"Codebook use on Kodak ({min(args.images, len(photos))} images):", "",
              "| level | codebooks x codewords | min / mean share used | min / mean perplexity | coded / fixed-length bits "
              "| fine bits saved by the coarse code |", "|---|---|---|---|---|---|"]
    for level, row in report["codebooks"]["fine"].items():
        lines.append(f"| {level} | {row['codebooks']} x {row['codewords']} | {row['min_share_used']:.1%} / "
                     f"{row['mean_share_used']:.1%} | {row['min_perplexity']:.1f} / {row['mean_perplexity']:.1f} | "
                     f"{row['coded_bits_over_fixed_length']:.3f} | {row['conditioning_saves']:.1%} |")
    coarse = report["codebooks"]["coarse"]
    lines.append(f"| coarse | {coarse['codebooks']} x {coarse['codewords']} | {coarse['min_share_used']:.1%} / "
                 f"{coarse['mean_share_used']:.1%} | {coarse['min_perplexity']:.1f} / {coarse['mean_perplexity']:.1f} | - | - |")
    args.out.with_suffix(".md").write_text("\n".join(lines) + "\n", encoding="utf-8")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
