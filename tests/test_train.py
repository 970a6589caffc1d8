"""The training tool: a few steps, resume, DistributedDataParallel with 2 CPU processes (gloo), export."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
TINY = ["--model", "mean-scale", "--channels", "16", "24", "--batch", "2", "--crop", "64", "--threads", "1",
        "--validate-every", "3", "--lambdas", "0.002", "0.02"]


@pytest.fixture(scope="module")
def photo_folder(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("photos")
    rng = np.random.default_rng(0)
    for index in range(3):
        rows, cols = np.mgrid[0:96, 0:80]
        array = np.stack([rows * 2, cols * 3, (rows + cols)], axis=2) + rng.integers(0, 30, (96, 80, 3))
        Image.fromarray(np.clip(array, 0, 255).astype(np.uint8)).save(folder / f"p{index}.png")
    return folder


def _train(out: Path, photos: Path, steps: int, launcher: list[str], extra: tuple[str, ...] = ()
           ) -> subprocess.CompletedProcess:
    """A tiny training run; `extra` arguments come last, so they override TINY's."""
    env = {**os.environ, "PYTHONWARNINGS": "ignore"}
    command = launcher + [str(ROOT / "tools" / "train_image.py"), *TINY, "--steps", str(steps), "--out", str(out),
                          "--photos", str(photos), *extra]
    return subprocess.run(command, capture_output=True, text=True, env=env, timeout=300)


def _export_run(run: Path, weights: Path) -> dict:
    """A run's checkpoint written as shipped-style safetensors weights (for --init); returns its state dict."""
    import torch
    from safetensors.torch import save_file

    state = torch.load(run / "checkpoint.pt", weights_only=True)["model"]
    save_file({key: value.contiguous() for key, value in state.items()}, str(weights))
    return state


def test_resume_continues_the_global_step_and_learning_rate(tmp_path, photo_folder):
    import torch

    out = tmp_path / "run"
    first = _train(out, photo_folder, 3, [sys.executable], ("--lr", "2e-4"))
    assert first.returncode == 0, first.stderr[-2000:]
    state = torch.load(out / "checkpoint.pt", weights_only=True)
    assert state["step"] == 3 and state["lr_schedule"] == [[0, 2e-4]]
    assert state["optimizer"]["state"]  # Adam moments travel with the run
    second = _train(out, photo_folder, 5, [sys.executable])  # no --lr: the run's own schedule goes on
    assert second.returncode == 0, second.stderr[-2000:]
    assert "resumed from step 3" in second.stdout
    state = torch.load(out / "checkpoint.pt", weights_only=True)
    assert state["step"] == 5 and state["lr_schedule"] == [[0, 2e-4]] and state["cpu_seconds"] > 0
    third = _train(out, photo_folder, 6, [sys.executable], ("--lr", "5e-5"))  # a deliberate drop, recorded
    assert "learning rate 5e-05 from step 5 on (was 0.0002)" in third.stdout
    assert torch.load(out / "checkpoint.pt", weights_only=True)["lr_schedule"] == [[0, 2e-4], [5, 5e-5]]
    records = [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines()]
    assert any("validation" in record for record in records)


def test_resume_can_add_a_rate_level_and_keeps_everything_else(tmp_path, photo_folder):
    import torch

    out = tmp_path / "levels"
    assert _train(out, photo_folder, 3, [sys.executable]).returncode == 0
    before = torch.load(out / "checkpoint.pt", weights_only=True)
    grown = _train(out, photo_folder, 3, [sys.executable], ("--lambdas", "0.002", "0.02", "0.2"))
    assert grown.returncode == 0, grown.stderr[-2000:]
    assert "rate levels [0.002, 0.02] -> [0.002, 0.02, 0.2] from step 3" in grown.stdout
    after = torch.load(out / "checkpoint.pt", weights_only=True)
    assert after["lambdas"] == [0.002, 0.02, 0.2] and after["level_changes"] == [[3, [0.002, 0.02, 0.2]]]
    gains = before["model"]["gains.log_gain"]
    assert torch.equal(after["model"]["gains.log_gain"][:2], gains)  # the trained levels keep their gains
    assert torch.allclose(after["model"]["gains.log_gain"][2], gains[1] + (gains[1] - gains[0]))  # one decade on
    assert torch.equal(after["model"]["g_a.0.weight"], before["model"]["g_a.0.weight"])
    assert after["optimizer"]["state"]  # the other Adam moments carried on
    resumed = _train(out, photo_folder, 4, [sys.executable], ("--lambdas", "0.002", "0.02", "0.2"))
    assert resumed.returncode == 0 and "rate levels" not in resumed.stdout
    assert torch.load(out / "checkpoint.pt", weights_only=True)["step"] == 4


