#!/usr/bin/env python
"""Train a variable-rate image model (rate-distortion loss, random crops with flips, never Kodak).

    python tools/train_image.py --model mean-scale-context --init weights/ms-hyperprior.safetensors --lr 1e-4
    torchrun --standalone --nproc_per_node 2 tools/train_image.py ...   # DistributedDataParallel (gloo / nccl)

One long schedule per model, run across sessions: the run lives in ~/.cache/codec/runs/NAME (NAME defaults to the
family; --runs-dir / --out move it), holds a global step, the learning-rate schedule (a function of that step) and
the optimizer state, and is checkpointed every --checkpoint-minutes and on SIGTERM / SIGINT. Rerunning the same
command resumes it; a different --lr on resume is a deliberate drop, recorded in the schedule with its step. bf16 autocast + channels_last for
g_a / g_s where the CPU has native bf16 (entropy models and likelihoods stay fp32). Each sample in a batch gets a
random rate level i and the loss lambda_i * 255^2 * MSE + bpp (Cui et al., CVPR 2021 gain units).
"""
from __future__ import annotations

import argparse
import contextlib
import gc
import json
import os
import random
import shutil
import sys
import time
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist
from PIL import Image
from torch.nn.parallel import DistributedDataParallel as DDP
from tqdm import tqdm

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from codec.precision import use_bf16  # noqa: E402
from codec.registry import create_model  # noqa: E402
from codec.zoo import load_trained_weights  # noqa: E402
from model_card import run_init_record  # noqa: E402
from photos import (IMAGENETTE_SIDE, imagenette_photos, missing_debian_photos, training_photos,  # noqa: E402
                    validation_photos)
from training import (ParameterAverage, StopRequest, init_from_weights, load_checkpoint, save_checkpoint,  # noqa: E402
                      write_run_config)

DEFAULT_LAMBDAS = (0.0018, 0.0035, 0.0067, 0.0130, 0.0250, 0.0483)
LARGE_SIDE = 1024  # big wallpapers are downscaled so their detail matches ordinary photos


def load_photo(path: Path) -> torch.Tensor:
    image = Image.open(path).convert("RGB")
    if max(image.size) > LARGE_SIDE:
        factor = LARGE_SIDE / max(image.size)
        image = image.resize((round(image.width * factor), round(image.height * factor)), Image.LANCZOS)
    return torch.from_numpy(np.asarray(image).copy()).permute(2, 0, 1)


class CropSampler:
    """Random crops with horizontal/vertical flips from photos held in memory as uint8; with `extra` (uint8 [N, H, W,
    3] photos), each crop comes from those with probability `extra_share`."""

    def __init__(self, photos: list[Path], crop: int, seed: int, extra: np.ndarray | None = None,
                 extra_share: float = 0.0) -> None:
        self.images = [image for image in map(load_photo, tqdm(photos, desc="loading photos")) if min(image.shape[1:]) >= crop]
        self.extra = [] if extra is None else [torch.from_numpy(image).permute(2, 0, 1) for image in extra
                                               if min(image.shape[:2]) >= crop]
        self.extra_share = extra_share if self.extra else 0.0
        self.crop = crop
        self.rng = random.Random(seed)

    def batch(self, size: int) -> torch.Tensor:
        crops = []
        for _ in range(size):
            pool = self.extra if self.extra_share and self.rng.random() < self.extra_share else self.images
            image = pool[self.rng.randrange(len(pool))]
            top = self.rng.randrange(image.shape[1] - self.crop + 1)
            left = self.rng.randrange(image.shape[2] - self.crop + 1)
            crop = image[:, top : top + self.crop, left : left + self.crop]
            if self.rng.random() < 0.5:
                crop = crop.flip(2)
            if self.rng.random() < 0.5:
                crop = crop.flip(1)
            crops.append(crop)
        return torch.stack(crops).float().div_(255)


def sample_bits(output: dict) -> torch.Tensor:
    """Bits per sample: the model's own count when it gives one (vector-quantized models), else -log2 likelihoods."""
    if "bits" in output:
        return output["bits"]
    return sum(-torch.log2(lik).flatten(1).sum(1) for lik in output["likelihoods"].values())


