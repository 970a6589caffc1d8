"""The split trainer: both stages for a few steps, resume where it stopped, export weights and a card elsewhere."""
from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
import torch

from split_data import CIFAR_DIR

ROOT = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.skipif(not CIFAR_DIR.exists(), reason=f"CIFAR-10 data not found at {CIFAR_DIR}")
TINY = ["--teacher", "resnet20", "--beta", "2e-4", "--latent", "4", "--hidden", "8", "--batch", "4",
        "--stage1-steps", "2", "--stage2-steps", "2", "--validate-every", "2", "--threads", "1", "--bf16", "off"]


def _train(out: Path, export_root: Path, *extra: str) -> subprocess.CompletedProcess:
    command = [sys.executable, str(ROOT / "tools" / "train_split.py"), *TINY, "--out", str(out),
               "--export-root", str(export_root), *extra]
    return subprocess.run(command, capture_output=True, text=True, timeout=600,
                          env={**os.environ, "PYTHONWARNINGS": "ignore"})


def test_two_stages_resume_and_export(tmp_path):
    out, export_root = tmp_path / "run", tmp_path / "export"
    first = _train(out, export_root, "--stage2-steps", "0")  # stops after stage 1 (a checkpoint at step 2)
    assert first.returncode == 0, first.stderr[-2000:]
    second = _train(out, export_root, "--name", "es-tiny", "--kd-teacher", "resnet32")  # resumes into stage 2, exports
    assert second.returncode == 0, second.stderr[-2000:]
    assert "resumed from step 2" in second.stdout
    records = [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines()]
    assert [record["stage"] for record in records] == [1, 2]
    assert 0.0 <= records[-1]["validation"]["accuracy"] <= 1.0 and records[-1]["validation"]["ideal_bytes"] > 0
    card = tomllib.loads((export_root / "models" / "es-tiny.toml").read_text())
    assert (export_root / "weights" / card["weights"]).exists()
    assert "--latent 4" in card["training"]["command"] and "--threads" not in card["training"]["command"]
    assert "soft labels of akamaster ResNet-32" in card["training"]["stage2"]
    assert not (ROOT / "models" / "es-tiny.toml").exists()  # nothing written into the project


def test_kd_teacher_must_be_a_cifar_resnet(tmp_path):
    result = _train(tmp_path / "run", tmp_path / "export", "--kd-teacher", "efficientnet-lite0")
    assert result.returncode != 0 and "--kd-teacher must be a CIFAR ResNet" in result.stderr
    assert "Traceback" not in result.stderr


def test_photo_share_feeds_stage_1_and_is_named_on_the_card(tmp_path):
    out, export_root = tmp_path / "run", tmp_path / "export"
    result = _train(out, export_root, "--photo-share", "0.5", "--photo-thumbnails", "6", "--name", "es-photos")
    assert result.returncode == 0, result.stderr[-2000:]
    card = tomllib.loads((export_root / "models" / "es-photos.toml").read_text())
    assert "--photo-share 0.5" in card["training"]["command"]
    assert "6 unlabelled thumbnails of the training photos" in card["training"]["data"]


def test_shares_must_leave_room_for_the_train_set(tmp_path):
    result = _train(tmp_path / "run", tmp_path / "export", "--photo-share", "0.5", "--lossless-share", "0.5")
    assert result.returncode != 0 and "must leave part of each batch" in result.stderr
    assert "Traceback" not in result.stderr


def test_joint_stage2_also_trains_the_encoder(tmp_path):
    stage1_run = tmp_path / "stage1"
    assert _train(stage1_run, tmp_path / "export", "--stage2-steps", "0").returncode == 0  # one stage 1 for both
    stage1 = torch.load(stage1_run / "checkpoint.pt", weights_only=True)["model"]

    def encoder_after(run: str, *extra: str) -> dict:
        out = tmp_path / run
        shutil.copytree(stage1_run, out)
        result = _train(out, tmp_path / "export", *extra)
        assert result.returncode == 0, result.stderr[-2000:]
        final = torch.load(out / "checkpoint.pt", weights_only=True)["model"]
        return {key: torch.equal(stage1[key], final[key]) for key in stage1 if key.startswith("encoder.")}

    assert all(encoder_after("frozen").values())  # the default stage 2 leaves the encoder as stage 1 left it
    assert not all(encoder_after("joint", "--joint-stage2", "--name", "es-joint").values())
    card = tomllib.loads((tmp_path / "export" / "models" / "es-joint.toml").read_text())
    assert "--joint-stage2" in card["training"]["command"] and "end to end" in card["training"]["stage2"]


def test_a_hyperprior_student_can_start_from_a_factorized_one(tmp_path):
    export_root = tmp_path / "export"
    first = _train(tmp_path / "factorized", export_root, "--name", "es-tiny-f")
    assert first.returncode == 0, first.stderr[-2000:]
    weights = export_root / "weights" / "es-tiny-f.safetensors"
    second = _train(tmp_path / "hyper", export_root, "--prior", "hyperprior", "--hyper-channels", "2",
                    "--init", str(weights), "--stage1-steps", "0", "--joint-stage2")
    assert second.returncode == 0, second.stderr[-2000:]
    loaded, total = map(int, re.search(r"\((\d+) of (\d+) tensors; the rest start fresh\)", second.stdout).groups())
    assert 0 < loaded < total  # encoder, decoder and tail from the factorized student; h_a, h_s, z's prior fresh
    started = torch.load(tmp_path / "hyper" / "checkpoint.pt", weights_only=True)["model"]
    assert any(key.startswith("latent_codec.h_a.") for key in started) and "encoder.0.weight" in started


def test_a_stride_8_student_after_a_separate_stage_1_says_so_on_its_card(tmp_path):
    from safetensors.torch import load_file

    stage1_run, export_root = tmp_path / "stage1", tmp_path / "export"
    first = _train(stage1_run, export_root, "--stride", "8", "--stage2-steps", "0")
    assert first.returncode == 0, first.stderr[-2000:]
    second = _train(tmp_path / "stage2", export_root, "--stride", "8", "--init-run", str(stage1_run),
                    "--joint-stage2", "--name", "es-s8")
    assert second.returncode == 0, second.stderr[-2000:]
    card = tomllib.loads((export_root / "models" / "es-s8.toml").read_text())
    assert card["config"]["stride"] == 8 and "latent x 4x4" in card["architecture"]["description"]
    assert "--stride 8" in card["training"]["stage1_run"]["command"]
    assert "--stage2-steps 0" in card["training"]["stage1_run"]["command"]
    weights = load_file(export_root / "weights" / "es-s8.safetensors")
    assert weights["encoder.6.weight"].shape == (4, 8, 3, 3)  # the third stride-2 layer, then the projection
