"""Read and write model cards (models/NAME.toml). Cards are data: figures in them come from tools/ scripts."""
from __future__ import annotations

import tomllib
from pathlib import Path

import tomli_w

MODELS_DIR = Path(__file__).resolve().parents[1] / "models"


def card_path(name: str, models_dir: Path = MODELS_DIR) -> Path:
    return models_dir / f"{name}.toml"


def read_card(name: str, models_dir: Path = MODELS_DIR) -> dict:
    path = card_path(name, models_dir)
    return tomllib.loads(path.read_text(encoding="utf-8")) if path.exists() else {}


def write_card(name: str, card: dict, models_dir: Path = MODELS_DIR) -> Path:
    path = card_path(name, models_dir)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(tomli_w.dumps(card), encoding="utf-8")
    return path
