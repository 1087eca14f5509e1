"""The ``fedads`` command: bring-your-own tables on the shipped sample, bad input, world."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from fedads import cli
from fedads.cli import build_parser, main

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
            "--campaign",
            *FAST,
        ],
        capsys,
    )
    assert code == 0, stderr
    report = json.loads((out / "report.json").read_text())
    # --campaign on own tables without a truth file: realized counts only (issue 15 item 6).
    campaign = report["campaign"]
    assert campaign["test_users"] > campaign["aligned_test_users"] == report["data"]["test_users"]
    for pool in ("all", "prospecting"):
        assert len(campaign["lift"][pool]["ci95"]) == 2
        assert "expected" not in campaign["lift"][pool]
    assert "local_serving" in report["models"]
    assert "campaign view" in stdout
    social = pd.read_csv(SAMPLE / "social.csv", usecols=["key"])
    ecommerce = pd.read_csv(SAMPLE / "ecommerce.csv", usecols=["key"])
    aligned = len(set(social["key"]) & set(ecommerce["key"]))
    assert report["data"]["aligned"] == aligned
    assert report["data"]["social_rows"] == len(social)
    assert "users not aligned" in stdout and f"ecommerce {len(ecommerce) - aligned:,}" in stdout
    assert "federated" in stdout and "prospecting" in stdout


def test_demo_campaign_flag_sets_the_campaign_view() -> None:
    args = build_parser().parse_args(["demo", "--campaign", "--quick"])
    config = cli._demo_config(args.quick, 0, "inprocess", users=500, epochs=1)
    assert not config.campaign and cli._with_campaign(config, args).campaign
    assert not build_parser().parse_args(["demo"]).campaign


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

    def fake_run(
        self: Experiment, out_dir: object = None, *, verbose: bool = True, **kwargs: object
    ) -> None:
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


# -- one exit-code rule (issue #17): 0 ok, 2 bad input, 1 internal failure, 130/143 ----------


def _one_line(stderr: str) -> str:
    lines = [line for line in stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "Traceback" not in stderr, stderr
    return lines[0]


def _tables(tmp_path: Path, social: pd.DataFrame | None = None, ecom: pd.DataFrame | None = None):  # noqa: ANN202
    s = str(SAMPLE / "social.csv") if social is None else _bad(tmp_path, "social.csv", social)
    e = str(SAMPLE / "ecommerce.csv") if ecom is None else _bad(tmp_path, "ecommerce.csv", ecom)
    return ["--social", s, "--ecommerce", e, "--key", "key"]


def _sample(name: str) -> pd.DataFrame:
    return pd.read_csv(SAMPLE / f"{name}.csv", dtype={"key": str})


@pytest.fixture
def no_training(monkeypatch: pytest.MonkeyPatch) -> None:
    """Fail the test if training starts: these errors must come before it."""

    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError("training started")

    monkeypatch.setattr("fedads.experiment.run_federated", refuse)


@pytest.mark.parametrize(
    "case, expected",
    [
        ("dup_after_strip", "duplicat"),
        ("label_all0", "no positive"),
        ("overlap10", "selects no one"),
        ("case_differs", "--key-lower"),
    ],
)
def test_bad_data_exits_2_before_training(
    case: str,
    expected: str,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    no_training: None,
) -> None:
    social, ecom = _sample("social"), _sample("ecommerce")
    if case == "dup_after_strip":
        social.loc[1, "key"] = f" {social.loc[0, 'key']} "  # distinct only before stripping
    elif case == "label_all0":
        ecom["label"] = 0
    elif case == "overlap10":
        social = social[social["key"].isin(ecom["key"].head(10))]
    elif case == "case_differs":
        social["key"] = social["key"].str.upper()
    argv = ["run", *_tables(tmp_path, social, ecom), "--out", str(tmp_path / "out"), *FAST]
    code, _, stderr = _run(argv, capsys)
    line = _one_line(stderr)
    assert code == 2 and line.startswith("fedads: error:") and expected in line, line
    assert not (tmp_path / "out").exists()


def test_key_lower_flag_aligns_keys_whose_case_differs(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The hint of the no-overlap error is something the CLI can do: ``--key-lower``."""
    from fedads.experiment import Experiment, check_before_training

    seen: list[int] = []

    def checked(
        self: Experiment, out_dir: object = None, *, verbose: bool = True, **kw: object
    ) -> None:
        settings = self.config.federation
        assert settings.normalization.lower
        seen.append(check_before_training(self.social, self.ecommerce, settings, 0.1))
        raise KeyboardInterrupt

    monkeypatch.setattr(Experiment, "run", checked)
    social = _sample("social")
    social["key"] = social["key"].str.upper()
    assert main(["run", *_tables(tmp_path, social), "--key-lower", "-q"]) == 130
    assert seen and seen[0] > 1000


