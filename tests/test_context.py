"""The parallel context model: multi-pass ANS coding, exact context networks, and the image family built on them."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from codec.entropy.coder import PassDecoder, encode_passes, encode_symbols
from codec.entropy.context import ExactGroupParameters, GroupParameters, anchor_mask
from codec.entropy.gaussian import build_gaussian_tables, default_scale_table
from codec.errors import CodecError
from codec.registry import create_model

LAMBDAS = (0.0018, 0.0067, 0.025)


def test_passes_decode_in_order_with_escapes_in_any_pass():
    tables = build_gaussian_tables(default_scale_table())
    rng = np.random.default_rng(1)
    passes = []
    for size in (5, 40, 17):
        symbols = rng.integers(-3, 4, size)
        symbols[0] = 10_000  # far outside every table: escaped
        passes.append((symbols, rng.integers(0, 20, size)))
    stream, escapes = encode_passes(passes, tables)
    decoder = PassDecoder(stream, escapes, tables)
    for symbols, indices in passes:
        np.testing.assert_array_equal(decoder.decode(indices), symbols)
    decoder.finish()
    padded = PassDecoder(stream, escapes + b"\x01", tables)
    for _, indices in passes:
        padded.decode(indices)
    with pytest.raises(CodecError, match="trailing bytes"):
        padded.finish()
    short = PassDecoder(stream, b"", tables)
    with pytest.raises(CodecError, match="ends early"):
        short.decode(passes[0][1])


def test_one_pass_is_the_single_stream_format():
    tables = build_gaussian_tables(default_scale_table())
    rng = np.random.default_rng(2)
    symbols, indices = rng.integers(-5, 6, 300), rng.integers(0, 64, 300)
    assert encode_passes([(symbols, indices)], tables) == encode_symbols(symbols, indices, tables)


def test_anchor_mask_is_a_checkerboard():
    mask = anchor_mask(3, 4)[0, 0]
    assert mask.tolist() == [[True, False, True, False], [False, True, False, True], [True, False, True, False]]


def _context_model(seed: int = 0, active: bool = True, residual_prediction: bool = False):
    torch.manual_seed(seed)
    model = create_model("mean-scale-context", lambdas=LAMBDAS, n=32, m=48,
                         residual_prediction=residual_prediction).eval()
    if active:  # a trained model's context heads are not zero; make these do something
        for group in model.latent_codec.y.group_parameters:
            torch.nn.init.normal_(group.head[-1].weight, std=0.05)
        if residual_prediction:
            torch.nn.init.normal_(model.latent_codec.y.residual_prediction.net[-1].weight, std=0.05)
    model.update()
    return model


def test_default_groups_follow_elic():
    model = create_model("mean-scale-context", lambdas=LAMBDAS)
    assert model.latent_codec.y.groups == (16, 16, 32, 64, 64)
    assert _context_model().latent_codec.y.groups == (4, 4, 8, 16, 16)
    with pytest.raises(ValueError, match="add up"):
        create_model("mean-scale-context", lambdas=LAMBDAS, n=32, m=48, groups=(8, 8))


def test_decoder_rebuilds_every_mean_the_encoder_used(photo):
    """With a wrong mean or scale anywhere, the decoded symbols would be garbage; here y_hat is within 1/2 of y."""
    model = _context_model()
    gain, _ = model.gains(model.quality_tensor(1.0))
    with torch.no_grad():
        y = model.analysis(model.pad(photo)) * gain
    streams = model.latent_codec.compress(y)
    y_hat = model.latent_codec.decompress(streams)
    assert (y_hat - y).abs().max() <= 0.5 + 1e-4


def test_residual_prediction_changes_pixels_only_and_starts_as_a_no_op(photo):
    """Latent residual prediction runs after entropy decoding: the bytes are those of the model without it; fresh
    (last layer zero) it decodes the same pixels, trained it moves them, and training sees it."""
    plain = _context_model(seed=3)
    fresh, active = (create_model("mean-scale-context", lambdas=LAMBDAS, n=32, m=48, residual_prediction=True).eval()
                     for _ in range(2))
    for model in (fresh, active):
        missing = model.load_state_dict(plain.state_dict(), strict=False).missing_keys
        assert missing and all(key.startswith("latent_codec.y.residual_prediction.") for key in missing)
    with torch.no_grad():
        active.latent_codec.y.residual_prediction.net[-1].weight.normal_(std=0.05)
    fresh.update(), active.update()
    streams = plain.compress(photo, 2.0)
    assert fresh.compress(photo, 2.0).sections == active.compress(photo, 2.0).sections == streams.sections
    pixels = plain.decompress(streams, 2.0, 70, 90)
    assert torch.equal(fresh.decompress(streams, 2.0, 70, 90), pixels)
    assert not torch.equal(active.decompress(streams, 2.0, 70, 90), pixels)
    active.train()
    output = active(photo[..., :64, :64], torch.tensor([2.0]))
    output["x_hat"].mean().backward()
    assert active.latent_codec.y.residual_prediction.net[-1].weight.grad.abs().sum() > 0


@pytest.mark.parametrize("residual_prediction", [False, True])
def test_bytes_and_pixels_identical_at_any_thread_count(photo, residual_prediction):
    model = _context_model(seed=3, residual_prediction=residual_prediction)
    previous = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        one = model.compress(photo, 2.0)
        pixels_one = model.decompress(one, 2.0, 70, 90)
        torch.set_num_threads(2)
        two = model.compress(photo, 2.0)
        pixels_two = model.decompress(one, 2.0, 70, 90)
    finally:
        torch.set_num_threads(previous)
    assert one.sections == two.sections
    assert torch.equal(pixels_one, pixels_two)


def test_large_latents_run_the_context_nets_in_chunks_with_identical_parameters(photo):
    """The context nets evaluated 5 positions at a time (the photo's latent is 8x8; large latents go 4,096 at a
    time) give every pass the same means and scale indices bit for bit as all positions at once, so the same bytes,
    and either decoder reads the other's file."""
    model = _context_model(seed=5)
    gain, _ = model.gains(model.quality_tensor(1.5))
    with torch.no_grad():
        y = model.analysis(model.pad(photo)) * gain
        scales, means = model.latent_codec.hyper_parameters(model.latent_codec.h_a(y))
    scales, means = scales * 3, means + 2 * y  # larger parameters than an untrained h_s gives: every tap matters

    def parameters(chunk: int) -> list[tuple[np.ndarray, torch.Tensor]]:
        model.latent_codec.y.exact_chunk = chunk
        seen = []

        def record(indices, pass_means, part, positions):
            seen.append((indices, pass_means))
            return torch.round(y[:, part][:, :, positions].flatten().double() - pass_means).long().numpy()

        model.latent_codec.y._passes(scales, means, record)
        return seen

    whole, chunks = parameters(4096), parameters(5)
    assert len(whole) == 2 * len(model.latent_codec.y.groups)
    assert all(np.array_equal(a[0], b[0]) and torch.equal(a[1], b[1]) for a, b in zip(whole, chunks))
    in_chunks = _context_model(seed=5)
    in_chunks.latent_codec.y.exact_chunk = 5
    streams = model.compress(photo, 1.5)
    assert in_chunks.compress(photo, 1.5).sections == streams.sections
    assert torch.equal(in_chunks.decompress(streams, 1.5, 70, 90), model.decompress(streams, 1.5, 70, 90))


