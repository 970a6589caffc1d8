"""A wheel carries the model cards and weights: installed outside the checkout, `codec` lists and runs its models."""
from __future__ import annotations

import os
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]


def test_wheel_installs_a_working_codec_offline(tmp_path):
    wheels = tmp_path / "wheels"
    build = subprocess.run([sys.executable, "-m", "pip", "wheel", str(ROOT), "--no-deps", "--no-build-isolation",
                            "--no-index", "-q", "-w", str(wheels)], capture_output=True, text=True, timeout=600)
    assert build.returncode == 0, build.stderr[-2000:]
    wheel = next(wheels.glob("codec-*.whl"))
    names = zipfile.ZipFile(wheel).namelist()
    for card in ROOT.glob("models/*.toml"):
        assert f"codec/_shipped/models/{card.name}" in names
        assert any(name.startswith("codec/_shipped/weights/") for name in names)
    target = tmp_path / "site"
    install = subprocess.run([sys.executable, "-m", "pip", "install", "--no-deps", "--no-index", "-q", "--target",
                              str(target), str(wheel)], capture_output=True, text=True, timeout=600)
    assert install.returncode == 0, install.stderr[-2000:]

    away = tmp_path / "elsewhere"  # not the checkout: nothing can be found through the working directory
    away.mkdir()
    env = {key: value for key, value in os.environ.items() if key != "CODEC_HOME"}
    env["PYTHONPATH"] = str(target)

    def codec(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "codec", *args], cwd=away, env=env, capture_output=True,
                              text=True, timeout=300)

    where = subprocess.run([sys.executable, "-c", "import codec; print(codec.__file__)"], cwd=away, env=env,
                           capture_output=True, text=True)
    assert where.stdout.strip().startswith(str(target))
    listing = codec("models")
    assert listing.returncode == 0 and "ms-hyperprior" in listing.stdout, listing.stderr
    rows, cols = np.mgrid[0:48, 0:64]
    picture = np.stack([rows * 4, cols * 3, (rows + cols) * 2], axis=2).astype(np.uint8)
    Image.fromarray(picture).save(away / "in.png")
    assert codec("encode", "in.png", "-o", "in.bin").returncode == 0
    decoded = codec("decode", "in.bin", "-o", "out.png")
    assert decoded.returncode == 0, decoded.stderr
    assert Image.open(away / "out.png").size == (64, 48)
