"""A model rebuilt from a training run folder (config.json + checkpoint.pt), tables frozen, ready to code."""
from __future__ import annotations

import json
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from codec.registry import create_model  # noqa: E402

RUN_RECORDS = ("family", "bf16", "world_size", "args")  # config.json keys that are not constructor arguments


def run_config(run: Path) -> tuple[str, dict, dict]:
    """(family, the model's constructor arguments, the whole config.json) of a run."""
    config = json.loads((run / "config.json").read_text())
    return config["family"], {key: value for key, value in config.items() if key not in RUN_RECORDS}, config


def model_from_run(run: Path, average: bool = True) -> tuple[torch.nn.Module, dict]:
    """(the run's latest checkpoint as an eval-mode model with frozen tables, the checkpoint: step, schedule, ...).
    Where the run keeps a parameter average (train_image --ema), its parameters are the average unless `average`
    is False."""
    family, model_config, _ = run_config(run)
    model = create_model(family, **model_config)
    state = torch.load(run / "checkpoint.pt", weights_only=True, map_location="cpu")
    own = model.state_dict()
    weights = model.upgrade_state_dict(state["model"])  # names from before the latent codec was a module
    if average and "ema" in state:
        weights.update(model.upgrade_state_dict(state["ema"]))
    model.load_state_dict({key: value for key, value in weights.items() if key in own})  # drops training-only buffers
    model.eval()
    model.update()
    return model, state
