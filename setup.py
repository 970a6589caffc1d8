"""Build hook: wheels carry the model cards and weights inside the package (codec/_shipped/{models,weights}), so an
installed `codec` works offline. Everything else about the package is in pyproject.toml."""
from __future__ import annotations

import shutil
from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py

ROOT = Path(__file__).resolve().parent
SHIPPED = (("models", "*.toml"), ("weights", "*.safetensors"))


class BuildWithModels(build_py):
    """build_py, then copy models/*.toml and weights/*.safetensors under codec/_shipped/ in the build tree."""

    def run(self) -> None:
        super().run()
        if getattr(self, "editable_mode", False):  # an editable install reads them from the checkout
            return
        target = Path(self.build_lib) / "codec" / "_shipped"
        for folder, pattern in SHIPPED:
            (target / folder).mkdir(parents=True, exist_ok=True)
            for path in sorted((ROOT / folder).glob(pattern)):
                shutil.copy2(path, target / folder / path.name)


setup(cmdclass={"build_py": BuildWithModels})
