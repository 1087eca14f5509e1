"""Library hygiene: what importing fedads does (nothing process-wide), logging and progress bars,
scoped environment changes, the Flower engine patches' guards, and the watch on Flower's
deprecated ``run_simulation`` (docs/flower.md, "Moving off run_simulation")."""

from __future__ import annotations

import ast
import inspect
import io
import json
import logging
import os
import re
import subprocess
import sys
import textwrap
import warnings
from pathlib import Path

import pytest

import fedads
from fedads import _progress
from fedads._progress import Progress, progress_bar, set_verbosity
from fedads.errors import InputError

ROOT = Path(__file__).resolve().parents[1]


def _python(code: str) -> str:
    """Run ``code`` in a fresh interpreter on this checkout; its stdout."""
    env = {**os.environ, "PYTHONPATH": str(ROOT), "FLWR_TELEMETRY_ENABLED": "0"}
    env.pop("PYTHONWARNINGS", None)
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


# ------------------------------------------------------------------------------ import
def test_import_fedads_align_loads_neither_torch_nor_protocol_nor_flower() -> None:
    loaded = json.loads(
        _python(
            "import fedads.align, sys, json; "
            "print(json.dumps([m for m in ('torch', 'fedads.protocol', 'flwr', 'ray') "
            "if m in sys.modules]))"
        )
    )
    assert loaded == []


def test_cli_world_and_help_load_neither_torch_nor_sklearn_nor_flower(tmp_path: Path) -> None:
    """``fedads --help`` and ``fedads world`` take about a second: torch (seconds per process)
    and scikit-learn are imported only by the commands that train."""
    out = str(tmp_path / "w")
    loaded = json.loads(
        _python(
            "import sys, json, contextlib, io\n"
            "from fedads.cli import main\n"
            "quiet = io.StringIO()\n"
            "with contextlib.redirect_stdout(quiet), contextlib.redirect_stderr(quiet):\n"
            f"    code = main(['world', '--users', '300', '--seed', '1', '--out', {out!r}])\n"
            "print(json.dumps([code] + [m for m in ('torch', 'sklearn', 'flwr', 'ray', 'opacus') "
            "if m in sys.modules]))"
        )
    )
    assert loaded == [0]
    assert (tmp_path / "w" / "social.csv").is_file()


def test_the_pyproject_clientapp_module_imports_no_torch() -> None:
    """A deployment's SuperNode starts one ``flwr-clientapp`` process per message; with a party
    process it only forwards, so its module must not import torch (seconds per message)."""
    loaded = json.loads(
        _python(
            "import fedads.flower.client_app, sys, json; "
            "print(json.dumps([m for m in ('torch', 'sklearn', 'ray', 'pandas') "
            "if m in sys.modules]))"
        )
    )
    assert loaded == []


def test_lazy_protocol_exports_resolve() -> None:
    import fedads.protocol as protocol

    assert set(protocol.__all__) == set(protocol._EXPORTS)
    for name in protocol.__all__:
        assert getattr(protocol, name) is not None, name
    with pytest.raises(AttributeError, match="no attribute 'Nope'"):
        protocol.Nope  # noqa: B018


def test_align_sources_do_not_import_protocol() -> None:
    # data flows one way: align -> protocol, never back (the envelope lives in fedads.envelope)
    imports = re.compile(r"^\s*(from|import)\s+fedads\.protocol\b", re.MULTILINE)
    for path in (ROOT / "fedads" / "align").glob("*.py"):
        assert not imports.search(path.read_text()), path.name


