"""tools/training.py, the core both trainers share: atomic checkpoints, starting from shipped weights."""
from __future__ import annotations

import json

import torch
from torch import nn

from codec.zoo import save_weights


def test_checkpoints_are_written_whole_and_read_back(tmp_path):
    from training import load_checkpoint, save_checkpoint

    assert load_checkpoint(tmp_path) is None  # a new run
    save_checkpoint(tmp_path, {"step": 7, "weights": torch.arange(3)})
    state = load_checkpoint(tmp_path)
    assert state["step"] == 7 and torch.equal(state["weights"], torch.arange(3))
    assert sorted(path.name for path in tmp_path.iterdir()) == ["checkpoint.pt"]  # no temporary left


class Tiny(nn.Module):
    def __init__(self, hidden: int) -> None:
        super().__init__()
        self.first = nn.Linear(4, hidden)
        self.second = nn.Linear(hidden, 2)
        self.tables: dict = {}

    def table_state(self) -> dict:
        return {}


def test_init_loads_matching_tensors_adapts_names_and_records_the_source(tmp_path):
    from training import init_from_weights

    source = Tiny(8)
    weights = tmp_path / "tiny.safetensors"
    save_weights(source, weights)
    run = tmp_path / "run"
    target = Tiny(6)  # `first` and `second.weight` change shape: they start fresh
    loaded, total = init_from_weights(target, run, weights)
    assert (loaded, total) == (1, 4) and torch.equal(target.second.bias, source.second.bias)
    assert json.loads((run / "init.json").read_text())["sha256"]

    def drop_second_bias(theirs: dict, own: dict) -> dict:  # an adapter sees the weights and the model's state
        assert set(own) == {"first.weight", "first.bias", "second.weight", "second.bias"}
        return {key: value for key, value in theirs.items() if key != "second.bias"}

    same = Tiny(8)
    fresh_bias = same.second.bias.detach().clone()
    loaded, _ = init_from_weights(same, tmp_path / "run2", weights, drop_second_bias)
    assert loaded == 3 and torch.equal(same.first.weight, source.first.weight)
    assert torch.equal(same.second.bias, fresh_bias)
