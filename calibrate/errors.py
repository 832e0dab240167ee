"""The one error type users can fix.

    CalibrateError(message, hint)      anything the user can fix: bad input, bad config, missing data
      ├── ConfigError                  tiers.yaml / routing.yaml is missing or invalid
      ├── LogFormatError               a log file cannot be read at all, or --strict found a bad row
      ├── DataError                    the data cannot answer the question (no labels, missing tiers)
      ├── LabelFileError               a label file cannot be read, or --strict found a bad label row
      ├── EndpointError                a tier's endpoint refuses us or keeps failing (replay paused it)
      └── OutputError                  --out names a file where a folder is needed, or the reverse

The CLI prints `Error: <message>` and `Hint: <hint>` on stderr and exits 1. Every other exception is
a bug and shows a traceback. Messages never contain secrets: API keys are referred to by the name of
their environment variable only.
"""

from __future__ import annotations


class CalibrateError(Exception):
    """A problem the user can fix; carries a hint saying how."""

    def __init__(self, message: str, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint


class ConfigError(CalibrateError):
    """A configuration file (tiers.yaml, routing.yaml) is missing or invalid."""


class LogFormatError(CalibrateError):
    """A log file cannot be read, or --strict found a bad row."""


class DataError(CalibrateError):
    """The stored data cannot answer the question asked (no labels, a tier never answered...)."""


class LabelFileError(CalibrateError):
    """A label file cannot be read (format, encoding, columns), or --strict found a bad row."""


class EndpointError(CalibrateError):
    """A tier's endpoint refused the key, does not know the model, or kept failing during replay."""


class OutputError(CalibrateError):
    """An output path cannot be written: a file stands where a folder is needed, or the reverse."""