def test_import_fedads_has_no_process_wide_side_effects() -> None:
    report = json.loads(
        _python(
            "import json, logging, os, warnings\n"
            "env, filters = dict(os.environ), list(warnings.filters)\n"
            "import fedads\n"
            "print(json.dumps({\n"
            "  'env': env == dict(os.environ),\n"
            "  'filters': filters == list(warnings.filters),\n"
            "  'root': len(logging.getLogger().handlers),\n"
            "  'fedads': [type(h).__name__ for h in logging.getLogger('fedads').handlers],\n"
            "  'torch': __import__('sys').modules.get('torch') is not None,\n"
            "}))"
        )
    )
    assert report == {
        "env": True,
        "filters": True,
        "root": 0,
        "fedads": ["NullHandler"],
        "torch": False,
    }


def test_the_protobuf_warning_is_silenced_only_around_flowers_import() -> None:
    out = _python(
        "import warnings\n"
        "with warnings.catch_warnings(record=True) as caught:\n"
        "    warnings.simplefilter('always')\n"
        "    import fedads.flower\n"
        "print(sum('Protobuf gencode' in str(w.message) for w in caught))\n"
        "print(any('Protobuf gencode' in str(f[1] and f[1].pattern) for f in warnings.filters))\n"
    )
    assert out.split() == ["0", "False"]


def test_public_names_resolve_lazily() -> None:
    for name in fedads.__all__:
        assert getattr(fedads, name) is not None, name
    assert set(fedads.__all__) <= set(dir(fedads))
    with pytest.raises(AttributeError, match="no_such_name"):
        fedads.no_such_name  # noqa: B018


# ------------------------------------------------------------------------------ logging
@pytest.fixture
def fedads_logging():
    """Restore the 'fedads' logger's level, handlers and the bar switch after a test."""
    logger = logging.getLogger("fedads")
    saved = (logger.level, list(logger.handlers), _progress._forced_bars)
    yield logger
    logger.setLevel(saved[0])
    logger.handlers[:] = saved[1]
    _progress._forced_bars = saved[2]


def test_progress_is_an_adapter_over_the_fedads_logger(caplog) -> None:
    with caplog.at_level(logging.DEBUG, logger="fedads"):
        Progress()("shown at INFO")
        Progress(verbose=False)("lowered to DEBUG")
        Progress(logger="flower")("from a child logger")
    records = [(r.name, r.levelno, r.getMessage()) for r in caplog.records]
    assert records == [
        ("fedads", logging.INFO, "shown at INFO"),
        ("fedads", logging.DEBUG, "lowered to DEBUG"),
        ("fedads.flower", logging.INFO, "from a child logger"),
    ]


def test_set_verbosity_is_the_one_switch(fedads_logging, monkeypatch) -> None:
    stream = io.StringIO()
    monkeypatch.setattr(sys, "stderr", stream)
    monkeypatch.setattr(logging.getLogger(), "handlers", [])  # an unconfigured application
    set_verbosity("info")
    set_verbosity("info")  # idempotent: one handler
    handlers = [h for h in fedads_logging.handlers if not isinstance(h, logging.NullHandler)]
    assert len(handlers) == 1
    Progress()("hello")
    Progress(verbose=False)("hidden")
    set_verbosity("warning")
    Progress()("quiet now")
    logging.getLogger("fedads.flower").warning("a problem")
    lines = stream.getvalue().splitlines()
    assert len(lines) == 2, lines
    assert lines[0].startswith("[fedads") and lines[0].endswith("s] hello")
    assert lines[1].endswith("WARNING: a problem")
    with pytest.raises(InputError, match="set_verbosity.*'loud'"):
        set_verbosity("loud")


def test_set_verbosity_keeps_an_applications_own_logging(fedads_logging, monkeypatch) -> None:
    monkeypatch.setattr(logging.getLogger(), "handlers", [logging.NullHandler()])
    set_verbosity("debug")
    assert all(isinstance(h, logging.NullHandler) for h in fedads_logging.handlers)
    assert fedads_logging.level == logging.DEBUG