def test_resume_can_add_residual_prediction_which_starts_fresh(tmp_path, photo_folder):
    import torch

    out, context = tmp_path / "run", ("--model", "mean-scale-context")
    assert _train(out, photo_folder, 2, [sys.executable], context).returncode == 0
    resumed = _train(out, photo_folder, 3, [sys.executable], (*context, "--residual-prediction"))
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert "modules new to the run start fresh: latent_codec.y.residual_prediction" in resumed.stdout
    state = torch.load(out / "checkpoint.pt", weights_only=True)
    assert state["step"] == 3 and "latent_codec.y.residual_prediction.net.4.weight" in state["model"]
    assert json.loads((out / "config.json").read_text())["residual_prediction"] is True


def test_new_modules_are_whole_modules_the_checkpoint_lacks():
    sys.path.insert(0, str(ROOT / "tools"))
    from train_image import new_modules

    own = dict.fromkeys(["g_s.0.weight", "latent_codec.y.head.weight", "latent_codec.y.extra.net.0.weight"])
    assert new_modules(own, dict.fromkeys(["g_s.0.weight", "latent_codec.y.head.weight"])) == ["latent_codec.y.extra"]
    assert new_modules(own, dict.fromkeys(own)) == []
    with pytest.raises(SystemExit, match="lacks g_s.0.weight"):  # a tensor missing from a module it has
        new_modules({**own, "g_s.0.bias": None}, dict.fromkeys(["g_s.0.bias", *own][:1] + ["latent_codec.y.head.weight"]))


def test_a_parameter_average_resumes_and_is_what_validation_and_export_see(tmp_path, photo_folder):
    import torch

    sys.path.insert(0, str(ROOT / "tools"))
    from run_model import model_from_run

    out = tmp_path / "run"
    assert _train(out, photo_folder, 2, [sys.executable], ("--lr", "1e-3")).returncode == 0
    started = _train(out, photo_folder, 4, [sys.executable], ("--ema", "0.5"))  # a resume may start one
    assert started.returncode == 0, started.stderr[-2000:]
    assert "parameter average (decay 0.5) from step 2 on" in started.stdout
    state = torch.load(out / "checkpoint.pt", weights_only=True)
    assert state["ema_decay"] == 0.5 and state["ema_from_step"] == 2 and set(state["ema"]) <= set(state["model"])
    name = "g_s.0.weight"
    assert not torch.equal(state["ema"][name], state["model"][name])  # an average, not a copy
    changed = _train(out, photo_folder, 5, [sys.executable], ("--ema", "0.9"))
    assert changed.returncode != 0 and "decay 0.5; it is fixed for the run" in changed.stderr
    assert _train(out, photo_folder, 5, [sys.executable]).returncode == 0  # resumes with the run's average
    state = torch.load(out / "checkpoint.pt", weights_only=True)
    assert state["step"] == 5 and state["ema_from_step"] == 2
    averaged, _ = model_from_run(out)
    raw, _ = model_from_run(out, average=False)
    assert torch.equal(averaged.state_dict()[name], state["ema"][name])
    assert torch.equal(raw.state_dict()[name], state["model"][name])


def test_parameter_average_swaps_in_and_back():
    import torch

    sys.path.insert(0, str(ROOT / "tools"))
    from training import ParameterAverage

    layer = torch.nn.Linear(2, 1)
    with torch.no_grad():
        layer.weight.fill_(1.0)
    average = ParameterAverage(layer, 0.75, from_step=0)
    with torch.no_grad():
        layer.weight.fill_(3.0)
    average.update()  # 0.75 * 1 + 0.25 * 3
    assert torch.allclose(average.state_dict()["weight"], torch.full((1, 2), 1.5))
    with average.swapped_in():
        assert torch.allclose(layer.weight, torch.full((1, 2), 1.5))
    assert torch.allclose(layer.weight, torch.full((1, 2), 3.0))
    with pytest.raises(ValueError):
        ParameterAverage(layer, 1.0, from_step=0)


