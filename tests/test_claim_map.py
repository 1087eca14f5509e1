"""benchmarks/claim_map.py end to end at a tiny size: records, summary, heatmaps, reuse.

The map's numbers at this size are not evidence (4 cells, 2 seeds, 3000 users, 2 epochs); the test
checks that every (cell, budget) gets a both-variance interval, that a seed aligns once and its
other cells reuse that alignment, and that the heatmaps and the one-axis plot are written.
"""

from __future__ import annotations

import importlib.util
import json
import math
import sys
from dataclasses import replace
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def claim_map():
    spec = importlib.util.spec_from_file_location("claim_map", ROOT / "benchmarks/claim_map.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules["claim_map"] = module
    # as when run as a script: its own folder first on sys.path (for benchmarks/_results.py)
    sys.path.insert(0, str(ROOT / "benchmarks"))
    try:
        spec.loader.exec_module(module)
    finally:
        sys.path.remove(str(ROOT / "benchmarks"))
    return module


def test_cells_run_the_default_once(claim_map) -> None:
    names = [claim_map.cell_name(c) for c in claim_map.cells(claim_map.FULL)]
    assert len(names) == len(set(names))
    assert "default" in names
    # 4 x 4 grid (the default inside), 3 other brand rates, 2 other values per skew.
    assert len(names) == 16 + 3 + 2 + 2


def test_quick_map_writes_intervals_plots_and_reuses_one_alignment(
    claim_map, tmp_path, monkeypatch
) -> None:
    tiny = replace(
        claim_map.QUICK,
        n_users=3_000,
        social=(0.5, 1.0),
        ecommerce=(0.5, 0.7),  # 0.5 x 0.7 is the default world
        brand_rates=((6.0, 1.0),),
        ecommerce_skew=(1.2,),
        social_skew=(1.0,),
        max_epochs=2,
        n_bootstrap=20,
    )
    monkeypatch.setattr(claim_map, "QUICK", tiny)
    assert claim_map.main(["--quick", "--out", str(tmp_path)]) == 0
    document = json.loads((tmp_path / "claim_map.json").read_text())
    assert document["preset"] == "quick"
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