def test_progress_bars_show_only_when_wanted(fedads_logging, monkeypatch) -> None:
    monkeypatch.delenv(_progress.PROGRESS_ENV, raising=False)
    monkeypatch.delenv("CI", raising=False)
    monkeypatch.setattr(sys, "stderr", io.StringIO())  # not a terminal
    fedads_logging.setLevel(logging.INFO)
    assert not _progress.bars_enabled()  # not a TTY, not a notebook
    assert isinstance(progress_bar(10, "x"), _progress._NoBar)
    monkeypatch.setenv(_progress.PROGRESS_ENV, "1")
    bar = progress_bar(10, "forced", "batch")
    assert not isinstance(bar, _progress._NoBar)
    bar.update(10)
    bar.close()
    assert "fedads: forced" in sys.stderr.getvalue()
    assert isinstance(Progress(verbose=False).bar(10, "x"), _progress._NoBar)
    fedads_logging.setLevel(logging.WARNING)  # quiet: never a bar, even when forced
    assert not _progress.bars_enabled()
    fedads_logging.setLevel(logging.INFO)
    monkeypatch.setattr(_progress, "_stderr_is_tty", lambda: True)
    monkeypatch.delenv(_progress.PROGRESS_ENV)
    assert _progress.bars_enabled()  # a terminal
    monkeypatch.setenv("CI", "true")
    assert not _progress.bars_enabled()  # never in CI logs
    monkeypatch.setenv(_progress.PROGRESS_ENV, "0")
    monkeypatch.delenv("CI")
    assert not _progress.bars_enabled()
    with progress_bar(3, "no bar") as bar:  # the stand-in takes the same calls
        bar.update(3)
        bar.set_postfix_str("done")


# ------------------------------------------------------------------------------ Flower
def test_flower_env_is_scoped_and_restored_even_on_error(monkeypatch) -> None:
    from fedads.flower.simulation import FLOWER_ENV, quiet_flower_env

    monkeypatch.setenv("PYTHONWARNINGS", "default")
    monkeypatch.delenv("RAY_worker_niceness", raising=False)
    before, filters = dict(os.environ), list(warnings.filters)
    with pytest.raises(RuntimeError, match="inside"), quiet_flower_env():
        assert os.environ["FLWR_TELEMETRY_ENABLED"] == "0"
        assert "Protobuf gencode" in os.environ["PYTHONWARNINGS"]
        assert os.environ["PYTHONWARNINGS"].startswith("default,")
        os.environ["PYTHONPATH"] = "/changed/by/flower/ray/backend"
        os.environ["RAY_USAGE_STATS_ENABLED"] = "0"  # as ray.init does
        os.environ.pop("HOME", None)
        raise RuntimeError("inside")
    assert dict(os.environ) == before
    assert list(warnings.filters) == filters
    assert "PYTHONPATH" in FLOWER_ENV  # Flower's Ray backend rewrites it


def _patched() -> dict[str, bool]:
    from flwr.server.superlink.fleet.vce import vce_api
    from flwr.server.superlink.linkstate.in_memory_linkstate import InMemoryLinkState
    from flwr.simulation.ray_transport.ray_actor import BasicActorPool

    return {
        "wakeups": InMemoryLinkState.store_message_ins.__module__ == "fedads.flower.engine",
        "polling": vce_api.add_messages_to_queue.__module__ == "fedads.flower.engine",
        "affinity": BasicActorPool.submit.__module__ == "fedads.flower.engine",
    }


def test_engine_patches_apply_on_the_version_they_were_written_for(monkeypatch) -> None:
    import flwr

    from fedads.flower.engine import PATCHED_FLWR_VERSION, engine_patches

    monkeypatch.delenv("FEDADS_FLOWER_PATCHES", raising=False)
    assert flwr.__version__ == PATCHED_FLWR_VERSION, (
        f"flwr {flwr.__version__} is installed; fedads/flower/engine.py was written for "
        f"{PATCHED_FLWR_VERSION}: re-check each patch against the new Flower source, re-measure "
        "(docs/performance.md), then update PATCHED_FLWR_VERSION"
    )
    with engine_patches(0.01) as applied:
        assert applied == {"wakeups": True, "polling": True, "affinity": True}
        assert _patched() == applied
    assert _patched() == {"wakeups": False, "polling": False, "affinity": False}


