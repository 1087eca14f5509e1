"""The bring-your-own-data example runs on the shipped sample (the quickstart runs the same
facade through Flower and is exercised by tests/test_experiment.py)."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


def _load(name: str):
    spec = importlib.util.spec_from_file_location(name, EXAMPLES / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    assert spec.loader is not None
    spec.loader.exec_module(module)
    return module


def test_bring_your_own_data_example(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    example = _load("bring_your_own_data")
    assert example.main(["--out", str(tmp_path)]) == 0
    printed = capsys.readouterr().out
    assert "aligned" in printed and "federated" in printed
    report = json.loads((tmp_path / "report.json").read_text())
    assert report["data"]["aligned"] > 0


def test_bring_your_own_data_example_reports_bad_tables(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    example = _load("bring_your_own_data")
    assert example.main(["--social", str(tmp_path / "missing.csv"), "--out", str(tmp_path)]) == 2
    assert "missing.csv" in capsys.readouterr().out


def test_quickstart_example_parses() -> None:
    assert callable(_load("quickstart").main)