def test_module_lr_scale_gives_a_faster_group_and_is_kept(tmp_path, photo_folder):
    import torch

    out = tmp_path / "scaled"
    result = _train(out, photo_folder, 2, [sys.executable], ("--module-lr-scale", "gains=10", "--lr", "1e-4"))
    assert result.returncode == 0, result.stderr[-2000:]
    state = torch.load(out / "checkpoint.pt", weights_only=True)
    assert state["module_lr_scale"] == {"gains": 10.0}
    assert sorted(group["scale"] for group in state["optimizer"]["param_groups"]) == [1.0, 10.0]
    bad = _train(tmp_path / "bad", photo_folder, 1, [sys.executable], ("--module-lr-scale", "nothing=3"))
    assert bad.returncode != 0 and "has no module named 'nothing'" in bad.stderr
    changed = _train(out, photo_folder, 3, [sys.executable], ("--module-lr-scale", "gains=5"))
    assert changed.returncode != 0 and "the run trains gains at 10x" in changed.stderr
    added = _train(out, photo_folder, 3, [sys.executable], ("--module-lr-scale", "gains=10", "g_s=3"))
    assert added.returncode == 0 and "module learning-rate factors added: g_s=3" in added.stdout
    state = torch.load(out / "checkpoint.pt", weights_only=True)
    assert state["module_lr_scale"] == {"gains": 10.0, "g_s": 3.0} and state["step"] == 3
    assert sorted(group["scale"] for group in state["optimizer"]["param_groups"]) == [1.0, 3.0, 10.0]


CONTEXT = ("--model", "mean-scale-context", "--context-groups", "4", "4", "8", "8", "--context-hidden", "8",
           "--module-lr-scale", "context=10", "--lr", "1e-4")


def _old_layout(state: dict, shuffle: bool) -> dict:
    """A checkpoint as the trainer wrote it before the latent codec was a module (top-level h_a, h_s,
    entropy_bottleneck, gaussian_conditional, context): with `shuffle` its parameters listed in another order (then
    only their names match the moments), else without names in the optimizer (as runs begun before names were
    saved have them) in the model's order."""
    old = {"latent_codec.y.gaussian_conditional.": "gaussian_conditional.", "latent_codec.y.": "context.",
           "latent_codec.z.entropy_bottleneck.": "entropy_bottleneck.", "latent_codec.": ""}

    def rename(name: str) -> str:
        for new, before in old.items():
            if name.startswith(new):
                return before + name[len(new):]
        return name

    state["model"] = {rename(key): value for key, value in state["model"].items()}
    state["module_lr_scale"] = {"context": 10.0}
    if not shuffle:
        for group in state["optimizer"]["param_groups"]:
            del group["names"]
        return state
    moments = state["optimizer"]["state"]
    shuffled, position = {}, 0
    for group in state["optimizer"]["param_groups"]:
        pairs = list(zip(group["names"], group["params"]))[::-1]  # reversed: only names can match moments now
        group["names"], group["params"] = [rename(n) for n, _ in pairs], list(range(position, position + len(pairs)))
        for (_, index), new_index in zip(pairs, group["params"]):
            if index in moments:
                shuffled[new_index] = moments[index]
        position += len(pairs)
    state["optimizer"]["state"] = shuffled
    return state


