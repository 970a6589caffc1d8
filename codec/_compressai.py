"""Import only the parts of CompressAI the codec uses (its layers, entropy models and conv helpers).

`compressai/__init__.py` imports every subpackage, its point-cloud datasets and layers among them, and those pull in
torch_geometric: about half of the codec's start-up time. Importing this module registers `compressai` and the
subpackages whose `__init__` does that (`layers`, `models`, `entropy_models`) as lazy packages: their submodules
import as usual (`from compressai.layers.gdn import GDN` loads gdn.py alone), and the first access to a name that
a package's own `__init__` defines runs that `__init__`, so code that wants all of CompressAI still gets it.
Nothing is changed when CompressAI was imported before. The codec imports those names from here.
"""
from __future__ import annotations

import importlib.util
import sys
import types
import warnings

LAZY_PACKAGES = ("compressai", "compressai.entropy_models", "compressai.layers", "compressai.models")


class LazyPackage(types.ModuleType):
    """A package whose `__init__` runs on the first lookup of a name it does not hold yet."""

    def __getattr__(self, name: str) -> object:
        if name.startswith("__") or self.__dict__.get("_initialised"):
            raise AttributeError(f"module {self.__name__!r} has no attribute {name!r}")
        self.__dict__["_initialised"] = True
        self.__spec__.loader.exec_module(self)
        return getattr(self, name)


def install() -> None:
    for name in LAZY_PACKAGES:
        if name in sys.modules:
            continue
        spec = importlib.util.find_spec(name)
        if spec is None:
            raise ImportError(f"{name} is not installed (pip install compressai)")
        module = LazyPackage(name)
        module.__spec__, module.__loader__, module.__file__ = spec, spec.loader, spec.origin
        module.__path__ = list(spec.submodule_search_locations or [])
        module.__package__ = name
        sys.modules[name] = module
        parent, _, child = name.rpartition(".")
        if parent:
            setattr(sys.modules[parent], child, module)


install()
with warnings.catch_warnings():  # compressai's modules call torch.jit.script, deprecated in torch 2.14 (FutureWarning)
    warnings.simplefilter("ignore", FutureWarning)
    from compressai.entropy_models.entropy_models import EntropyBottleneck, GaussianConditional  # noqa: E402
    from compressai.layers.gdn import GDN  # noqa: E402
    from compressai.layers.layers import ResidualBlock  # noqa: E402
    from compressai.models.utils import conv, deconv  # noqa: E402

__all__ = ["GDN", "EntropyBottleneck", "GaussianConditional", "ResidualBlock", "conv", "deconv"]
