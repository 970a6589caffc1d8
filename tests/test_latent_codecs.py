"""The latent codec contract (codec.entropy.latent_codec): forward / update / compress / decompress, tables that
travel with the weights, and models built as transforms + gain units + one latent codec."""
from __future__ import annotations

from fractions import Fraction

import pytest
import torch
from torch import nn

from codec.entropy.cascade import MultiCodebookLatentCodec
from codec.entropy.context import ChannelCheckerboardLatentCodec
from codec.entropy.factorized import FactorizedLatentCodec
from codec.entropy.hyper import HyperpriorLatentCodec
from codec.entropy.latent_codec import LatentCodec, rename_keys
from codec.errors import CodecError
from codec.registry import create_model


def _hyperprior(context: bool) -> HyperpriorLatentCodec:
    h_a = nn.Sequential(nn.Conv2d(8, 8, 3, 1, 1), nn.LeakyReLU(), nn.Conv2d(8, 4, 3, 2, 1))
    h_s = nn.Sequential(nn.ConvTranspose2d(4, 8, 4, 2, 1), nn.LeakyReLU(), nn.Conv2d(8, 16, 3, 1, 1))
    y_codec = ChannelCheckerboardLatentCodec((2, 2, 4), hidden=8) if context else None
    return HyperpriorLatentCodec(h_a, h_s, 4, y_codec, mean_scale=True, upscale=Fraction(2))


CODECS = {
    "factorized": lambda: FactorizedLatentCodec(8),
    "hyperprior": lambda: _hyperprior(context=False),
    "hyperprior+context": lambda: _hyperprior(context=True),
}


def _trained(codec: LatentCodec) -> LatentCodec:
    """A few noisy steps so that the densities and networks are not at their initial values."""
    torch.manual_seed(0)
    for parameter in codec.parameters():
        parameter.data.add_(0.05 * torch.randn_like(parameter))
    codec.train()
    codec(3 * torch.randn(2, 8, 6, 10))
    return codec.eval()


@pytest.mark.parametrize("name", sorted(CODECS))
def test_every_latent_codec_keeps_the_contract(name):
    torch.manual_seed(1)
    codec = _trained(CODECS[name]())
    y = 4 * torch.randn(1, 8, 6, 10)
    out = codec(y)  # training-time forward: CompressAI's dictionary
    assert set(out) == {"y_hat", "likelihoods"} and out["y_hat"].shape == y.shape
    assert all(0 < float(v.detach().min()) and float(v.detach().max()) <= 1 for v in out["likelihoods"].values())
    with pytest.raises(RuntimeError, match="update"):
        codec.compress(y)  # no tables yet
    codec.update()
    streams = codec.compress(y)
    assert len(streams.sections) == len(codec.section_names)
    y_hat = codec.decompress(streams)
    assert y_hat.shape == y.shape and (y_hat - y).abs().max() <= 0.5 + 1e-4  # rounded around exact centres
    twin = _trained(CODECS[name]())  # the same weights, tables loaded instead of built
    twin.load_state_dict(codec.state_dict())
    twin.load_table_state(codec.table_state())
    assert twin.compress(y).sections == streams.sections
    assert torch.equal(twin.decompress(streams), y_hat)


def test_a_hyperprior_refuses_streams_that_are_not_its_own():
    codec = _trained(CODECS["hyperprior"]())
    codec.update()
    streams = codec.compress(torch.randn(1, 8, 6, 10))
    streams.sections = streams.sections[:2]
    with pytest.raises(CodecError, match="sections"):
        codec.decompress(streams)


def test_the_cascade_codes_every_rate_level():
    torch.manual_seed(0)
    codec = MultiCodebookLatentCodec(8, 12, groups=(2, 4), codewords=8, hyper_channels=4, hyper_groups=2,
                                     hyper_codewords=4, residual=True)
    y = torch.randn(2, 12, 8, 8)
    out = codec.train()(y, torch.tensor([0, 1]), 64 * 64)
    assert out["y_hat"].shape == y.shape and out["bits"].shape == (2,)
    codec.eval().update()
    for level in (0, 1):
        streams = codec.compress(y[:1], level)
        assert len(streams.sections) == len(codec.section_names) == 6
        decoded = codec.decompress(streams, level)
        assert torch.equal(decoded, codec.decompress(codec.compress(y[:1], level), level))


def test_weights_in_the_names_before_latent_codecs_load_and_code_the_same():
    """Shipped files name h_a, h_s, entropy_bottleneck, ... at the top level: loading renames them."""
    torch.manual_seed(0)
    model = create_model("mean-scale-context", lambdas=(0.01, 0.02), n=16, m=24, groups=(4, 4, 8, 8),
                         context_hidden=8).eval()
    model.update()
    old_names = {"latent_codec.y.gaussian_conditional.": "gaussian_conditional.", "latent_codec.y.": "context.",
                 "latent_codec.z.entropy_bottleneck.": "entropy_bottleneck.", "latent_codec.h_a.": "h_a.",
                 "latent_codec.h_s.": "h_s."}
    state = model.state_dict()
    rename_keys(state, old_names)
    assert {key.split(".")[0] for key in state} == {"gains", "g_a", "g_s", "h_a", "h_s", "entropy_bottleneck",
                                                   "gaussian_conditional", "context"}
    loaded = create_model("mean-scale-context", lambdas=(0.01, 0.02), n=16, m=24, groups=(4, 4, 8, 8),
                          context_hidden=8).eval()
    loaded.load_state_dict(state)  # strict
    loaded.load_table_state(model.table_state())
    x = torch.rand(1, 3, 64, 64)
    assert loaded.compress(x, 1.0).sections == model.compress(x, 1.0).sections
    assert loaded.upgrade_name("context") == "latent_codec.y"


def test_the_readme_example_runs():
    """README's latent codec snippet, as written."""
    from pathlib import Path

    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    section = readme.split("### Latent codecs", 1)[1]
    snippet = section.split("```python\n", 1)[1].split("```", 1)[0]
    exec(compile(snippet, "README.md", "exec"), {})