def test_a_checkpoint_from_before_latent_codecs_were_modules_resumes_exactly(tmp_path, photo_folder):
    """The same next step from a checkpoint in today's layout and from that checkpoint in the old names and
    parameter order: weights, learning-rate factors and Adam moments are all matched by name."""
    import shutil

    import torch

    today = tmp_path / "today"
    first = _train(today, photo_folder, 2, [sys.executable], CONTEXT)
    assert first.returncode == 0, first.stderr[-2000:]
    assert torch.load(today / "checkpoint.pt", weights_only=True)["module_lr_scale"] == {"latent_codec.y": 10.0}
    runs = [today, tmp_path / "shuffled", tmp_path / "nameless"]
    for run, shuffle in zip(runs[1:], (True, False)):
        shutil.copytree(today, run)
        torch.save(_old_layout(torch.load(run / "checkpoint.pt", weights_only=True), shuffle), run / "checkpoint.pt")
    for run in runs:
        result = _train(run, photo_folder, 3, [sys.executable], CONTEXT)
        assert result.returncode == 0 and "resumed from step 2" in result.stdout, result.stderr[-2000:]
    one, *others = (torch.load(run / "checkpoint.pt", weights_only=True) for run in runs)
    for other in others:
        assert one["model"].keys() == other["model"].keys()
        assert all(torch.equal(one["model"][key], other["model"][key]) for key in one["model"])
        assert other["module_lr_scale"] == {"latent_codec.y": 10.0}
        assert all("names" in group for group in other["optimizer"]["param_groups"])


def test_learning_rate_is_a_function_of_the_global_step():
    sys.path.insert(0, str(ROOT / "tools"))
    from train_image import extend_schedule, learning_rate

    schedule = [[0, 1e-4], [1000, 3e-5]]
    assert learning_rate(0, schedule, warmup=10) == pytest.approx(1e-5)
    assert learning_rate(999, schedule, warmup=10) == 1e-4
    assert learning_rate(1000, schedule, warmup=10) == 3e-5  # no warm-up again later in the model's life
    assert extend_schedule(schedule, 2000, 3e-5) is schedule
    assert extend_schedule(schedule, 2000, 1e-5) == [*schedule, [2000, 1e-5]]


def test_sigterm_leaves_a_loadable_checkpoint(tmp_path, photo_folder):
    import signal
    import time

    import torch

    out = tmp_path / "stopped"
    env = {**os.environ, "PYTHONWARNINGS": "ignore"}
    command = [sys.executable, str(ROOT / "tools" / "train_image.py"), *TINY, "--out", str(out),
               "--photos", str(photo_folder)]  # no --steps: runs until stopped
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    deadline = time.time() + 120
    while not (out / "config.json").exists() and time.time() < deadline and process.poll() is None:
        time.sleep(0.2)
    time.sleep(1.0)
    process.send_signal(signal.SIGTERM)
    stdout, stderr = process.communicate(timeout=120)
    assert process.returncode == 0, stderr[-2000:]
    assert "stop requested" in stdout
    state = torch.load(out / "checkpoint.pt", weights_only=True)
    assert state["step"] >= 0 and state["model"]
    resumed = _train(out, photo_folder, state["step"] + 1, [sys.executable])
    assert resumed.returncode == 0 and f"resumed from step {state['step']}" in resumed.stdout


def test_runs_live_outside_the_work_tree_by_default(tmp_path, photo_folder):
    import torch

    result = subprocess.run([sys.executable, str(ROOT / "tools" / "train_image.py"), *TINY, "--steps", "1",
                             "--photos", str(photo_folder), "--runs-dir", str(tmp_path / "runs"), "--name", "tiny"],
                            capture_output=True, text=True, timeout=300, env={**os.environ, "PYTHONWARNINGS": "ignore"})
    assert result.returncode == 0, result.stderr[-2000:]
    assert torch.load(tmp_path / "runs" / "tiny" / "checkpoint.pt", weights_only=True)["step"] == 1


def test_distributed_two_cpu_processes(tmp_path, photo_folder):
    out = tmp_path / "ddp"
    launcher = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2"]
    result = _train(out, photo_folder, 3, launcher)
    assert result.returncode == 0, result.stderr[-3000:]
    config = json.loads((out / "config.json").read_text())
    assert config["world_size"] == 2
    import torch

    state = torch.load(out / "checkpoint.pt", weights_only=True)
    assert state["step"] == 3


def test_training_can_start_from_shipped_style_weights(tmp_path, photo_folder):
    out = tmp_path / "first"
    assert _train(out, photo_folder, 2, [sys.executable]).returncode == 0
    _export_run(out, tmp_path / "w.safetensors")
    result = _train(tmp_path / "second", photo_folder, 1, [sys.executable], ("--init", str(tmp_path / "w.safetensors")))
    assert result.returncode == 0, result.stderr[-2000:]
    assert "initialised from" in result.stdout