def test_exact_context_nets_match_the_dense_float_convolutions():
    """At one pass's positions, the exact evaluation (checkerboard taps only, positions gathered) agrees with the
    trained float modules run densely on the same inputs, up to the fixed-point grid."""
    torch.manual_seed(0)
    group = GroupParameters(8, 16, 32)
    torch.nn.init.normal_(group.head[-1].weight, std=0.1)
    hyper, previous = torch.randn(1, 16, 6, 7), torch.randn(1, 16, 6, 7)
    anchors = anchor_mask(6, 7)
    group_hat = torch.round(torch.randn(1, 8, 6, 7) * 3) * anchors
    with torch.no_grad():
        dense = group.head(group.from_hyper(hyper) + group.from_previous(previous) + group.from_anchors(group_hat))
    rows, cols = (~anchors[0, 0]).nonzero(as_tuple=True)
    exact = ExactGroupParameters(group)(hyper, previous, group_hat, rows, cols, chunk=7)
    assert exact.shape == (1, 16, len(rows))
    assert torch.allclose(exact.float(), dense[:, :, rows, cols], atol=2e-3)


def test_bf16_encoder_and_fp32_decoder_interoperate(photo):
    model = _context_model(seed=4)
    model.set_fast_transforms(True)
    streams = model.compress(photo, 2.0)
    model.set_fast_transforms(False)
    x_hat = model.decompress(streams, 2.0, 70, 90)
    reference = model.decompress(model.compress(photo, 2.0), 2.0, 70, 90)
    psnr = [float(-10 * torch.log10((x - photo).pow(2).mean())) for x in (x_hat, reference)]
    assert abs(psnr[0] - psnr[1]) < 0.5  # a mismatched table would decode to noise


def test_a_fresh_context_model_codes_like_the_mean_scale_model_it_starts_from(photo):
    """The context heads start at zero, so a model initialised from mean-scale weights decodes the same pixels."""
    context = _context_model(seed=5, active=False)
    mean_scale = create_model("mean-scale", lambdas=LAMBDAS, n=32, m=48).eval()
    mean_scale.load_state_dict({k: v for k, v in context.state_dict().items() if ".group_parameters." not in k})
    mean_scale.update()
    ours, theirs = context.compress(photo, 1.0), mean_scale.compress(photo, 1.0)
    assert torch.equal(context.decompress(ours, 1.0, 70, 90), mean_scale.decompress(theirs, 1.0, 70, 90))
    assert sum(map(len, ours.sections)) == pytest.approx(sum(map(len, theirs.sections)), abs=8)
    x = torch.rand(1, 3, 64, 64)
    quality = torch.tensor([1.0])
    context.train(), mean_scale.train()
    torch.manual_seed(0)
    ours = context(x, quality)["likelihoods"]["y"]
    torch.manual_seed(0)
    theirs = mean_scale(x, quality)["likelihoods"]["y"]
    torch.testing.assert_close(ours, theirs)


def test_extra_escape_bytes_give_a_codec_error(photo):
    model = _context_model(seed=6)
    streams = model.compress(photo, 1.0)
    streams.sections[1] += b"\x02"
    with pytest.raises(CodecError, match="trailing bytes"):
        model.decompress(streams, 1.0, 70, 90)
