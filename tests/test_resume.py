"""Resume (#17 item 3): an interrupted run continues after its last completed epoch and gives the
scores of an uninterrupted run, bit for bit; a resume with other settings or tables, or with
nothing to resume from, is refused with one line saying what to fix."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from fedads.align import KeyNormalization
from fedads.errors import InputError, PartyError, ProtocolError
from fedads.federation import FederationSettings, run_federated
from fedads.protocol import ProtocolConfig
from fedads.protocol import resume as resume_module
from fedads.tables import load_party_table

SAMPLE = Path(__file__).resolve().parents[1] / "data" / "sample"
# The settings `fedads run --backend inprocess --epochs 3` builds (fedads.cli._cmd_run).
CLI_SETTINGS = FederationSettings(
    protocol=ProtocolConfig(mode="efficient", batch_size=512, epochs=3, seed=0),
    split_seed=0,
    normalization=KeyNormalization(strip=True, lower=False),
    verbose=False,
)


def _tables():  # noqa: ANN202
    social = load_party_table(SAMPLE / "social.csv", party="social", key="key")
    ecommerce = load_party_table(
        SAMPLE / "ecommerce.csv",
        party="ecommerce",
        key="key",
        label="label",
        existing="is_existing_customer",
    )
    return social, ecommerce


@pytest.fixture(scope="module")
def tables():  # noqa: ANN201
    return _tables()


def _run(tables, settings, **kwargs):  # noqa: ANN001, ANN003, ANN202
    """An in-process run; a new one aligns in the clear (the PSI's rows, without its seconds:
    the PSI is not what is tested here, and the command-line test runs it)."""
    if not kwargs.get("resume"):
        kwargs.setdefault("alignment", "clear")
    return run_federated(*tables, settings, backend=kwargs.pop("backend", "inprocess"), **kwargs)


@pytest.fixture(scope="module")
def uninterrupted(tables):  # noqa: ANN001, ANN201
    """The reference: the CLI's settings, never interrupted, not resumable."""
    return _run(tables, CLI_SETTINGS)


@pytest.fixture
def interrupt_after(monkeypatch: pytest.MonkeyPatch) -> Iterator:
    """``interrupt_after(k)``: the next run raises KeyboardInterrupt right after the coordinator
    wrote its manifest of epoch ``k`` (both parties have saved theirs), as Ctrl-C there would."""
    original = resume_module.RunCheckpoints.save
    when: list[int] = []

    def save(self, point) -> None:  # noqa: ANN001
        original(self, point)
        if when and point.epoch == when[0]:
            when.clear()
            raise KeyboardInterrupt

    monkeypatch.setattr(resume_module.RunCheckpoints, "save", save)
    yield when.append


def _interrupted(tables, settings, state: Path, k: int, arm, backend="inprocess") -> None:  # noqa: ANN001
    arm(k)
    with pytest.raises(KeyboardInterrupt):
        _run(tables, settings, backend=backend, resume_dir=state)
    manifest = json.loads((state / "coordinator" / "manifest.json").read_text())
    assert manifest["epoch"] == k


def _same_run(a, b) -> None:  # noqa: ANN001
    """Scores, losses, split and every privacy record equal; seconds and the few header bytes of
    the sealed payloads (sequence numbers restart in a new session) may differ."""
    assert np.array_equal(a.values["scores"], b.values["scores"])
    for key, value in a.values.items():
        if key.startswith(("epoch_seconds", "epoch_bytes", "relay_attack_seconds")):
            continue
        assert np.array_equal(np.asarray(value), np.asarray(b.values[key])), key
    assert set(b.values) == set(a.values)
    assert np.array_equal(a.social_rows, b.social_rows)
    for name, records in a.party_outputs.items():
        assert np.array_equal(records, b.party_outputs[name]), name