def test_restarting_from_the_shipped_model_of_the_same_name_continues_its_card():
    """On a machine without the run folder, --init from the shipped weights of the run's own model carries on the
    card's global step, CPU hours, learning-rate schedule and level changes; other weights (or another
    --init-step) start their own schedule."""
    sys.path.insert(0, str(ROOT / "tools"))
    from train_image import card_continuation

    training = {"global_step": 43833, "cpu_hours": 10.5, "lr_schedule": [[0, 3e-5], [32391, 7.5e-6]],
                "level_changes": [[15622, [0.001, 0.01]]]}
    record = {"sha256": "ab", "model": "mean-scale-context", "training": training}
    continued = card_continuation(record, "mean-scale-context", None)
    assert continued == {"step": 43833, "cpu_seconds": 37800.0, "lr_schedule": [[0, 3e-5], [32391, 7.5e-6]],
                         "level_changes": [[15622, [0.001, 0.01]]]}
    assert card_continuation(record, "mean-scale-context", 43833) == continued
    assert card_continuation(record, "mean-scale-context", 100) is None
    assert card_continuation(record, "another-run", None) is None
    assert card_continuation({"sha256": "cd"}, "mean-scale-context", None) is None
    assert card_continuation(None, "mean-scale-context", None) is None


def test_an_export_of_a_continued_card_adds_its_wall_time_and_resumes():
    sys.path.insert(0, str(ROOT / "tools"))
    from export_weights import carry_card_totals

    training = {"global_step": 60000, "wall_time_hours": 2.0, "resumes": 1}
    carry_card_totals(training, {"global_step": 43833, "wall_time_hours": 6.457, "resumes": 11})
    assert training == {"global_step": 60000, "wall_time_hours": 8.457, "resumes": 13}


def test_init_can_add_a_rate_level_with_interpolated_gains():
    import torch

    sys.path.insert(0, str(ROOT / "tools"))
    from train_image import remap_gain_levels

    weights = {"gains.log_gain": torch.tensor([[0.0, 1.0], [2.0, 3.0]]),
               "gains.log_inverse_gain": torch.tensor([[0.0, -1.0], [-2.0, -3.0]]), "other": torch.ones(1)}
    remapped = remap_gain_levels(weights, [0.01, 0.04], [0.005, 0.01, 0.02, 0.04])
    torch.testing.assert_close(remapped["gains.log_gain"], torch.tensor([[-1.0, 0.0], [0.0, 1.0], [1.0, 2.0], [2.0, 3.0]]))
    assert remapped["other"] is weights["other"]
    assert remap_gain_levels(weights, [0.01, 0.04], [0.01, 0.04]) is weights


def test_mgm_training_records_the_coarse_level_options(tmp_path, photo_folder):
    import torch

    out = tmp_path / "mgm"
    result = _train(out, photo_folder, 2, [sys.executable],
                    ("--model", "mgm", "--groups", "1", "2", "--residual", "--hyper-codewords", "4",
                     "--hyper-groups", "2", "--coarse-probe"))
    assert result.returncode == 0, result.stderr[-2000:]
    config = json.loads((out / "config.json").read_text())
    assert (config["hyper_codewords"], config["hyper_groups"], config["coarse_probe"]) == (4, 2, True)
    state = torch.load(out / "checkpoint.pt", weights_only=True)["model"]
    assert state["latent_codec.coarse.codebooks"].shape[:2] == (2, 4)
    assert "latent_codec.coarse_probe.1.weight" in state


