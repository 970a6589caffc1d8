"""Model-card helpers: the reproducing command and the lineage of weights a run started from."""
from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tools"))

from model_card import init_record, run_init_record, training_command, write_card  # noqa: E402

from codec.zoo import sha256_of  # noqa: E402


def test_training_command_lists_every_set_argument_but_the_skipped_ones():
    args = {"model": "mgm", "lr": 0.0001, "groups": [1, 2], "lambdas": [0.0018, 0.013], "residual": True,
            "photos": None, "bf16": "auto", "threads": 1, "quiet": False}
    command = training_command("tools/train_image.py", args, {"threads", "bf16"}, ("--first x",))
    assert command == ("python tools/train_image.py --first x --model mgm --lr 0.0001 --groups 1 2 "
                       "--lambdas 0.0018 0.013 --residual")


def test_init_record_names_the_card_whose_weights_a_run_started_from(tmp_path: Path):
    weights = tmp_path / "old.safetensors"
    weights.write_bytes(b"weights")
    models = tmp_path / "models"
    write_card("old", {"name": "old", "sha256": sha256_of(weights), "training": {"command": "python train.py"}}, models)
    write_card("other", {"name": "other", "sha256": "0" * 64}, models)
    record = init_record(weights, models)
    assert record == {"sha256": sha256_of(weights), "model": "old", "training": {"command": "python train.py"}}
    weights.write_bytes(b"changed")  # weights no card names: only their digest
    assert init_record(weights, models) == {"sha256": sha256_of(weights)}


def test_run_init_record_survives_an_export_over_the_init_weights(tmp_path: Path):
    """A run started from weights/NAME and exported as NAME overwrites that file: the lineage taken at the start
    must still name the old weights and their card, not the run's own."""
    weights = tmp_path / "model.safetensors"
    weights.write_bytes(b"old weights")
    models, run = tmp_path / "models", tmp_path / "run"
    write_card("model", {"name": "model", "sha256": sha256_of(weights), "training": {"command": "first"}}, models)
    at_start = run_init_record(run, weights, models)
    weights.write_bytes(b"new weights")  # the export
    write_card("model", {"name": "model", "sha256": sha256_of(weights), "training": {"command": "second"}}, models)
    assert run_init_record(run, weights, models) == at_start
    assert at_start["training"] == {"command": "first"} and at_start["sha256"] != sha256_of(weights)
    assert run_init_record(run, None, models) is None
