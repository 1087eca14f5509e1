"""benchmarks/claim_map.py end to end at its ``--tiny`` size: records, summary, heatmaps, reuse.

The script runs as a subprocess, as a user runs it (no test imports a benchmark). The map's
numbers at this size are not evidence (4 cells, 2 seeds, 3000 users, 2 epochs); the test checks
that every (cell, budget) gets a both-variance interval, that a seed aligns once and its other
cells reuse that alignment, and that the heatmaps and the one-axis plot are written.
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "benchmarks" / "claim_map.py"


def _script(*args: str, timeout: float) -> str:
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])),
    }
    done = subprocess.run(
        [sys.executable, str(SCRIPT), *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=env,
        cwd=ROOT,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return done.stdout


def test_cells_run_the_default_once() -> None:
    names = _script("--list-cells", timeout=120).split()
    assert len(names) == len(set(names))
    assert "default" in names
    # 4 x 4 grid (the default inside), 3 other brand rates, 2 other values per skew.
    assert len(names) == 16 + 3 + 2 + 2


def test_tiny_map_writes_intervals_plots_and_reuses_one_alignment(tmp_path: Path) -> None:
    _script("--tiny", "--out", str(tmp_path), timeout=600)
    document = json.loads((tmp_path / "claim_map.json").read_text())
    assert document["preset"] == "tiny"
    summary = document["summary"]
    assert len(summary) == 4 and "default" in summary
    for cell in summary.values():
        assert set(cell) == {"0.05", "0.1", "0.2"}
        for row in cell.values():
            low, high = row["ci95"]
            assert row["n_seeds"] == 2 and math.isfinite(low) and low <= row["mean"] <= high
    runs = document["runs"]
    assert len(runs) == 8
    for seed in (0, 1):
        reused = [r["reused_alignment"] for r in runs if r["seed"] == seed]
        assert reused.count(False) == 1 and reused[0] is False
    for name in ("claim_map_0.05.png", "claim_map_0.1.png", "claim_map_0.2.png",
                 "claim_map_axes.png", "runs.jsonl"):  # fmt: skip
        assert (tmp_path / name).stat().st_size > 0
