"""Shipped models: model cards in models/*.toml, weights in weights/*.safetensors (sha256-verified, no pickle).

Reading cards imports no torch (`codec models` starts in a fraction of a second); loading weights does.
"""
from __future__ import annotations

import functools
import hashlib
import os
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

from typing import TYPE_CHECKING

from codec.errors import CodecError
from codec.registry import create_model, family_kind

DEFAULT_IMAGE_MODEL = "mean-scale-context"  # the best shipped image model on Kodak (tools/eval_image.py)

if TYPE_CHECKING:
    import torch
    from torch import nn



def _codec_home() -> Path:
    """Where models/ and weights/ are: $CODEC_HOME, else the checkout this package runs from, else the copy that an
    installed wheel carries (codec/_shipped, placed there by setup.py)."""
    if os.environ.get("CODEC_HOME"):
        return Path(os.environ["CODEC_HOME"])
    checkout = Path(__file__).resolve().parents[1]
    if (checkout / "models").is_dir() and (checkout / "weights").is_dir():
        return checkout
    return Path(__file__).resolve().parent / "_shipped"


PROJECT_ROOT = _codec_home()
TABLE_PREFIX = "tables."


@dataclass(frozen=True)
class ModelCard:
    name: str
    family: str
    weights: str
    sha256: str
    config: dict
    default_quality: float
    summary: str = ""
    results: dict = field(default_factory=dict)
    labels: list[str] = field(default_factory=list)

    @property
    def kind(self) -> str:
        """"image" for image codecs, "feature" for split-computing models."""
        return family_kind(self.family)

    @property
    def weights_path(self) -> Path:
        return PROJECT_ROOT / "weights" / self.weights

    @property
    def digest(self) -> bytes:
        """The 8 bytes of the weights' sha256 that every container records."""
        return bytes.fromhex(self.sha256)[:8]


def _read_card(path: Path) -> ModelCard:
    return _parse_card(path.read_text(encoding="utf-8"))


@functools.lru_cache(maxsize=64)
def _parse_card(text: str) -> ModelCard:
    """A card parsed once per content (the CLI's parser and the model loader each ask for all cards)."""
    data = tomllib.loads(text)
    return ModelCard(
        name=data["name"], family=data["family"], weights=data["weights"], sha256=data["sha256"],
        config=dict(data["config"]), default_quality=float(data["default_quality"]),
        summary=data.get("summary", ""), results=data.get("results", {}), labels=list(data.get("labels", [])),
    )


def model_cards() -> dict[str, ModelCard]:
    """All shipped models by name."""
    cards = {}
    for path in sorted((PROJECT_ROOT / "models").glob("*.toml")):
        card = _read_card(path)
        cards[card.name] = card
    return cards


def get_card(name: str) -> ModelCard:
    cards = model_cards()
    if name not in cards:
        known = ", ".join(sorted(cards)) or "none (weights/ is empty)"
        raise CodecError(f"unknown model {name!r}; shipped models: {known}")
    return cards[name]


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def save_weights(model: nn.Module, path: Path, storage_dtype: torch.dtype | None = None) -> str:
    """Write weights + frozen tables as safetensors; return the file's sha256.

    `storage_dtype` (e.g. torch.float16) stores floating-point weights at that precision to halve the file; they are
    computed in float32 after loading. Tables are always stored as built."""
    from safetensors.torch import save_file

    tensors = {key: value.detach().to(storage_dtype if storage_dtype and value.is_floating_point() else value.dtype)
               .contiguous() for key, value in model.state_dict().items()}
    tensors.update({TABLE_PREFIX + key: value.contiguous() for key, value in model.table_state().items()})
    save_file(tensors, str(path))
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(path, 0o666 & ~umask)  # safetensors creates the file owner-only; weights are for everyone to read
    return sha256_of(path)


def split_tables(tensors: dict[str, torch.Tensor]) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
    """A weights file's tensors -> (the model's state dict, its frozen tables)."""
    weights = {key: value for key, value in tensors.items() if not key.startswith(TABLE_PREFIX)}
    tables = {key[len(TABLE_PREFIX) :]: value for key, value in tensors.items() if key.startswith(TABLE_PREFIX)}
    return weights, tables


def load_trained_weights(path: Path) -> dict[str, torch.Tensor]:
    """The state dict stored in a weights file, without its tables (to start training from it)."""
    from safetensors.torch import load_file

    return split_tables(load_file(str(path)))[0]


def build_model(family: str, config: dict, tensors: dict[str, torch.Tensor]) -> nn.Module:
    model = create_model(family, **config)
    weights, tables = split_tables(tensors)
    model.load_state_dict(weights)
    model.load_table_state(tables)
    return model.eval()


@functools.lru_cache(maxsize=4)
def load_model(name: str) -> tuple[nn.Module, ModelCard]:
    """Load a shipped model after checking its weights file against the sha256 on its card."""
    card = get_card(name)
    if not card.weights_path.is_file():
        raise CodecError(f"weights file {card.weights_path} for model {name!r} is missing")
    actual = sha256_of(card.weights_path)
    if actual != card.sha256:
        raise CodecError(
            f"weights file {card.weights_path.name} does not match its model card (sha256 {actual[:12]}... "
            f"!= {card.sha256[:12]}...): refusing to load tampered or mismatched weights"
        )
    from safetensors.torch import load_file

    try:
        tensors = load_file(str(card.weights_path))
        model = build_model(card.family, card.config, tensors)
    except (RuntimeError, KeyError, ValueError) as error:
        raise CodecError(f"cannot load weights for {name!r}: {error}") from None
    return model, card
