#!/usr/bin/env python
"""Determinism report: decode the same bytes under different thread counts, batch sizes and precision paths,
and count every mismatch (goal: zero).

    python tools/determinism_report.py [--images 24] [--model ms-hyperprior]    # -> tools/results/determinism.json

For each Kodak image (quality 3): the container is decoded at 1 and 2 threads (pixels compared bit for bit, fp32 and
bf16 paths); the entropy parameters (scale-table index, mean) every y symbol is coded with are computed from the
decoded z_hat alone and inside a batch of 8, at 1 and 2 threads (compared bit for bit); the encoder is re-run at
1 and 2 threads (bytes compared). On a CUDA device, when present, the entropy parameters are computed there too.
How close indices come to table boundaries is printed by `python tools/bench_entropy.py`.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch
from tqdm import tqdm

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from codec.entropy.factorized import decode_factorized  # noqa: E402
from codec.imageio import load_image  # noqa: E402
from codec.zoo import load_model  # noqa: E402

KODAK = Path(__file__).resolve().parents[2] / "shared" / "data" / "kodak"
RESULTS = Path(__file__).resolve().parent / "results"


def with_threads(count: int, function):
    previous = torch.get_num_threads()
    torch.set_num_threads(count)
    try:
        return function()
    finally:
        torch.set_num_threads(previous)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", type=int, default=24)
    parser.add_argument("--model", default="ms-hyperprior")
    parser.add_argument("--quality", type=float, default=3.0)
    parser.add_argument("--out", type=Path, default=RESULTS / "determinism.json")
    args = parser.parse_args()
    model, _ = load_model(args.model)
    counts = {"images": 0, "pixel_mismatch_threads_fp32": 0, "pixel_mismatch_threads_bf16": 0,
              "encoder_bytes_mismatch_threads": 0, "entropy_parameter_mismatch_threads": 0,
              "entropy_parameter_mismatch_batch8": 0, "entropy_parameter_mismatch_cuda": None, "elements": 0}
    z_hats = []
    for path in tqdm(sorted(KODAK.glob("*.png"))[: args.images], desc="determinism"):
        pixels = load_image(path, 1 << 26).pixels
        height, width = pixels.shape[-2:]
        for fast, key in ((False, "fp32"), (True, "bf16")):
            model.set_fast_transforms(fast)
            streams = with_threads(2, lambda: model.compress(pixels, args.quality))
            decoded = [with_threads(t, lambda: model.decompress(streams, args.quality, height, width)) for t in (1, 2)]
            counts[f"pixel_mismatch_threads_{key}"] += int(not torch.equal(decoded[0], decoded[1]))
            again = with_threads(1, lambda: model.compress(pixels, args.quality))
            counts["encoder_bytes_mismatch_threads"] += int(again.sections != streams.sections)
        z_shape = streams.shapes[1]
        z_hat = decode_factorized(streams.sections[2], streams.sections[3], z_shape, model.tables["z"],
                                  model.table_tensors["z_medians"])
        one, two = (with_threads(t, lambda: model.latent_codec.entropy_parameters(z_hat)) for t in (1, 2))
        counts["entropy_parameter_mismatch_threads"] += int(not (torch.equal(one[0], two[0]) and torch.equal(one[1], two[1])))
        counts["elements"] += one[0].numel()
        z_hats.append((z_hat, one))
        counts["images"] += 1
    model.set_fast_transforms(False)
    # batch of 8: same-size z_hats stacked (Kodak has landscape and portrait pictures)
    by_shape: dict[tuple, list] = {}
    for z_hat, reference in z_hats:
        by_shape.setdefault(tuple(z_hat.shape), []).append((z_hat, reference))
    for group in by_shape.values():
        for start in range(0, len(group), 8):
            chunk = group[start : start + 8]
            indices, means = model.latent_codec.entropy_parameters(torch.cat([z for z, _ in chunk]))
            for row, (_, reference) in enumerate(chunk):
                same = torch.equal(indices[row], reference[0][0]) and torch.equal(means[row], reference[1][0])
                counts["entropy_parameter_mismatch_batch8"] += int(not same)
    if torch.cuda.is_available():
        model.to("cuda")
        counts["entropy_parameter_mismatch_cuda"] = sum(
            int(not torch.equal(model.latent_codec.entropy_parameters(z.cuda())[0].cpu(), reference[0])) for z, reference in z_hats)
        model.to("cpu")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(counts, indent=1))
    print(json.dumps(counts, indent=1))
    bad = sum(value for key, value in counts.items() if "mismatch" in key and value)
    sys.exit(1 if bad else 0)


if __name__ == "__main__":
    main()
