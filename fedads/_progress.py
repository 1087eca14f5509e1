"""Logging and progress bars: one logger tree, one verbosity switch, tqdm bars for long loops.

* Every message goes through ``logging.getLogger("fedads")`` or a child (``"fedads.flower"``,
  ...). Importing fedads installs only a :class:`logging.NullHandler` there (library practice):
  nothing is printed until the application configures :mod:`logging`, calls
  :func:`set_verbosity`, or uses the command line (``fedads -q/-v``).
* **The one switch** is the level of the ``"fedads"`` logger: :func:`set_verbosity` (``"debug"``,
  ``"info"``, ``"warning"``, ``"error"``) sets it and, unless logging is configured already,
  adds one handler that writes ``[fedads   12.3s] message`` lines to stderr. Progress messages
  are ``INFO``; the older ``verbose=False`` arguments only lower their call's messages to
  ``DEBUG``.
* **Progress bars** (:func:`progress_bar`, ``tqdm.auto``: a widget in Jupyter, a text bar in a
  terminal) are shown only while the ``"fedads"`` logger is enabled for ``INFO`` and stderr is a
  terminal or a Jupyter kernel runs the code, never when the ``CI`` environment variable is
  set. ``FEDADS_PROGRESS=1`` (or ``set_verbosity(..., progress=True)``) forces them on when
  ``INFO`` is enabled; ``FEDADS_PROGRESS=0`` turns them off.
"""

from __future__ import annotations

import importlib.util
import logging
import os
import sys
import time
from types import TracebackType
from typing import Any, TextIO

_PROCESS_START = time.time()  # the clock of every line: seconds since fedads was imported

LOGGER_NAME = "fedads"
LOGGER = logging.getLogger(LOGGER_NAME)
LOGGER.addHandler(logging.NullHandler())

PROGRESS_ENV = "FEDADS_PROGRESS"
"""Environment variable: ``1`` forces progress bars on (when INFO is enabled), ``0`` off."""

LEVELS = {
    "debug": logging.DEBUG,
    "info": logging.INFO,
    "warning": logging.WARNING,
    "error": logging.ERROR,
    "critical": logging.CRITICAL,
}
_TRUE = ("1", "true", "yes", "on")
_FALSE = ("0", "false", "no", "off")
_forced_bars: bool | None = None  # set_verbosity(progress=...)


def get_logger(name: str | None = None) -> logging.Logger:
    """The ``"fedads"`` logger, or its child ``"fedads.<name>"`` (``name`` without the prefix)."""
    if not name or name == LOGGER_NAME:
        return LOGGER
    return LOGGER.getChild(name.removeprefix(LOGGER_NAME + "."))


class _Formatter(logging.Formatter):
    """``[fedads <seconds since import>s] message``; the level is named from WARNING up."""

    def format(self, record: logging.LogRecord) -> str:
        elapsed = record.created - _PROCESS_START
        level = f"{record.levelname}: " if record.levelno >= logging.WARNING else ""
        text = f"[fedads {elapsed:7.1f}s] {level}{record.getMessage()}"
        if record.exc_info:
            text += "\n" + self.formatException(record.exc_info)
        return text


class StderrHandler(logging.Handler):
    """Writes to the *current* ``sys.stderr`` through ``tqdm.write``, so a line printed while a
    progress bar is shown does not break the bar."""

    def __init__(self, stream: TextIO | None = None) -> None:
        super().__init__()
        self.stream = stream
        self.setFormatter(_Formatter())

    def emit(self, record: logging.LogRecord) -> None:
        try:
            text = self.format(record)
            stream = self.stream or sys.stderr
            from tqdm import tqdm

            tqdm.write(text, file=stream)
            stream.flush()
        except Exception:  # noqa: BLE001 - logging must never raise
            self.handleError(record)


def set_verbosity(
    level: str | int = "info",
    *,
    progress: bool | None = None,
    handler: bool = True,
) -> None:
    """The one switch for what fedads prints: the level of the ``"fedads"`` logger.

    Args:
        level: ``"debug"`` (everything, also Flower's and Ray's INFO lines during a simulation),
            ``"info"`` (progress lines and bars), ``"warning"`` (quiet: only problems),
            ``"error"``, or a :mod:`logging` level number.
        progress: ``True`` shows progress bars even when stderr is not a terminal (still only
            at ``"info"`` or below), ``False`` never; ``None`` (default): automatic.
        handler: add a stderr handler to ``"fedads"`` unless it or the root logger has one (an
            application that configured logging keeps its own handlers). ``False``: never.
    """
    global _forced_bars
    if isinstance(level, str):
        key = level.strip().lower()
        if key not in LEVELS:
            from fedads._validation import fail

            raise fail("set_verbosity", f"unknown level {level!r}", f"use one of {list(LEVELS)}")
        number = LEVELS[key]
    else:
        number = int(level)
    LOGGER.setLevel(number)
    _forced_bars = progress
    if handler and not _has_output_handler():
        LOGGER.addHandler(StderrHandler())


