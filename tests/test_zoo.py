"""Shipped weights: sha256 against the model card, refusal of tampered files, unknown names."""
from __future__ import annotations

import shutil

import pytest

from codec import zoo
from codec.errors import CodecError


@pytest.fixture()
def private_zoo(tmp_path, monkeypatch, shipped_model_name):
    """A copy of the shipped card and weights under a temporary project root."""
    card = zoo.get_card(shipped_model_name)
    (tmp_path / "models").mkdir()
    (tmp_path / "weights").mkdir()
    shutil.copy(zoo.PROJECT_ROOT / "models" / f"{shipped_model_name}.toml", tmp_path / "models")
    shutil.copy(card.weights_path, tmp_path / "weights")
    monkeypatch.setattr(zoo, "PROJECT_ROOT", tmp_path)
    zoo.load_model.cache_clear()
    yield tmp_path / "weights" / card.weights
    zoo.load_model.cache_clear()


def test_shipped_weights_load_and_match_their_card(private_zoo, shipped_model_name):
    model, card = zoo.load_model(shipped_model_name)
    assert zoo.sha256_of(private_zoo) == card.sha256
    assert model.tables and not model.training


def test_tampered_weights_are_refused(private_zoo, shipped_model_name):
    data = bytearray(private_zoo.read_bytes())
    data[len(data) // 2] ^= 0x01
    private_zoo.write_bytes(bytes(data))
    with pytest.raises(CodecError, match="does not match its model card"):
        zoo.load_model(shipped_model_name)


def test_missing_weights_are_reported(private_zoo, shipped_model_name):
    private_zoo.unlink()
    with pytest.raises(CodecError, match="missing"):
        zoo.load_model(shipped_model_name)


def test_unknown_model_lists_the_shipped_ones(shipped_model_name):
    with pytest.raises(CodecError, match=shipped_model_name):
        zoo.get_card("no-such-model")


def test_float16_storage_halves_the_file_and_loads_as_float32(tmp_path):
    import torch
    from safetensors.torch import load_file

    from codec.split.student import CifarEntropicStudent

    torch.manual_seed(0)
    student = CifarEntropicStudent(latent=8, hidden=16).eval()
    student.update()
    full, half = tmp_path / "full.safetensors", tmp_path / "half.safetensors"
    zoo.save_weights(student, full)
    zoo.save_weights(student, half, storage_dtype=torch.float16)
    assert half.stat().st_size < 0.6 * full.stat().st_size
    loaded = zoo.build_model("entropic-student-cifar", {"latent": 8, "hidden": 16}, load_file(str(half)))
    weight = loaded.encoder[0].weight
    assert weight.dtype == torch.float32
    torch.testing.assert_close(weight, student.encoder[0].weight.half().float(), rtol=0, atol=0)
    assert loaded.tables["y"].to_tensors("y").keys() == student.tables["y"].to_tensors("y").keys()
    for key, value in student.tables["y"].to_tensors("y").items():
        assert torch.equal(loaded.tables["y"].to_tensors("y")[key], value)
