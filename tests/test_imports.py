"""Public modules import on their own, first, in a fresh interpreter (catches circular imports the test order hides:
`from codec.split.student import ...` as a program's first import once failed that way)."""
from __future__ import annotations

import subprocess
import sys

ENTRY_MODULES = [
    "codec.api", "codec.bitstream", "codec.cli", "codec.entropy.hyper", "codec.image.hyperprior", "codec.image.mgm",
    "codec.registry", "codec.split.efficientnet", "codec.split.runtime", "codec.split.server", "codec.split.student",
    "codec.zoo",
]


def test_entry_modules_import_first_in_a_fresh_interpreter():
    failures = []
    for module in ENTRY_MODULES:
        result = subprocess.run([sys.executable, "-W", "ignore", "-c", f"import {module}"], capture_output=True, text=True)
        if result.returncode:
            failures.append(f"{module}: {result.stderr.strip().splitlines()[-1]}")
    assert not failures, "\n".join(failures)


def test_loading_models_through_the_api_emits_no_library_warning():
    """torch's jit deprecation warnings came from CompressAI's package __init__ (torch_geometric); the codec imports
    only the parts it uses, so a user's `-W error` run stays clean and torch_geometric is never loaded; scipy.stats,
which compressai imports, loads only when something uses it."""
    import subprocess
    import sys

    script = ("import sys\nfrom codec.api import encode_image, decode_image\nfrom codec.zoo import load_model, model_cards\n"
              "for name in model_cards():\n    load_model(name)\n"
              "assert 'torch_geometric' not in sys.modules and 'compressai.datasets' not in sys.modules\n"
              "assert 'scipy.stats._stats_py' not in sys.modules, 'scipy.stats ran its __init__'\n"
              "from scipy.stats import norm\nassert norm.ppf(0.5) == 0.0\n")
    result = subprocess.run([sys.executable, "-W", "error", "-c", script], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
