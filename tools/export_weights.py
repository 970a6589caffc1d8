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

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from codec.zoo import PROJECT_ROOT, save_weights  # noqa: E402
from model_card import read_card, run_init_record, training_command, write_card  # noqa: E402
from run_model import model_from_run, run_config  # noqa: E402

# run-time settings that do not change what is learnt
NOT_IN_COMMAND = {"threads", "bf16", "device", "checkpoint_every", "checkpoint_minutes", "validate_every",
                  "runs_dir", "out"}


def unset_defaults(run_args: dict) -> set[str]:
    """Arguments left at "not set" sentinels (run until stopped, no global step offset): not part of the recipe."""
    return {key for key, value in (("steps", 10**9), ("init_step", 0), ("imagenette_share", 0.0))
            if run_args.get(key) == value}


def optimizer_description(state: dict, run_args: dict) -> str:
    """The learning-rate schedule the run followed (a function of the global step) and the fixed settings."""
    schedule = state.get("lr_schedule")
    if schedule:
        rates = "; ".join(f"{lr:g} from step {int(start)}" for start, lr in schedule)
        text = f"Adam, lr {rates} (500-step warm-up at the start of the model's life only)"
        scales = state.get("module_lr_scale") or {}
        if scales:
            text += "; " + ", ".join(f"{name} at {factor:g}x that rate" for name, factor in scales.items())
        widened = state.get("widened_lr_scale") or []
        if widened:
            text += "; the channels widening added to the --init weights at " + ", ".join(
                f"{factor:g}x from step {int(start)}" for start, factor in widened)
    else:  # runs from before the global schedule: a warm-up and cosine per run
        text = f"Adam, peak lr {run_args['lr']}, 500-step warm-up then cosine to 10 %"
    text += ", grad clip 1.0; aux Adam 1e-3 on the bottleneck quantiles"
    if "ema" in state:
        text += (f"; the weights are the exponential moving average of the parameters (decay {state['ema_decay']:g}, "
                 f"from step {state['ema_from_step']})")
    return text


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


def carry_card_totals(training: dict, previous: dict) -> None:
    """A run restarted from the shipped weights of its own card (a machine without the run folder) adds the card's
    wall time and resumes to its own (the restart counts as one more resume)."""
    training["wall_time_hours"] = round(training["wall_time_hours"] + previous.get("wall_time_hours", 0.0), 3)
    training["resumes"] += previous.get("resumes", 0) + 1


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

    family, model_config, config = run_config(args.run)
    model, state = model_from_run(args.run)
    step = int(state["step"])
    run_args = config["args"]
    init = run_init_record(args.run, Path(run_args["init"]) if run_args.get("init") else None, models_dir)  # before any overwrite
    variant = f"{family}-residual" if model_config.get("residual") else family
    card_fields = {
        "family": family,
        "summary": f"variable-rate {variant} model, {len(model_config['lambdas'])} trained rate levels",
        "default_quality": args.default_quality,
        "config": model_config,
        "architecture": {
            **type(model).card_text(model_config),
            "parameters": sum(p.numel() for p in model.parameters()),
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
    }
    if init and init.get("model") == args.name:  # a run that continued this model's card: its lineage goes on
        carry_card_totals(card_fields["training"], init.get("training", {}))
        init = init.get("training", {}).get("init")
    if init:  # the weights "--init" pointed at, and how they were trained
        card_fields["training"]["init"] = init
    card_path, sha256 = export_model(model, args.name, card_fields, args.home)
    print(f"wrote {card_path} and weights/{args.name}.safetensors (sha256 {sha256[:16]}...)")


def export_model(model: torch.nn.Module, name: str, card_fields: dict, home: Path = PROJECT_ROOT,
                 storage_dtype: torch.dtype | None = None) -> tuple[Path, str]:
    """The one exporter of every trainer: HOME/weights/NAME.safetensors from a frozen model (tables built by
    `update()`), and `card_fields` merged into HOME/models/NAME.toml with the weights file and its sha256 (fields the
    card has and `card_fields` lacks, such as measured figures, are kept). Returns (card path, sha256)."""
    (home / "weights").mkdir(parents=True, exist_ok=True)
    weights_file = f"{name}.safetensors"
    sha256 = save_weights(model, home / "weights" / weights_file, storage_dtype=storage_dtype)
    card = read_card(name, home / "models")
    card.update({"name": name, **card_fields, "weights": weights_file, "sha256": sha256})
    return write_card(name, card, home / "models"), sha256


if __name__ == "__main__":
    main()