def test_train_only_g_s_gives_a_narrower_decoder_and_leaves_the_encoder_untouched(tmp_path, photo_folder):
    import torch

    mgm = ("--model", "mgm", "--groups", "1", "2", "--residual", "--hyper-codewords", "4", "--hyper-groups", "2")
    first = tmp_path / "wide"
    assert _train(first, photo_folder, 2, [sys.executable], mgm).returncode == 0
    wide = _export_run(first, tmp_path / "wide.safetensors")
    out = tmp_path / "narrow"
    result = _train(out, photo_folder, 3, [sys.executable],
                    (*mgm, "--synthesis-widths", "16", "16", "8", "--train-only", "g_s",
                     "--init", str(tmp_path / "wide.safetensors")))
    assert result.returncode == 0, result.stderr[-2000:]
    narrow = torch.load(out / "checkpoint.pt", weights_only=True)["model"]
    assert narrow["g_s.4.weight"].shape[:2] == (16, 8)  # transposed conv: [in, out, k, k]
    assert not torch.equal(narrow["g_s.0.weight"], wide["g_s.0.weight"])  # g_s trained from the wide g_s
    untouched = [key for key in wide if not key.startswith("g_s.")]
    assert untouched and all(torch.equal(narrow[key], wide[key]) for key in untouched)  # codebooks, counts, g_a
    assert json.loads((out / "config.json").read_text())["synthesis_widths"] == [16, 16, 8]


def test_train_only_names_a_module_of_the_model(tmp_path, photo_folder):
    result = _train(tmp_path / "bad", photo_folder, 1, [sys.executable], ("--train-only", "no_such_module"))
    assert result.returncode != 0 and "no module named 'no_such_module'" in result.stderr


def test_init_takes_the_centre_taps_of_a_larger_kernel():
    import torch

    sys.path.insert(0, str(ROOT / "tools"))
    from train_image import centre_taps

    from codec.image.transforms import synthesis_transform

    weight = torch.arange(2 * 3 * 25, dtype=torch.float32).view(2, 3, 5, 5)
    torch.testing.assert_close(centre_taps(weight, torch.Size((2, 3, 3, 3))), weight[:, :, 1:4, 1:4])
    assert centre_taps(weight, torch.Size((2, 4, 3, 3))) is weight  # other channels: not a crop, left alone
    assert centre_taps(weight, torch.Size((2, 3, 4, 4))) is weight  # even difference only
    wide, small = synthesis_transform(8, 12), synthesis_transform(8, 12, kernels=(5, 5, 3, 3))
    small.load_state_dict({key: centre_taps(value, small.state_dict()[key].shape)
                           for key, value in wide.state_dict().items()})
    y = torch.randn(1, 12, 3, 4)
    assert small(y).shape == wide(y).shape == (1, 3, 48, 64)
    with pytest.raises(ValueError, match="odd kernel"):
        synthesis_transform(8, 12, kernels=(5, 5, 4, 3))


def test_init_widens_narrower_weights_without_changing_what_the_model_computes():
    import argparse

    import torch

    sys.path.insert(0, str(ROOT / "tools"))
    from train_image import image_weights_adapter, widen

    from codec.registry import create_model

    torch.manual_seed(0)
    lambdas = (0.001, 0.01)
    narrow = create_model("mean-scale-context", lambdas=lambdas, n=8, m=12, groups=(6, 6), context_hidden=8)
    wide = create_model("mean-scale-context", lambdas=lambdas, n=8, m=12, groups=(6, 6), context_hidden=8,
                        analysis_widths=(12, 12, 16), synthesis_widths=(16, 12, 10))
    adapt = image_weights_adapter(argparse.Namespace(init_lambdas=None, lambdas=list(lambdas)), wide)
    adapted = adapt(narrow.state_dict(), wide.state_dict())
    assert all(adapted[key].shape == value.shape for key, value in wide.state_dict().items())
    wide.load_state_dict(adapted)
    assert adapted["g_s.2.weight"].shape[:2] == (16, 12)  # transposed: [in, out, k, k]
    assert not adapted["g_s.2.weight"][8:, :8].any() and adapted["g_s.2.weight"][:, 8:].any()
    narrow.eval(), wide.eval()
    x, level = torch.rand(1, 3, 64, 64), torch.tensor([1.0])
    with torch.no_grad():
        before, after = narrow(x, level), wide(x, level)
    torch.testing.assert_close(after["x_hat"], before["x_hat"], rtol=0, atol=1e-5)
    for name in before["likelihoods"]:
        torch.testing.assert_close(after["likelihoods"][name], before["likelihoods"][name], rtol=0, atol=1e-6)
    kernel = torch.ones(2, 3, 5, 5)
    assert widen(kernel, torch.zeros(2, 3, 3, 3), False) is kernel  # another kernel size: not a widening
    assert widen(kernel, torch.zeros(1, 4, 5, 5), False) is kernel  # narrower in one dimension: left alone
    with pytest.raises(ValueError, match="three positive hidden widths"):
        create_model("mean-scale-context", lambdas=lambdas, n=8, m=12, groups=(6, 6), analysis_widths=(8, 8))


