"""Read and write model cards (models/NAME.toml). Cards are data: figures in them come from tools/ scripts."""
from __future__ import annotations

import json
import tomllib
from pathlib import Path

import tomli_w

from codec.zoo import sha256_of

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


def training_command(script: str, args: dict, skip: set[str], first: tuple[str, ...] = ()) -> str:
    """The command that reproduces a run: `first` flags, then every argument that was set, minus `skip`."""
    parts = [f"python {script}", *first]
    for key, value in args.items():
        if key in skip or value is None or value is False or value == []:
            continue
        flag = "--" + key.replace("_", "-")
        if value is True:
            parts.append(flag)
        elif isinstance(value, (list, tuple)):
            parts.append(" ".join([flag, *(f"{v:g}" if isinstance(v, float) else str(v) for v in value)]))
        else:
            parts.append(f"{flag} {value:g}" if isinstance(value, float) else f"{flag} {value}")
    return " ".join(parts)


def init_record(weights: Path, models_dir: Path = MODELS_DIR) -> dict:
    """sha256 of the --init weights a run started from and, from the shipped card that names them, how they were
    trained (cards are rewritten when a model is retrained, so the lineage lives in the new card)."""
    sha256 = sha256_of(weights)
    record = {"sha256": sha256}
    for card_file in sorted(models_dir.glob("*.toml")):
        card = read_card(card_file.stem, models_dir)
        if card.get("sha256") == sha256:
            record.update({"model": card["name"], "training": card.get("training", {})})
    return record


def run_init_record(run: Path, weights: Path | None, models_dir: Path = MODELS_DIR) -> dict | None:
    """`init_record` of a run's --init weights, taken when the run first starts and kept in <run>/init.json: by
    export time the file may have been replaced (an export under the same name), and its hash would name the run
    itself."""
    if weights is None:
        return None
    stored = run / "init.json"
    if stored.exists():
        return json.loads(stored.read_text(encoding="utf-8"))
    record = init_record(weights, models_dir)
    run.mkdir(parents=True, exist_ok=True)
    stored.write_text(json.dumps(record, indent=1), encoding="utf-8")
    return record
