"""Image models: registry, round trips for every family, and decodability across threads, batches and precision."""
from __future__ import annotations

import hashlib
import subprocess
import sys
from contextlib import contextmanager

import numpy as np
import pytest
import torch

from codec.errors import CodecError
from codec.registry import family_names
from codec.registry import create_model


@contextmanager
def threads(count: int):
    previous = torch.get_num_threads()
    torch.set_num_threads(count)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


def test_unknown_family_raises_with_the_known_names():
    with pytest.raises(CodecError, match="known: entropic-student-cifar, entropic-student-efficientnet, factorized, hyperprior, mean-scale"):
        create_model("nope", lambdas=(0.01,))


@pytest.mark.parametrize("family", family_names("image"))
def test_compress_decompress_round_trip_any_size(tiny_models, photo, family):
    model = tiny_models[family]
    for quality in (0.0, 1.3, 2.0):
        streams = model.compress(photo, quality)
        x_hat = model.decompress(streams, quality, 70, 90)
        assert x_hat.shape == photo.shape
        # decoding the same streams again gives the same pixels
        assert torch.equal(x_hat, model.decompress(streams, quality, 70, 90))


@pytest.mark.parametrize("family", family_names("image"))
def test_training_forward_gives_likelihoods_and_gradients(family):
    model = create_model(family, lambdas=(0.01, 0.02), n=16, m=24)
    x = torch.rand(2, 3, 64, 64)
    out = model(x, torch.tensor([0.0, 1.0]))
    assert out["x_hat"].shape == x.shape
    bits = out["bits"].sum() if "bits" in out else sum(-torch.log2(lik).sum() for lik in out["likelihoods"].values())
    (bits + out["x_hat"].sum()).backward()
    assert model.g_a[0].weight.grad is not None and torch.isfinite(model.g_a[0].weight.grad).all()


def test_quality_out_of_range_is_refused(tiny_models, photo):
    with pytest.raises(CodecError, match="quality"):
        tiny_models["mean-scale"].compress(photo, 7.0)


def test_wrong_latent_shapes_are_refused(tiny_models, photo):
    model = tiny_models["hyperprior"]
    streams = model.compress(photo, 1.0)
    with pytest.raises(CodecError, match="shapes"):
        model.decompress(streams, 1.0, 140, 90)


def test_higher_quality_spends_more_bits(shipped_model_name, photo):
    from codec.zoo import load_model

    model, _ = load_model(shipped_model_name)
    sizes = [sum(map(len, model.compress(photo, q).sections)) for q in (0.0, 2.5, 5.0)]
    assert sizes[0] < sizes[1] < sizes[2]


# --- determinism: what feeds the coder is bit-identical; pixels identical on one machine -----------------------

def _z_batch(model, seed: int = 0, batch: int = 4) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    symbols = torch.randint(-6, 7, (batch, model.n, 5, 7), generator=generator).float()
    return symbols + model.table_tensors["z_medians"].view(1, -1, 1, 1)


def _digest(*tensors: torch.Tensor) -> str:
    digest = hashlib.sha256()
    for tensor in tensors:
        digest.update(tensor.contiguous().numpy().tobytes())
    return digest.hexdigest()


@pytest.mark.parametrize("family", ["hyperprior", "mean-scale"])
def test_entropy_parameters_identical_across_threads_and_batch(tiny_models, family):
    model = tiny_models[family]
    z_hat = _z_batch(model)
    with threads(1):
        single = [model.latent_codec.entropy_parameters(z_hat[i : i + 1]) for i in range(len(z_hat))]
    with threads(2):
        batched = model.latent_codec.entropy_parameters(z_hat)
    for i, (indices, means) in enumerate(single):
        assert torch.equal(indices[0], batched[0][i])
        assert torch.equal(means[0], batched[1][i])


def test_entropy_parameters_identical_in_a_separate_process(shipped_model_name):
    from codec.zoo import load_model

    model, _ = load_model(shipped_model_name)
    here = _digest(*model.latent_codec.entropy_parameters(_z_batch(model, seed=5, batch=2)))
    script = (
        "import torch, sys; sys.path.insert(0, 'tests'); torch.set_num_threads(1)\n"
        "from test_models import _z_batch, _digest\n"
        "from codec.zoo import load_model\n"
        f"model, _ = load_model({shipped_model_name!r})\n"
        "print(_digest(*model.latent_codec.entropy_parameters(_z_batch(model, seed=5, batch=2))))\n"
    )
    other = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True)
    assert other.stdout.strip() == here


