"""Errors a user can cause, mapped to the documented exit codes by the CLI.

Anything raised as a ``UserError`` is printed as one message without a traceback and
exits 2; everything else is a bug in dlsteps or in the user's code and keeps its
traceback (under ``--debug`` for user errors too).
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable

EXIT_OK = 0
EXIT_GATE_FAILED = 1
EXIT_USAGE = 2
EXIT_INTERRUPTED = 130


class UserError(Exception):
    """A bad config, bad data, a bad model or a usage mistake: exit code 2."""


class ConfigError(UserError):
    """The config file, an overlay or a ``--set`` is wrong; the message names the key."""


class DataError(UserError):
    """The data set cannot be used as it is; the message names the sample or the file."""


class ModelError(UserError):
    """The model cannot be built or does not fit the data."""


def did_you_mean(word: str, choices: Iterable[str]) -> str:
    """A ' Did you mean ...?' suffix, or '' when nothing is close."""
    close = difflib.get_close_matches(word, list(choices), n=1, cutoff=0.6)
    return f" Did you mean '{close[0]}'?" if close else ""
