#!/usr/bin/env python
"""Train an Entropic Student bottleneck (Matsubara et al., WACV 2022; BottleFit, WoWMoM 2022) for a teacher.

    python tools/train_split.py --beta 2e-4 --out runs/es-b2e-4 --name es-r20-mid          # CIFAR-10 ResNet-20
    python tools/train_split.py --teacher efficientnet-lite0 --beta 1e-4 --batch 16 --latent 48 \
        --stage1-steps 4000 --stage2-steps 1000 --lr 1e-3 --out runs/es-lite0 --name es-lite0-mid  # Imagenette

Stage 1, head distillation: encoder + entropy model + decoder learn to reproduce the teacher's feature at the
split point and its later stages (sum of MSEs through the frozen tail) plus beta * bits per image. No labels needed.
Stage 2, knowledge distillation: encoder and entropy model frozen; the decoder (and, for CIFAR, the tail) learn
from the teacher's soft labels (temperature T) and the true labels. With --joint-stage2 the encoder and entropy
model keep training in stage 2 too, with beta * bits in the loss (end to end, after stage 1 has found a good
start; the encoder then serves only this task). Data and validation per teacher: see
tools/split_tasks.py. Resumable (<out>/checkpoint.pt); with --name the result is frozen into
weights/NAME.safetensors and models/NAME.toml.
"""
from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from tqdm import tqdm

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from codec.precision import use_bf16  # noqa: E402
from codec.split.student import STRIDES, EntropicStudent  # noqa: E402
from codec.zoo import PROJECT_ROOT  # noqa: E402
from export_weights import export_model  # noqa: E402
from photos import random_thumbnails, training_photos  # noqa: E402
from model_card import run_init_record, training_command  # noqa: E402
from split_tasks import SplitTask, make_task  # noqa: E402
from split_teachers import as_uint8_tensor  # noqa: E402
from training import StopRequest, init_from_weights, load_checkpoint, save_checkpoint, write_run_config  # noqa: E402


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--teacher", default=None, help="resnet20/32/44/56 (CIFAR-10) or efficientnet-lite0 (Imagenette)")
    parser.add_argument("--depth", type=int, default=20, help="CIFAR ResNet depth when --teacher is not given")
    parser.add_argument("--beta", type=float, required=True, help="weight of bits per image in stage 1 (and in a --joint-stage2)")
    parser.add_argument("--latent", type=int, default=24)
    parser.add_argument("--hidden", type=int, default=64)
    parser.add_argument("--stride", type=int, default=4, choices=STRIDES,
                        help="CIFAR: the latent's stride (8: one more stride-2 layer each side, a 4x4 latent)")
    parser.add_argument("--encoder-blocks", type=int, default=0,
                        help="CIFAR: residual blocks before the encoder's projection (they start as the identity, so "
                        "--init from a student without them starts from its function)")
    parser.add_argument("--decoder-hidden", type=int, default=96, help="EfficientNet student decoder width")
    parser.add_argument("--prior", choices=("factorized", "hyperprior"), default="factorized")
    parser.add_argument("--hyper-channels", type=int, default=None, help="z channels with --prior hyperprior")
    parser.add_argument("--stage1-steps", type=int, default=3000)
    parser.add_argument("--stage2-steps", type=int, default=1500)
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--lr", type=float, default=1e-3, help="stage 1 peak learning rate (stage 2 uses a fifth)")
    parser.add_argument("--temperature", type=float, default=4.0)
    parser.add_argument("--joint-stage2", action="store_true",
                        help="stage 2 also fine-tunes the encoder and entropy model, adding beta * bits to its loss "
                        "(end to end: the latent learns what the task needs, the encoder becomes task-specific)")
    parser.add_argument("--kd-teacher", help="CIFAR: a deeper ResNet (e.g. resnet56) whose logits are stage 2's soft labels")
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--name", help="export weights/NAME.safetensors and models/NAME.toml when done")
    parser.add_argument("--lossless-share", type=float, default=0.0,
                        help="share of each batch drawn from the lossless (true-pixel) training images (CIFAR: 3500; 500 more validate)")
    parser.add_argument("--photo-share", type=float, default=0.0,
                        help="share of each stage-1 batch drawn from unlabelled thumbnails of the training photos "
                        "(head distillation needs no labels)")
    parser.add_argument("--photo-thumbnails", type=int, default=20000, help="thumbnails made for --photo-share")
    parser.add_argument("--init-run", type=Path,
                        help="start stage 2 from this run's finished checkpoint (its encoder and entropy model stay)")
    parser.add_argument("--init", type=Path,
                        help="start stage 1 from these shipped weights (e.g. weights/es-lite0-hp-mid.safetensors) "
                        "to train a model further")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--bf16", choices=("auto", "on", "off"), default="auto")
    parser.add_argument("--validate-every", type=int, default=500)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--export-root", type=Path, default=PROJECT_ROOT,
                        help="with --name, write weights/ and models/ under this folder (default: the project)")
    return parser.parse_args()