def test_engine_patches_skip_another_flower_version_with_a_warning(monkeypatch, caplog) -> None:
    import flwr

    from fedads.flower.engine import engine_patches

    monkeypatch.setattr(flwr, "__version__", "1.43.0")
    with caplog.at_level(logging.WARNING, logger="fedads"), engine_patches(0.01) as applied:
        assert applied == {"wakeups": False, "polling": False, "affinity": False}
        assert not any(_patched().values())
    skipped = [r.getMessage() for r in caplog.records if r.name == "fedads.flower.engine"]
    assert len(skipped) == 3
    assert all("skipped" in m and "installed flwr is 1.43.0" in m for m in skipped)


@pytest.mark.parametrize("switch", ["env", "argument"])
def test_engine_patches_can_be_switched_off(monkeypatch, switch: str) -> None:
    from fedads.flower.engine import engine_patches

    enabled = None
    if switch == "env":
        monkeypatch.setenv("FEDADS_FLOWER_PATCHES", "0")
    else:
        enabled = False
    with engine_patches(0.01, enabled) as applied:
        assert not any(applied.values())
        assert not any(_patched().values())


def test_run_simulation_is_still_there_and_deprecated_as_planned_for() -> None:
    """The watch on docs/flower.md, "Moving off run_simulation".

    fedads' simulation backend calls ``flwr.simulation.run_simulation``, deprecated in flwr 1.42
    with the banner below. When this fails, Flower removed it or changed its deprecation (e.g.
    named the release that removes it): follow the plan in docs/flower.md before upgrading.
    """
    import flwr.simulation

    from fedads.flower.simulation import RUN_SIMULATION_DEPRECATION

    plan = "see docs/flower.md, 'Moving off run_simulation'"
    run_simulation = getattr(flwr.simulation, "run_simulation", None)
    assert callable(run_simulation), f"flwr.simulation.run_simulation is gone: {plan}"
    tree = ast.parse(textwrap.dedent(inspect.getsource(run_simulation)))
    notices = [
        ast.literal_eval(node.args[0])
        for node in ast.walk(tree)
        if isinstance(node, ast.Call)
        and getattr(node.func, "id", "") == "warn_deprecated_feature"
        and node.args
    ]
    assert len(notices) == 1, f"run_simulation's deprecation changed: {notices!r}: {plan}"
    assert notices[0].startswith(RUN_SIMULATION_DEPRECATION), (
        f"run_simulation's deprecation notice changed to {notices[0]!r}: {plan}"
    )
    assert "flwr run" in notices[0], plan  # the replacement the plan builds on
    parameters = tuple(inspect.signature(run_simulation).parameters)
    assert parameters[:4] == ("server_app", "client_app", "num_supernodes", "backend_name"), plan
    assert "backend_config" in parameters, plan
    doc = (ROOT / "docs" / "flower.md").read_text()
    assert "## Moving off run_simulation" in doc


@pytest.mark.parametrize("flag, shown", [("-q", False), ("-v", True), (None, True)])
def test_cli_configures_logging_with_one_switch(
    flag: str | None, shown: bool, tmp_path: Path, capsys, fedads_logging, monkeypatch
) -> None:
    from fedads.cli import main

    monkeypatch.setattr(logging.getLogger(), "handlers", [])  # as in a fresh `fedads` process
    argv = ["world", "--users", "300", "--out", str(tmp_path), *([flag] if flag else [])]
    assert main(argv) == 0
    stderr = capsys.readouterr().err
    assert ("[fedads" in stderr and "wrote social" in stderr) is shown, stderr
    expected = {"-q": logging.WARNING, "-v": logging.DEBUG, None: logging.INFO}[flag]
    assert fedads_logging.level == expected
