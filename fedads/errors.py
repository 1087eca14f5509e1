"""Errors fedads raises on purpose. Each message says what went wrong and what to fix."""

from __future__ import annotations


class FedadsError(Exception):
    """Base class of every error fedads raises on purpose."""


class InputError(FedadsError, ValueError):
    """Bad input from the user: a file, a column, a config value.

    The message names the source (file or object), the column or field, and what to fix.
    """


class ProtocolError(FedadsError, RuntimeError):
    """The federation cannot go on: a party failed, timed out, or broke the protocol."""


class PartyError(ProtocolError):
    """A named party answered with an error or did not answer in time."""

    def __init__(self, party: str, detail: str) -> None:
        self.party = party
        self.detail = detail
        super().__init__(f"party {party!r}: {detail}")


class FedadsWarning(UserWarning):
    """Base class of every warning fedads issues on purpose."""


class DataWarning(FedadsWarning):
    """Suspicious but usable input data (e.g. an all-missing or constant column).

    Filter it with ``warnings.filterwarnings("ignore", category=DataWarning)``.
    """
