"""Errors raised by the trainer. The CLI turns any ``TrainerError`` into exit code 2."""

from __future__ import annotations


class TrainerError(Exception):
    """Base class: a readable message about bad input or an unusable artifact."""


class DataError(TrainerError):
    """The training data cannot be used (missing, empty, malformed, one-sided)."""


class MissingFileError(DataError):
    """A required file or directory does not exist."""


class EmptyDatasetError(DataError):
    """A data file has no usable rows."""


class OneSidedDatasetError(DataError):
    """Preference pairs carry no signal (every chosen equals its rejected, or a side is missing)."""


class TokenizerMismatchError(TrainerError):
    """A tokenizer does not fit the model it is used with."""


class IncompleteRunError(TrainerError):
    """A run directory was never marked COMPLETE (killed half way or still running)."""


class ConfigError(TrainerError):
    """A configuration value is invalid."""