def projection_renamed(weights: dict[str, torch.Tensor], own: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """--init weights with their encoder's last layer (the projection to the latent) renamed to this student's last
    encoder layer, where the two encoders have different depths."""
    def last_layer(keys) -> str | None:
        indices = [int(key.split(".")[1]) for key in keys if key.startswith("encoder.") and key.split(".")[1].isdigit()]
        return f"encoder.{max(indices)}." if indices else None

    theirs, ours = last_layer(weights), last_layer(own)
    if theirs is None or ours is None or theirs == ours:
        return weights
    renamed = {key: value for key, value in weights.items() if not key.startswith(theirs)}
    renamed.update({ours + key[len(theirs):]: value for key, value in weights.items() if key.startswith(theirs)})
    return renamed


def cosine(step: int, total: int, peak: float) -> float:
    return peak * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * min(step, total) / max(total, 1))))


@torch.no_grad()
def validate(student: EntropicStudent, task: SplitTask) -> dict:
    """Top-1 accuracy and ideal bytes per image (-log2 p / 8) on the validation images, with rounding."""
    student.eval()
    images, labels = task.validation_images, task.validation_labels
    correct: dict[str, int] = {}
    bits = 0.0
    chunk = 25
    for start in range(0, len(images), chunk):
        output = student(images[start : start + chunk])  # in eval mode the entropy bottleneck rounds around its medians
        bits += float(-torch.log2(output["likelihoods"].clamp_min(1e-9)).sum())
        for metric, count in task.accuracy(output["logits"], labels[start : start + chunk]).items():
            correct[metric] = correct.get(metric, 0) + count
    student.train()
    student.tail.eval()
    return {**{metric: count / len(images) for metric, count in correct.items()}, "ideal_bytes": bits / 8 / len(images)}


# run-time settings that do not change what is learnt are left out of the card's command
_NOT_IN_COMMAND = {"threads", "bf16", "validate_every", "depth", "teacher", "export_root"}


def command_line(args: argparse.Namespace, teacher: str) -> str:
    """The command that reproduces this run: every training argument that was set, with the teacher's name."""
    return training_command("tools/train_split.py", vars(args), _NOT_IN_COMMAND, (f"--teacher {teacher}",))


def stage1_run_record(run: Path) -> dict:
    """How an --init-run checkpoint was trained: that run's command and the weights it started from."""
    config = json.loads((run / "config.json").read_text(encoding="utf-8"))["args"]
    record = {"command": command_line(argparse.Namespace(**config), config.get("teacher") or f"resnet{config['depth']}")}
    init_file = run / "init.json"
    if init_file.exists():
        record["init"] = json.loads(init_file.read_text(encoding="utf-8"))
    return record


def stage2_description(task: SplitTask, args: argparse.Namespace, fields: dict) -> str:
    """Stage 2 as the model card names it."""
    trained = (f"end to end (encoder, entropy model, {fields['stage2_trains']} trained), + beta * bits"
               if args.joint_stage2 else f"with encoder frozen ({fields['stage2_trains']} trained)")
    return (f"KD {trained}: {task.stage2_label_weight:g} CE + {1 - task.stage2_label_weight:g} T^2 KL to the soft "
            f"labels of {fields.get('stage2_soft_labels', 'the teacher')}, T={args.temperature:g}")