def rd_loss(output: dict, target: torch.Tensor, lambdas: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Per-sample lambda * 255^2 * MSE + bpp, averaged; returns (loss, bpp, mse) per sample."""
    pixels = target.shape[2] * target.shape[3]
    bpp = sample_bits(output) / pixels
    mse = (output["x_hat"] - target).pow(2).flatten(1).mean(1)
    return (lambdas * 255**2 * mse + bpp).mean(), bpp, mse


WARMUP_STEPS = 500


def learning_rate(step: int, schedule: list[list[float]], warmup: int = WARMUP_STEPS) -> float:
    """The rate at global `step`: the last [from_step, lr] entry of `schedule` at or before it, ramped linearly over
    the first `warmup` steps of the model's life (never again on resume)."""
    rate = schedule[0][1]
    for start, value in schedule:
        if step >= start:
            rate = value
    return rate * min(1.0, (step + 1) / warmup) if warmup else rate


def extend_schedule(schedule: list[list[float]], step: int, lr: float | None) -> list[list[float]]:
    """`schedule` with `lr` from `step` on, when it is a change (the record of a deliberate drop)."""
    if lr is None or (schedule and schedule[-1][1] == lr):
        return schedule
    return [*schedule, [step, lr]]


def new_modules(own: dict[str, torch.Tensor], saved: dict[str, torch.Tensor]) -> list[str]:
    """Modules of the model that the checkpoint has no tensor of (added on resume, e.g. --residual-prediction): the
    longest dotted prefixes of the missing keys under which the checkpoint has nothing."""
    missing = [key for key in own if key not in saved]
    modules = set()
    for key in missing:
        parts = key.split(".")
        prefixes = [".".join(parts[:length]) for length in range(1, len(parts))]
        free = [prefix for prefix in prefixes if not any(k.startswith(prefix + ".") for k in saved)]
        if not free:
            raise SystemExit(f"the checkpoint lacks {key} of a module it has: not a run of this model")
        modules.add(free[0])
    return sorted(modules)


def run_module_scales(run: dict[str, float], requested: dict[str, float], report: bool) -> dict[str, float]:
    """A resumed run keeps its --module-lr-scale factors; a module not in them yet (e.g. one new to the run) may be
    given one, recorded from now on; changing a factor the run has is refused."""
    changed = sorted(name for name, factor in requested.items() if name in run and run[name] != factor)
    if changed:
        raise SystemExit(f"--module-lr-scale: the run trains {changed[0]} at {run[changed[0]]:g}x; a run's factors "
                         "are fixed (start a new run to change them)")
    added = {name: factor for name, factor in requested.items() if name not in run}
    if added and report:
        print("module learning-rate factors added: " + ", ".join(f"{k}={v:g}" for k, v in added.items()), flush=True)
    return {**run, **added}


def parameter_average(model: torch.nn.Module, state: dict | None, decay: float | None, step: int,
                      report: bool) -> ParameterAverage | None:
    """The run's parameter average (--ema): resumed from the checkpoint with the run's decay, or started now."""
    if state is not None and "ema" in state:
        if decay is not None and decay != state["ema_decay"]:
            raise SystemExit(f"--ema: the run averages with decay {state['ema_decay']:g}; it is fixed for the run")
        average = ParameterAverage(model, float(state["ema_decay"]), int(state["ema_from_step"]),
                                   model.upgrade_state_dict(state["ema"]))
        if average.restarted and report:
            print(f"parameter average: {len(average.restarted)} tensors new to it start from their values", flush=True)
        return average
    if decay is None:
        return None
    try:
        average = ParameterAverage(model, decay, step)
    except ValueError as error:
        raise SystemExit(f"--ema: {error}") from None
    if report:
        print(f"parameter average (decay {decay:g}) from step {step} on; validation and export use it", flush=True)
    return average


def card_continuation(init: dict | None, run_name: str, init_step: int | None) -> dict | None:
    """When --init is the shipped model this run is named after (a machine without the run folder), its card's
    global step, CPU seconds, learning-rate schedule and rate-level changes, so the long schedule carries on; None
    otherwise, or when --init-step names another step."""
    training = (init or {}).get("training", {})
    if (init or {}).get("model") != run_name or "global_step" not in training:
        return None
    if init_step is not None and init_step != training["global_step"]:
        return None
    return {"step": int(training["global_step"]), "cpu_seconds": 3600 * float(training.get("cpu_hours", 0.0)),
            "lr_schedule": [list(entry) for entry in training.get("lr_schedule", [])],
            "level_changes": [list(entry) for entry in training.get("level_changes", [])]}


def module_name(name: str, model: torch.nn.Module, option: str) -> str:
    """A module of the model by its dotted name (names from before the latent codec was a module, e.g. "context",
    mean their place now, e.g. "latent_codec.y")."""
    if not name:
        raise SystemExit(f"{option}: a module name is needed")
    name = model.upgrade_name(name)
    try:
        model.get_submodule(name)
    except AttributeError:
        raise SystemExit(f"{option}: {type(model).__name__} has no module named {name!r}") from None
    return name


def owned_by(parameter_name: str, modules: list[str] | dict[str, float]) -> str | None:
    """The longest of `modules` (dotted names) that owns this parameter, if any."""
    owners = [m for m in modules if parameter_name == m or parameter_name.startswith(m + ".")]
    return max(owners, key=len) if owners else None


def parse_module_scales(pairs: list[str], model: torch.nn.Module) -> dict[str, float]:
    """["context=10", ...] -> {"latent_codec.y": 10.0}: learning-rate factors for modules of the model."""
    scales = {}
    for pair in pairs:
        name, _, factor = pair.partition("=")
        if not factor:
            raise SystemExit(f"--module-lr-scale {pair!r}: expected MODULE=FACTOR")
        scales[module_name(name, model, "--module-lr-scale")] = float(factor)
    return scales


def parameter_groups(named: list[tuple[str, torch.nn.Parameter]], scales: dict[str, float]) -> list[dict]:
    """One optimizer group per distinct learning-rate factor (the model's other parameters: factor 1)."""
    groups: dict[float, list[tuple[str, torch.nn.Parameter]]] = {}
    for name, parameter in named:
        owner = owned_by(name, scales)
        groups.setdefault(scales[owner] if owner else 1.0, []).append((name, parameter))
    return [{"params": [p for _, p in pairs], "names": [n for n, _ in pairs], "scale": scale}
            for scale, pairs in sorted(groups.items())]


def upgrade_checkpoint(state: dict, model: torch.nn.Module) -> None:
    """A checkpoint from before the latent codec was a module, in today's names: weights, learning-rate factors and
    the optimizer's parameter names (its moments are matched by name when loaded: `align_optimizer_state`)."""
    state["model"] = model.upgrade_state_dict(state["model"])
    if "module_lr_scale" in state:
        state["module_lr_scale"] = {model.upgrade_name(k): v for k, v in state["module_lr_scale"].items()}
    for group in state["optimizer"]["param_groups"]:
        if "names" in group:
            group["names"] = [model.upgrade_name(name) for name in group["names"]]


def align_optimizer_state(saved: dict, optimizer: torch.optim.Optimizer) -> dict:
    """`saved` (an optimizer state dict with parameter names) re-indexed to `optimizer`'s parameters by name and
    learning-rate group, so moments follow their parameters whatever order the model lists them in; parameters the
    saved state lacks start without moments."""
    by_name = {name: index for group in saved["param_groups"] for name, index in zip(group.get("names", []), group["params"])}
    saved_groups = {group.get("scale"): group for group in saved["param_groups"]}
    state, groups, position = {}, [], 0
    for group in optimizer.param_groups:
        indices = []
        for name in group["names"]:
            if by_name.get(name) in saved["state"]:
                state[position] = saved["state"][by_name[name]]
            indices.append(position)
            position += 1
        hyper = {k: v for k, v in saved_groups.get(group["scale"], group).items() if k not in ("params", "names")}
        groups.append({**hyper, "names": group["names"], "params": indices})
    if len(state) != len(saved["state"]):  # a renamed parameter would silently restart its moments
        lost = sorted(set(by_name) - {name for group in optimizer.param_groups for name in group["names"]})
        raise SystemExit(f"the checkpoint's optimizer has moments for parameters this model lacks: {lost[:5]}")
    return {"state": state, "param_groups": groups}


GAIN_TABLES = ("gains.log_gain", "gains.log_inverse_gain")


def change_levels(state: dict, run_lambdas: list[float], lambdas: list[float], optimizer_names: list[str],
                  model_shapes: dict[str, tuple[int, ...]]) -> None:
    """Resume a run with a different set of rate levels: the gain tables are remapped in log-lambda (as for
    --init-lambdas) and their Adam moments restart; every other tensor and moment carries on. Recorded in the run."""
    state["model"] = remap_gain_levels(state["model"], run_lambdas, lambdas)
    if len(lambdas) != len(run_lambdas):
        reshaped = sorted(key for key, value in state["model"].items()
                          if key in model_shapes and tuple(value.shape) != model_shapes[key] and key not in GAIN_TABLES)
        if reshaped:
            raise SystemExit(f"this model has per-level tensors besides the gains ({', '.join(reshaped[:3])}, ...): "
                             "its rate levels cannot change on resume")
    moments = state["optimizer"]["state"]
    for index, name in enumerate(optimizer_names):
        if name in GAIN_TABLES:
            moments.pop(index, None)
    state["level_changes"] = [*state.get("level_changes", []), [int(state["step"]), list(lambdas)]]


def run_lambdas(state: dict, run: Path) -> list[float]:
    """The rate levels a checkpoint was trained with (runs from before they were stored: the run's config.json)."""
    if "lambdas" in state:
        return [float(v) for v in state["lambdas"]]
    lambdas = [float(v) for v in json.loads((run / "config.json").read_text())["lambdas"]]
    levels = state["model"][GAIN_TABLES[0]].shape[0] if GAIN_TABLES[0] in state["model"] else len(lambdas)
    if levels != len(lambdas):
        raise SystemExit(f"{run}: the checkpoint has {levels} rate levels but config.json lists {len(lambdas)}; "
                         "put the checkpoint's lambdas back in config.json to resume")
    return lambdas


@torch.no_grad()
def validate(model, images: list[torch.Tensor], levels: list[int], device: torch.device) -> dict:
    model.eval()
    results = {}
    for level in levels:
        bpps, psnrs = [], []
        for image in images:
            x = image.float().div(255)[None].to(device)
            out = model(model.pad(x), torch.tensor([float(level)], device=device))
            pixels = x.shape[2] * x.shape[3]
            bits = sample_bits(out).sum()
            x_hat = out["x_hat"][..., : x.shape[2], : x.shape[3]].clamp(0, 1)
            bpps.append(float(bits) / pixels)
            psnrs.append(float(-10 * torch.log10((x_hat - x).pow(2).mean())))
        results[level] = {"bpp": float(np.mean(bpps)), "psnr": float(np.mean(psnrs))}
    return results


ENCODER_MODULES = ("g_a", "latent_codec.h_a", "gains")  # what decides the coded latents (the gains: both ways)


def check_coded_rate(model: torch.nn.Module) -> None:
    """--coded-rate trains on the straight-through bits of rounded latents: a biased gradient for the encoder, so
    (as in Guo et al. 2021) the encoder stays frozen (--train-only has set requires_grad); the model's latent codec
    must count coded bits."""
    if not hasattr(getattr(model, "latent_codec", None), "estimate"):
        raise SystemExit("--coded-rate: this model's latent codec has no estimate() of coded bits")
    trained_encoder = sorted({owner for name, parameter in model.named_parameters()
                              if parameter.requires_grad and (owner := owned_by(name, ENCODER_MODULES))})
    if trained_encoder:
        raise SystemExit("--coded-rate needs --train-only with decoder-side modules only (not "
                         f"{', '.join(trained_encoder)}), e.g. g_s latent_codec.h_s latent_codec.z latent_codec.y")


def training_mode(model: torch.nn.Module, train_only: list[str] | None) -> None:
    """Train mode for the whole model, or with --train-only for those modules alone (the rest stays in eval mode,
    so frozen quantizers keep their codebooks and index counts and the coded rate does not move)."""
    model.train(not train_only)
    for name in train_only or []:
        model.get_submodule(name).train()


def remap_gain_levels(weights: dict[str, torch.Tensor], old_lambdas: list[float],
                      new_lambdas: list[float]) -> dict[str, torch.Tensor]:
    """Give each new rate level the log-gains of its lambda, piecewise linear in log-lambda over the old levels.

    Lets training add a level (e.g. a lower lambda for rates near 0.1 bpp) to already trained weights.
    """
    if list(old_lambdas) == list(new_lambdas):
        return weights
    old = torch.log(torch.tensor(old_lambdas, dtype=torch.float64))
    new = torch.log(torch.tensor(new_lambdas, dtype=torch.float64))
    remapped = dict(weights)
    for key in ("gains.log_gain", "gains.log_inverse_gain"):
        table = weights[key].double()
        if table.shape[0] != len(old_lambdas):
            raise SystemExit(f"--init-lambdas has {len(old_lambdas)} levels but {key} has {table.shape[0]}")
        low = (torch.searchsorted(old, new) - 1).clamp(0, len(old_lambdas) - 2)
        frac = ((new - old[low]) / (old[low + 1] - old[low])).view(-1, 1)
        remapped[key] = (table[low] * (1 - frac) + table[low + 1] * frac).float()
    return remapped


def image_weights_adapter(args: argparse.Namespace, model: torch.nn.Module):
    """--init weights fitted to this model: gains remapped to --lambdas, kernels cropped to their centre taps,
    narrower layers widened without changing what the model computes (`widen`), and a resized codebook left to be
    seeded from data (its `initialised` flag dropped)."""
    transposed = {f"{name}.weight" for name, module in model.named_modules()
                  if isinstance(module, torch.nn.ConvTranspose2d)}

    def adapt(weights: dict[str, torch.Tensor], own: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        weights = remap_gain_levels(weights, args.init_lambdas or args.lambdas, args.lambdas)
        weights = {k: centre_taps(v, own[k].shape) if k in own else v for k, v in weights.items()}
        weights = {k: widen(v, own[k], k in transposed) if k in own else v for k, v in weights.items()}
        fits = {k for k, v in weights.items() if k in own and own[k].shape == v.shape}
        return {k: v for k, v in weights.items()
                if not k.endswith(".initialised") or k.replace(".initialised", ".codebooks") in fits}
    return adapt


def widen(weight: torch.Tensor, fresh: torch.Tensor, transposed: bool) -> torch.Tensor:
    """`weight` embedded in the larger freshly initialised `fresh` so that the widened network computes what the
    narrow one did (as Net2Net, Chen et al. ICLR 2016, with zero outgoing weights): new output channels keep their
    fresh incoming weights, and a convolution's weights from new input channels into old output channels are zero,
    so the new channels start with no effect and learn one. Fresh GDN parameters need nothing: their gamma is
    diagonal, so old channels are normalised by old channels alone. `transposed`: a transposed convolution
    ([in, out, k, k]). Any tensor that is not a smaller copy of `fresh`'s shape is returned as it is."""
    if weight.shape == fresh.shape or weight.dim() != fresh.dim() or weight.dim() == 0 or any(
            old > new for old, new in zip(weight.shape, fresh.shape)) or weight.shape[2:] != fresh.shape[2:]:
        return weight
    widened = fresh.clone()
    widened[leading_block(weight.shape)] = weight
    if weight.dim() == 4:
        out_dim, in_dim = (1, 0) if transposed else (0, 1)
        old_out, old_in = weight.shape[out_dim], weight.shape[in_dim]
        index = [slice(None)] * 4
        index[out_dim], index[in_dim] = slice(0, old_out), slice(old_in, None)
        widened[tuple(index)] = 0
    return widened


class WidenedStep:
    """--widened-lr-scale: the elements that widening added to --init's tensors (new channels' rows and columns)
    move `scale` times as far per optimizer step as the rest. Zero outgoing weights grow slowly at a rate fit for
    trained weights (at lr 2e-5, ~2e-4 rms in 1,000 steps), so the new channels would take many sessions to matter;
    the trained elements keep their rate. Adam's update is scaled after the step, element by element."""

    def __init__(self, model: torch.nn.Module, init: Path, scale: float) -> None:
        weights = load_trained_weights(init)
        if hasattr(model, "upgrade_state_dict"):  # the names init_from_weights loaded them under
            weights = model.upgrade_state_dict(weights)
        self.scale = scale
        self.parameters: list[tuple[torch.nn.Parameter, torch.Tensor]] = []  # (parameter, mask of added elements)
        for name, parameter in model.named_parameters():
            old = weights.get(name)
            if old is None or old.shape == parameter.shape or old.dim() != parameter.dim():
                continue
            added = torch.ones_like(parameter, dtype=torch.bool)
            added[leading_block(old.shape)] = False
            self.parameters.append((parameter, added))

    def step(self, optimizer: torch.optim.Optimizer) -> None:
        before = [parameter.detach().clone() for parameter, _ in self.parameters]
        optimizer.step()
        with torch.no_grad():
            for (parameter, added), old in zip(self.parameters, before):
                parameter.copy_(torch.where(added, old + (parameter - old) * self.scale, parameter))


def leading_block(shape: torch.Size) -> tuple[slice, ...]:
    """The index of a tensor of `shape` inside a larger one (where widening puts the trained weights)."""
    return tuple(slice(0, size) for size in shape)


def centre_taps(weight: torch.Tensor, shape: torch.Size) -> torch.Tensor:
    """A convolution kernel cropped to its centre taps where `shape` differs from it only by a smaller odd kernel
    (e.g. 5x5 -> 3x3; for stride-2 transposed convolutions with padding k // 2 the centre tap stays aligned);
    any other tensor unchanged."""
    if weight.dim() != 4 or len(shape) != 4 or weight.shape[:2] != shape[:2] or weight.shape[2:] == shape[2:]:
        return weight
    (height, width), (new_height, new_width) = weight.shape[2:], shape[2:]
    if new_height > height or new_width > width or (height - new_height) % 2 or (width - new_width) % 2:
        return weight
    top, left = (height - new_height) // 2, (width - new_width) // 2
    return weight[:, :, top : top + new_height, left : left + new_width].contiguous()


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="mean-scale")
    parser.add_argument("--steps", type=int, default=10**9, help="global step to stop at (default: run until stopped)")
    parser.add_argument("--batch", type=int, default=8, help="crops per process and step")
    parser.add_argument("--crop", type=int, default=128)
    parser.add_argument("--lr", type=float, help="peak learning rate of a new run (default 1e-4); on resume, a "
                        "different value lowers (or raises) the rate from the current step on, recorded in the run")
    parser.add_argument("--lambdas", type=float, nargs="+", default=list(DEFAULT_LAMBDAS))
    parser.add_argument("--channels", type=int, nargs=2, default=(128, 192), metavar=("N", "M"))
    parser.add_argument("--groups", type=int, nargs="+", help="mgm: codebooks per rate level (one per lambda)")
    parser.add_argument("--hyper-codewords", type=int, help="mgm: codewords per coarse codebook (default 64)")
    parser.add_argument("--hyper-groups", type=int, help="mgm: coarse codebooks (default 4; more than the largest "
                        "--groups condition nothing)")
    parser.add_argument("--coarse-probe", action="store_true",
                        help="mgm: train h_a to make the coarse level predictive of the fine indices (a linear probe)")
    parser.add_argument("--residual", action="store_true",
                        help="mgm: code y - codeword under each component's Gaussian (mixture means and scales)")
    parser.add_argument("--synthesis-widths", type=int, nargs=3, metavar=("W1", "W2", "W3"),
                        help="g_s hidden widths (default N N N); N N N/2 halves decode time; --init widens "
                             "narrower weights without changing what they compute")
    parser.add_argument("--analysis-widths", type=int, nargs=3, metavar=("W1", "W2", "W3"),
                        help="mean-scale / mean-scale-context: g_a hidden widths (default N N N)")
    parser.add_argument("--synthesis-kernels", type=int, nargs=4, metavar=("K1", "K2", "K3", "K4"),
                        help="mgm: g_s kernel sizes (default 5 5 5 5); 5 5 3 3 halves decode time; --init takes the "
                             "centre taps of larger kernels")
    parser.add_argument("--train-only", nargs="+", metavar="MODULE",
                        help="train only these top-level modules, e.g. g_s (a new synthesis transform under a frozen "
                             "encoder: codes and rates stay those of --init)")
    parser.add_argument("--coded-rate", action="store_true",
                        help="rate term = bits of the latents as the coder rounds them (straight-through), decoder "
                             "sides fed rounded latents (Guo et al. 2021, soft then hard); needs --train-only without "
                             "the encoder (g_a, latent_codec.h_a, gains)")
    parser.add_argument("--name", help="run name (default: the model family)")
    parser.add_argument("--runs-dir", type=Path, default=Path.home() / ".cache" / "codec" / "runs",
                        help="where runs live, outside the work tree (default ~/.cache/codec/runs)")
    parser.add_argument("--out", type=Path, help="the run folder itself (default: RUNS_DIR/NAME)")
    parser.add_argument("--module-lr-scale", nargs="+", default=[], metavar="MODULE=FACTOR",
                        help="train these top-level modules at FACTOR x the schedule's rate, e.g. context=10 gains=10 "
                             "(new parts learn fast while pretrained transforms move slowly); fixed for the run")
    parser.add_argument("--init-step", type=int,
                        help="global step of the --init weights (default: the card's when --init is the shipped "
                             "model of this run's name, which continues its step, CPU hours and learning-rate "
                             "schedule on a machine without the run folder; optimizer state restarts; else 0)")
    parser.add_argument("--context-groups", type=int, nargs="+",
                        help="mean-scale-context: channel group sizes (default 16 16 32 64 64)")
    parser.add_argument("--context-hidden", type=int, help="mean-scale-context: hidden width of the context nets")
    parser.add_argument("--residual-prediction", action="store_true",
                        help="mean-scale-context: add latent residual prediction (Minnen & Singh 2020); on resume "
                             "it starts at zero, under latent_codec.y's learning rate")
    parser.add_argument("--init", type=Path, help="start from these weights (e.g. weights/ms-hyperprior.safetensors)")
    parser.add_argument("--init-lambdas", type=float, nargs="+",
                        help="the rate levels the --init weights were trained with (default: --lambdas); new "
                             "--lambdas get gains interpolated (or extrapolated) in log-lambda from them")
    parser.add_argument("--photos", type=Path, help="train (and validate) on this folder instead of the defaults")
    parser.add_argument("--without-debian-photos", action="store_true",
                        help="train on BSDS500 alone where tools/install_training_photos.sh has not run (default: "
                             "refuse, so that a long run never silently changes its training set)")
    parser.add_argument("--imagenette-share", type=float, default=0.0,
                        help="share of crops from Imagenette's 4,034 train photos downscaled to 160 px (crop <= 160)")
    parser.add_argument("--device", default="auto", help="auto (cuda when present), cpu or cuda")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--bf16", choices=("auto", "on", "off"), default="auto")
    parser.add_argument("--compile", action="store_true",
                        help="torch.compile g_a and g_s (~1.4x faster steps here; ~30 s to compile at the start)")
    parser.add_argument("--widened-lr-scale", type=float, metavar="K",
                        help="with --init weights that the model widens: the elements widening added move K times as "
                             "far per step as the trained ones (recorded in the run from this step on)")
    parser.add_argument("--widened-from", type=Path, metavar="WEIGHTS",
                        help="the narrower weights whose shapes tell --widened-lr-scale what widening added (default "
                             "--init; give the pre-widening weights when --init is already wide, e.g. exported after "
                             "widening)")
    parser.add_argument("--ema", type=float, metavar="DECAY",
                        help="keep an exponential moving average of the parameters (e.g. 0.999) for validation and "
                             "export; fixed for the run once set (a resume may start one)")
    parser.add_argument("--checkpoint-minutes", type=float, default=10.0)
    parser.add_argument("--validate-every", type=int, default=2000)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    args.out = args.out or args.runs_dir.expanduser() / (args.name or args.model)
    if not 0 <= args.imagenette_share < 1:
        parser.error("--imagenette-share must be in [0, 1)")
    if args.imagenette_share and args.crop > IMAGENETTE_SIDE:
        parser.error(f"--imagenette-share needs --crop <= {IMAGENETTE_SIDE} (the downscaled photos' side)")
    return args


def setup_distributed(device_arg: str) -> tuple[int, int, torch.device]:
    """Rank, world size and device; torchrun sets WORLD_SIZE (gloo on CPU, nccl on CUDA)."""
    wants_cuda = device_arg == "cuda" or (device_arg == "auto" and torch.cuda.is_available())
    world = int(os.environ.get("WORLD_SIZE", "1"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    device = torch.device(f"cuda:{local_rank}" if wants_cuda else "cpu")
    if world > 1:
        dist.init_process_group("nccl" if wants_cuda else "gloo")
        return dist.get_rank(), world, device
    return 0, 1, device


def photo_lists(args: argparse.Namespace) -> tuple[list[Path], list[Path]]:
    if args.photos:
        photos = sorted(p for p in args.photos.iterdir() if p.suffix.lower() in (".png", ".jpg", ".jpeg"))
        return photos, photos[:2]
    missing = missing_debian_photos()
    if missing and not args.without_debian_photos:
        raise SystemExit("the Debian training photos are not installed (nothing matches "
                         f"{', '.join(missing)}): run tools/install_training_photos.sh, or pass "
                         "--without-debian-photos to train on BSDS500 alone")
    return training_photos(), validation_photos()[:8]


def main() -> None:
    args = parse_args()
    train_paths, validation_paths = photo_lists(args)  # refuses missing photos before the run folder is touched
    if os.environ.get("OMP_WAIT_POLICY", "").upper() == "PASSIVE":
        print("note: OMP_WAIT_POLICY=PASSIVE made steps 30 % slower here (0.44 vs 0.34 s); to share the CPU, "
              "nice the run instead", file=sys.stderr, flush=True)
    stop = StopRequest()  # from the start: a signal during set-up still ends with a checkpoint
    rank, world, device = setup_distributed(args.device)
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    args.out.mkdir(parents=True, exist_ok=True)
    config = {"lambdas": tuple(args.lambdas), "n": args.channels[0], "m": args.channels[1]}
    if args.groups:
        config["groups"] = tuple(args.groups)
    if args.residual:
        config["residual"] = True
    if args.hyper_codewords:
        config["hyper_codewords"] = args.hyper_codewords
    if args.hyper_groups:
        config["hyper_groups"] = args.hyper_groups
    if args.coarse_probe:
        config["coarse_probe"] = True
    if args.synthesis_widths:
        config["synthesis_widths"] = tuple(args.synthesis_widths)
    if args.analysis_widths:
        config["analysis_widths"] = tuple(args.analysis_widths)
    if args.synthesis_kernels:
        config["synthesis_kernels"] = tuple(args.synthesis_kernels)
    if args.context_groups:
        config["groups"] = tuple(args.context_groups)
    if args.context_hidden:
        config["context_hidden"] = args.context_hidden
    if args.residual_prediction:
        config["residual_prediction"] = True
    model = create_model(args.model, **config).to(device)
    args.train_only = [module_name(name, model, "--train-only") for name in args.train_only or []]
    if args.train_only:
        for name, parameter in model.named_parameters():
            parameter.requires_grad_(owned_by(name, args.train_only) is not None)
    if args.coded_rate:
        check_coded_rate(model)
        model.coded_rate = True
    bf16 = use_bf16(device) if args.bf16 == "auto" else args.bf16 == "on"
    model.set_fast_transforms(bf16)
    if args.compile:
        if device.type == "cpu" and not any(shutil.which(cc) for cc in ("c++", "g++", "clang++")):
            raise SystemExit("--compile needs a C++ compiler on the PATH (torch.compile builds CPU kernels with it)")
        model.compile_transforms()
    trainable = [(name, p) for name, p in model.named_parameters()
                 if not args.train_only or owned_by(name, args.train_only) is not None]
    main_named = [(name, p) for name, p in trainable if not name.endswith(".quantiles")]
    main_params = [p for _, p in main_named]
    aux_params = [p for name, p in trainable if name.endswith(".quantiles")]
    state = load_checkpoint(args.out, device)
    if state is not None:
        upgrade_checkpoint(state, model)
    lr_scales = parse_module_scales(args.module_lr_scale, model)
    if state:
        lr_scales = run_module_scales(state.get("module_lr_scale", {}), lr_scales, rank == 0)
    # fused: one kernel per parameter group instead of a dozen ops per tensor (7 % faster steps on this CPU)
    optimizer = torch.optim.Adam(parameter_groups(main_named, lr_scales), lr=args.lr or 1e-4, fused=True)
    aux_optimizer = torch.optim.Adam(aux_params, lr=1e-3) if aux_params else None
    step = args.init_step or 0
    schedule: list[list[float]] = []
    level_changes: list = []
    levels_changed = False
    cpu_seconds = 0.0
    if state is not None:
        if all("names" in group for group in state["optimizer"]["param_groups"]):
            state["optimizer"] = align_optimizer_state(state["optimizer"], optimizer)
        # else: a checkpoint without names (its run began before they were saved) lists the parameters in the order
        # the model does (the latent codec modules kept that order: tests/test_train.py checks it)
        trained_lambdas = run_lambdas(state, args.out)
        if trained_lambdas != list(args.lambdas):
            change_levels(state, trained_lambdas, list(args.lambdas),
                          [name for group in optimizer.param_groups for name in group["names"]],
                          {key: tuple(value.shape) for key, value in model.state_dict().items()})
            levels_changed = True
            if rank == 0:
                print(f"rate levels {trained_lambdas} -> {list(args.lambdas)} from step {state['step']} "
                      "(gains remapped in log-lambda); recorded in the run", flush=True)
        level_changes = state.get("level_changes", [])
        own = model.state_dict()
        new = new_modules(own, state["model"])
        if new and rank == 0:
            print(f"modules new to the run start fresh: {', '.join(new)}", flush=True)
        model.load_state_dict({key: value for key, value in state["model"].items() if key in own},
                              strict=not new)
        labels = [(group["names"], group["scale"]) for group in optimizer.param_groups]
        optimizer.load_state_dict(state["optimizer"])
        for group, (group_names, scale) in zip(optimizer.param_groups, labels):
            group["names"], group["scale"] = group_names, scale  # load_state_dict keeps only the saved groups' keys
        if aux_optimizer is not None:
            aux_optimizer.load_state_dict(state["aux_optimizer"])
        step = int(state["step"])
        schedule = state.get("lr_schedule") or [[0, args.lr or 1e-4]]
        cpu_seconds = float(state.get("cpu_seconds", 0.0))
        if rank == 0:
            print(f"resumed from step {step} (lr {learning_rate(step, schedule):.3g}, "
                  f"{cpu_seconds / 3600:.2f} CPU hours so far)", flush=True)
    elif args.init:
        loaded, total = init_from_weights(model, args.out, args.init, image_weights_adapter(args, model),
                                          record=rank == 0)
        continued = card_continuation(run_init_record(args.out, args.init), args.name or args.model, args.init_step)
        if continued:
            step, cpu_seconds = continued["step"], continued["cpu_seconds"]
            schedule, level_changes = continued["lr_schedule"], continued["level_changes"]
        if rank == 0:
            print(f"initialised from {args.init} ({loaded} of {total} tensors; the rest start fresh) "
                  f"at global step {step}" + (f", continuing its card ({cpu_seconds / 3600:.2f} CPU hours, "
                                             f"lr {learning_rate(step, schedule):.3g})" if continued else ""),
                  flush=True)
    if not schedule:
        schedule = [[0, args.lr or 1e-4]]
    new_schedule = extend_schedule(schedule, step, args.lr)
    if new_schedule is not schedule and rank == 0:
        print(f"learning rate {args.lr:g} from step {step} on (was {schedule[-1][1]:g}); recorded in the run",
              flush=True)
    schedule = new_schedule
    average = parameter_average(model, state, args.ema, step, rank == 0)
    narrower = args.widened_from or args.init
    if args.widened_lr_scale is not None and not narrower:
        raise SystemExit("--widened-lr-scale needs --init or --widened-from: the weights whose shapes tell what "
                         "widening added")
    widened_scales = extend_schedule((state or {}).get("widened_lr_scale", []), step, args.widened_lr_scale)
    widened = WidenedStep(model, narrower, widened_scales[-1][1]) if widened_scales and narrower else None
    if widened is not None and rank == 0:
        print(f"{len(widened.parameters)} widened tensors: their new elements at {widened_scales[-1][1]:g}x the "
              "learning rate" if widened.parameters else f"--widened-lr-scale: no tensor of {narrower} is narrower "
              "than the model's (weights exported after widening? --widened-from names the pre-widening ones), so "
              "every element trains at the same rate", flush=True)
    forward_model = model
    if world > 1:
        # the bottleneck quantiles only get gradients from the aux loss: DDP ignores them, we average them by hand
        ignored = [name for name, _ in model.named_parameters() if name.endswith(".quantiles")]
        DDP._set_params_and_buffers_to_ignore_for_model(model, ignored)
        forward_model = DDP(model, device_ids=[device.index] if device.type == "cuda" else None)
    extra = imagenette_photos() if args.imagenette_share > 0 else None
    sampler = CropSampler(train_paths, args.crop, args.seed + 1000 * rank + step, extra, args.imagenette_share)
    validation = [load_photo(path) for path in validation_paths] if rank == 0 else []
    lambdas = torch.tensor(args.lambdas, device=device)
    log = open(args.out / "log.jsonl", "a", encoding="utf-8") if rank == 0 else None

    def save() -> None:
        state = {"model": model.state_dict(), "optimizer": optimizer.state_dict(),
                 "aux_optimizer": aux_optimizer.state_dict() if aux_optimizer else {}, "step": step,
                 "lr_schedule": schedule, "module_lr_scale": lr_scales, "widened_lr_scale": widened_scales,
                 "lambdas": list(args.lambdas), "level_changes": level_changes, "cpu_seconds": cpu_seconds + time.process_time() - cpu_started}
        if average is not None:
            state.update(ema=average.state_dict(), ema_decay=average.decay, ema_from_step=average.from_step)
        save_checkpoint(args.out, state)

    cpu_started = time.process_time()
    if levels_changed and rank == 0:
        save()  # the remapped levels are on disk before config.json names them
    if rank == 0:
        write_run_config(args.out, {"family": args.model, **config, "bf16": bf16, "world_size": world, "args": vars(args)})
    training_mode(model, args.train_only)
    total = args.steps if args.steps < 10**9 else None
    progress = tqdm(total=total, initial=step, desc=f"train {args.model}", mininterval=30, disable=rank != 0)
    started = time.time()
    cpu_started = time.process_time()
    last_save = time.time()
    while step < args.steps and not stop.requested:
        for group in optimizer.param_groups:
            group["lr"] = learning_rate(step, schedule) * group["scale"]
        x = sampler.batch(args.batch).to(device)
        levels = torch.randint(0, len(args.lambdas), (args.batch,), device=device)
        output = forward_model(x, levels.float())
        loss, bpp, mse = rd_loss(output, x, lambdas[levels])
        loss = loss + output.get("extra_loss", 0.0)  # e.g. the VQ commitment / codebook terms
        optimizer.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(main_params, 1.0)
        if widened is not None:
            widened.step(optimizer)
        else:
            optimizer.step()
        aux_loss = model.aux_loss()
        if aux_optimizer is not None:
            aux_optimizer.zero_grad()
            aux_loss.backward()
            aux_optimizer.step()
        if world > 1:
            for parameter in aux_params:
                dist.all_reduce(parameter.data)
                parameter.data /= world
        if average is not None:
            average.update()
        step += 1
        progress.update(1)
        if rank != 0:
            continue
        if step % 50 == 0:
            psnr = float((-10 * torch.log10(mse.detach())).mean())
            record = {"step": step, "loss": float(loss.detach()), "bpp": float(bpp.detach().mean()), "psnr": psnr,
                      "aux": float(aux_loss.detach()), "lr": optimizer.param_groups[0]["lr"],
                      "seconds": time.time() - started}
            log.write(json.dumps(record) + "\n")
            log.flush()
            progress.set_postfix(loss=f"{record['loss']:.3f}", bpp=f"{record['bpp']:.3f}", psnr=f"{psnr:.2f}")
        if time.time() - last_save > 60 * args.checkpoint_minutes or step == args.steps:
            save()
            last_save = time.time()
        if step % args.validate_every == 0 or step == args.steps:
            levels_to_check = sorted({0, len(args.lambdas) // 2, len(args.lambdas) - 1})
            with average.swapped_in() if average is not None else contextlib.nullcontext():
                record = {"step": step, "validation": validate(model, validation, levels_to_check, device)}
            training_mode(model, args.train_only)
            log.write(json.dumps(record) + "\n")
            log.flush()
            print(json.dumps(record), flush=True)
    progress.close()
    if rank == 0:
        save()
        print(f"checkpoint saved at step {step}" + (" (stop requested)" if stop.requested else ""), flush=True)
    if world > 1:
        dist.barrier()  # rank 0 may still be saving and validating: tear gloo down only once every rank is here
        # DDP's reducer holds the process group; freed by the garbage collector at interpreter exit, gloo's
        # threads could be torn down mid-finalisation and abort the process ("terminate called without an
        # active exception"), so it goes while the interpreter is whole
        del forward_model
        gc.collect()
        dist.destroy_process_group()


if __name__ == "__main__":
    main()
