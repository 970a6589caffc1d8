"""Mean-scale hyperprior with a parallel channel-group + checkerboard context model (variable rate).

- Minnen, Ballé, Toderici (NeurIPS 2018): the mean-scale hyperprior this model extends;
- Minnen & Singh (ICIP 2020) and ELIC (He et al., CVPR 2022): channel-wise context over uneven groups;
- He et al. (CVPR 2021): checkerboard context within each group (see codec.entropy.context).

    x -> pad -> g_a -> y * gain -> h_a -> z -> [factorized tables] -> z_hat -> exact h_s -> base scale, mean
                y -> groups x {anchors, non-anchors}: exact context nets refine scale, mean -> [gaussian tables]
                                                    y_hat / gain -> g_s -> crop -> x_hat

g_a, g_s, h_a and h_s are those of `MeanScaleHyperprior`, so the model can start from its trained weights; the
hyperprior latent codec codes y with `ChannelCheckerboardLatentCodec` instead of the plain Gaussian conditional.
"""
from __future__ import annotations

from codec.entropy.context import ChannelCheckerboardLatentCodec
from codec.entropy.hyper import HYPERPRIOR_LEGACY_KEYS
from codec.image.hyperprior import MeanScaleHyperprior


def default_groups(m: int) -> tuple[int, ...]:
    """ELIC's split (16, 16, 32, 64, 64) for m = 192, the same proportions for other multiples of 12."""
    if m % 12:
        raise ValueError(f"no default channel groups for m = {m}: pass groups adding up to it")
    return tuple(m * share // 12 for share in (1, 1, 2, 4, 4))


class ContextHyperprior(MeanScaleHyperprior):
    """`MeanScaleHyperprior` whose y is coded by `ChannelCheckerboardLatentCodec` (2 x len(groups) decoding passes)."""

    LEGACY_KEYS = {**HYPERPRIOR_LEGACY_KEYS, "context.": "latent_codec.y."}
    ARCHITECTURE = (
        "Minnen et al. 2018 mean-scale hyperprior (g_a/g_s with GDN, h_a/h_s with LeakyReLU, gain units of Cui et al. "
        "2021) plus a parallel context model: y in uneven channel groups (Minnen & Singh 2020, ELIC He et al. 2022), "
        "each coded in two checkerboard passes (He et al. 2021); per group a 1x1 conv of the hyperprior's mean and "
        "scale, a 3x3 conv of the groups before it and a 5x5 conv of its anchors are summed and two 1x1 layers "
        "predict corrections to mean and scale; 2 x groups network passes to decode")
    ENTROPY_CODING = (
        "constriction ANS; z: per-channel factorized tables; y: 64 Gaussian scale tables, means outside the CDF, all "
        "2 x groups passes on one ANS stack; h_s and the context networks evaluated exactly in integer-valued float64")

    @classmethod
    def card_text(cls, config: dict) -> dict[str, str]:
        text = super().card_text(config)
        if config.get("residual_prediction"):
            text["description"] += ("; latent residual prediction (Minnen & Singh 2020): after the last pass a 3-layer "
                                    "net of y_hat and its refined mean and scale adds the expected rounding residual "
                                    "(clamped to +-1/2, evaluated exactly)")
        return text

    def __init__(self, lambdas: tuple[float, ...], n: int = 128, m: int = 192,
                 groups: tuple[int, ...] | None = None, context_hidden: int = 128,
                 residual_prediction: bool = False, analysis_widths: tuple[int, ...] | None = None,
                 synthesis_widths: tuple[int, ...] | None = None) -> None:
        groups = default_groups(m) if groups is None else tuple(groups)
        if sum(groups) != m:
            raise ValueError(f"channel groups {tuple(groups)} must add up to m = {m}")
        super().__init__(lambdas, n, m, analysis_widths, synthesis_widths)
        self.latent_codec.y = ChannelCheckerboardLatentCodec(tuple(groups), context_hidden,  # y's codec, in place
                                                             residual_prediction)