def test_bf16_encoder_and_fp32_decoder_interoperate(private_shipped_model, photo):
    model = private_shipped_model
    results = {}
    for encode_fast in (False, True):
        model.set_fast_transforms(encode_fast)
        streams = model.compress(photo, 3.0)
        for decode_fast in (False, True):
            model.set_fast_transforms(decode_fast)
            x_hat = model.decompress(streams, 3.0, 70, 90)
            results[encode_fast, decode_fast] = float(-10 * torch.log10((x_hat - photo).pow(2).mean()))
    reference = results[False, False]
    for psnr in results.values():
        assert abs(psnr - reference) < 0.5  # a wrong probability table would give noise, tens of dB lower


@pytest.mark.parametrize("fast", [False, True])
def test_pixels_identical_at_any_thread_count(private_shipped_model, photo, fast):
    model = private_shipped_model
    model.set_fast_transforms(fast)
    streams = model.compress(photo, 2.0)
    decoded = []
    for count in (1, 2):
        with threads(count):
            decoded.append(model.decompress(streams, 2.0, 70, 90))
    assert torch.equal(decoded[0], decoded[1])
    with threads(1):
        again = model.compress(photo, 2.0)
    assert again.sections == streams.sections


def test_exact_hyper_synthesis_is_close_to_float(tiny_models):
    model = tiny_models["mean-scale"]
    z_hat = _z_batch(model, batch=1)
    exact = model.latent_codec._exact_h_s(z_hat)
    with torch.no_grad():
        floating = model.latent_codec.h_s(z_hat).double()
    assert torch.allclose(exact, floating, atol=0.05 * float(floating.abs().max()) + 1e-3)
    assert np.isfinite(exact.numpy()).all()


def test_tiled_coding_matches_untiled(private_shipped_model):
    """Large images run g_a / g_s tile by tile; with the halo the result is the untiled one (no seams)."""
    model = private_shipped_model
    rows, cols = np.mgrid[0:200, 0:330].astype(np.float32)
    picture = torch.from_numpy(np.stack([0.5 + 0.4 * np.sin(rows / 7 + cols / 13), (rows * cols % 97) / 97,
                                         0.5 + 0.3 * np.cos(cols / 5)]))[None]
    model.tile_threshold = 1 << 40
    streams = model.compress(picture, 2.0)
    untiled = model.decompress(streams, 2.0, 200, 330)
    model.tile_threshold, model.analysis_tile = 0, 128  # force 128-pixel tiles
    tiled_streams = model.compress(picture, 2.0)
    tiled = model.decompress(streams, 2.0, 200, 330)
    assert torch.equal(tiled, model.decompress(streams, 2.0, 200, 330))  # the tiling is deterministic

    def psnr(x):
        return float(-10 * torch.log10((x - picture).pow(2).mean()))

    assert abs(psnr(tiled) - psnr(untiled)) < 0.01
    assert (tiled - untiled).abs().max() < 0.02
    assert sum(map(len, tiled_streams.sections)) == pytest.approx(sum(map(len, streams.sections)), rel=0.01)


@pytest.mark.parametrize("family", ["hyperprior", "mean-scale"])
def test_tiled_exact_entropy_parameters_are_identical(tiny_models, family):
    """Large images evaluate h_s in tiles: exact arithmetic makes every index and mean the same as untiled."""
    model = tiny_models[family]
    z_hat = _z_batch(model, batch=1)
    z_hat = torch.cat([z_hat] * 3, dim=-1)  # wider than one tile below
    whole = model.latent_codec.entropy_parameters(z_hat)
    try:
        model.latent_codec.exact_tile, model.latent_codec.exact_halo = 2, 4
        pieces = model.latent_codec.entropy_parameters(z_hat)
    finally:
        del model.latent_codec.exact_tile, model.latent_codec.exact_halo
    assert torch.equal(whole[0], pieces[0]) and torch.equal(whole[1], pieces[1])
