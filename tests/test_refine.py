"""Encoder-side latent refinement (codec.image.refine): lower measured cost, the same decoder, clear refusals."""
from __future__ import annotations

import io
import math

import numpy as np
import pytest
import torch
from PIL import Image

from codec.api import decode_image, encode_image, prepared_model
from codec.cli import main
from codec.errors import CodecError
from codec.image.refine import level_lambda, rd_cost, refine_latent
from codec.imageio import from_pil

MODEL = "mean-scale-context"


@pytest.fixture(scope="module")
def picture() -> Image.Image:
    rows, cols = np.mgrid[0:64, 0:96]
    array = np.stack([128 + 90 * np.sin(rows / 7), 128 + 90 * np.cos(cols / 9), 60 + rows + cols], axis=2)
    return Image.fromarray(array.astype(np.uint8))


@pytest.fixture(scope="module")
def model():
    from codec.zoo import model_cards

    if MODEL not in model_cards():
        pytest.skip(f"no shipped {MODEL} model in models/")
    return prepared_model(MODEL)[0]


def test_level_lambda_is_each_level_lambda_and_geometric_between():
    lambdas = (0.001, 0.004, 0.016)
    assert [level_lambda(lambdas, q) for q in (0, 1, 2)] == pytest.approx(lambdas)
    assert level_lambda(lambdas, 0.5) == pytest.approx(0.002)
    assert level_lambda(lambdas, 1.5) == pytest.approx(0.008)


@pytest.mark.parametrize("name", ["ms-hyperprior", MODEL])
def test_estimated_bits_match_the_coded_streams(name, picture):
    network = prepared_model(name)[0]
    x = from_pil(picture).pixels
    quality = 4.0
    gain, _ = network.gains(network.quality_tensor(quality))
    with torch.no_grad():
        _, bits = network.latent_codec.estimate(network.analysis(network.pad(x)) * gain)
    coded = sum(len(section) for section in network.compress(x, quality).sections) * 8
    assert bits.item() == pytest.approx(coded, rel=0.1)


def test_refinement_lowers_the_measured_cost(model, picture):
    x = from_pil(picture).pixels
    quality = 3.0
    gain, inverse_gain = model.gains(model.quality_tensor(quality))
    weight = level_lambda(model.lambdas, quality) * 255**2
    with torch.no_grad():
        start = model.analysis(model.pad(x)) * gain
        before = float(rd_cost(model, start, x, inverse_gain, weight))
        refined = refine_latent(model, x, quality, steps=40)
        after = float(rd_cost(model, refined, x, inverse_gain, weight))
    assert refined.shape == start.shape
    assert after < before


def test_refined_files_decode_with_the_same_decoder(model, picture):
    plain = encode_image(picture, MODEL, 3.0)
    assert encode_image(picture, MODEL, 3.0, refine_steps=0) == plain
    refined = encode_image(picture, MODEL, 3.0, refine_steps=10)  # g_a's latent where no step measured better
    decoded = decode_image(refined)
    assert decoded.size == picture.size
    error = np.asarray(decoded, np.float64) - np.asarray(picture, np.float64)
    assert 10 * math.log10(255**2 / np.mean(error**2)) > 25


def test_refinement_refusals_are_codec_errors(picture):
    with pytest.raises(CodecError, match="not available"):
        encode_image(picture, "mgm", 2.0, refine_steps=3)
    with pytest.raises(CodecError, match=">= 0"):
        encode_image(picture, MODEL, 2.0, refine_steps=-1)


def test_cli_refine_round_trip_and_refusals(model, picture, tmp_path, capsys):
    source, output = tmp_path / "in.png", tmp_path / "out.bin"
    picture.save(source)
    assert main(["encode", str(source), "-o", str(output), "--refine", "5"]) == 0
    assert decode_image(output.read_bytes()).size == picture.size
    assert main(["encode", str(source), "-o", str(tmp_path / "t.bin"), "--refine", "5", "--target-bpp", "1"]) != 0
    assert "cannot be combined" in capsys.readouterr().err
    assert not (tmp_path / "t.bin").exists()
    with pytest.raises(SystemExit) as stopped:
        main(["encode", str(source), "-o", str(tmp_path / "n.bin"), "--refine", "-3"])
    assert stopped.value.code == 2
    assert main(["encode", str(source), "-o", str(tmp_path / "m.bin"), "--refine", "5", "--model", "mgm"]) != 0
    assert "not available" in capsys.readouterr().err
    assert not (tmp_path / "m.bin").exists()
