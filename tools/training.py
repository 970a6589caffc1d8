"""What every trainer in tools/ shares: the run folder, checkpoints written atomically, a clean stop on SIGTERM /
SIGINT, starting from shipped weights, and the config record. tools/train_image.py and tools/train_split.py
build their loops on it; tools/export_weights.py freezes what they leave."""
from __future__ import annotations

import json
import signal
from contextlib import contextmanager
from pathlib import Path
from typing import Callable, Iterator

import torch

from codec.zoo import load_trained_weights
from model_card import run_init_record

CHECKPOINT = "checkpoint.pt"


class StopRequest:
    """Set by SIGTERM / SIGINT: the loop saves a checkpoint and exits cleanly at the end of its step."""

    def __init__(self) -> None:
        self.requested = False
        signal.signal(signal.SIGTERM, self._handle)
        signal.signal(signal.SIGINT, self._handle)

    def _handle(self, signum: int, frame: object) -> None:
        self.requested = True


class ParameterAverage:
    """Exponential moving average of a model's parameters (Polyak & Juditsky 1992): weights that average out the
    step-to-step noise of the learning rate, for validation and export, while training goes on with the raw ones.
    Kept by parameter name in the checkpoint; a parameter new to the run (or reshaped) starts from its value."""

    def __init__(self, model: torch.nn.Module, decay: float, from_step: int,
                 saved: dict[str, torch.Tensor] | None = None) -> None:
        if not 0.0 < decay < 1.0:
            raise ValueError(f"an average's decay must be in (0, 1), got {decay}")
        self.decay, self.from_step = decay, from_step
        self.named = list(model.named_parameters())
        saved = saved or {}
        self.restarted = [name for name, p in self.named if name not in saved or saved[name].shape != p.shape]
        self.average = [saved[name].to(p.device).clone() if name not in self.restarted else p.detach().clone()
                        for name, p in self.named]

    @torch.no_grad()
    def update(self) -> None:
        """Fold the current parameters in: average <- decay * average + (1 - decay) * parameter."""
        for average, (_, parameter) in zip(self.average, self.named):
            average.lerp_(parameter.detach(), 1.0 - self.decay)

    def state_dict(self) -> dict[str, torch.Tensor]:
        return {name: average for (name, _), average in zip(self.named, self.average)}

    @contextmanager
    @torch.no_grad()
    def swapped_in(self) -> Iterator[None]:
        """The model holds the averaged parameters inside the block, its own again after it."""
        own = [parameter.detach().clone() for _, parameter in self.named]
        for average, (_, parameter) in zip(self.average, self.named):
            parameter.copy_(average)
        try:
            yield
        finally:
            for value, (_, parameter) in zip(own, self.named):
                parameter.copy_(value)


def save_checkpoint(run: Path, state: dict) -> None:
    """Write `state` to RUN/checkpoint.pt through a temporary file and a rename: a kill mid-write leaves the last
    complete checkpoint."""
    temporary = run / "checkpoint.tmp"
    torch.save(state, temporary)
    temporary.replace(run / CHECKPOINT)


def load_checkpoint(run: Path, device: torch.device | str = "cpu") -> dict | None:
    """The run's last checkpoint, or None for a new run."""
    path = run / CHECKPOINT
    return torch.load(path, weights_only=True, map_location=device) if path.exists() else None


def init_from_weights(model: torch.nn.Module, run: Path, weights_path: Path,
                      adapt: Callable[[dict[str, torch.Tensor], dict[str, torch.Tensor]], dict[str, torch.Tensor]]
                      | None = None, record: bool = True) -> tuple[int, int]:
    """Start `model` from shipped weights: record where they came from (RUN/init.json, while the file is still what
    was loaded; `record` False on all but one distributed process), let `adapt(weights, own state)` rename or
    reshape them, and load every tensor whose name and shape match; the rest start fresh. Returns (tensors loaded,
    tensors in the model)."""
    if record:
        run_init_record(run, weights_path)
    weights = load_trained_weights(weights_path)
    if hasattr(model, "upgrade_state_dict"):  # names from before the latent codec was a module
        weights = model.upgrade_state_dict(weights)
    own = model.state_dict()
    if adapt is not None:
        weights = adapt(weights, own)
    matching = {key: value for key, value in weights.items() if key in own and own[key].shape == value.shape}
    model.load_state_dict(matching, strict=False)
    return len(matching), len(own)


def write_run_config(run: Path, config: dict) -> None:
    """RUN/config.json: what the run is (family, model config, arguments), for resuming and exporting."""
    (run / "config.json").write_text(json.dumps(config, default=str, indent=1))