def test_a_share_of_crops_comes_from_the_extra_photos_and_none_without_it(photo_folder):
    import torch

    sys.path.insert(0, str(ROOT / "tools"))
    from train_image import CropSampler

    photos = sorted(photo_folder.glob("*.png"))
    extra = np.full((5, 70, 70, 3), 255, dtype=np.uint8)  # white: photo_folder's photos never are
    mixed = CropSampler(photos, 64, seed=1, extra=extra, extra_share=0.5).batch(200)
    white = (mixed == 1.0).flatten(1).all(1)
    assert 60 < int(white.sum()) < 140
    plain, with_nothing = (CropSampler(photos, 64, seed=1, extra=e, extra_share=s).batch(20)
                           for e, s in ((None, 0.0), (extra, 0.0)))
    assert torch.equal(plain, with_nothing)  # share 0: the same crops as a run without the option


def test_imagenette_crops_need_a_crop_that_fits_them(tmp_path, photo_folder):
    result = _train(tmp_path / "big", photo_folder, 1, [sys.executable], ("--imagenette-share", "0.5", "--crop", "256"))
    assert result.returncode != 0 and "--crop <= 160" in result.stderr


def test_an_empty_module_name_is_refused(tmp_path, photo_folder):
    for option in (("--module-lr-scale", "=10"), ("--train-only", "")):
        result = _train(tmp_path / "bad", photo_folder, 1, [sys.executable], option)
        assert result.returncode != 0 and "a module name is needed" in result.stderr


@pytest.mark.skipif(not any(__import__("shutil").which(cc) for cc in ("c++", "g++", "clang++")),
                    reason="torch.compile on CPU needs a C++ compiler")
def test_compiled_transforms_train_and_keep_the_state_dict_names(tmp_path, photo_folder):
    import torch

    out = tmp_path / "compiled"
    result = _train(out, photo_folder, 2, [sys.executable], ("--compile",))
    assert result.returncode == 0, result.stderr[-2000:]
    state = torch.load(out / "checkpoint.pt", weights_only=True)["model"]
    assert "g_a.0.weight" in state and not any("_orig_mod" in key for key in state)
    assert all(torch.isfinite(value).all() for value in state.values() if value.is_floating_point())


def test_coded_rate_trains_the_decoder_side_on_coded_bits_and_leaves_the_encoder_untouched(tmp_path, photo_folder):
    import torch

    first = tmp_path / "soft"
    assert _train(first, photo_folder, 2, [sys.executable]).returncode == 0
    soft = _export_run(first, tmp_path / "soft.safetensors")
    decoder = ("g_s", "latent_codec.h_s", "latent_codec.z", "latent_codec.y")
    out = tmp_path / "hard"
    result = _train(out, photo_folder, 3, [sys.executable],
                    ("--coded-rate", "--train-only", *decoder, "--init", str(tmp_path / "soft.safetensors")))
    assert result.returncode == 0, result.stderr[-2000:]
    hard = torch.load(out / "checkpoint.pt", weights_only=True)["model"]
    assert not torch.equal(hard["g_s.0.weight"], soft["g_s.0.weight"])
    encoder = [key for key in soft if key.startswith(("g_a.", "latent_codec.h_a.", "gains."))]
    assert encoder and all(torch.equal(hard[key], soft[key]) for key in encoder)


def test_coded_rate_refuses_to_train_the_encoder(tmp_path, photo_folder):
    for extra in (("--coded-rate",), ("--coded-rate", "--train-only", "g_s", "g_a"),
                  ("--coded-rate", "--train-only", "latent_codec")):
        result = _train(tmp_path / "bad", photo_folder, 1, [sys.executable], extra)
        assert result.returncode != 0 and "--coded-rate needs --train-only" in result.stderr, extra


