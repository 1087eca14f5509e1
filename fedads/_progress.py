"""Progress output for long work: one line per step on stderr, silent when ``verbose`` is False."""

from __future__ import annotations

import sys
import time
from typing import TextIO


class Progress:
    """Prints ``[fedads] <stage> ... (elapsed)`` lines; cheap enough to call per chunk."""

    def __init__(self, verbose: bool = True, stream: TextIO | None = None) -> None:
        self.verbose = verbose
        self.stream = stream
        self._start = time.perf_counter()

    def __call__(self, message: str) -> None:
        if not self.verbose:
            return
        elapsed = time.perf_counter() - self._start
        print(f"[fedads {elapsed:7.1f}s] {message}", file=self.stream or sys.stderr, flush=True)


SILENT = Progress(verbose=False)