def _has_output_handler() -> bool:
    own = any(not isinstance(h, logging.NullHandler) for h in LOGGER.handlers)
    return own or bool(logging.getLogger().handlers)


def _in_jupyter() -> bool:
    if "IPython" not in sys.modules:  # never import IPython just to ask
        return False
    try:
        from IPython import get_ipython

        shell = get_ipython()
    except Exception:  # noqa: BLE001 - any failure means: not a notebook
        return False
    return shell is not None and type(shell).__name__ == "ZMQInteractiveShell"


def _stderr_is_tty() -> bool:
    try:
        return bool(sys.stderr.isatty())
    except (AttributeError, ValueError):
        return False


def bars_enabled(logger: logging.Logger | None = None) -> bool:
    """Whether :func:`progress_bar` shows a bar now (see the module docstring)."""
    env = os.environ.get(PROGRESS_ENV, "").strip().lower()
    if env in _FALSE or _forced_bars is False:
        return False
    if not (logger or LOGGER).isEnabledFor(logging.INFO):
        return False
    if env in _TRUE or _forced_bars is True:
        return True
    if os.environ.get("CI", "").strip().lower() not in ("", *_FALSE):
        return False  # never fill CI logs with bars
    return _stderr_is_tty() or _in_jupyter()


class _NoBar:
    """What :func:`progress_bar` returns when bars are off: accepts the calls, shows nothing."""

    n = 0

    def update(self, n: float = 1) -> None:
        self.n += n

    def set_postfix_str(self, text: str = "", refresh: bool = True) -> None:
        pass

    def close(self) -> None:
        pass

    def __enter__(self) -> _NoBar:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


def _tqdm_class() -> Any:
    if _in_jupyter() and importlib.util.find_spec("ipywidgets") is not None:
        from tqdm.auto import tqdm  # the notebook widget

        return tqdm
    from tqdm.std import tqdm  # text bar on stderr (also in a notebook without ipywidgets)

    return tqdm


def progress_bar(
    total: int | None,
    desc: str,
    unit: str = "it",
    *,
    enabled: bool = True,
    logger: logging.Logger | None = None,
) -> Any:
    """A tqdm bar over ``total`` steps (``bar.update(n)``; use as a context manager), or a
    silent stand-in with the same methods when bars are off (:func:`bars_enabled`)."""
    if not (enabled and bars_enabled(logger)):
        return _NoBar()
    tqdm = _tqdm_class()
    return tqdm(
        total=total,
        desc=f"fedads: {desc}",
        unit=unit,
        file=sys.stderr,
        leave=False,
        dynamic_ncols=True,
        mininterval=0.5,
    )


class Progress:
    """Progress messages of one task, as ``INFO`` records of the ``"fedads"`` logger.

    A thin adapter kept so ``progress("message")`` call sites work; what is shown is decided by
    the logger's level (:func:`set_verbosity`). ``verbose=False`` lowers this object's messages
    to ``DEBUG`` (hidden at the default level) and turns its bars off.

    Args:
        verbose: ``False``: messages at ``DEBUG``, no bars.
        stream: ignored, kept for old callers; configure a :mod:`logging` handler instead.
        logger: the logger, or a child name (``"flower"`` -> ``"fedads.flower"``).
    """

    def __init__(
        self,
        verbose: bool = True,
        stream: TextIO | None = None,
        logger: logging.Logger | str | None = None,
    ) -> None:
        self.verbose = verbose
        self.logger = logger if isinstance(logger, logging.Logger) else get_logger(logger)

    @property
    def level(self) -> int:
        return logging.INFO if self.verbose else logging.DEBUG

    @property
    def enabled(self) -> bool:
        """Whether this object's messages are shown (at the logger's current level)."""
        return self.logger.isEnabledFor(self.level)

    def __call__(self, message: str) -> None:
        self.logger.log(self.level, message)

    def bar(self, total: int | None, desc: str, unit: str = "it") -> Any:
        """A progress bar for a long loop (see :func:`progress_bar`)."""
        return progress_bar(total, desc, unit, enabled=self.verbose, logger=self.logger)


SILENT = Progress(verbose=False)
"""Messages at ``DEBUG`` and no bars: the default of the lower layers."""
