"""The ``fedads`` command: bring-your-own tables on the shipped sample, bad input, world."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from fedads.cli import main

SAMPLE = Path(__file__).resolve().parents[1] / "data" / "sample"
FAST = ["--backend", "inprocess", "--epochs", "2", "--quiet"]


def _run(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    code = main(argv)
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_run_on_shipped_sample(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "report"
    code, stdout, stderr = _run(
        [
            "run",
            "--social",
            str(SAMPLE / "social.csv"),
            "--ecommerce",
            str(SAMPLE / "ecommerce.csv"),
            "--key",
            "key",
            "--out",
            str(out),
            *FAST,
        ],
        capsys,
    )
    assert code == 0, stderr
    report = json.loads((out / "report.json").read_text())
    social = pd.read_csv(SAMPLE / "social.csv", usecols=["key"])
    ecommerce = pd.read_csv(SAMPLE / "ecommerce.csv", usecols=["key"])
    aligned = len(set(social["key"]) & set(ecommerce["key"]))
    assert report["data"]["aligned"] == aligned
    assert report["data"]["social_rows"] == len(social)
    assert "users not aligned" in stdout and f"ecommerce {len(ecommerce) - aligned:,}" in stdout
    assert "federated" in stdout and "prospecting" in stdout


def _bad(tmp_path: Path, name: str, frame: pd.DataFrame) -> str:
    path = tmp_path / name
    frame.to_csv(path, index=False)
    return str(path)


@pytest.mark.parametrize(
    "case, expected",
    [
        ("missing_file", "not found"),
        ("wrong_key", "nope"),
        ("no_overlap", "no users in common"),
        ("non_binary_label", "label"),
    ],
)
def test_bad_input_exits_nonzero_with_one_line(
    case: str, expected: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    social = str(SAMPLE / "social.csv")
    ecommerce = str(SAMPLE / "ecommerce.csv")
    key = "key"
    if case == "missing_file":
        social = str(tmp_path / "missing.csv")
    elif case == "wrong_key":
        key = "nope"
    elif case == "no_overlap":
        frame = pd.read_csv(SAMPLE / "ecommerce.csv", dtype={"key": str})
        frame["key"] = "x" + frame["key"]
        ecommerce = _bad(tmp_path, "ecommerce.csv", frame)
    elif case == "non_binary_label":
        frame = pd.read_csv(SAMPLE / "ecommerce.csv", dtype={"key": str})
        frame.loc[0, "label"] = 2
        ecommerce = _bad(tmp_path, "ecommerce.csv", frame)
    argv = ["run", "--social", social, "--ecommerce", ecommerce, "--key", key]
    code, _, stderr = _run([*argv, "--out", str(tmp_path / "out"), *FAST], capsys)
    assert code != 0
    lines = [line for line in stderr.splitlines() if line.strip()]
    assert len(lines) == 1, stderr
    assert lines[0].startswith("fedads: error:") and expected in lines[0].lower(), lines[0]


def test_world_writes_party_tables_and_separate_truth(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, _, stderr = _run(
        ["world", "--users", "500", "--seed", "4", "--out", str(tmp_path), "--quiet"], capsys
    )
    assert code == 0, stderr
    names = {p.name for p in tmp_path.iterdir()}
    assert {"social.csv", "ecommerce.csv"} <= names
    truth = [n for n in names if n.startswith("truth")]
    assert truth, names
    social = pd.read_csv(tmp_path / "social.csv")
    assert "label" not in social.columns and "is_existing_customer" not in social.columns
    assert len(pd.read_csv(tmp_path / "ecommerce.csv")) == 500


def test_timeout_flag_sets_the_one_timeout(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """``--timeout`` on run and demo ends up in ``ProtocolConfig.timeout_s`` (run config
    ``timeout-s``), the one timeout every backend uses."""
    from fedads import cli
    from fedads.experiment import Experiment

    seen: list[float] = []

    def fake_run(self: Experiment, out_dir: object = None, *, verbose: bool = True) -> None:
        seen.append(self.config.federation.protocol.timeout_s)
        assert self.config.federation.to_run_config()["timeout-s"] == seen[-1]
        raise KeyboardInterrupt  # stop before training; main() maps it to exit code 130

    monkeypatch.setattr(Experiment, "run", fake_run)
    tables = ["--social", str(SAMPLE / "social.csv"), "--ecommerce", str(SAMPLE / "ecommerce.csv")]
    assert cli.main(["run", *tables, "--key", "key", "--timeout", "7.5"]) == 130
    assert cli.main(["demo", "--users", "500", "--epochs", "1", "--timeout", "9"]) == 130
    assert cli.main(["demo"]) == 130
    assert seen == [7.5, 9.0, 600.0]
    config = cli._demo_config(False, 0, "inprocess", users=500, epochs=1, timeout_s=9.0)
    assert config.world.n_users == 500 and config.federation.protocol.epochs == 1