def export(student: EntropicStudent, task: SplitTask, args: argparse.Namespace, log: list[dict], seconds: float) -> None:
    student.eval()
    student.update()
    init = run_init_record(args.out, args.init)  # before the export may overwrite the --init file
    final = log[-1]["validation"] if log else {}
    fields = task.card_fields(args)
    card_fields = {
        "family": task.family,
        "kind": "feature",
        "summary": fields["summary"],
        "default_quality": 0.0,
        "labels": fields["labels"],
        "config": fields["config"],
        "architecture": {
            "description": fields["description"],
            "parameters": sum(p.numel() for n, p in student.named_parameters() if n in student.state_dict()),
            "encoder_parameters": sum(p.numel() for p in student.encoder.parameters()),
            "teacher": fields["teacher"],
            "weights_storage": "float16 (computed in float32)",
            "entropy_coding": student.ENTROPY_CODING,
        },
        "training": {
            "script": "tools/train_split.py",
            "command": command_line(args, task.name),
            "data": fields["data"] + (f"; stage 1 also draws {args.photo_share:g} of each batch from "
                                      f"{args.photo_thumbnails} unlabelled thumbnails of the training photos "
                                      "(tools/photos.py random_thumbnails)" if args.photo_share else ""),
            "stage1": fields["stage1"],
            "stage2": stage2_description(task, args, fields),
            "wall_time_hours": round(seconds / 3600, 3),
            f"final_validation_{task.validation_name}": final,
        },
    }
    if init:  # the weights "--init" pointed at, and how they were trained
        card_fields["training"]["init"] = init
    if args.init_run:  # stage 1 ran separately: its command and lineage
        card_fields["training"]["stage1_run"] = stage1_run_record(args.init_run)
    # float16 storage halves the file; the student computes in float32 and every figure is measured after loading it
    card_path, sha256 = export_model(student, args.name, card_fields, args.export_root, storage_dtype=torch.float16)
    print(f"exported {args.export_root / 'weights' / args.name}.safetensors (sha256 {sha256[:16]}...) and {card_path}",
          flush=True)


