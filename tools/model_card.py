"""Read and write model cards (models/NAME.toml). Cards are data: figures in them come from tools/ scripts."""
from __future__ import annotations

import tomllib
from pathlib import Path

import tomli_w

MODELS_DIR = Path(__file__).resolve().parents[1] / "models"


def card_path(name: str) -> Path:
    return MODELS_DIR / f"{name}.toml"


def read_card(name: str) -> dict:
    path = card_path(name)
    return tomllib.loads(path.read_text(encoding="utf-8")) if path.exists() else {}


def write_card(name: str, card: dict) -> Path:
    path = card_path(name)
    path.write_text(tomli_w.dumps(card), encoding="utf-8")
    return path
