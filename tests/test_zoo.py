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