def main() -> None:
    args = parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    generator = torch.Generator().manual_seed(args.seed)
    args.out.mkdir(parents=True, exist_ok=True)
    bf16 = use_bf16() if args.bf16 == "auto" else args.bf16 == "on"
    try:
        task = make_task(args.teacher or f"resnet{args.depth}", args.kd_teacher)
    except ValueError as error:
        raise SystemExit(f"train_split: {error}") from None
    student = task.build_student(args)
    total = args.stage1_steps + args.stage2_steps
    state = load_checkpoint(args.out)
    if state:
        student.load_state_dict(state["model"])
        print(f"resumed from step {int(state['step'])}", flush=True)
    step = int(state["step"]) if state else 0
    if state is None and args.init_run:
        student.load_state_dict(load_checkpoint(args.init_run)["model"])
        step = args.stage1_steps
    elif state is None and args.init:
        # float16 storage becomes the float32 start; tensors this student lacks or shapes differently (another prior,
        # e.g. a hyperprior started from a factorized student) are left to start fresh
        loaded, total_tensors = init_from_weights(student, args.out, args.init, projection_renamed)
        print(f"initialised from {args.init} ({loaded} of {total_tensors} tensors; the rest start fresh)", flush=True)
    train_images, train_labels = task.train_images, task.train_labels
    lossless_images, lossless_labels = task.lossless_images, task.lossless_labels
    lossless_count = int(round(args.lossless_share * args.batch)) if len(lossless_images) else 0
    photo_count = int(round(args.photo_share * args.batch))
    if not 0 <= lossless_count + photo_count < args.batch:
        raise SystemExit("train_split: --lossless-share plus --photo-share must leave part of each batch to the train set")
    photo_images = torch.empty(0, *train_images.shape[1:], dtype=torch.uint8)
    if photo_count and step < args.stage1_steps:
        photo_images = as_uint8_tensor(random_thumbnails(training_photos(), args.photo_thumbnails, train_images.shape[-1], args.seed))
    log_path = args.out / "log.jsonl"
    log = [json.loads(line) for line in log_path.read_text().splitlines()] if log_path.exists() else []
    log = [record for record in log if "validation" in record]
    write_run_config(args.out, {"args": vars(args), "bf16": bf16})

    def optimizer_for(stage: int) -> tuple[torch.optim.Optimizer, torch.optim.Optimizer | None]:
        """Stage 1 (and a joint stage 2) trains encoder, entropy model and decoder; stage 2 the decoder (and tail)."""
        trains_coding = stage == 1 or args.joint_stage2
        if trains_coding:
            params = [p for n, p in student.named_parameters()
                      if not n.startswith(("tail.", "teacher.")) and not n.endswith("quantiles")]
        else:
            student.encoder.requires_grad_(False)
            student.latent_codec.requires_grad_(False)
            params = list(student.decoder.parameters())
        quantiles = [p for n, p in student.latent_codec.named_parameters() if n.endswith("quantiles")]
        aux = torch.optim.Adam(quantiles, lr=1e-3) if trains_coding else None
        if stage == 1:
            student.tail.requires_grad_(False)
            return torch.optim.Adam(params, lr=args.lr), aux
        if task.stage2_trains_tail:
            student.tail.requires_grad_(True)
            params += list(student.tail.parameters())
        return torch.optim.Adam(params, lr=args.lr / 5), aux

    stage = 1 if step < args.stage1_steps else 2
    optimizer, aux_optimizer = optimizer_for(stage)
    if state and state["stage"] == stage:
        optimizer.load_state_dict(state["optimizer"])
        if aux_optimizer is not None:
            aux_optimizer.load_state_dict(state["aux_optimizer"])
    student.train()
    student.tail.eval()  # BatchNorm statistics stay the teacher's
    seconds = float(state["seconds"]) if state else 0.0
    started = time.time() - seconds
    progress = tqdm(total=total, initial=step, desc=f"train split beta={args.beta:g}", mininterval=30)

    def save() -> None:
        save_checkpoint(args.out, {"model": student.state_dict(), "optimizer": optimizer.state_dict(), "step": step,
                                   "stage": stage, "seconds": time.time() - started,
                                   "aux_optimizer": aux_optimizer.state_dict() if aux_optimizer else {}})

    first_step = step
    stop = StopRequest()  # from here SIGTERM / SIGINT end with a checkpoint at the end of the step, and no export
    with open(log_path, "a", encoding="utf-8") as log_file:
        while step < total and not stop.requested:
            if stage == 1 and step >= args.stage1_steps:
                stage = 2
                optimizer, aux_optimizer = optimizer_for(2)
            in_stage = step if stage == 1 else step - args.stage1_steps
            peak = args.lr if stage == 1 else args.lr / 5
            for group in optimizer.param_groups:
                group["lr"] = cosine(in_stage, args.stage1_steps if stage == 1 else args.stage2_steps, peak)
            unlabelled = photo_count if stage == 1 else 0  # stage 2 needs labels
            index = torch.randint(0, len(train_images), (args.batch - lossless_count - unlabelled,), generator=generator)
            extra = torch.randint(0, max(len(lossless_images), 1), (lossless_count,), generator=generator)
            photo = torch.randint(0, max(len(photo_images), 1), (unlabelled,), generator=generator)
            x = task.augment(torch.cat([train_images[index], lossless_images[extra], photo_images[photo]]).float() / 255,
                             generator)
            labels = torch.cat([train_labels[index], lossless_labels[extra]])  # stage 2 only, where no photos are drawn
            target_stages, teacher_logits = task.teacher_outputs(x)
            output = student(x, bf16=bf16)
            bits = -torch.log2(output["likelihoods"]).sum() / args.batch
            if stage == 1:
                distill = sum(F.mse_loss(s, t) for s, t in zip(output["stages"], target_stages))
                loss = distill + args.beta * bits
            else:
                t = args.temperature
                kd = F.kl_div(F.log_softmax(output["logits"] / t, 1), F.softmax(teacher_logits / t, 1),
                              reduction="batchmean") * t * t
                label_weight = task.stage2_label_weight
                distill = label_weight * F.cross_entropy(output["logits"], labels) + (1 - label_weight) * kd
                loss = distill + args.beta * bits if args.joint_stage2 else distill
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            if aux_optimizer is not None:
                aux_loss = student.aux_loss()
                aux_optimizer.zero_grad()
                aux_loss.backward()
                aux_optimizer.step()
            step += 1
            progress.update(1)
            if step % 50 == 0:
                progress.set_postfix(stage=stage, distill=f"{float(distill.detach()):.4f}", bytes=f"{float(bits.detach()) / 8:.1f}")
            if step % args.validate_every == 0 or step == total or step == args.stage1_steps:
                record = {"step": step, "stage": stage, "distill": float(distill.detach()), "train_bytes": float(bits.detach()) / 8,
                          "seconds": time.time() - started, "validation": validate(student, task)}
                log.append(record)
                log_file.write(json.dumps(record) + "\n")
                log_file.flush()
                print(json.dumps(record), flush=True)
                save()
    progress.close()
    if stop.requested:
        if step > first_step:
            save()
        print(f"stopped at step {step}" + (" (checkpoint saved)" if step > first_step else ""), flush=True)
    elif args.name:
        export(student, task, args, log, time.time() - started)


if __name__ == "__main__":
    main()
