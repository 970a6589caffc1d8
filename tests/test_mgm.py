"""The multi-codebook (vector-quantized) prior: codebooks, tables, coding, refusal of damaged indices."""
from __future__ import annotations

import pytest
import torch

from codec.errors import CodecError
from codec.entropy.streams import LatentStreams
from codec.entropy.cascade import parent_codes
from codec.image.mgm import MultiCodebookModel
from codec.nn import product_quantizer
from codec.nn.product_quantizer import LOG2, ProductQuantizer


def _model(residual: bool = False) -> MultiCodebookModel:
    torch.manual_seed(0)
    return MultiCodebookModel((0.002, 0.01), n=16, m=24, groups=(2, 4), codewords=16, hyper_channels=8,
                              hyper_groups=2, hyper_codewords=8, residual=residual)


def test_quantizer_picks_the_nearest_codeword_and_revives_dead_ones():
    torch.manual_seed(0)
    quantizer = ProductQuantizer(groups=2, codewords=4, channels=4)
    y = torch.randn(2, 4, 5, 6)
    quantizer(y)  # first call seeds the codebooks from the data
    indices = quantizer.quantize(y)
    distances = quantizer.distances(y)
    assert torch.equal(indices, distances.argmin(2))
    assert quantizer.dequantize(indices).shape == y.shape
    quantizer.codebooks.data[0, 3] = 1e6  # a codeword nothing is near
    for _ in range(400):
        quantizer(y)
    assert (quantizer.codebooks.data[0, 3].abs() < 1e3).all()  # re-assigned onto the data


@pytest.mark.parametrize("residual", [False, True])
def test_mgm_round_trip_matches_the_evaluation_forward_and_counts_the_coded_bits(residual: bool):
    model = _model(residual)
    model(torch.rand(4, 3, 64, 64), torch.tensor([0.0, 1.0, 0.0, 1.0]))
    model.eval()
    model.update()
    image = torch.rand(1, 3, 70, 90)
    for quality in (0.0, 1.0):
        streams = model.compress(image, quality)
        decoded = model.decompress(LatentStreams(streams.sections, streams.shapes), quality, 70, 90)
        with torch.no_grad():
            reference = model(model.pad(image), torch.tensor([quality]))
        assert torch.equal(decoded, reference["x_hat"][..., :70, :90].clamp(0, 1))
        coded_bits = 8 * sum(len(section) for section in streams.sections)
        ideal = float(reference["bits"])
        if residual:  # residual scales are coded with the next larger table scale: a little above or below ideal
            assert 0.9 * ideal <= coded_bits <= 1.1 * ideal + 6 * 32 + 96
        else:
            assert ideal <= coded_bits <= ideal + 4 * 32 + 64  # ANS word slack


def test_the_residual_encoder_writes_the_cheapest_of_the_nearest_codewords(monkeypatch):
    """Residual mode: the index written is the one (of the nearest few) of least index + residual bits + weighted
    latent error: choosing on bits alone, the evaluation forward counts no more bits than with the nearest
    codeword; with every codeword a candidate the choice is the exhaustive minimum."""
    model = _model(residual=True)
    model(torch.rand(4, 3, 64, 64), torch.tensor([0.0, 1.0, 0.0, 1.0]))
    model.eval()
    model.update()
    image = torch.rand(2, 3, 64, 64)
    with torch.no_grad():
        monkeypatch.setattr(product_quantizer, "DISTORTION_WEIGHT", 0.0)
        cheapest = model(image, torch.tensor([1.0, 1.0]))["bits"]
        monkeypatch.setattr(product_quantizer, "CANDIDATES", 1)
        nearest = model(image, torch.tensor([1.0, 1.0]))["bits"]
        monkeypatch.setattr(product_quantizer, "CANDIDATES", model.latent_codec.codewords)
        monkeypatch.setattr(product_quantizer, "DISTORTION_WEIGHT", 16.0)
        prior = model.latent_codec
        quantizer, y = prior.fine[1], model.analysis(image) * model.gains(torch.tensor([1.0, 1.0]))[0]
        coarse = prior.coarse.quantize(prior.h_a(y))
        chosen = prior.fine_indices(1, y, coarse)
    assert (cheapest <= nearest + 1e-3).all() and (cheapest < nearest).any()
    assert not torch.equal(chosen, quantizer.quantize(y))
    parents = parent_codes(coarse, model.groups[1], *y.shape[-2:])
    every = torch.arange(prior.codewords).view(1, 1, -1, 1, 1).expand(2, quantizer.groups, -1, *y.shape[-2:])
    log_pmf = prior._log_pmf(prior.transition_counts(1)).double()
    index_bits = -log_pmf[torch.arange(quantizer.groups).view(1, -1, 1, 1, 1), parents[:, :, None], every] / LOG2
    total = quantizer.choice_cost(y, every) + index_bits
    assert torch.equal(chosen, total.argmin(2))