def test_coded_rate_forward_counts_the_bits_the_latent_codec_estimates():
    import torch
    from codec.registry import create_model

    torch.manual_seed(0)
    model = create_model("mean-scale", lambdas=(0.002, 0.02), n=16, m=24).train()
    x = torch.rand(2, 3, 64, 64)
    model.coded_rate = True
    output = model(x, torch.tensor([0.0, 1.0]))
    assert "likelihoods" not in output and output["bits"].shape == (2,)
    gain, _ = model.gains(torch.tensor([0.0, 1.0]))
    _, bits = model.latent_codec.estimate(model.analysis(x) * gain)
    assert torch.allclose(output["bits"].sum(), bits)
    output["bits"].sum().backward()
    assert model.latent_codec.h_s[0].weight.grad is not None  # the entropy parameters learn from the coded rate


def test_training_refuses_to_drop_the_debian_photos_silently(monkeypatch):
    """A machine without tools/install_training_photos.sh's packages would train a long run on a smaller set."""
    import argparse

    sys.path.insert(0, str(ROOT / "tools"))
    import train_image

    monkeypatch.setattr(train_image, "missing_debian_photos", lambda: ["/usr/share/backgrounds/mate/nature/*.jpg"])
    args = argparse.Namespace(photos=None, without_debian_photos=False)
    with pytest.raises(SystemExit, match="install_training_photos.sh"):
        train_image.photo_lists(args)
    args.without_debian_photos = True
    train_photos, validation = train_image.photo_lists(args)  # the opt-out trains on what there is
    assert isinstance(train_photos, list) and isinstance(validation, list)



def test_widened_lr_scale_moves_only_the_added_elements_further(tmp_path):
    import torch
    from safetensors.torch import save_file

    sys.path.insert(0, str(ROOT / "tools"))
    from train_image import WidenedStep

    from codec.image.transforms import synthesis_transform

    narrow, wide = synthesis_transform(8, 12), synthesis_transform(8, 12, widths=(16, 8, 8))
    save_file({key: value.contiguous() for key, value in narrow.state_dict().items()}, str(tmp_path / "narrow.st"))
    widened = WidenedStep(wide, tmp_path / "narrow.st", 4.0)
    assert {id(parameter) for parameter, _ in widened.parameters} == {
        id(wide.get_parameter(name)) for name in ("0.weight", "0.bias", "1.beta", "1.gamma", "2.weight")}
    before = {name: parameter.detach().clone() for name, parameter in wide.named_parameters()}
    optimizer = torch.optim.SGD(wide.parameters(), lr=0.1)
    wide(torch.randn(1, 12, 2, 2)).square().mean().backward()
    widened.step(optimizer)
    grads = {name: parameter.grad for name, parameter in wide.named_parameters()}
    moved = {name: before[name] - parameter.detach() for name, parameter in wide.named_parameters()}
    torch.testing.assert_close(moved["0.weight"][:, :8], 0.1 * grads["0.weight"][:, :8])  # trained: plain step
    torch.testing.assert_close(moved["0.weight"][:, 8:], 0.4 * grads["0.weight"][:, 8:])  # added: 4x
    torch.testing.assert_close(moved["4.weight"], 0.1 * grads["4.weight"])  # not widened at all


def test_widened_from_finds_the_added_elements_when_init_is_already_wide(tmp_path, photo_folder):
    wider = ("--analysis-widths", "24", "16", "16")
    assert _train(tmp_path / "narrow", photo_folder, 1, [sys.executable]).returncode == 0
    narrow = tmp_path / "narrow.safetensors"
    _export_run(tmp_path / "narrow", narrow)
    assert _train(tmp_path / "wide", photo_folder, 1, [sys.executable], ("--init", str(narrow), *wider)).returncode == 0
    wide = tmp_path / "wide.safetensors"
    _export_run(tmp_path / "wide", wide)
    scaled = ("--init", str(wide), *wider, "--widened-lr-scale", "3")
    alone = _train(tmp_path / "alone", photo_folder, 1, [sys.executable], scaled)
    assert alone.returncode == 0 and "no tensor of" in alone.stdout
    told = _train(tmp_path / "told", photo_folder, 1, [sys.executable], (*scaled, "--widened-from", str(narrow)))
    assert told.returncode == 0, told.stderr[-2000:]
    assert "widened tensors: their new elements at 3x" in told.stdout
