"""Summarize a py-spy ``--format raw`` profile (all processes, idle frames dropped) as text.

Usage::

    py-spy record --subprocesses --rate 200 --format raw -o prof.raw -- python benchmarks/perf.py
    python benchmarks/pyspy_summary.py prof.raw > benchmarks/results/perf_profile_<name>.txt

Prints the frames with the most samples: *self* (the frame was executing) and *inclusive*
(the frame was on the stack), and samples per process. A sample whose innermost frame waits
(``*.wait``, ``sleep``, ``select``, lock ``acquire``, queue ``get``, or Ray's actor idle loop
``Worker.main_loop``) is counted apart as idle, so the tables show where CPU time goes.
"""

from __future__ import annotations

import argparse
import collections
import re
from pathlib import Path

IDLE = re.compile(
    r"(^|\.)(wait|sleep|select|poll|epoll_wait|_wait_for_tstate_lock|acquire|get|main_loop)$"
)


def summarize(path: Path, top: int) -> str:
    own: collections.Counter[str] = collections.Counter()
    inclusive: collections.Counter[str] = collections.Counter()
    processes: collections.Counter[str] = collections.Counter()
    idle = active = 0
    for line in path.read_text().splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        count = int(count_text)
        parts = stack.split(";")
        chain = [p for p in parts if p.startswith("process ")]
        frames = [p for p in parts if not p.startswith("process ")]
        if not frames or IDLE.search(frames[-1].split(" (")[0]):
            idle += count
            continue
        active += count
        process = chain[-1] if chain else "?"
        processes[process.split(":", 1)[-1].strip('"')[:120]] += count
        own[frames[-1]] += count
        for frame in set(frames):
            inclusive[frame] += count
    lines = [
        f"py-spy profile {path.name}: {active} active samples, {idle} idle samples dropped",
        "",
        "samples by process:",
        *(f"  {n:7d}  {name}" for name, n in processes.most_common()),
        "",
        f"top {top} frames by own samples:",
        *(f"  {n:7d}  {frame[:160]}" for frame, n in own.most_common(top)),
        "",
        f"top {top} frames by inclusive samples:",
        *(f"  {n:7d}  {frame[:160]}" for frame, n in inclusive.most_common(top)),
    ]
    return "\n".join(lines) + "\n"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("raw", type=Path)
    parser.add_argument("--top", type=int, default=40)
    args = parser.parse_args()
    print(summarize(args.raw, args.top), end="")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
