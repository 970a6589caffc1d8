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
