"""The latent codec contract: one module that trains, freezes and codes one latent.

A model is transforms + gain units + one latent codec (image models and split-computing students alike). Every
latent codec in `codec.entropy` keeps the same four methods, close to CompressAI's `compressai.latent_codecs`:

- `forward(y, ...)` (training): `{"y_hat": ..., "likelihoods": {name: tensor}}`, as CompressAI's latent codecs return;
- `update()`: freeze the integer probability tables (saved next to the weights: `table_state` / `load_table_state`);
- `compress(y, ...)` -> `LatentStreams` (the byte sections, named by `section_names`, and the latent shapes);
- `decompress(streams, ...)` -> y_hat, exactly the encoder's;
- optionally `estimate(y, ..., quantize)` -> (y_hat, bits) as the coder would make them, differentiable (straight-
  through rounding by default): what encoder-side refinement (codec.image.refine) minimises.

Where CompressAI's `compress` returns strings from its own coder, ours code with constriction on an exact path (the
entropy parameters are bit-identical on both sides), so the container bytes are our own; training-time `forward` is
CompressAI's convention, so its codecs and ours can stand in for each other there.
"""
from __future__ import annotations

from typing import Any

import torch
from torch import nn

from codec.entropy.frozen import FrozenTables
from codec.entropy.streams import LatentStreams


class LatentCodec(FrozenTables, nn.Module):
    """Base of the latent codecs; a leaf codec owns `tables` / `table_tensors`, a composite merges its parts'."""

    section_names: tuple[str, ...] = ()

    def __init__(self) -> None:
        super().__init__()
        self.init_tables()

    def forward(self, y: torch.Tensor, *args: Any) -> dict:
        raise NotImplementedError

    def update(self) -> None:
        raise NotImplementedError

    def compress(self, y: torch.Tensor, *args: Any) -> LatentStreams:
        raise NotImplementedError

    def decompress(self, streams: LatentStreams, *args: Any) -> torch.Tensor:
        raise NotImplementedError

    def aux_loss(self) -> torch.Tensor:
        """Loss of the parts trained beside the rate-distortion loss (a factorized prior's quantiles); else zero."""
        losses = [part.aux_loss() for part in self.children() if isinstance(part, LatentCodec)]
        return sum(losses[1:], losses[0]) if losses else torch.zeros(())


def renamed(name: str, renames: dict[str, str]) -> str:
    """`name` with its first matching old prefix replaced by the new one (unchanged when none matches)."""
    for old, new in renames.items():
        if name.startswith(old) and not name.startswith(new):
            return new + name[len(old) :]
    return name


def rename_keys(state: dict[str, Any], renames: dict[str, str], prefix: str = "") -> None:
    """Rename, in place, every key `prefix + old...` to `prefix + new...` (the first matching `old` wins)."""
    for key in [key for key in state if key.startswith(prefix)]:
        new_key = prefix + renamed(key[len(prefix) :], renames)
        if new_key != key:
            state[new_key] = state.pop(key)


class LatentCodecHost:
    """Mixin for a model that owns `self.latent_codec`: tables, update and the aux loss are the codec's.

    `LEGACY_KEYS` maps the state-dict names weights had before the latent codec was a module (e.g. "h_a." ->
    "latent_codec.h_a."); loading renames them, so every shipped weights file loads unchanged."""

    LEGACY_KEYS: dict[str, str] = {}
    latent_codec: LatentCodec

    def watch_legacy_keys(self) -> None:
        """Call once from `__init__`: old names in a state dict are renamed on `load_state_dict`."""
        self.register_load_state_dict_pre_hook(self._upgrade_hook)

    def _upgrade_hook(self, module: nn.Module, state: dict, prefix: str, *_: Any) -> None:
        rename_keys(state, self.legacy_keys(), prefix)

    def legacy_keys(self) -> dict[str, str]:
        return self.LEGACY_KEYS

    def upgrade_state_dict(self, state: dict[str, Any]) -> dict[str, Any]:
        """A copy of `state` with old names renamed (for code that matches names before loading)."""
        state = dict(state)
        rename_keys(state, self.legacy_keys())
        return state

    def upgrade_name(self, name: str) -> str:
        """A parameter or module name under the current layout (e.g. "context" -> "latent_codec.y")."""
        return renamed(name + ".", self.legacy_keys())[:-1]

    @property
    def tables(self) -> dict:
        return self.latent_codec.tables

    @property
    def table_tensors(self) -> dict[str, torch.Tensor]:
        return self.latent_codec.table_tensors

    def update(self) -> None:
        """Freeze the latent codec's probability tables (used by compress / decompress and saved with the weights)."""
        self.latent_codec.update()

    def table_state(self) -> dict[str, torch.Tensor]:
        return self.latent_codec.table_state()

    def load_table_state(self, state: dict[str, torch.Tensor]) -> None:
        self.latent_codec.load_table_state(state)

    def check_ready(self) -> None:
        self.latent_codec.check_ready()

    def aux_loss(self) -> torch.Tensor:
        return self.latent_codec.aux_loss()
