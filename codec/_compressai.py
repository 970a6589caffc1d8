"""Import only the parts of CompressAI the codec uses (its layers, entropy models and conv helpers).

`compressai/__init__.py` imports every subpackage, its point-cloud datasets and layers among them, and those pull in
torch_geometric: about half of the codec's start-up time. Importing this module registers `compressai` and the
subpackages whose `__init__` does that (`layers`, `models`, `entropy_models`) as lazy packages: their submodules
import as usual (`from compressai.layers.gdn import GDN` loads gdn.py alone), and the first access to a name that
a package's own `__init__` defines runs that `__init__`, so code that wants all of CompressAI still gets it.
`scipy.stats` is deferred the same way: compressai's entropy_models imports it (about 0.4 s, a third of the codec's
start-up) for one `norm.ppf` call in GaussianConditional's training-time scale table, which coding never makes.
Nothing is changed when a package was imported before. The codec imports those names from here.
"""
from __future__ import annotations

import importlib.util
import sys
import types
import warnings

LAZY_PACKAGES = ("scipy.stats", "compressai", "compressai.entropy_models", "compressai.layers", "compressai.models")


class LazyPackage(types.ModuleType):
    """A package whose `__init__` runs on the first lookup of a name it does not hold yet."""

    def __getattr__(self, name: str) -> object:
        if name.startswith("__") or self.__dict__.get("_initialised"):
            raise AttributeError(f"module {self.__name__!r} has no attribute {name!r}")
        if importlib.util.find_spec(f"{self.__name__}.{name}") is not None:  # `from package import submodule`
            return importlib.import_module(f"{self.__name__}.{name}")
        self.__dict__["_initialised"] = True
        self.__spec__.loader.exec_module(self)
        return getattr(self, name)


# compressai's entropy models ask the package, when they are built, which of its own coders to proxy; the codec codes
# with constriction and never uses that coder. The lazy package answers those two lookups ("ans", compressai's
# default) instead of running its __init__ for them; once anything else runs that __init__, its own functions
# replace these.
COMPRESSAI_CODER = "ans"
CODER_LOOKUPS = {"get_entropy_coder": lambda: COMPRESSAI_CODER, "available_entropy_coders": lambda: [COMPRESSAI_CODER]}


def install() -> None:
    for name in LAZY_PACKAGES:
        if name in sys.modules:
            continue
        spec = importlib.util.find_spec(name)
        if spec is None:
            raise ImportError(f"{name} is not installed (pip install codec's dependencies)")
        module = LazyPackage(name)
        module.__spec__, module.__loader__, module.__file__ = spec, spec.loader, spec.origin
        module.__path__ = list(spec.submodule_search_locations or [])
        module.__package__ = name
        if name == "compressai":
            module.__dict__.update(CODER_LOOKUPS)
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

def entropy_bottleneck(channels: int) -> EntropyBottleneck:
    """CompressAI's factorized prior (training-time likelihoods and the quantiles the codec's tables come from)."""
    return EntropyBottleneck(channels, entropy_coder=COMPRESSAI_CODER)


def gaussian_conditional() -> GaussianConditional:
    """CompressAI's Gaussian conditional (training-time likelihoods; coding uses codec.entropy.gaussian)."""
    return GaussianConditional(None, entropy_coder=COMPRESSAI_CODER)


__all__ = ["GDN", "EntropyBottleneck", "GaussianConditional", "ResidualBlock", "conv", "deconv", "entropy_bottleneck", "gaussian_conditional"]