def test_resumed_run_equals_an_uninterrupted_one(
    tables, uninterrupted, interrupt_after, tmp_path: Path
) -> None:
    state = tmp_path / "state"
    _interrupted(tables, CLI_SETTINGS, state, 1, interrupt_after)
    saved = sorted(p.name for p in (state / "social" / "resume").iterdir())
    assert saved == ["epoch-0001"]
    interrupt_after(2)  # the resumed run is interrupted too, and resumed again
    with pytest.raises(KeyboardInterrupt):
        _run(tables, CLI_SETTINGS, resume_dir=state, resume=True)
    resumed = _run(tables, CLI_SETTINGS, resume_dir=state, resume=True)
    _same_run(uninterrupted, resumed)
    # The resumed run kept checkpointing: the last two epochs remain.
    assert sorted(p.name for p in (state / "social" / "resume").iterdir()) == [
        "epoch-0002",
        "epoch-0003",
    ]


def test_resume_before_the_first_epoch_skips_the_psi(
    tables, uninterrupted, interrupt_after, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    state = tmp_path / "state"
    _interrupted(tables, CLI_SETTINGS, state, 0, interrupt_after)
    import fedads.federation as federation

    def no_psi(*args: object, **kwargs: object) -> None:
        raise AssertionError("a resumed run must not run the PSI")

    monkeypatch.setattr(federation, "coordinate_alignment", no_psi)
    resumed = _run(tables, CLI_SETTINGS, resume_dir=state, resume=True)
    _same_run(uninterrupted, resumed)


def test_early_stopping_run_resumes_at_the_same_stop(
    tables, interrupt_after, tmp_path: Path
) -> None:
    """Early stopping's bookkeeping and each party's kept best-epoch copy survive a resume,
    also an interrupt after the stopping epoch, before the restore and the scoring."""
    protocol = replace(CLI_SETTINGS.protocol, epochs=8, early_stopping_patience=1, lr=0.02)
    settings = replace(CLI_SETTINGS, protocol=protocol, valid_share=0.3, min_query_rows=200)
    reference = _run(tables, settings)
    trained = len(reference.values["epoch_valid_losses"])
    assert reference.values["best_epoch"] < trained < 8  # stopped early, then restored
    for k in (2, trained):
        state = tmp_path / f"state-{k}"
        _interrupted(tables, settings, state, k, interrupt_after)
        resumed = _run(tables, settings, resume_dir=state, resume=True)
        _same_run(reference, resumed)


def test_pipelined_run_resumes(tables, interrupt_after, tmp_path: Path) -> None:
    """A resumable pipelined run drains its pipeline at each epoch end (the parties must be in
    step to save): the reference is an uninterrupted resumable run."""
    protocol = replace(CLI_SETTINGS.protocol, pipeline=True, chunk_batches=2, batch_size=256)
    settings = replace(CLI_SETTINGS, protocol=protocol)
    reference = _run(tables, settings, resume_dir=tmp_path / "ref")
    state = tmp_path / "state"
    _interrupted(tables, settings, state, 2, interrupt_after)
    resumed = _run(tables, settings, resume_dir=state, resume=True)
    _same_run(reference, resumed)


def test_other_settings_tables_or_backend_are_refused(
    tables, interrupt_after, tmp_path: Path
) -> None:
    state = tmp_path / "state"
    _interrupted(tables, CLI_SETTINGS, state, 1, interrupt_after)
    before = sorted(str(p) for p in state.rglob("*"))

    def resume(settings=CLI_SETTINGS, social=tables[0], backend="inprocess"):  # noqa: ANN001, ANN202
        return run_federated(
            social, tables[1], settings, backend=backend, resume_dir=state, resume=True
        )

    more_epochs = replace(CLI_SETTINGS, protocol=replace(CLI_SETTINGS.protocol, epochs=4))
    with pytest.raises(InputError, match=r"settings differ.*protocol-epochs: 3 -> 4.*--resume"):
        resume(more_epochs)
    with pytest.raises(InputError, match=r"split-seed: 0 -> 1"):
        resume(replace(CLI_SETTINGS, split_seed=1))
    frame = tables[0].frame.copy()
    frame.iloc[0, 1] = frame.iloc[1, 1]  # one social feature value changed
    edited = load_party_table(frame, party="social", key="key")
    with pytest.raises(InputError, match="social table differs.*same social table"):
        resume(social=edited)
    with pytest.raises(InputError, match="backend 'inprocess'.*--backend inprocess"):
        resume(backend="simulation")
    # A longer timeout is no reason to refuse; nothing was touched by the refusals.
    assert sorted(str(p) for p in state.rglob("*")) == before
    longer = replace(CLI_SETTINGS, protocol=replace(CLI_SETTINGS.protocol, timeout_s=900.0))
    resume(longer)


def test_a_party_refuses_to_resume_over_another_table(
    tables, interrupt_after, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Defense in depth: past the launcher's check, the party itself compares its table."""
    import fedads.federation as federation

    state = tmp_path / "state"
    _interrupted(tables, CLI_SETTINGS, state, 1, interrupt_after)
    frame = tables[0].frame.copy()
    frame.iloc[0, 1] = frame.iloc[1, 1]
    edited = load_party_table(frame, party="social", key="key")
    monkeypatch.setattr(federation, "check_resumable", lambda *args: 1)
    with pytest.raises((PartyError, ProtocolError), match="social party refuses to resume.*table"):
        run_federated(
            edited, tables[1], CLI_SETTINGS, backend="inprocess", resume_dir=state, resume=True
        )


def test_nothing_to_resume(tables, tmp_path: Path) -> None:
    with pytest.raises(InputError, match="nothing to resume.*without --resume"):
        run_federated(
            *tables, CLI_SETTINGS, backend="inprocess", resume_dir=tmp_path / "x", resume=True
        )
    with pytest.raises(InputError, match="without resume_dir"):
        run_federated(*tables, CLI_SETTINGS, backend="inprocess", resume=True)


def test_failure_before_alignment_leaves_no_state(tables, tmp_path: Path) -> None:
    state = tmp_path / "state"
    lonely = load_party_table(
        pd.DataFrame({"key": ["nobody", "noone"], "x": [1.0, 2.0]}), party="social", key="key"
    )
    with pytest.raises(Exception):  # noqa: B017 - whatever fails; the point is the folder
        run_federated(lonely, tables[1], CLI_SETTINGS, backend="inprocess", resume_dir=state)
    assert not state.exists()


def test_a_new_run_discards_old_state_but_not_foreign_files(
    tables, interrupt_after, tmp_path: Path
) -> None:
    state = tmp_path / "state"
    _interrupted(tables, CLI_SETTINGS, state, 1, interrupt_after)
    interrupt_after(0)
    with pytest.raises(KeyboardInterrupt):
        _run(tables, CLI_SETTINGS, resume_dir=state)
    manifest = json.loads((state / "coordinator" / "manifest.json").read_text())
    assert manifest["epoch"] == 0 and not (state / "social" / "resume").exists()
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "notes.txt").write_text("keep me")
    with pytest.raises(InputError, match="holds no fedads run state"):
        _run(tables, CLI_SETTINGS, resume_dir=mine)
    assert (mine / "notes.txt").read_text() == "keep me"


# -- the command line -------------------------------------------------------------------------


def test_cli_resume(
    uninterrupted,
    interrupt_after,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """`fedads run` interrupted after epoch 1 exits 130, leaves no report but OUT.resume and says
    how to continue; `--resume` with other options or without state exits 2 in one line; the
    resumed run's report has the uninterrupted run's federated scores and removes OUT.resume."""
    from fedads.cli import main

    monkeypatch.chdir(tmp_path)
    argv = ["run", "--social", str(SAMPLE / "social.csv"), "--ecommerce"]
    argv += [str(SAMPLE / "ecommerce.csv"), "--key", "key", "--backend", "inprocess"]
    argv += ["--epochs", "3", "--out", "out", "-q"]
    interrupt_after(1)
    assert main(argv) == 130
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("fedads: interrupted (SIGINT); rerun the same command with --resume")
    assert "after epoch 1/3" in err[-1] and "out.resume" in err[-1]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.resume"]

    assert main([*argv[:-5], "--epochs", "4", "--out", "out", "-q", "--resume"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("fedads: error: resume: the settings differ")
    assert "protocol-epochs: 3 -> 4" in err[0]
    assert main([*argv[:-2], "other", "-q", "--resume"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "nothing to resume" in err[0]

    demo = ["demo", "--users", "2000", "--epochs", "1", "--backend", "inprocess", "-q"]
    assert main([*demo, "--out", "demo", "--resume"]) == 2  # demo takes --resume too
    assert "nothing to resume" in capsys.readouterr().err

    assert main([*argv, "--resume"]) == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]  # state removed
    scores = pd.read_csv(tmp_path / "out" / "scores.csv")
    expected = uninterrupted.values["scores"].astype(np.float64)
    keys = uninterrupted.ecommerce_rows[uninterrupted.values["test_positions"]]
    by_key = dict(zip(_tables()[1].keys()[keys], expected, strict=True))
    assert np.array_equal(scores["federated"].to_numpy(), scores["key"].map(by_key).to_numpy())


# -- a real Ctrl-C, then --resume, through Flower's simulation engine -------------------------


@pytest.mark.slow  # two Flower simulation runs in subprocesses (Ray, two actors each)
def test_sigint_then_resume_through_the_simulation_engine(uninterrupted, tmp_path: Path) -> None:
    """SIGINT during a simulation run, after its second epoch: the run ends within seconds with
    exit 130 and one line, no process it started (Ray's included) is left, no report, the
    parties' state on disk (each Ray actor is its own process); `--resume` continues from the
    saved epoch through a new engine, and the federated scores are the uninterrupted run's
    (the in-process one: Flower changes no number here; the equivalence tests allow float32
    rounding, which this run did not need). This is also the simulation case of
    tests/test_reliability.py's interrupt test (one interrupted Flower run serves both)."""
    import subprocess

    from _interrupt import cli_environment, interrupt_at, sample_run_argv

    # 12 epochs, interrupted after the 2nd: the signal lands in training, not in the shutdown
    argv = sample_run_argv(tmp_path / "out", "--epochs", "12", "--backend", "simulation")
    returncode, tail, rest = interrupt_at(argv, "epoch 2/12", "SIGINT")
    assert returncode == 130, rest
    assert "--resume" in tail[-1], rest
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.resume"]
    manifest = json.loads((tmp_path / "out.resume" / "coordinator" / "manifest.json").read_text())
    assert manifest["epoch"] in (1, 2, 3), manifest["epoch"]  # a later save may have been cut

    done = subprocess.run(
        [*argv, "--resume", "-q"],
        capture_output=True,
        text=True,
        env=cli_environment(),
        timeout=600,
    )
    assert done.returncode == 0, done.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]
    scores = pd.read_csv(tmp_path / "out" / "scores.csv")
    longer = replace(CLI_SETTINGS, protocol=replace(CLI_SETTINGS.protocol, epochs=12))
    reference = _run(_tables(), longer)
    keys = reference.ecommerce_rows[reference.values["test_positions"]]
    by_key = dict(zip(_tables()[1].keys()[keys], reference.values["scores"], strict=True))
    expected = scores["key"].map(by_key).to_numpy(dtype=np.float64)
    np.testing.assert_allclose(scores["federated"].to_numpy(), expected, rtol=1e-6, atol=1e-7)


def test_run_with_unaligned_training_resumes_exactly(
    tables, uninterrupted, interrupt_after, tmp_path: Path
) -> None:
    """The label party's own training on its unaligned users (its 'no social account'
    embedding, its own batch order) is part of its saved state: a resumed run equals an
    uninterrupted one."""
    settings = replace(CLI_SETTINGS, unaligned_training=True)
    reference = _run(tables, settings)
    assert not np.array_equal(reference.values["scores"], uninterrupted.values["scores"])
    state = tmp_path / "state"
    _interrupted(tables, settings, state, 1, interrupt_after)
    _same_run(reference, _run(tables, settings, resume_dir=state, resume=True))
