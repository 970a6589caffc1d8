"""Shared fixtures: small untrained models (fast) and the shipped model (real weights)."""
from __future__ import annotations

import sys
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch

warnings.filterwarnings("ignore", category=FutureWarning)

SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tools"))  # the data helpers of tools/ (split_data, photos)
LAMBDAS = (0.0018, 0.0067, 0.025)


@pytest.fixture(scope="session")
def tiny_models() -> dict:
    """One small randomly initialised model per family, tables frozen (enough to test coding paths)."""
    from codec.registry import family_names
    from codec.registry import create_model

    torch.manual_seed(0)
    models = {}
    for family in family_names("image"):
        model = create_model(family, lambdas=LAMBDAS, n=32, m=48).eval()
        model.update()
        models[family] = model
    return models


@pytest.fixture(scope="session")
def photo() -> torch.Tensor:
    """A smooth 3x70x90 test picture with edges (odd size: exercises padding and cropping)."""
    rows, cols = np.mgrid[0:70, 0:90].astype(np.float32)
    red = 0.5 + 0.4 * np.sin(rows / 9.0)
    green = 0.5 + 0.4 * np.cos(cols / 7.0)
    blue = ((rows // 20 + cols // 20) % 2) * 0.6 + 0.2
    return torch.from_numpy(np.stack([red, green, blue]))[None]


@pytest.fixture(scope="session")
def shipped_model_name() -> str:
    from codec.zoo import model_cards

    cards = model_cards()
    if "ms-hyperprior" not in cards:
        pytest.skip("no shipped ms-hyperprior model in models/")
    return "ms-hyperprior"


@pytest.fixture()
def private_shipped_model(shipped_model_name):
    """A freshly loaded copy of the shipped image model, for tests that switch its settings (precision, tiling):
    the zoo's cached instance, which other tests share, is never touched."""
    from codec.zoo import load_model

    model, _ = load_model.__wrapped__(shipped_model_name)
    return model


@pytest.fixture(scope="session")
def feature_model_name() -> str:
    """A shipped CIFAR-10 split-computing model (32x32 inputs: fast enough for every test)."""
    from codec.zoo import model_cards

    names = sorted(card.name for card in model_cards().values() if card.family == "entropic-student-cifar")
    if not names:
        pytest.skip("no shipped feature model in models/")
    return names[0]
