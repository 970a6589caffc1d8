"""Every script in tools/ keeps working: each one's --help (every import resolves), and tiny runs of the training
-> validation -> ledger -> export chain and of the entropy benchmark, so a rename cannot break a tool silently."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import tomllib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
TOOLS = ROOT / "tools"
SCRIPTS = sorted(path.name for path in TOOLS.glob("*.py") if '__name__ == "__main__"' in path.read_text())
ENV = {**os.environ, "PYTHONWARNINGS": "ignore"}


def _tool(*args: str, cwd: Path = ROOT, timeout: float = 600) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, *map(str, args)], capture_output=True, text=True, cwd=cwd, env=ENV,
                          timeout=timeout)


@pytest.mark.parametrize("script", SCRIPTS)
def test_every_tool_starts(script):
    result = _tool(TOOLS / script, "--help")
    assert result.returncode == 0, result.stderr[-2000:]
    assert "usage:" in result.stdout


def test_entropy_benchmark_tiny_run():
    if not (ROOT.parent / "shared" / "data" / "kodak" / "kodim01.png").exists():
        pytest.skip("no Kodak images in ../shared/data (CI has them)")
    result = _tool(TOOLS / "bench_entropy.py", "--symbols", "2000", "--kodak-images", "1", "--repeats", "1")
    assert result.returncode == 0, result.stderr[-2000:]
    assert "0 mismatches" in result.stdout and "scale-table boundaries" in result.stdout


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory) -> Path:
    """A 3-step mean-scale-context run (with latent residual prediction and a parameter average) on made-up
    photos."""
    root = tmp_path_factory.mktemp("tiny")
    photos = root / "photos"
    photos.mkdir()
    rng = np.random.default_rng(0)
    for index in range(2):
        rows, cols = np.mgrid[0:96, 0:96]
        array = np.stack([rows * 2, cols * 2, rows + cols], axis=2) + rng.integers(0, 20, (96, 96, 3))
        Image.fromarray(np.clip(array, 0, 255).astype(np.uint8)).save(photos / f"p{index}.png")
    run = root / "runs" / "tiny"
    result = _tool(TOOLS / "train_image.py", "--model", "mean-scale-context", "--channels", "16", "24",
                   "--batch", "2", "--crop", "64", "--threads", "1", "--lambdas", "0.002", "0.02", "--steps", "3",
                   "--photos", photos, "--out", run, "--residual-prediction", "--ema", "0.9")
    assert result.returncode == 0, result.stderr[-2000:]
    return run


def test_validate_ledger_and_export_a_run(tiny_run, tmp_path):
    if not (ROOT.parent / "shared" / "data" / "bsds500" / "test").is_dir():
        pytest.skip("no BSDS500 in ../shared/data (CI has it)")
    report_path = tmp_path / "validation.json"
    validated = _tool(TOOLS / "validate_image.py", "--run", tiny_run, "--against", "ms-hyperprior", "--images", "1",
                      "--json-out", report_path, "--ablate-residual-prediction")
    assert validated.returncode == 0, validated.stderr[-2000:]
    report = json.loads(report_path.read_text())
    assert report["step"] == 3 and len(report["curves"]["run"]["bpp"]) == 2
    assert len(report["curves"]["ms-hyperprior"]["bpp"]) == 7
    ablated = report["curves"]["run without residual prediction"]
    assert ablated["bpp"] == report["curves"]["run"]["bpp"]  # the same bytes: only the pixels differ

    home = tmp_path / "home"
    exported = _tool(TOOLS / "export_weights.py", "--run", tiny_run, "--name", "tiny-ctx", "--home", home)
    assert exported.returncode == 0, exported.stderr[-2000:]
    card = tomllib.loads((home / "models" / "tiny-ctx.toml").read_text())
    assert card["family"] == "mean-scale-context" and card["training"]["global_step"] == 3
    assert card["training"]["lr_schedule"] == [[0, 1e-4]]
    assert "channel groups" in card["architecture"]["description"]
    assert card["config"]["residual_prediction"] is True
    assert "moving average of the parameters (decay 0.9, from step 0)" in card["training"]["optimizer"]
    assert "latent residual prediction" in card["architecture"]["description"]

    for session in (1, 2):  # one ledger line per session, appended
        ledger = _tool(TOOLS / "ledger.py", "--card", "tiny-ctx", "--validation", report_path, "--models-dir",
                       home / "models")
        assert ledger.returncode == 0, ledger.stderr[-2000:]
    lines = tomllib.loads((home / "models" / "tiny-ctx.toml").read_text())["ledger"]
    assert len(lines) == 2 and lines[0]["global_step"] == 3 and lines[0]["cpu_hours"] >= 0

    # the exported weights load through the zoo (sha256 on the card) and code an image
    script = ("import torch\n"
              "from codec.zoo import load_model\n"
              "model, card = load_model('tiny-ctx')\n"
              "streams = model.compress(torch.rand(1, 3, 40, 50), 1.0)\n"
              "print(tuple(model.decompress(streams, 1.0, 40, 50).shape), card.family)\n")
    loaded = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, cwd=tmp_path,
                            env={**ENV, "CODEC_HOME": str(home)}, timeout=300)
    assert loaded.returncode == 0, loaded.stderr[-2000:]
    assert loaded.stdout.strip() == "(1, 3, 40, 50) mean-scale-context"


def test_eval_image_reuses_a_curve_only_when_it_was_measured_with_the_shipped_weights(tmp_path, capsys):
    sys.path.insert(0, str(TOOLS))
    from eval_image import reused_model_file

    from codec.zoo import get_card

    shipped = get_card("ms-hyperprior").sha256
    with pytest.raises(SystemExit, match="no earlier curve"):
        reused_model_file("ms-hyperprior", tmp_path)
    curve = tmp_path / "ms-hyperprior.json"
    curve.write_text(json.dumps({"name": "ms-hyperprior", "weights_sha256": "0" * 64, "results": {}}))
    with pytest.raises(SystemExit, match="measured with weights 000000000000"):
        reused_model_file("ms-hyperprior", tmp_path)
    curve.write_text(json.dumps({"name": "ms-hyperprior", "weights_sha256": shipped, "results": {}}))
    assert reused_model_file("ms-hyperprior", tmp_path) == curve
    curve.write_text(json.dumps({"name": "ms-hyperprior", "results": {}}))  # from before curves recorded it
    assert reused_model_file("ms-hyperprior", tmp_path) == curve and "reused as is" in capsys.readouterr().err