def test_mgm_refuses_wrong_shapes_and_damaged_streams():
    model = _model().eval()
    model.update()
    image = torch.rand(1, 3, 64, 64)
    streams = model.compress(image, 1.0)
    with pytest.raises(CodecError, match="shapes"):
        model.decompress(streams, 0.0, 64, 64)  # level 0 has 2 codebooks, the stream 4
    zeroed = LatentStreams([bytes(len(streams.sections[0])), *streams.sections[1:]], streams.shapes)
    with pytest.raises(CodecError, match="never ends in a zero word"):  # not a stream ANS can have written
        model.decompress(zeroed, 1.0, 64, 64)
    flipped = bytes([streams.sections[0][0] ^ 0xFF]) + streams.sections[0][1:]
    damaged = LatentStreams([flipped, *streams.sections[1:]], streams.shapes)
    with pytest.raises(CodecError, match="does not end where its symbols do"):  # ANS ends off its initial state
        model.decompress(damaged, 1.0, 64, 64)
    decoded = model.decompress(streams, 1.0, 64, 64)
    assert decoded.shape == (1, 3, 64, 64) and torch.isfinite(decoded).all()



def test_training_from_loaded_weights_keeps_their_codewords():
    """The EMA statistics are not saved; loading weights restarts them from the loaded codewords, so a training
    step moves a codeword only a little toward its vectors instead of back to the random initialisation."""
    trained = _model(residual=True)
    trained(torch.rand(4, 3, 64, 64), torch.tensor([0.0, 1.0, 0.0, 1.0]))
    fresh = _model(residual=True)
    torch.manual_seed(1)
    fresh.latent_codec.fine[1].codebooks.data.normal_()  # a different random start than the trained model had
    fresh.load_state_dict(trained.state_dict())
    loaded = fresh.latent_codec.fine[1].codebooks.detach().clone()
    fresh(torch.rand(4, 3, 64, 64), torch.tensor([1.0, 1.0, 1.0, 1.0]))
    assert (fresh.latent_codec.fine[1].codebooks - loaded).abs().max() < 0.5 * loaded.abs().max()
    assert torch.equal(fresh.latent_codec.fine[1].ema_sums / fresh.latent_codec.fine[1].ema_counts[..., None], fresh.latent_codec.fine[1].codebooks)


def test_an_eager_threshold_reassigns_an_under_used_codeword_that_the_default_keeps():
    torch.manual_seed(0)
    y = torch.randn(2, 4, 5, 6)
    moved = {}
    for dead_usage in (0.02, 0.25):
        quantizer = ProductQuantizer(groups=1, codewords=4, channels=4, dead_usage=dead_usage)
        quantizer(y)
        quantizer.codebooks.data[0, 3] = 1e6  # nothing is near it, but it was used at 10 % of its fair share
        quantizer.ema_sums[0, 3] = 1e6 * quantizer.ema_counts[0, 3]
        quantizer.usage[0, 3] = 0.1 / quantizer.codewords
        quantizer(y)
        moved[dead_usage] = bool((quantizer.codebooks.data[0, 3].abs() < 1e3).all())
    assert moved == {0.02: False, 0.25: True}


def test_the_coarse_level_reassigns_eagerly_and_its_size_is_configurable():
    model = MultiCodebookModel((0.002,), n=16, m=24, groups=(2,), codewords=16, hyper_codewords=5)
    prior = model.latent_codec
    assert prior.coarse.codewords == 5 and prior.transition_counts(0).shape == (2, 5, 16)
    assert prior.coarse.dead_usage > prior.fine[0].dead_usage


def test_only_the_coarse_codebooks_a_level_conditions_on_are_coded_and_older_streams_still_decode(monkeypatch):
    torch.manual_seed(0)
    model = MultiCodebookModel((0.002, 0.01), n=16, m=24, groups=(1, 2), codewords=16, hyper_channels=12,
                               hyper_groups=3, hyper_codewords=4)
    model(torch.rand(2, 3, 64, 64), torch.tensor([0.0, 1.0]))
    model.eval()
    model.update()
    image = torch.rand(1, 3, 64, 64)
    assert [model.compress(image, q).shapes[1][1] for q in (0.0, 1.0)] == [1, 2]
    current = model.decompress(model.compress(image, 0.0), 0.0, 64, 64)
    with monkeypatch.context() as patch:  # the layout before: every coarse codebook coded at every level
        patch.setattr(model.latent_codec, "coarse_used", lambda level: model.latent_codec.coarse.groups)
        older = model.compress(image, 0.0)
    assert older.shapes[1][1] == 3
    assert torch.equal(model.decompress(older, 0.0, 64, 64), current)


def test_the_coarse_probe_trains_h_a_toward_the_fine_indices_and_leaves_g_a_to_the_rate_distortion_loss():
    torch.manual_seed(0)
    model = MultiCodebookModel((0.002, 0.01), n=16, m=24, groups=(1, 2), codewords=16, hyper_channels=8,
                               hyper_groups=2, hyper_codewords=4, residual=True, coarse_probe=True)
    output = model(torch.rand(2, 3, 64, 64), torch.tensor([0.0, 1.0]))
    output["extra_loss"].backward()  # the coarse commitment and the probe's cross-entropy (residual: no fine VQ loss)
    assert model.latent_codec.coarse_probe[1].weight.grad.abs().sum() > 0
    assert model.latent_codec.h_a[0].weight.grad.abs().sum() > 0
    assert all(p.grad is None or not p.grad.any() for p in model.g_a.parameters())
    assert "latent_codec.coarse_probe.1.weight" in model.state_dict()
