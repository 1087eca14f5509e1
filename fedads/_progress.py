"""Progress output for long work: one line per step on stderr, silent when ``verbose`` is False."""

from __future__ import annotations

import sys
import time
from typing import TextIO

_PROCESS_START = time.perf_counter()


class Progress:
    """Prints ``[fedads <elapsed>s] <message>`` lines; cheap enough to call per chunk.

    Elapsed time counts from when fedads was imported in this process, so the lines of
    different stages (and of Flower apps run in this process) share one clock.
    """

    def __init__(self, verbose: bool = True, stream: TextIO | None = None) -> None:
        self.verbose = verbose
        self.stream = stream
        self._start = _PROCESS_START

    def __call__(self, message: str) -> None:
        if not self.verbose:
            return
        elapsed = time.perf_counter() - self._start
        print(f"[fedads {elapsed:7.1f}s] {message}", file=self.stream or sys.stderr, flush=True)


SILENT = Progress(verbose=False)
