"""What every benchmark writes beside its numbers: the machine, and strict JSON.

Benchmarks run as scripts (``python benchmarks/x.py``), so this module is imported as
``_results`` from the script's own folder.
"""

from __future__ import annotations

import json
import math
import os
import platform
from importlib.metadata import version
from pathlib import Path
from typing import Any


def machine() -> dict[str, Any]:
    """Cores, Python and torch versions, and the load average when the results were written
    (the machine may be shared: a number is only comparable with one taken beside it)."""
    return {
        "cpus": os.cpu_count(),
        "python": platform.python_version(),
        "torch": version("torch"),
        "load_average": list(os.getloadavg()),
    }


def strict(value: Any) -> Any:
    """``value`` with string dict keys, lists for tuples and ``None`` for NaN / infinity."""
    if isinstance(value, dict):
        return {str(k): strict(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [strict(v) for v in value]
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def write_json(path: Path, document: dict[str, Any]) -> None:
    """Write ``document`` as strict JSON (see :func:`strict`), creating the folder."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(strict(document), indent=1, allow_nan=False) + "\n")
