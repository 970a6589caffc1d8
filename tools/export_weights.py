#!/usr/bin/env python
"""Freeze a training checkpoint into shipped weights and (re)write the model card's weights/training fields.

    python tools/export_weights.py --run runs/msh --name ms-hyperprior

Builds the integer probability tables (update()), saves weights/NAME.safetensors (no pickle) and records its
sha256, architecture and training recipe in models/NAME.toml. Measured figures are added by tools/eval_image.py.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from codec.zoo import PROJECT_ROOT, save_weights  # noqa: E402
from model_card import read_card, run_init_record, training_command, write_card  # noqa: E402
from run_model import model_from_run, run_config  # noqa: E402

ARCHITECTURES = {
    "factorized": "Ballé et al. 2018 factorized prior: g_a/g_s 4x (5x5 stride-2 conv + GDN), gain units",
    "hyperprior": "Ballé et al. 2018 scale hyperprior: g_a/g_s with GDN, h_a/h_s 3 conv layers, gain units",
    "mgm": "multi-codebook vector-quantized prior (Zhu et al. CVPR 2022): g_a/g_s with GDN, product quantization "
    "of y (one codebook count per rate level), a coarse PQ level from h_a conditioning the fine index PMFs",
    "mgm-residual": "multivariate Gaussian mixture prior after Zhu et al. CVPR 2022: g_a/g_s with GDN, product "
    "quantization of y (one codebook count per rate level) whose codewords are mixture components (mean + diagonal "
    "scale); the index picks the component, round(y - mean) is coded under its Gaussian; the encoder writes, of "
    "the 16 nearest components, the one of least index + residual bits + 16 x squared latent error; a coarse PQ "
    "level from h_a "
    "conditions the fine index PMFs; no network between the indices and g_s",
    "mean-scale": "Minnen et al. 2018 mean-scale hyperprior without context: g_a/g_s with GDN, "
    "h_a/h_s 3 conv layers with LeakyReLU predicting mean and scale, gain units (Cui et al. 2021)",
    "mean-scale-context": "Minnen et al. 2018 mean-scale hyperprior (g_a/g_s with GDN, h_a/h_s with LeakyReLU, gain "
    "units of Cui et al. 2021) plus a parallel context model: y in uneven channel groups (Minnen & Singh 2020, ELIC "
    "He et al. 2022), each coded in two checkerboard passes (He et al. 2021); per group a 1x1 conv of the "
    "hyperprior's mean and scale, a 3x3 conv of the groups before it and a 5x5 conv of its anchors are summed and "
    "two 1x1 layers predict corrections to mean and scale; 2 x groups network passes to decode",
}


COARSE_PROBE = ("; h_a is trained (on a detached y) through a linear probe per fine codebook to predict the fine "
                "indices, without a commitment loss, so the coarse codes are informative clusters of z (the probe is "
                "shipped but never run when coding)")


ENTROPY_CODING = {
    "factorized": "constriction ANS; y: per-channel factorized tables",
    "hyperprior": "constriction ANS; z: per-channel factorized tables; y: 64 Gaussian scale tables, means outside "
    "the CDF; h_s evaluated exactly in integer-valued float64",
    "mgm": "constriction ANS; coarse indices: one table per codebook; fine indices: one table per (codebook, parent "
    "code)",
    "mgm-residual": "constriction ANS; coarse indices: one table per codebook; fine indices: one table per "
    "(codebook, parent code); residual: 64 Gaussian scale tables, each codeword's scale index fixed at export",
}
ENTROPY_CODING["mean-scale"] = ENTROPY_CODING["hyperprior"]
ENTROPY_CODING["mean-scale-context"] = (
    "constriction ANS; z: per-channel factorized tables; y: 64 Gaussian scale tables, means outside the CDF, all "
    "2 x groups passes on one ANS stack; h_s and the context networks evaluated exactly in integer-valued float64")
# run-time settings that do not change what is learnt
NOT_IN_COMMAND = {"threads", "bf16", "device", "checkpoint_every", "checkpoint_minutes", "validate_every",
                  "runs_dir", "out"}


def unset_defaults(run_args: dict) -> set[str]:
    """Arguments left at "not set" sentinels (run until stopped, no global step offset): not part of the recipe."""
    return {key for key, value in (("steps", 10**9), ("init_step", 0)) if run_args.get(key) == value}


def optimizer_description(state: dict, run_args: dict) -> str:
    """The learning-rate schedule the run followed (a function of the global step) and the fixed settings."""
    schedule = state.get("lr_schedule")
    if schedule:
        rates = "; ".join(f"{lr:g} from step {int(start)}" for start, lr in schedule)
        text = f"Adam, lr {rates} (500-step warm-up at the start of the model's life only)"
        scales = state.get("module_lr_scale") or {}
        if scales:
            text += "; " + ", ".join(f"{name} at {factor:g}x that rate" for name, factor in scales.items())
    else:  # runs from before the global schedule: a warm-up and cosine per run
        text = f"Adam, peak lr {run_args['lr']}, 500-step warm-up then cosine to 10 %"
    return text + ", grad clip 1.0; aux Adam 1e-3 on the bottleneck quantiles"


def training_summary(run: Path) -> dict:
    records = [json.loads(line) for line in (run / "log.jsonl").read_text().splitlines() if line.strip()]
    steps = [record for record in records if "loss" in record]
    validation = [record for record in records if "validation" in record]
    # "seconds" restarts at 0 when a run is resumed: add up the segments
    wall = sum(a["seconds"] for a, b in zip(steps, steps[1:]) if b["seconds"] < a["seconds"])
    wall += steps[-1]["seconds"] if steps else 0.0
    summary = {"steps": steps[-1]["step"] if steps else 0, "wall_time_hours": round(wall / 3600, 3),
               "resumes": sum(1 for a, b in zip(steps, steps[1:]) if b["seconds"] < a["seconds"])}
    if validation:
        last = validation[-1]
        summary["validation_step"] = last["step"]
        summary["validation_bsds500_test8"] = {
            f"level_{level}": {"bpp": round(v["bpp"], 4), "psnr": round(v["psnr"], 3)} for level, v in last["validation"].items()
        }
    return summary


def synthesis_note(config: dict) -> str:
    """How g_s departs from the default (n, n, n hidden channels, 5x5 kernels), if it does."""
    widths, kernels = config.get("synthesis_widths"), config.get("synthesis_kernels")
    parts = ([f"hidden widths {' / '.join(map(str, widths))}"] if widths else []) + (
        [f"kernels {' / '.join(f'{k}x{k}' for k in kernels)}"] if kernels else [])
    return f"; g_s {', '.join(parts)} (a cheaper synthesis transform)" if parts else ""


def loss_description(run_args: dict) -> str:
    loss = "per-sample lambda_i * 255^2 * MSE + bpp, rate level i drawn uniformly per sample"
    if run_args.get("train_only"):
        modules = ", ".join(run_args["train_only"])
        loss += (f"; only {modules} trained, everything else frozen from --init and kept in eval mode (codes, index "
                 "counts and tables unchanged, so the rate is the init's and the loss acts through the MSE)")
    return loss


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--run", type=Path, required=True)
    parser.add_argument("--name", required=True)
    parser.add_argument("--default-quality", type=float, default=3.0)
    parser.add_argument("--home", type=Path, default=PROJECT_ROOT,
                        help="write HOME/weights/NAME.safetensors and HOME/models/NAME.toml (default: this checkout)")
    args = parser.parse_args()
    models_dir = args.home / "models"
    (args.home / "weights").mkdir(parents=True, exist_ok=True)

    family, model_config, config = run_config(args.run)
    model, state = model_from_run(args.run)
    step = int(state["step"])
    run_args = config["args"]
    init = run_init_record(args.run, Path(run_args["init"]) if run_args.get("init") else None, models_dir)  # before any overwrite
    weights_file = f"{args.name}.safetensors"
    sha256 = save_weights(model, args.home / "weights" / weights_file)
    variant = f"{family}-residual" if model_config.get("residual") else family
    card = read_card(args.name, models_dir)
    card.update({
        "name": args.name,
        "family": family,
        "summary": f"variable-rate {variant} model, {len(model_config['lambdas'])} trained rate levels",
        "weights": weights_file,
        "sha256": sha256,
        "default_quality": args.default_quality,
        "config": model_config,
        "architecture": {
            "description": ARCHITECTURES[variant] + (COARSE_PROBE if model_config.get("coarse_probe") else "")
            + synthesis_note(model_config),
            "parameters": sum(p.numel() for p in model.parameters()),
            "entropy_coding": ENTROPY_CODING[variant],
        },
        "training": {
            "script": "tools/train_image.py",
            "command": training_command("tools/train_image.py", run_args, NOT_IN_COMMAND | unset_defaults(run_args)),
            "data": "BSDS500 train+val (300 photos) + Debian photo packages (tools/install_training_photos.sh); "
            "random crops with flips; never Kodak",
            "loss": loss_description(run_args),
            "optimizer": optimizer_description(state, run_args),
            "global_step": step,
            "cpu_hours": round(float(state.get("cpu_seconds", 0.0)) / 3600, 3),
            "lr_schedule": state.get("lr_schedule", []),
            "level_changes": state.get("level_changes", []),  # [step, lambdas]: rate levels added on resume
            "precision": "bf16 autocast + channels_last for g_a/g_s; entropy models fp32" if config["bf16"] else "fp32",
            "hardware": "2-core CPU (AVX-512 bf16), no GPU",
            **training_summary(args.run),
        },
    })
    if init:  # the weights "--init" pointed at, and how they were trained
        card["training"]["init"] = init
    print(f"wrote {write_card(args.name, card, models_dir)} and weights/{weights_file} (sha256 {sha256[:16]}...)")


if __name__ == "__main__":
    main()