def test_interrupts_exit_130_and_143_with_one_line(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    import os
    import signal
    import time

    from fedads.experiment import Experiment

    def sigterm(
        self: Experiment, out_dir: object = None, *, verbose: bool = True, **kw: object
    ) -> None:
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(5)  # the handler raises before this ends
        raise AssertionError("SIGTERM was not handled")

    before = signal.getsignal(signal.SIGTERM)
    monkeypatch.setattr(Experiment, "run", sigterm)
    tables = ["--social", str(SAMPLE / "social.csv"), "--ecommerce", str(SAMPLE / "ecommerce.csv")]
    code, _, stderr = _run(["run", *tables, "--key", "key", "-q"], capsys)
    assert code == 143 and "terminated" in _one_line(stderr)
    assert signal.getsignal(signal.SIGTERM) is before  # main() restores the handler

    def sigint(
        self: Experiment, out_dir: object = None, *, verbose: bool = True, **kw: object
    ) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(Experiment, "run", sigint)
    code, _, stderr = _run(["run", *tables, "--key", "key", "-q"], capsys)
    assert code == 130 and "interrupted" in _one_line(stderr)


def test_os_errors_are_one_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    import errno

    from fedads.experiment import Experiment

    def disk_full(
        self: Experiment, out_dir: object = None, *, verbose: bool = True, **kw: object
    ) -> None:
        raise OSError(errno.ENOSPC, "No space left on device", str(out_dir))

    monkeypatch.setattr(Experiment, "run", disk_full)
    tables = ["--social", str(SAMPLE / "social.csv"), "--ecommerce", str(SAMPLE / "ecommerce.csv")]
    code, _, stderr = _run(["run", *tables, "--key", "key", "-q"], capsys)
    line = _one_line(stderr)
    assert code == 1 and line.startswith("fedads: failed:") and "No space left" in line

    def denied(
        self: Experiment, out_dir: object = None, *, verbose: bool = True, **kw: object
    ) -> None:
        raise PermissionError(errno.EACCES, "Permission denied", str(out_dir))

    monkeypatch.setattr(Experiment, "run", denied)
    code, _, stderr = _run(["run", *tables, "--key", "key", "-q"], capsys)
    line = _one_line(stderr)
    assert code == 2 and line.startswith("fedads: error:") and "Permission denied" in line


@pytest.mark.parametrize("case", ["file", "other_files"])
def test_unusable_out_folder_exits_2_before_training(
    case: str, tmp_path: Path, capsys: pytest.CaptureFixture[str], no_training: None
) -> None:
    out = tmp_path / "out"
    if case == "file":
        out.write_text("not a folder")
    else:
        out.mkdir()
        (out / "notes.txt").write_text("keep me")
    code, _, stderr = _run(["run", *_tables(tmp_path), "--out", str(out), *FAST], capsys)
    assert code == 2 and _one_line(stderr).startswith("fedads: error:")
    assert out.is_file() or (out / "notes.txt").read_text() == "keep me"


@pytest.mark.parametrize("signum, code", [("SIGINT", 130), ("SIGTERM", 143)])
def test_interrupt_reported_as_a_failure_by_a_backend_still_exits_130_or_143(
    signum: str, code: int, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """A backend that catches the interrupt and raises its own error (the simulation engine
    'failed' with an empty reason, issue #17) does not turn an interrupt into exit 1."""
    import os
    import signal
    import time

    from fedads.errors import ProtocolError
    from fedads.experiment import Experiment

    def engine(
        self: Experiment, out_dir: object = None, *, verbose: bool = True, **kw: object
    ) -> None:
        try:
            os.kill(os.getpid(), getattr(signal, signum))
            time.sleep(5)
        except BaseException:  # noqa: BLE001 - what an engine wrapper does
            raise ProtocolError("the Flower simulation engine failed: ") from None

    monkeypatch.setattr(Experiment, "run", engine)
    tables = ["--social", str(SAMPLE / "social.csv"), "--ecommerce", str(SAMPLE / "ecommerce.csv")]
    got, _, stderr = _run(["run", *tables, "--key", "key", "-q"], capsys)
    line = _one_line(stderr)
    assert got == code and ("interrupted" in line or "terminated" in line), line
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler
