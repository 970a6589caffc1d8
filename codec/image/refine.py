"""Encoder-side latent refinement: spend encoding time to find a latent with a lower rate-distortion cost for this
one image; the decoder and the bitstream format are unchanged.

- Campos, Meierhans, Djelouah, Schroers, "Content adaptive optimization for neural image compression" (CVPR
  Workshops 2019): gradient descent on the latent y of one image, starting from g_a(x), on the training objective.
- Yang, Bamler, Mandt, "Improving inference for neural image compression" (NeurIPS 2020): the amortization gap of
  g_a that this closes.

The objective is the model's own rate-distortion loss, lambda * 255^2 * MSE + bpp. Its gradient is taken through
stochastic Gumbel annealing (Yang et al.), a soft rounding that hardens over the steps; every few steps the true cost
is measured with the coder's own rounding (up to the float h_s and the scale table), and the best latent measured,
g_a's own included, is the one coded. Encoding takes `steps` forward and backward passes of the latent codec and
g_s; measured gains and times: tools/eval_refine.py.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from tqdm import tqdm

from codec.errors import CodecError
from codec.nn.quantize import Quantizer, round_around

DEFAULT_STEPS = 60
STEP_SIZE = 0.005  # Adam's learning rate on the gained latent (whose rounding step is 1); 0.02 diverged
START_TEMPERATURE, END_TEMPERATURE = 0.5, 0.15  # annealed geometrically over the steps (0.05 at the end lost ground)
CHECK_EVERY = 10  # steps between measurements of the true (rounded) cost


def level_lambda(lambdas: tuple[float, ...], quality: float) -> float:
    """The rate-distortion weight of a (fractional) quality level: geometric between the trained levels, as the
    gain units interpolate."""
    if len(lambdas) == 1:
        return lambdas[0]
    low = min(int(math.floor(quality)), len(lambdas) - 2)
    fraction = quality - low
    return math.exp(math.log(lambdas[low]) * (1 - fraction) + math.log(lambdas[low + 1]) * fraction)


def annealed_rounding(temperature: float) -> Quantizer:
    """Stochastic Gumbel annealing (Yang et al. 2020): values - centres go down or up to an integer at random and
    softly (a relaxed two-way categorical whose odds favour the nearer integer); it tends to rounding as
    `temperature` goes to 0."""
    def quantize(values: torch.Tensor, centres: torch.Tensor) -> torch.Tensor:
        residual = values - centres
        below = torch.floor(residual).detach()
        fraction = residual - below
        limit = 1 - 1e-5
        logits = torch.stack([-torch.atanh(fraction.clamp(-limit, limit)),
                              -torch.atanh((1 - fraction).clamp(-limit, limit))], -1) / temperature
        up = F.gumbel_softmax(logits, tau=temperature)[..., 1]
        return below + up + centres
    return quantize


def rd_cost(model: "VariableRateImageModel", latent: torch.Tensor, x: torch.Tensor,  # noqa: F821
            inverse_gain: torch.Tensor, weight: float, quantize: Quantizer = round_around) -> torch.Tensor:
    """weight * MSE + bpp of coding the gained `latent` for image `x` (unpadded), with `quantize` in the latent
    codec (by default the coder's rounding)."""
    height, width = x.shape[-2:]
    y_hat, bits = model.latent_codec.estimate(latent, quantize)
    x_hat = model.synthesis(y_hat * inverse_gain)[..., :height, :width]
    return weight * F.mse_loss(x_hat, x) + bits / (height * width)


def check_refinable(model: "VariableRateImageModel", pixels: int) -> None:  # noqa: F821
    """Raise CodecError where `model` cannot refine an image of `pixels` pixels."""
    if not hasattr(model.latent_codec, "estimate"):
        raise CodecError(f"latent refinement is not available for {type(model).__name__} models")
    if pixels > model.tile_threshold:
        raise CodecError(f"latent refinement handles images of at most {model.tile_threshold} pixels "
                         f"(this one has {pixels})")


def refine_latent(model: "VariableRateImageModel", x: torch.Tensor, quality: float,  # noqa: F821
                  steps: int = DEFAULT_STEPS, progress: bool = False, seed: int = 0) -> torch.Tensor:
    """The gained latent y (as `model.latent_codec.compress` takes it) with the lowest rate-distortion cost found in
    `steps` Adam steps on the annealed objective, starting from g_a(x) * gain (so never worse than it, as
    measured). `x`: [1, 3, H, W] in [0, 1], unpadded. `seed` fixes the annealing noise."""
    check_refinable(model, x.shape[-2] * x.shape[-1])
    weight = level_lambda(model.lambdas, quality) * 255**2
    with torch.no_grad():
        gain, inverse_gain = (tensor.detach() for tensor in model.gains(model.quality_tensor(quality)))
        start = model.analysis(model.pad(x)) * gain
    latent = start.clone().requires_grad_(True)
    optimizer = torch.optim.Adam([latent], lr=STEP_SIZE)
    generator_state = torch.random.get_rng_state()
    torch.manual_seed(seed)
    best_cost, best = math.inf, start
    try:
        for step in tqdm(range(steps + 1), desc="refining latent", leave=False, disable=not progress):
            if step % CHECK_EVERY == 0 or step == steps:
                with torch.no_grad():
                    cost = float(rd_cost(model, latent, x, inverse_gain, weight))
                if cost < best_cost:
                    best_cost, best = cost, latent.detach().clone()
            if step == steps:
                break
            temperature = START_TEMPERATURE * (END_TEMPERATURE / START_TEMPERATURE) ** (step / max(steps - 1, 1))
            with torch.enable_grad():
                relaxed = rd_cost(model, latent, x, inverse_gain, weight, annealed_rounding(temperature))
                (latent.grad,) = torch.autograd.grad(relaxed, latent)
            optimizer.step()
    finally:
        torch.random.set_rng_state(generator_state)
    return best
